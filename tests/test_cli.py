"""The ``vidfix`` command: dispatch, help, the one error boundary, and a tiny corrector benchmark that writes its
own section."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from vidfix.scripts import bench, bench_corrector, cli
from vidfix.scripts._common import Parser, UsageError


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert "example" in out


def test_unknown_command_is_a_clear_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def _raises(err: BaseException):
    def fn(argv: list[str]) -> int:
        raise err

    return fn


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (UsageError("bad --thing"), 2),
        (ValueError("bad value"), 2),
        (FileNotFoundError("no such file"), 2),
        (PermissionError("not writable"), 2),
        (FloatingPointError("chunk 3 went NaN"), 1),  # the sampler's NonFiniteChunkError
        (OSError(28, "No space left on device"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_error_boundary_exit_codes_and_one_line(capsys, error, code):
    assert cli.run_command("vidfix x", _raises(error), []) == code
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidfix x: ")


def test_error_boundary_keeps_tracebacks_of_bugs_and_prints_warnings_as_one_line(capsys, monkeypatch):
    with pytest.raises(KeyError):  # not a user error: the traceback is the useful report
        cli.run_command("vidfix x", _raises(KeyError("oops")), [])

    def warn(argv: list[str]) -> int:
        warnings.warn("no CUDA device here; running on the CPU", stacklevel=1)
        return 0

    assert cli.run_command("vidfix x", warn, []) == 0
    assert capsys.readouterr().err == "vidfix x: warning: no CUDA device here; running on the CPU\n"
    monkeypatch.setenv("VIDFIX_DEBUG", "1")
    with pytest.raises(ValueError):
        cli.run_command("vidfix x", _raises(ValueError("shown with its traceback")), [])


def test_parser_errors_are_usage_errors():
    p = Parser(prog="vidfix x")
    p.add_argument("--n", type=int)
    with pytest.raises(UsageError, match=r"argument --n: invalid int value: 'a' \(see `vidfix x --help`\)"):
        p.parse_args(["--n", "a"])


def test_console_script_runs():
    out = subprocess.run(
        [sys.executable, "-m", "vidfix.scripts.cli", "bench", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "corrector" in out.stdout and "example" in out.stdout


def test_bench_corrector_writes_and_replaces_its_section(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# vidfix benchmarks\n\n<!-- bench:metrics -->\nkeep me\n<!-- /bench:metrics -->\n")
    args = [
        "--shape",
        "1",
        "2",
        "3",
        "8",
        "8",
        "--repeats",
        "2",
        "--dtypes",
        "float32",
        "--output",
        str(path),
    ]
    assert bench.main(["corrector", *args]) == 0
    assert bench_corrector.main(args) == 0  # rerun replaces, never duplicates
    text = path.read_text()
    assert text.count("<!-- bench:corrector -->") == 1 and "keep me" in text
    assert "**float32**" in text and "| DCW 3d, 3 groups |" in text and "Command: `vidfix bench corrector" in text
