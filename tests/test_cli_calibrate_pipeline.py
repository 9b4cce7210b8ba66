"""``vidfix calibrate --pipeline DIR``: a tiny pipeline saved with save_pretrained, calibrated on mp4 clips, and the
file read back by ``stabilize(pipe, calibration=...)`` and ``vidfix generate --pipeline ... --calibration``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import torch
from _tiny_pipelines import build, call_kwargs
from vidfix.metrics.io import write_video
from vidfix.pipelines import stabilize
from vidfix.pipelines.diffusers_run import load_pipeline
from vidfix.scripts import calibrate as cal
from vidfix.scripts.generate import main as generate_main

from vidfix.calibration import CalibrationResult


def _saved(factory: pytest.TempPathFactory, kind: str) -> Path:
    """A tiny pipeline of ``kind`` saved as a diffusers folder."""
    folder = factory.mktemp("models") / kind
    build(kind).save_pretrained(folder)
    return folder


def _clips(factory: pytest.TempPathFactory, name: str, count: int, seed: int) -> Path:
    """``count`` lossless 10-frame 24x24 noise clips (seeds ``seed``, ``seed + 1``, ...)."""
    folder = factory.mktemp(name)
    for i in range(count):
        g = torch.Generator().manual_seed(seed + i)
        frames = (torch.rand(10, 24, 24, 3, generator=g) * 255).to(torch.uint8).numpy()
        write_video(folder / f"clip{i}.mp4", frames, fps=8, codec="h264-lossless")
    return folder


@pytest.fixture(scope="module")
def wan_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(tmp_path_factory, "wan")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clips(tmp_path_factory, "clips", 2, 0)


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
        # Regression: the chunk-model options were silently ignored with --pipeline. Rollouts need context
        # frames, which only SkyReels-V2 DF takes.
        (["--rollout", "6"], r"error: --rollout 6 applies to chunk models and SkyReels-V2 diffusion forcing only: "
                             r"WanPipeline denoises the whole clip in one pass and takes no context frames, so no "
                             r"chunk's error reaches the next and there is no drift to probe; --pipeline runs the "
                             r"one-step probe$"),
        (["--rollout", "0"], r"--rollout 0 applies to chunk models and SkyReels-V2 diffusion forcing only"),
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


# --------------------------------------------------------------------------------------------------------
# --rollout: SkyReels-V2 diffusion forcing, driven chunk by chunk from each clip's clean first frames.


@pytest.fixture(scope="module")
def skyreels_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _saved(tmp_path_factory, "skyreels_df")


@pytest.fixture(scope="module")
def three_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _clips(tmp_path_factory, "clips3", 3, 10)


def _skyreels_argv(folder: Path, clips: Path, out: Path) -> list[str]:
    return ["--pipeline", str(folder), "--videos", str(clips), "--prompt", "a cat", "--negative-prompt", "negative",
            "--frames", "9", "--height", "16", "--width", "16", "--max-sequence-length", "8", "--steps", "2",
            "--out", str(out), "--no-progress"]  # fmt: skip


def test_skyreels_rollout_calibration_writes_the_file_stabilize_reads(
    skyreels_dir: Path, three_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    cr = importlib.import_module("vidfix.pipelines.calibrate_rollout")  # the package re-exports the function
    seen: list[tuple[int, int, int, list[int]]] = []
    real = cr.calibrate_rollout

    def spy(denoiser, scheduler, config, **kw):  # type: ignore[no-untyped-def]
        seen.append((config.chunk_frames, config.context_frames, config.num_chunks, list(kw["seeds"])))
        assert kw["context"].shape[2] == 1  # (B, C, K, H, W)
        assert kw["reference"].shape[2] == 2  # (B, C, F, H, W)
        return real(denoiser, scheduler, config, **kw)

    monkeypatch.setattr(cr, "calibrate_rollout", spy)
    out = tmp_path / "sky_rollout.json"
    argv = [*_skyreels_argv(skyreels_dir, three_clips, out), "--context", "1", "--rollout", "2", "--seed", "5"]  # fmt: skip
    assert cal.main(argv) == 0
    # 9 pixel frames = 3 latent frames: 1 clean context frame, chunks of 2; one rollout per clip, seeds from --seed.
    assert seen == [(2, 1, 2, [5, 6, 7])]
    printed = capsys.readouterr().out
    head = "calibrated SkyReelsV2DiffusionForcingPipeline (UniPCMultistepScheduler, 2 steps, 3d) on 3 clip(s)"
    assert head in printed
    assert "low       coefficient " in printed and "--calibration" in printed
    result = CalibrationResult.load(out)
    assert result.method == "rollout" and result.samples == 3 and result.num_steps == 2
    assert result.rollout["chunks"] == 2 and result.rollout["seeds"] == [5, 6, 7]
    # Base + 2 probes per band group (3d: 3 groups) + 0 to 2 validation rollouts, each 2 chunks x 2 steps.
    assert result.model_calls in {n * 2 * 2 for n in (7, 8, 9)}
    data = json.loads(out.read_text())
    assert data["pipeline"]["class"] == "SkyReelsV2DiffusionForcingPipeline"
    assert data["pipeline"]["rollout_chunks"] == 2 and data["pipeline"]["context_frames"] == 1

    pipe = load_pipeline("skyreels-df", skyreels_dir, dtype="float32")
    handle = stabilize(pipe, calibration=out)
    try:
        assert handle.corrector.to_dict() == data["dcw"]  # type: ignore[attr-defined]
        assert torch.isfinite(pipe(**call_kwargs("skyreels_df")).frames).all()  # 2 steps, as calibrated
    finally:
        handle.undo()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--rollout", "2"], r"--rollout needs --context K \(clean latent frames before each chunk\): without them "
                             r"the chunks are independent"),
        (["--rollout", "2", "--context", "1", "--chain"], r"--chain belongs to the one-step probe"),
        (["--rollout", "2", "--context", "1", "--videos", "CLIP0"],
         r"--rollout needs at least 3 clips \(one rollout each; the uncertainty leaves one out\), --videos gave 1$"),
    ],
)  # fmt: skip
def test_skyreels_rollout_user_errors_are_one_line(
    skyreels_dir: Path, three_clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str,
) -> None:  # fmt: skip
    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("a user error must be reported before the pipeline loads")

    monkeypatch.setattr("vidfix.pipelines.diffusers_run.load_pipeline", no_load)
    extra = [str(three_clips / "clip0.mp4") if e == "CLIP0" else e for e in extra]
    assert cal.main([*_skyreels_argv(skyreels_dir, three_clips, tmp_path / "c.json"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("vidfix calibrate: error:")
    assert pytest.importorskip("re").search(message, err), err
    assert not (tmp_path / "c.json").exists()
