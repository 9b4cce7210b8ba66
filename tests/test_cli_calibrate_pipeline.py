"""``vidfix calibrate --pipeline DIR``: a tiny pipeline saved with save_pretrained, calibrated on mp4 clips, and the
file read back by ``stabilize(pipe, calibration=...)`` and ``vidfix generate --pipeline ... --calibration``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_pipelines import build
from vidfix.metrics.io import write_video
from vidfix.pipelines import stabilize
from vidfix.pipelines.diffusers_run import load_pipeline
from vidfix.scripts import calibrate as cal
from vidfix.scripts.generate import main as generate_main

from vidfix.calibration import CalibrationResult


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "wan"
    build("wan").save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    for i in range(2):
        g = torch.Generator().manual_seed(i)
        frames = (torch.rand(10, 24, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        write_video(folder / f"clip{i}.mp4", frames, fps=8, codec="h264-lossless")
    return folder


def test_calibrate_a_saved_pipeline_then_use_the_file(
    wan_dir: Path, clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "wan_cal.json"
    argv = ["--pipeline", str(wan_dir), "--videos", str(clips), "--prompt", "a cat", "--negative-prompt", "negative",
            "--frames", "9", "--height", "16", "--width", "16", "--max-sequence-length", "8", "--steps", "3",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert cal.main(argv) == 0
    printed = capsys.readouterr().out
    assert "calibrated WanPipeline (UniPCMultistepScheduler, 3 steps, 3d) on 2 clip(s)" in printed
    assert "--calibration" in printed and out.with_suffix(".png").is_file()
    result = CalibrationResult.load(out)
    assert result.samples == 2 and result.num_steps == 3
    record = json.loads(out.read_text())["pipeline"]
    assert record["class"] == "WanPipeline" and record["prompt"] == "a cat" and record["frames"] == 9

    pipe = load_pipeline("wan", wan_dir, dtype="float32")
    handle = stabilize(pipe, calibration=out)
    handle.undo()
    run = tmp_path / "run"
    gen = ["--pipeline", "wan", "--model", str(wan_dir), "--prompt", "a cat", "--frames", "9", "--height", "16",
           "--width", "16", "--steps", "3", "--corrector", "dcw", "--calibration", str(out), "--out", str(run),
           "--device", "cpu", "--pipe-arg", "max_sequence_length=8"]  # fmt: skip
    assert generate_main(gen) == 0
    assert json.loads((run / "manifest.json").read_text())["spec"]["corrector"] == json.loads(out.read_text())["dcw"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "x"], "--model belong to the reference-model mode"),
        (["--frames", "13"], "has 10 frames; --frames asks for 13"),
        (["--frames", "8"], r"the wan VAE compresses time by 4: --frames must be k\*4\+1, got 8"),
        (["--context", "1"], r"--context \(clean prefix frames\) is for SkyReels"),
        # Regression: the chunk-model options were silently ignored with --pipeline.
        (["--rollout", "6"], r"^[^;]*: --rollout 6 applies only to chunk models; --pipeline runs the one-step probe only$"),
        (["--rollout", "0"], r"--rollout 0 applies only to chunk models"),
        (["--scheduler", "euler"], r"--scheduler euler applies only to chunk models; --pipeline probes the pipeline's own scheduler"),
        (["--shift", "3"], r"--shift 3.0 applies only to chunk models; --pipeline probes the pipeline's own scheduler, with the shift of its config$"),
        (["--seeds", "1-3"], r"--seeds 1,2,3 applies only to chunk models; --pipeline calibrates on the clips of --videos$"),
        (["--clips", "4"], r"--clips 4 applies only to chunk models; --pipeline calibrates on the clips of --videos$"),
        (["--clips", "4", "--scheduler", "unipc", "--shift", "2"],
         r"error: --scheduler unipc, --shift 2.0, --clips 4 apply only to chunk models; --pipeline probes the "
         r"pipeline's own scheduler, with the shift of its config; --pipeline calibrates on the clips of --videos$"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line(
    wan_dir: Path,
    clips: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
    message: str,
) -> None:
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a user error must be reported before the pipeline loads")

    monkeypatch.setattr("vidfix.pipelines.diffusers_run.load_pipeline", no_load)
    argv = ["--pipeline", str(wan_dir), "--videos", str(clips), "--prompt", "a cat", "--height", "16",
            "--width", "16", "--steps", "2", "--out", str(tmp_path / "c.json"), "--no-progress", "--frames", "9"]  # fmt: skip
    assert cal.main([*argv, *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("vidfix calibrate: error:")
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "c.json").exists()


def test_a_folder_that_is_not_a_pipeline_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cal.main(["--pipeline", str(tmp_path), "--videos", str(tmp_path), "--prompt", "x"]) == 2
    assert "is not a diffusers pipeline folder (no model_index.json)" in capsys.readouterr().err
