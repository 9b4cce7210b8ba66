"""``vidfix generate``: help, seeds, a tiny end-to-end run, resume and refusals, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from vidfix.pipelines import load_video
from vidfix.pipelines.factory import make_scheduler, parse_seeds
from vidfix.scripts import cli
from vidfix.scripts import generate as gen

from vidfix import DriftTracker


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "model"
    TinyChunkDenoiser().save_pretrained(folder)
    return folder


def args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--model-class", "_tiny_models:TinyChunkDenoiser", "--frames", "10",
        "--steps", "2", "--out", str(out), "--no-progress", *extra,
    ]  # fmt: skip


def test_help_shows_a_copy_paste_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        gen.main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert "vidfix generate --frames 128 --seeds 0-7" in text and "torchrun --nproc_per_node 2" in text
    assert cli.main(["--help"]) == 0 and "generate" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    assert "--calibration" in capsys.readouterr().out


def test_parse_seeds() -> None:
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("0,3,5-9") == [0, 3, 5, 6, 7, 8, 9]
    assert parse_seeds("42") == [42]
    for bad, msg in [
        ("3-1", "bad seed range"),
        ("a", "bad seed item"),
        ("1,,2", "empty item"),
        ("1,1", "repeat"),
        ("-2", "bad seed"),
    ]:
        with pytest.raises(ValueError, match=msg):
            parse_seeds(bad)


def test_scheduler_names_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown scheduler 'ddim'; allowed: 'euler', 'unipc'"):
        make_scheduler("ddim")  # type: ignore[arg-type]
    assert make_scheduler("unipc", shift=3.0).config.flow_shift == 3.0
    assert make_scheduler("euler", shift=2.0).config.shift == 2.0


def test_end_to_end_writes_the_expected_files(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    rc = gen.main(args(model_dir, out, "--seeds", "3,5", "--batch-size", "2", "--corrector", "dcw", "--low", "0.02",
                       "--scheduler", "unipc", "--overlap", "1", "--anchor", "0.5", "--context-noise", "20"))  # fmt: skip
    assert rc == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [v["seed"] for v in manifest["videos"]] == [3, 5] and manifest["processes"] == 1
    assert manifest["spec"]["corrector"]["type"] == "dcw" and manifest["spec"]["sampler"]["overlap"] == 1
    for seed in (3, 5):
        folder = out / f"seed_{seed:06d}"
        names = {p.name for p in folder.iterdir()}
        assert {"video.safetensors", "video.mp4", "drift.json", "run.json", "chunks"} <= names
        video = load_video(folder)
        assert video.shape == (3, 10, 8, 8) and torch.isfinite(video).all()
        assert len(DriftTracker.from_json(folder / "drift.json").records) == 3  # chunks start at 0, 3, 6
        with av.open(str(folder / "video.mp4")) as container:
            assert sum(1 for _ in container.decode(video=0)) == 10


def test_resume_and_refusals(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert gen.main(args(model_dir, out, "--seeds", "0-1")) == 0
    first = load_video(out / "seed_000000")
    assert gen.main(args(model_dir, out, "--seeds", "0-1")) == 2
    assert "already holds a vidfix run" in capsys.readouterr().err
    assert gen.main(args(model_dir, out, "--seeds", "0-1", "--steps", "3", "--resume")) == 2
    assert "different config" in capsys.readouterr().err
    assert gen.main(args(model_dir, out, "--seeds", "0-2", "--resume")) == 0  # adds seed 2, keeps 0 and 1
    assert torch.equal(load_video(out / "seed_000000"), first)
    assert [v["seed"] for v in json.loads((out / "manifest.json").read_text())["videos"]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "ddim"], "unknown scheduler 'ddim'; allowed: 'euler', 'unipc'"),
        (["--corrector", "magic"], "unknown corrector 'magic'; allowed"),
        (["--corrector", "dcw"], "needs nonzero --low"),
        (["--chunk", "5"], "exactly 4 frames"),
        (["--context", "3"], "at most 2 context frames"),
        (["--frames", "3"], "must be >= chunk_frames"),
        (["--seeds", "5-1"], "bad seed range"),
        (["--calibration", "missing.json"], "missing.json"),
    ],
)
def test_bad_input_is_a_clear_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert gen.main(args(model_dir, tmp_path / "o", *extra)) == 2
    assert message in capsys.readouterr().err


def test_unwritable_output_folder(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    assert gen.main(args(model_dir, tmp_path / "file" / "out")) == 2
    assert "is not writable" in capsys.readouterr().err


def test_pipeline_runs_are_delegated(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        gen.main(["--pipeline", "wan", "--help"])
    assert info.value.code == 0 and "--prompt" in capsys.readouterr().out  # the pipeline front end's options
