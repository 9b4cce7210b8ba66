"""Start-up: ``vidfix --help`` and every command's ``--help`` import neither torch nor diffusers (checked on
``sys.modules`` in a fresh process; the times themselves live in ``vidfix bench startup``, not in a test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from vidfix.scripts import bench_startup, cli

_PROBE = r"""
import contextlib, io, json, sys
from vidfix.scripts import cli
first = {}
for args in [["--help"]] + [[name, "--help"] for name in cli.COMMANDS]:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = cli.main(args)
        except SystemExit as exit:
            code = exit.code
    assert code == 0, (args, code)
    for heavy in ("diffusers", "torch", "scipy.stats", "accelerate"):
        if heavy in sys.modules and heavy not in first:
            first[heavy] = " ".join(args)
print(json.dumps(first))
"""


def test_help_imports_neither_torch_nor_diffusers() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == {}, f"heavy modules imported by (first) these help commands: {out}"


def test_the_metrics_package_does_not_import_diffusers() -> None:
    code = "import sys, vidfix.metrics; print('diffusers' in sys.modules, 'vidfix.pipelines' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


_DRIFT_PROBE = r"""
import contextlib, io, json, sys
from vidfix.scripts import cli
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    code = cli.main(["drift", sys.argv[1], "--json", sys.argv[2], "--quiet"])
print(json.dumps({"code": code, "diffusers": "diffusers" in sys.modules}))
"""


def test_drift_on_a_video_does_not_import_diffusers(tmp_path: Path) -> None:
    """``vidfix drift`` measures a real file (not just ``--help``) without importing diffusers."""
    import numpy as np
    from vidfix.metrics.io import write_video

    ramp = np.linspace(40, 200, 16, dtype=np.float32)[:, None, None, None]
    frames = np.broadcast_to(ramp, (16, 64, 64, 3)).astype(np.uint8)  # 16 frames brightening over time
    video = write_video(tmp_path / "tiny.mp4", frames, fps=8)
    report = tmp_path / "drift.json"
    done = subprocess.run(
        [sys.executable, "-c", _DRIFT_PROBE, str(video), str(report)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.splitlines()[-1]) == {"code": 0, "diffusers": False}, done.stderr
    assert report.is_file() and report.stat().st_size > 0  # the command really measured the video


def test_import_vidfix_is_light_and_exports_still_work() -> None:
    code = (
        "import sys, vidfix, vidfix.pipelines; light = 'torch' not in sys.modules; "
        "from vidfix import DCW, tap; from vidfix.tap import original_class; import vidfix.tap as t; "
        "from vidfix.pipelines import stabilize, generate_videos; "
        "print(light, callable(tap), vidfix.tap is tap, callable(stabilize), DCW.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "True", "DCW"]  # a function named like its module still wins


def test_bench_startup_writes_its_section(tmp_path: Path) -> None:
    path = tmp_path / "BENCHMARKS.md"
    assert bench_startup.main(["--groups", "help", "--repeats", "1", "--output", str(path)]) == 0
    text = path.read_text()
    assert "<!-- bench:startup -->" in text and "Command: `vidfix bench startup --repeats 1 --groups help`" in text
    assert "load average" in text
    for name in cli.COMMANDS:
        assert f"| vidfix {name} --help |" in text
