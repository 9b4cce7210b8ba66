"""``vidfix bench speed`` and ``bench corrector`` end to end on tiny inputs, and the shared timing method."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from vidfix.scripts import _timing, bench_corrector, bench_speed
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
        process_repeats=1, process_seeds=(2,), process_frames=8, process_steps=2, metrics_frames=16,
        processes=False, pythonpath=(str(TESTS),), step_batches=(1, 2),
    )  # fmt: skip
    return bench_speed.SpeedConfig(**(base | overrides))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------------
# The timing method.


def test_interleaved_rounds_measure_cpu_time_not_sleep():
    """CPU time ignores waiting (what load on a shared box adds); wall time sees it; rounds interleave."""
    calls: list[str] = []

    def busy() -> None:
        calls.append("busy")
        t0 = time.process_time()
        while time.process_time() - t0 < 0.01:
            pass

    def sleepy() -> None:
        calls.append("sleepy")
        time.sleep(0.02)

    r = _timing.interleaved({"busy": busy, "sleepy": sleepy}, 3, warmup=0)
    assert calls == ["busy", "sleepy"] * 3
    assert r["sleepy"].median("wall") >= 0.02 and r["sleepy"].median("cpu") < 0.005
    assert r["busy"].median("cpu") >= 0.01
    assert _timing.ratio(r["sleepy"].cpu, r["busy"].cpu) < 0.5  # by wall time it would be 2 on an idle box
    assert _timing.ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0]) == 3.0  # median of per-round ratios
    assert _timing.ratio_of_min([2.0, 9.0], [1.0, 4.0]) == 2.0


def test_load_and_peak_memory():
    now = _timing.load()
    assert now.cpus >= 1 and "on" in str(now) and now.one >= 0
    n = 4 << 20  # 16 MB of float32: beyond any malloc threshold
    peak = _timing.peak_memory(lambda: torch.ones(n))
    if peak is None:
        # Linux resets the high-water mark (/proc/self/clear_refs); elsewhere there is none to read.
        assert not sys.platform.startswith("linux"), "peak memory must be measurable on Linux"
        pytest.skip(f"no resettable peak RSS on {sys.platform}")
    assert 0.9 * 4 * n <= peak <= 1.5 * 4 * n
    assert _timing.peak_memory(lambda: None) < 0.1 * 4 * n
    keep = [torch.ones(n) for _ in range(3)]  # freed below: glibc may keep them in its heap...
    del keep
    again = _timing.peak_memory(lambda: torch.ones(n))  # ...but they are handed back first, so this shows
    assert again is not None and 0.9 * 4 * n <= again <= 1.5 * 4 * n


# --------------------------------------------------------------------------------------------------------
# bench corrector.


def test_corrector_benchmark(tmp_path):
    cfg = bench_corrector.BenchConfig(shape=(1, 4, 5, 64, 64), dtypes=("float32", "bfloat16"), repeats=2,
                                      threads=2, output=str(tmp_path / "B.md"))  # fmt: skip
    rows = bench_corrector.run(cfg)
    for r in rows:
        fused, eager = r.memory_x_floor[bench_corrector.FUSED], r.memory_x_floor["DCW 3d, 3 groups, eager"]
        assert fused is not None and eager is not None and fused <= 1.2 < 2.0 < eager  # tensors > 128 KB
        assert set(r.ms) == {bench_corrector.FLOOR, *bench_corrector.CORRECTORS}
        assert r.x_floor[bench_corrector.FLOOR] == 1.0 and all(v > 0 for v in r.x_floor.values())
        assert r.kernel.startswith("C++")
        assert r.max_error[bench_corrector.FUSED] <= (1e-5 if r.dtype == "float32" else 0.02)
    text = bench_corrector.markdown(cfg, rows, "vidfix bench corrector --tiny")
    assert "Command: `vidfix bench corrector --tiny`" in text and "load " in text and "x floor (min)" in text
    assert text.count("<= 2x the floor") == 1 and "- bfloat16: time" in text


def test_corrector_cli_no_write(tmp_path, capsys):
    out = tmp_path / "BENCHMARKS.md"
    argv = ["--shape", "1", "1", "3", "8", "8", "--dtypes", "float32", "--repeats", "1", "--output", str(out)]
    assert bench_corrector.main([*argv, "--no-write"]) == 0
    assert not out.exists() and "Corrector speed" in capsys.readouterr().out
    assert bench_corrector.main(argv) == 0
    assert "<!-- bench:corrector -->" in out.read_text()


# --------------------------------------------------------------------------------------------------------
# bench speed.


@pytest.fixture(scope="module")
def speed_result(model_dir: Path) -> dict:
    return bench_speed.run(tiny(model_dir))


def test_speed_benchmark_without_processes(model_dir: Path, tmp_path: Path, speed_result: dict) -> None:
    cfg, res = tiny(model_dir), speed_result
    s, m = res["sampler"], res["metrics"]
    assert [c["latent"] for c in res["corrector"]] == [[1, 3, 4, 16, 16], [2, 3, 4, 16, 16]]
    c = res["corrector"][0]
    assert {"model call", "scheduler step", "tapped step, DCW 3d", "floor (x0 + x)", "epsilon scaling",
            bench_corrector.FUSED, "DCW 3d, 3 groups, eager"} <= set(c["ms"])  # fmt: skip
    assert all(v > 0 for v in c["of_call"].values()) and all(v > 0 for v in c["of_floor"].values())
    assert isinstance(c["tap_dcw"], float) and isinstance(c["tap_identity"], float)
    assert set(s["fps"]) == {"plain", "DCW 3d", "drift tracker", "DCW 3d + drift tracker"}
    assert s["vs_plain"]["plain"] == 1.0 and s["frames"] == 8
    assert m["vs_decoding"]["decoding alone"] == 1.0 and m["frames"] == 16
    assert "processes" not in res
    text = bench_speed.markdown(cfg, res, "vidfix bench speed --tiny")
    assert "Command: `vidfix bench speed --tiny`" in text and "% of a model call" in text and "load " in text
    assert "tapped DCW 3D step <= 1% of a reference-model call at batch 1" in text
    out = write_section("speed", text, path=tmp_path / "BENCHMARKS.md")
    assert "<!-- bench:speed -->" in out.read_text()


def test_cli_no_processes(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    argv = [
        "--model", str(model_dir), "--model-class", TINY_CLASS, "--steps", "2", "--frames", "8", "--repeats", "1",
        "--sampler-repeats", "1", "--metrics-frames", "16", "--no-processes", "--output", str(out),
    ]  # fmt: skip
    assert bench_speed.main([*argv, "--no-write"]) == 0 and not out.exists()
    assert bench_speed.main(argv) == 0
    assert "Command: `vidfix bench speed --model" in out.read_text()
    assert bench_speed.main(["--model", str(tmp_path / "missing"), "--no-processes", "--no-write"]) == 2


def test_startup_line_fit():
    rows = [
        {"seeds": n, "cpu_s": {k: 5.0 * p + 0.5 * n for k, (p, _) in bench_speed.RUNS.items()}} for n in (8, 24)
    ]
    st = bench_speed._startup(rows)
    assert st is not None
    assert st["1 process"] == pytest.approx(5.0) and st["2 processes"] == pytest.approx(10.0)
    assert st["1 process per seed"] == pytest.approx(0.5)
    assert bench_speed._startup(rows[:1]) is None


@pytest.mark.slow
def test_processes_are_timed_and_identical(model_dir: Path, speed_result: dict) -> None:
    """One seed count, the three kinds of run (5 Python processes): timed, and 1 vs 2 processes identical."""
    cfg = tiny(model_dir, processes=True, process_seeds=(2,))
    p = bench_speed.processes(cfg, model_dir)
    assert p["identical"] and [r["seeds"] for r in p["rows"]] == [2]
    r = p["rows"][0]
    assert set(r["seeds_per_s"]) == set(bench_speed.RUNS) and r["speedup"] > 0 and r["free_core_speedup"] > 0
    assert all(v > 0 for v in r["cpu_s"].values()) and p["startup"] is None  # one seed count: no line fit
    text = bench_speed.markdown(cfg, {**speed_result, "processes": p}, "vidfix bench speed")
    assert "Seeds/s over processes" in text and "bit-identical: yes" in text and "1 process x 2 threads" in text
