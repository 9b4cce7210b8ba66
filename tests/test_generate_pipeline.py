"""``vidfix generate --pipeline``: a tiny pipeline saved with save_pretrained, loaded back and run by the CLI, in
the same run-folder layout as chunk models, resumable; bad model folders are one line."""

from __future__ import annotations

import json

import av
import pytest
import torch
from _tiny_pipelines import build
from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, make_corrector
from vidfix.pipelines.runs import verify_run
from vidfix.scripts import generate as front
from vidfix.scripts.generate import main

from vidfix import DCW, DriftTracker, EpsScaling, Identity

KINDS = {
    "wan": "wan",
    "skyreels-df": "skyreels_df",
    "ltx": "ltx",
    "cogvideox": "cogvideox",
    "hunyuan": "hunyuan",
}
SIZE = {"ltx": ["--height", "32", "--width", "32"]}
EXTRA = {
    "skyreels-df": ["--base-frames", "9", "--overlap-history", "5", "--causal-block-size", "1"],
    "cogvideox": ["--pipe-arg", "max_sequence_length=16"],  # the tiny transformer takes 16 text tokens
}


@pytest.fixture(scope="session")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name in KINDS.values():
        build(name).save_pretrained(root / name)
    return root


def decoded_frames(path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.parametrize("kind", list(KINDS))
def test_cli_runs_a_saved_pipeline(kind, saved, tmp_path):
    frames = "17" if kind == "skyreels-df" else "9"  # SkyReels: 5 latent frames in chunks of 3 -> 3 chunks
    argv = ["--pipeline", kind, "--model", str(saved / KINDS[kind]), "--prompt", "a red ball", "--frames", frames]
    argv += SIZE.get(kind, ["--height", "16", "--width", "16"]) + EXTRA.get(kind, [])
    argv += ["--steps", "2", "--seeds", "3-4", "--out", str(tmp_path), "--corrector", "dcw2d", "--low", "0.05",
             "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["spec"]["corrector"]["dims"] == "2d" and manifest["spec"]["corrector"]["low"] == 0.05
    assert manifest["spec"]["job"]["steps"] == 2 and manifest["spec"]["job"]["fps"] == front_fps(kind)
    assert [v["seed"] for v in manifest["videos"]] == [3, 4]
    for seed in (3, 4):
        folder = tmp_path / f"seed_{seed:06d}"  # the same layout as chunk-model runs
        assert decoded_frames(folder / "video.mp4") == int(frames)
        tracker = DriftTracker.from_json(folder / "drift.json")
        assert len(tracker.records) == 3  # SkyReels: one per chunk; others: one per latent frame
        run = json.loads((folder / "run.json").read_text())
        assert set(run["files"]) == {"video.mp4", "drift.json"} and run["complete"]
    chunks = json.loads((tmp_path / "seed_000003" / "run.json").read_text())["info"]["chunks"]
    assert len(chunks) == (3 if kind == "skyreels-df" else 1) and all(c["corrected"] > 0 for c in chunks)
    assert all(r.ok and r.complete for r in verify_run(tmp_path))


def front_fps(kind: str) -> float:
    from vidfix.pipelines.choices import PIPELINE_FPS

    return PIPELINE_FPS[kind]


def test_pipeline_runs_resume_and_repair(saved, tmp_path, capsys):
    """Resume for --pipeline runs too: intact seeds are kept, damaged or missing ones generated again, the
    same bytes; a different config is refused."""
    base = ["--pipeline", "wan", "--model", str(saved / "wan"), "--prompt", "a cat", "--frames", "9", "--height",
            "16", "--width", "16", "--steps", "2", "--out", str(tmp_path), "--no-progress"]  # fmt: skip
    assert main([*base, "--seeds", "0-1"]) == 0
    mp4 = {s: (tmp_path / f"seed_00000{s}" / "video.mp4").read_bytes() for s in (0, 1)}
    assert main([*base, "--seeds", "0-1"]) == 2
    assert "already holds a vidfix run" in capsys.readouterr().err
    (tmp_path / "seed_000001" / "video.mp4").write_bytes(mp4[1][:48])  # what a kill during the encode once left
    assert main([*base, "--seeds", "0-2", "--resume"]) == 0
    captured = capsys.readouterr()
    assert "seed_000001: video.mp4: damaged" in captured.err
    assert "seed 0: 9 frames" in captured.out and "kept: already complete" in captured.out
    for s in (0, 1):
        assert (tmp_path / f"seed_00000{s}" / "video.mp4").read_bytes() == mp4[s]
    assert decoded_frames(tmp_path / "seed_000002" / "video.mp4") == 9
    assert [v["seed"] for v in json.loads((tmp_path / "manifest.json").read_text())["videos"]] == [0, 1, 2]
    assert main([*base, "--seeds", "0", "--resume", "--steps", "3"]) == 2
    assert "different config" in capsys.readouterr().err


def test_library_generate_with_identity_matches_the_plain_pipeline(saved, tmp_path):
    pipe = load_pipeline("wan", saved / "wan", dtype="float32")
    config = GenerateConfig(prompt="a cat", num_frames=9, height=16, width=16, steps=2, seeds=(5,))
    (result,) = generate(pipe, config, Identity(), tmp_path)
    assert result.video == tmp_path / "seed_000005" / "video.mp4" and not result.resumed
    assert result.chunks[0].steps == 2 and result.chunks[0].corrected == 0
    assert type(pipe).__name__ == "WanPipeline" and "_vidfix_handle" not in dir(type(pipe))  # undone
    # The drift record is the same as for the plain pipeline's own output.
    plain = pipe(
        **config.call_kwargs(), generator=torch.Generator().manual_seed(5), output_type="latent"
    ).frames
    tracker = DriftTracker.from_json(result.drift)
    assert tracker.records[0].mean == plain[:, :, :1].flatten(2).mean(-1).double().tolist()


def test_load_pipeline_dtypes(saved):
    pipe = load_pipeline("wan", saved / "wan", dtype="bfloat16")
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.float32  # Wan's recipe
    pipe = load_pipeline("ltx", saved / "ltx", dtype="bfloat16")
    assert pipe.vae.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown pipeline"):
        load_pipeline("sora", saved / "wan")  # type: ignore[arg-type]


def test_make_corrector(tmp_path):
    assert make_corrector() == Identity()
    assert make_corrector("eps", eps_scale=1.01) == EpsScaling(scale=1.01)
    dcw = make_corrector("dcw", low=0.01, temporal=-0.02)
    assert isinstance(dcw, DCW) and (dcw.low, dcw.spatial, dcw.temporal, dcw.dims) == (0.01, 0.0, -0.02, "3d")
    flat = make_corrector("dcw2d", low=0.01, schedule="constant")
    assert flat.dims == "2d" and flat.lambdas(0.3)["low"] == 0.01
    calibrated = DCW(low=-0.004, spatial=0.002, temporal=0.001)
    path = tmp_path / "dcw.json"
    path.write_text(json.dumps(calibrated.to_dict()))
    assert make_corrector("dcw", calibration=path).to_dict() == calibrated.to_dict()
    path.write_text(json.dumps({"model": "x", "corrector": calibrated.to_dict()}))
    assert make_corrector("dcw2d", calibration=path).dims == "2d"
    path.write_text(json.dumps({"type": "vidfix-calibration", "dcw": calibrated.to_dict()}))  # .save() layout
    assert make_corrector("dcw", calibration=path).to_dict() == calibrated.to_dict()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "dcw"}, "needs nonzero"),
        ({"kind": "dcw", "low": 0.0}, "needs nonzero"),
        ({"kind": "eps"}, "--eps-scale"),
        ({"kind": "none", "low": 0.01}, "need --corrector dcw"),
        ({"kind": "dcw", "eps_scale": 1.01, "low": 0.01}, "needs --corrector eps"),
        ({"kind": "dcw2d", "temporal": 0.01}, "no temporal band"),
        ({"kind": "dcw", "low": 0.01, "calibration": "x.json"}, "either --calibration"),
        ({"kind": "magic"}, "unknown corrector"),
    ],
)
def test_make_corrector_errors(kwargs, message):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=message):
        make_corrector(kind, **kwargs)


