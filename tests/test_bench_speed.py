"""``vidfix bench speed`` end to end on a tiny model (the 2-process part under ``torchrun`` is slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _tiny_models import TinyChunkDenoiser
from vidfix.scripts import bench_speed
from vidfix.scripts.bench import write_section

TESTS = Path(__file__).resolve().parent
TINY_CLASS = "_tiny_models:TinyChunkDenoiser"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speed") / "model"
    TinyChunkDenoiser(sample_size=16).save_pretrained(folder)
    return folder


def tiny(model_dir: Path, **overrides: object) -> bench_speed.SpeedConfig:
    base: dict[str, object] = dict(
        model=str(model_dir), model_class=TINY_CLASS, steps=2, frames=8, repeats=2, sampler_repeats=1,
        process_repeats=1, seeds=2, metrics_frames=16, processes=False, pythonpath=(str(TESTS),),
        step_batches=(1, 2),
    )  # fmt: skip
    return bench_speed.SpeedConfig(**(base | overrides))  # type: ignore[arg-type]


def test_speed_benchmark_without_processes(model_dir: Path, tmp_path: Path) -> None:
    cfg = tiny(model_dir)
    res = bench_speed.run(cfg)
    s, m = res["sampler"], res["metrics"]
    assert [c["latent"] for c in res["corrector"]] == [[1, 3, 4, 16, 16], [2, 3, 4, 16, 16]]
    c = res["corrector"][0]
    assert {"model step", "floor (x0 + x)", "fast 3d, 3 groups", "fast 2d (paper)", "epsilon scaling"} <= set(
        c["ms"]
    )
    assert all(v > 0 for v in c["of_step"].values()) and all(v > 0 for v in c["of_floor"].values())
    assert set(s["fps"]) == {"plain", "DCW 3d", "drift tracker", "DCW 3d + drift tracker"}
    assert s["vs_plain"]["plain"] == 1.0 and s["frames"] == 8
    assert m["vs_decoding"]["decoding alone"] == 1.0 and m["frames"] == 16
    assert "processes" not in res
    text = bench_speed.markdown(cfg, res, "vidfix bench speed --tiny")
    assert "Command: `vidfix bench speed --tiny`" in text and "% of a model step" in text
    assert "corrector overhead <= 1% of a reference-model step" in text and "at batch 2" in text
    out = write_section("speed", text, path=tmp_path / "BENCHMARKS.md")
    assert "<!-- bench:speed -->" in out.read_text()


def test_cli_no_processes(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "BENCHMARKS.md"
    argv = [
        "--model", str(model_dir), "--model-class", TINY_CLASS, "--steps", "2", "--frames", "8", "--repeats", "1",
        "--sampler-repeats", "1", "--metrics-frames", "16", "--no-processes", "--output", str(out),
    ]  # fmt: skip
    assert bench_speed.main(argv) == 0
    assert "Command: `vidfix bench speed --model" in out.read_text()
    assert bench_speed.main(["--model", str(tmp_path / "missing"), "--no-processes", "--no-write"]) == 2


@pytest.mark.slow
def test_two_processes_are_timed_and_identical(model_dir: Path) -> None:
    cfg = tiny(model_dir, processes=True, seeds=2)
    p = bench_speed.processes(cfg, model_dir)
    assert p["identical"] and set(p["seeds_per_s"]) == {1, 2} and p["speedup"] > 0 and p["gen_speedup"] > 0
    text = bench_speed.markdown(
        cfg, {**bench_speed.run(tiny(model_dir)), "processes": p}, "vidfix bench speed"
    )
    assert "2 processes >= 1.8x the seeds/s of 1" in text and "bit-identical: yes" in text
