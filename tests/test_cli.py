"""The ``vidfix`` command: dispatch, help, and a tiny corrector benchmark that writes its own section."""

from __future__ import annotations

import subprocess
import sys

from vidfix.scripts import bench, bench_corrector, cli


def test_help_lists_commands(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in cli.COMMANDS:
        assert name in out
    assert "example" in out


def test_unknown_command_is_a_clear_error(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


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
