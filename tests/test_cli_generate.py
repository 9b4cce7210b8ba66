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


def one_error_line(err: str, command: str = "vidfix generate") -> str:
    """The single error line of a refused command (no traceback, no usage block)."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheduler", "ddim"], "argument --scheduler: invalid choice: 'ddim' (choose from 'euler', 'unipc', 'fewstep')"),
        (["--corrector", "magic"], "argument --corrector: invalid choice: 'magic' (choose from 'none', 'dcw'"),
        (["--corrector", "dcw"], "needs nonzero --low"),
        (["--chunk", "5"], "exactly 4 frames"),
        (["--context", "3"], "at most 2 context frames"),
        (["--frames", "3"], "must be >= chunk_frames"),
        (["--seeds", "5-1"], "bad seed range"),
        (["--calibration", "missing.json"], "calibration file 'missing.json' does not exist"),
        (["--device", "tpu"], "argument --device: unknown device 'tpu'; allowed: cpu, cuda, cuda:N, mps"),
        (["--threads", "-1"], "argument --threads: expected an integer >= 1, got '-1'"),
        (["--fps", "0"], "argument --fps: expected a finite number > 0, got '0'"),
        (["--fps", "nan"], "argument --fps: expected a finite number > 0, got 'nan'"),
        (["--anchor", "2"], "argument --anchor: expected a number in [0, 1], got '2'"),
        (["--frames", "100000000"], "needs about"),
        (["--prompt", "a cat"], "--prompt applies only to --pipeline runs"),
        (["--size", "8", "--height", "8"], "either --size or --height/--width"),
    ],
)
def test_bad_input_is_one_line_before_any_work(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    """Regression: --device tpu and --threads -1 were tracebacks, --frames 100000000 was accepted (and grew
    to 4.7 GB), --fps 0 failed only after generating."""
    assert gen.main(args(model_dir, tmp_path / "o", *extra)) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not list((tmp_path / "o").glob("seed_*")), "work started before the input was checked"


def test_frames_are_checked_against_memory(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gen.main(args(model_dir, tmp_path / "o", "--frames", "100000000")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "--frames 100000000 (3x8x8, float32) needs about" in line and "GB of memory" in line
    assert "fewer --frames" in line


def test_unwritable_output_folder(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("x")
    assert gen.main(args(model_dir, tmp_path / "file" / "out")) == 2
    assert "is not writable" in one_error_line(capsys.readouterr().err)


def test_cuda_without_a_gpu_warns_and_runs_on_the_cpu(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: --device cuda without a GPU silently ran on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a machine without a GPU, on any machine
    assert gen.main(args(model_dir, tmp_path / "o", "--device", "cuda", "--no-mp4")) == 0
    err = capsys.readouterr().err
    assert "vidfix generate: warning: --device cuda: no CUDA device is available here; running on the CPU" in err
    assert gen.main(args(model_dir, tmp_path / "o2", "--device", "cuda:1")) == 0  # same warning, CPU


def test_damaged_run_files_are_named(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: a truncated run.json or a manifest holding [] ended in tracebacks; parse errors named no file."""
    out = tmp_path / "run"
    assert gen.main(args(model_dir, out, "--no-mp4")) == 0
    manifest = out / "manifest.json"
    good = manifest.read_text()
    manifest.write_text("[]")
    assert gen.main(args(model_dir, out, "--no-mp4", "--resume")) == 2
    assert f"{manifest} is not a vidfix manifest" in one_error_line(capsys.readouterr().err)
    manifest.write_text(good)
    run_json = out / "seed_000000" / "run.json"
    run_json.write_text(run_json.read_text()[:100])
    assert gen.main(args(model_dir, out, "--no-mp4", "--resume")) == 2
    assert f"{run_json}: damaged run file (not valid JSON" in one_error_line(capsys.readouterr().err)


