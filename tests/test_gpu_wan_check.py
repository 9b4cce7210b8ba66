"""The prepared GPU check (``scripts/gpu_wan_check.py``): one line without a GPU or weights; a dry run end to end
on tiny weights on the CPU, so that the script does not fail for the first time on a lent GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_pipelines import build
from vidfix.scripts import gpu_wan_check


def test_no_gpu_or_no_weights_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not torch.cuda.is_available():
        assert gpu_wan_check.main(["--model", str(tmp_path)]) == 2
        out = capsys.readouterr().out.strip()
        assert out.count("\n") == 0 and "no CUDA GPU" in out
    assert gpu_wan_check.main(["--device", "cpu", "--model", str(tmp_path / "missing")]) == 2
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "no Wan weights folder" in out and "model_index.json" in out
    assert gpu_wan_check.main(["--device", "cpu"]) == 2
    assert "no --model given" in capsys.readouterr().out


@pytest.mark.slow
def test_dry_run_on_tiny_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "wan"
    build("wan").save_pretrained(folder)
    out = tmp_path / "out"
    argv = ["--device", "cpu", "--model", str(folder), "--out", str(out), "--frames", "9", "--height", "16",
            "--width", "16", "--steps", "2", "--low", "0.05", "--pipe-arg", "max_sequence_length=8",
            "--self-forcing", str(folder)]  # fmt: skip
    assert gpu_wan_check.main(argv) == 0
    printed = capsys.readouterr().out
    assert "self-forcing skipped: diffusers" in printed and "PR #13681" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"]["exit_code"] == 0 and (out / "drift.png").is_file()
    assert summary["corrector"]["dcw"]["low"] == 0.05
    assert len(list((out / "plain").glob("*.mp4"))) == 1 and len(list((out / "vidfix").glob("*.mp4"))) == 1