def test_calibration_file_must_hold_a_dcw(tmp_path):
    path = tmp_path / "eps.json"
    path.write_text(json.dumps(EpsScaling(scale=1.01).to_dict()))
    with pytest.raises(ValueError, match="DCW"):
        make_corrector("dcw", calibration=path)


def test_cli_usage_errors(saved, tmp_path, capsys):
    """Regression: --pipeline with a missing or non-video folder ended in a traceback."""
    base = ["--pipeline", "wan", "--prompt", "a", "--out", str(tmp_path / "o")]
    model = ["--model", str(saved / "wan")]
    cases = [
        ([*base, *model, "--corrector", "dcw"], "needs nonzero"),
        ([*base, *model, "--ar-step", "5"], "need --pipeline skyreels-df"),
        (["--pipeline", "sora", "--model", "x", "--prompt", "a"], "argument --pipeline: invalid choice: 'sora'"),
        ([*base, "--model", str(tmp_path / "missing")], "no such folder; pass a pipeline folder"),
        ([*base, "--model", str(tmp_path)], "is not a diffusers pipeline folder (no model_index.json)"),
        ([*base, "--model", str(saved / "ltx")], "holds a LTXPipeline, not a WanPipeline; use --pipeline ltx"),
        ([*base, *model, "--scheduler", "unipc"], "--scheduler applies only to chunk models"),
        ([*base, "--model", "nobody/no-such-model"], "cannot load --model 'nobody/no-such-model' as a WanPipeline"),
        ([*base, *model, "--fps", "0"], "argument --fps: expected a finite number > 0"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and err[0].startswith("vidfix generate: error: ") and message in err[0], err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("seed_*"))


def test_one_parser_for_both_back_ends():
    import importlib.util

    assert importlib.util.find_spec("vidfix.scripts.generate_pipeline") is None  # no second front end
    text = front.build_parser().format_help()
    for option in ("--calibration", "--prompt", "--pipeline", "--resume", "--overlap", "--steps STEPS"):
        assert option in text
