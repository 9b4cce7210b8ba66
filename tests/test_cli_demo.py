"""``vidfix demo``: help, the whole job on a tiny model, and on the shipped reference model when its weights exist."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import torch
import vidfix.pipelines
from _tiny_models import TinyChunkDenoiser
from safetensors.torch import save_file
from vidfix.scripts import calibrate as cal
from vidfix.scripts import demo

WEIGHTS = Path(vidfix.pipelines.REFERENCE_WEIGHTS_DIR) / "diffusion_pytorch_model.safetensors"
OUTPUTS = ("uncorrected.mp4", "vidfix.mp4", "side_by_side.mp4", "drift.json", "drift.png")


def frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        demo.main(["--help"])
    assert info.value.code == 0 and "vidfix demo " in capsys.readouterr().out


def test_demo_on_a_tiny_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "model"
    TinyChunkDenoiser(sample_size=16).save_pretrained(model)  # the drift metrics need 16x16 frames
    tiny = ["--model", str(model), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress"]
    data = tmp_path / "clips.safetensors"
    save_file(
        {"video": torch.rand(2, 3, 12, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1}, str(data)
    )
    assert (
        cal.main(
            [*tiny, "--data", str(data), "--clips", "2", "--steps", "2", "--out", str(tmp_path / "c.json")]
        )
        == 0
    )
    capsys.readouterr()
    out = tmp_path / "demo"
    argv = [
        *tiny,
        "--calibration",
        str(tmp_path / "c.json"),
        "--frames",
        "16",
        "--steps",
        "2",
        "--seeds",
        "0-1",
        "--out",
        str(out),
    ]
    assert demo.main(argv) == 0
    printed = capsys.readouterr().out
    assert "late drift" in printed and "uncorrected -> vidfix" in printed and str(out / "side_by_side.mp4") in printed
    # Regression: a 170-column table; a person wants a few lines (what, where, headline numbers, what to open).
    lines = printed.strip().splitlines()
    assert len(lines) <= 8 and str(out / "drift.png") in printed
    short = [line.replace(str(out), "OUT").replace(str(tmp_path), "TMP") for line in lines]
    assert all(len(line) <= 110 for line in short), short
    assert "mean " in printed and "std " in printed and "detail energy " in printed
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    assert frames_in(out / "vidfix.mp4") == 16 and frames_in(out / "side_by_side.mp4") == 16
    drift = json.loads((out / "drift.json").read_text())
    assert set(drift["conditions"]) == {"uncorrected", "vidfix"}
    assert len(drift["conditions"]["vidfix"]["chunks"]) == 4
    assert len(drift["conditions"]["vidfix"]["chunks"][0]["mean"]) == 2  # both seeds
    assert demo.main(argv) == 0  # a rerun reuses the finished videos
    assert (
        demo.main([*tiny, "--frames", "16", "--out", str(tmp_path / "d2")]) == 2
    )  # no coefficients for this model
    assert "--calibration" in capsys.readouterr().err
    assert demo.main([*tiny, "--frames", "0", "--out", str(tmp_path / "d3")]) == 2
    assert "argument --frames: expected an integer >= 1, got '0'" in capsys.readouterr().err


def test_demo_output_is_ignored_by_git() -> None:
    """Regression: `vidfix demo` wrote outputs/, which .gitignore did not cover."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    default = demo.build_parser().get_default("out")
    done = subprocess.run(["git", "check-ignore", "-q", f"{default}/side_by_side.mp4"], cwd=root)
    assert done.returncode == 0, f"{default}/ is not ignored by git"


@pytest.mark.slow
def test_demo_on_the_shipped_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert WEIGHTS.is_file(), f"the shipped reference weights are missing: {WEIGHTS}"
    out = tmp_path / "demo"
    assert demo.main(["--frames", "24", "--steps", "3", "--out", str(out), "--no-progress"]) == 0
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    drift = json.loads((out / "drift.json").read_text())
    assert set(drift["conditions"]) == {"real", "uncorrected", "vidfix"}
    printed = capsys.readouterr().out
    assert "late drift" in printed
    # The shipped model's numbers come with what they are (it loses its sprites); at most 8 short lines.
    assert "loses its sprites" in printed and len(printed.strip().splitlines()) <= 8
