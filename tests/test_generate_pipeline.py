"""``vidfix generate --pipeline``: a tiny pipeline saved with save_pretrained, loaded back and run by the CLI."""

from __future__ import annotations

import json

import av
import pytest
import torch
from _tiny_pipelines import build
from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, make_corrector
from vidfix.scripts import generate_pipeline
from vidfix.scripts.generate_pipeline import main, parse_seeds

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
    argv = [
        "--pipeline",
        kind,
        "--model",
        str(saved / KINDS[kind]),
        "--prompt",
        "a red ball",
        "--frames",
        frames,
    ]
    argv += SIZE.get(kind, ["--height", "16", "--width", "16"]) + EXTRA.get(kind, [])
    argv += [
        "--steps",
        "2",
        "--seeds",
        "3-4",
        "--out",
        str(tmp_path),
        "--corrector",
        "dcw2d",
        "--low",
        "0.05",
    ]
    assert main(argv) == 0
    stem = KINDS[kind]
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["corrector"]["dims"] == "2d" and run["corrector"]["low"] == 0.05
    assert [r["seed"] for r in run["results"]] == [3, 4]
    for seed in (3, 4):
        video = tmp_path / f"{stem}_seed{seed:04d}.mp4"
        assert decoded_frames(video) == int(frames)
        tracker = DriftTracker.from_json(tmp_path / f"{stem}_seed{seed:04d}.drift.json")
        assert len(tracker.records) == 3  # SkyReels: one per chunk; others: one per latent frame
    chunks = run["results"][0]["chunks"]
    assert len(chunks) == (3 if kind == "skyreels-df" else 1) and all(c["corrected"] > 0 for c in chunks)


def test_library_generate_with_identity_matches_the_plain_pipeline(saved, tmp_path):
    pipe = load_pipeline("wan", saved / "wan", dtype="float32")
    config = GenerateConfig(prompt="a cat", num_frames=9, height=16, width=16, steps=2, seeds=(5,))
    (result,) = generate(pipe, config, Identity(), tmp_path)
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
    base = ["--pipeline", "wan", "--model", str(saved / "wan"), "--prompt", "a", "--out", str(tmp_path)]
    assert main([*base, "--corrector", "dcw"]) == 2
    assert "needs nonzero" in capsys.readouterr().err
    assert main([*base, "--ar-step", "5"]) == 2
    assert "skyreels-df" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--pipeline", "sora", "--model", "x", "--prompt", "a"])


def test_seeds_and_command_conventions():
    assert parse_seeds("0-3,7") == (0, 1, 2, 3, 7)
    assert parse_seeds("5") == (5,)
    assert generate_pipeline.SUMMARY and callable(generate_pipeline.main)
    assert "--calibration" in generate_pipeline.build_parser().format_help()
