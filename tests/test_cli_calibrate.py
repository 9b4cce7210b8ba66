"""``vidfix calibrate``: a coefficient file and plot from real clips, read back by ``vidfix generate --calibration``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from safetensors.torch import save_file
from vidfix.pipelines import load_video
from vidfix.pipelines.diffusers_run import make_corrector
from vidfix.scripts import calibrate as cal
from vidfix.scripts import generate as gen

from vidfix.calibration import CalibrationResult


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    TinyChunkDenoiser().save_pretrained(folder)
    return folder


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cal.main(["--help"])
    assert (
        info.value.code == 0
        and "vidfix calibrate --steps 16 --out calibration.json" in capsys.readouterr().out
    )


def test_calibrate_then_generate(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "clips.safetensors"
    save_file(
        {"video": torch.rand(2, 3, 12, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1}, str(data)
    )
    out = tmp_path / "cal" / "calibration.json"
    tiny = ["--model", str(model_dir), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress"]
    assert cal.main([*tiny, "--data", str(data), "--clips", "3", "--steps", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "coefficient per step" in printed and "--calibration" in printed
    result = CalibrationResult.load(out)
    assert (
        result.num_steps == 4 and result.samples == 3 and set(result.groups) == {"low", "spatial", "temporal"}
    )
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    dcw = make_corrector("dcw", calibration=out)
    assert dcw.to_dict() == json.loads(out.read_text())["dcw"]

    run = tmp_path / "run"
    argv = [
        *tiny,
        "--frames",
        "8",
        "--steps",
        "4",
        "--seeds",
        "0",
        "--calibration",
        str(out),
        "--out",
        str(run),
    ]
    assert gen.main(argv) == 0
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["spec"]["corrector"] == dcw.to_dict()
    assert load_video(run / "seed_000000").shape == (3, 8, 8, 8)
    assert gen.main([*argv[:-2], "--corrector", "eps", "--out", str(tmp_path / "r2")]) == 2
    assert "need --corrector dcw or dcw2d, not 'eps'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (torch.zeros(1, 3, 4, 8, 8), "need (B, C, T >= 6, H, W)"),
        (torch.full((1, 3, 8, 8, 8), float("nan")), "holds 1536 NaN or inf values"),
        (torch.zeros(1, 3, 8, 8, 8, dtype=torch.uint8), "is torch.uint8; expected floating point"),
        (torch.zeros(1, 3, 8, 8, 8), "is constant (0)"),
        ("garbage", "damaged or unreadable safetensors file"),
        ({"frames": torch.rand(1, 3, 8, 8, 8)}, "expected a tensor named 'video'"),
    ],
)
def test_bad_data_is_a_clear_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], video: object, message: str
) -> None:
    """Regression: `vidfix calibrate` with NaN or garbage clips ended in a traceback."""
    data = tmp_path / "clips.safetensors"
    if video == "garbage":
        data.write_bytes(b"\x00\x01 not a safetensors file" * 10)
    else:
        save_file(video if isinstance(video, dict) else {"video": video}, str(data))  # type: ignore[arg-type]
    tiny = ["--model", str(model_dir), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress"]
    assert cal.main([*tiny, "--data", str(data), "--steps", "2", "--out", str(tmp_path / "c.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidfix calibrate: error: ") and message in err[0], err
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("extra", [[], ["--rollout", "2"]])
def test_fewstep_is_refused_before_the_model_loads(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    extra: list[str],
) -> None:
    """Regression: `--scheduler fewstep` failed with the tap's error only after the model had loaded."""

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("--scheduler fewstep must be refused before the model loads")

    monkeypatch.setattr("vidfix.pipelines.factory.load_denoiser", no_load)
    argv = ["--model", str(model_dir), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress",
            "--scheduler", "fewstep", "--steps", "4", "--out", str(tmp_path / "c.json"), *extra]  # fmt: skip
    assert cal.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vidfix calibrate: error: --scheduler fewstep: "), err
    assert "no solver step to probe" in err[0]
    assert "--scheduler euler at the same --steps and --shift" in err[0]
    assert not (tmp_path / "c.json").exists()


def test_defaults_of_the_chunk_mode(model_dir: Path, tmp_path: Path) -> None:
    """--scheduler, --seeds and --clips default to None in the parser (so --pipeline can refuse them when
    given); the chunk mode still gets euler, seeds 1000-1007 and 8 clips."""
    ns = cal.build_parser().parse_args([])
    assert (ns.scheduler, ns.shift, ns.seeds, ns.clips, ns.rollout) == (None,) * 5
    data = tmp_path / "clips.safetensors"
    save_file(
        {"video": torch.rand(2, 3, 12, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1}, str(data)
    )
    tiny = ["--model", str(model_dir), "--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress"]
    out = tmp_path / "c.json"
    assert cal.main([*tiny, "--data", str(data), "--steps", "2", "--out", str(out)]) == 0
    result = CalibrationResult.load(out)
    assert result.samples == 8 and result.scheduler == "FlowMatchEulerDiscreteScheduler"
    assert result.method != "rollout"
    assert cal.main([*tiny, "--steps", "2", "--out", str(out)]) == 0  # procedural clips, one per default seed
    assert CalibrationResult.load(out).samples == 8


def test_a_calibration_of_another_model_is_refused(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "clips.safetensors"
    save_file({"video": torch.rand(2, 3, 12, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1}, str(data))
    tiny = ["--model-class", "_tiny_models:TinyChunkDenoiser", "--no-progress"]
    out = tmp_path / "cal.json"
    assert cal.main([*tiny, "--model", str(model_dir), "--data", str(data), "--steps", "2", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["model"]["weights_sha256"]
    other = tmp_path / "other"
    TinyChunkDenoiser(seed=1).save_pretrained(other)
    argv = [*tiny, "--frames", "8", "--steps", "2", "--calibration", str(out), "--out", str(tmp_path / "run")]
    assert gen.main([*argv, "--model", str(other)]) == 2
    assert "was measured for weights" in capsys.readouterr().err
    assert gen.main([*argv, "--model", str(model_dir), "--steps", "3"]) == 2
    assert "measured for 2 steps (this run: 3)" in capsys.readouterr().err