def test_a_second_writer_is_refused(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Regression: there was no lock; two writers with --resume collided on fixed .tmp names."""
    from vidfix.pipelines.runs import RunFolder, seed_folder

    out = tmp_path / "run"
    with RunFolder(seed_folder(out, 0), 0, {}) as other:
        other._lock.acquire()  # another process writing seed 0
        assert gen.main(args(model_dir, out, "--resume", "--no-mp4")) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "seed_000000 is being written by another vidfix process (pid" in line and "wait for it" in line
    assert gen.main(args(model_dir, out, "--resume", "--no-mp4")) == 0  # the lock is gone with its holder


def _calibration(path: Path, **fields: object) -> Path:
    from vidfix import DCW

    data = {"type": "vidfix-calibration", "scheduler": "FlowMatchEulerDiscreteScheduler", "num_steps": 2,
            "dcw": DCW(low=0.01).to_dict()} | fields  # fmt: skip
    path.write_text(json.dumps(data))
    return path


def test_calibration_must_match_scheduler_steps_and_model(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: a calibration file from another scheduler or step count was accepted silently."""
    euler = make_scheduler("euler")
    euler.set_timesteps(2)
    right = [float(t) for t in euler.timesteps]
    for fields, message in [
        ({"scheduler": "UniPCMultistepScheduler"}, "measured for scheduler UniPCMultistepScheduler (this run: Flow"),
        ({"num_steps": 8}, "measured for 8 steps (this run: 2)"),
        ({"timesteps": [990.0, 500.0]}, "another --shift?"),
        ({"model": {"class": "OtherModel", "weights_sha256": "ab" * 32}}, "model class OtherModel"),
    ]:
        cal = _calibration(tmp_path / "cal.json", **({"timesteps": right} | fields))
        assert gen.main(args(model_dir, tmp_path / "o", "--calibration", str(cal))) == 2
        line = one_error_line(capsys.readouterr().err)
        assert message in line and "vidfix calibrate --steps 2" in line, line
    assert gen.main(args(model_dir, tmp_path / "ok", "--calibration", str(_calibration(tmp_path / "c.json", timesteps=right)))) == 0
    bare = tmp_path / "bare.json"
    from vidfix import DCW

    bare.write_text(json.dumps(DCW(low=0.01).to_dict()))
    assert gen.main(args(model_dir, tmp_path / "bare", "--calibration", str(bare), "--no-mp4")) == 0
    assert "warning: " in capsys.readouterr().err  # no record of what it was measured for: said so


def flip_bytes(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(1, 5):
        data[-i * 8] ^= 0xFF
    path.write_bytes(bytes(data))


def test_damage_is_detected_named_and_repaired_bit_identically(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Must show: flipped bytes in an early chunk and truncated final tensors are detected and named (by
    `vidfix verify` and by --resume), and the resume ends bit-identical."""
    out = tmp_path / "run"
    argv = args(model_dir, out, "--seeds", "0-1")
    assert gen.main(argv) == 0
    seed0, seed1 = out / "seed_000000", out / "seed_000001"
    video0, mp4_0 = load_video(seed0), (seed0 / "video.mp4").read_bytes()
    video1 = load_video(seed1)
    assert cli.main(["verify", str(out)]) == 0
    capsys.readouterr()

    flip_bytes(seed0 / "chunks" / "chunk_0000.safetensors")
    tensors = (seed1 / "video.safetensors").read_bytes()
    (seed1 / "video.safetensors").write_bytes(tensors[: len(tensors) // 2])
    assert cli.main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"DAMAGED {seed0}: chunks/chunk_0000.safetensors: damaged" in printed
    assert f"DAMAGED {seed1}: video.safetensors: damaged" in printed and "0 of 2 folder(s)" in printed

    assert gen.main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "chunks/chunk_0000.safetensors: damaged" in err
    assert "video.safetensors: damaged" in err
    assert torch.equal(load_video(seed0), video0) and torch.equal(load_video(seed1), video1)
    assert (seed0 / "video.mp4").read_bytes() == mp4_0
    assert cli.main(["verify", str(out)]) == 0
    assert cli.main(["verify", str(tmp_path / "nothing")]) == 2
    assert "is not a folder" in one_error_line(capsys.readouterr().err, "vidfix verify")


def test_pipeline_options_are_one_front_end(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        gen.main(["--pipeline", "wan", "--help"])
    assert info.value.code == 0 and "--prompt" in capsys.readouterr().out  # one parser for both back ends
    assert gen.main(["--pipeline", "wan", "--prompt", "a"]) == 2
    assert "--pipeline wan needs --model" in one_error_line(capsys.readouterr().err)
    assert gen.main(["--pipeline", "wan", "--model", "x/y", "--prompt", "a", "--overlap", "1"]) == 2
    assert "--overlap applies only to chunk models" in one_error_line(capsys.readouterr().err)
