"""``vidfix bench quality`` end to end on a tiny model and a tiny stationary process, so the benchmark cannot rot.

The reference model and its sprite process are replaced by a random-weight ``TinyChunkDenoiser`` (16x16
frames) and :func:`tiny_process` (a coloured, textured background with a travelling wave: stationary, seeded).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
from _tiny_models import TinyChunkDenoiser
from vidfix.pipelines import benchmark as bq
from vidfix.pipelines.benchmark import CONDITIONS, QualityConfig, QualityResult, run_quality
from vidfix.scripts import bench_quality
from vidfix.scripts.bench import write_section


def tiny_process(seeds: Sequence[int], num_frames: int, starts: Sequence[int]) -> torch.Tensor:
    """Frames ``starts[b] ...`` of stationary 16x16 videos: ``(B, 3, T, 16, 16)`` in [-1, 1]."""
    _, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    out = []
    for seed, start in zip(seeds, starts):
        g = torch.Generator().manual_seed(int(seed))
        colour = torch.rand(3, 1, 1, 1, generator=g) * 1.2 - 0.6  # (3, 1, 1, 1)
        texture = torch.randn(3, 1, 16, 16, generator=g) * 0.2  # (3, 1, H, W)
        phase = float(torch.rand(1, generator=g)) * 6.28
        t = torch.arange(start, start + num_frames, dtype=torch.float32)
        wave = 0.3 * torch.sin(0.8 * xx[None] + 0.3 * t[:, None, None] + phase)  # (T, H, W)
        out.append((colour + texture + wave[None]).clamp(-1, 1))  # (3, T, H, W)
    return torch.stack(out)


TINY = QualityConfig(
    steps=(2, 3), num_frames=16, tune_seeds=(0,), eval_seeds=(1, 2), window=8, window_step=4,
    eps_scales=(1.0006, 1.01), paper_low=(0.01, 0.05), paper_spatial=(0.01,), dcw_strengths=(0.5, 1.0),
    anchor_strengths=(0.5, 1.0), calib_seeds=(50, 51), reference_seeds=tuple(range(60, 66)),
    reference_frames=8, bootstrap=10, real_seed_offset=100,
)  # fmt: skip


@pytest.fixture(scope="module")
def model() -> TinyChunkDenoiser:
    return TinyChunkDenoiser(sample_size=16).eval()


@pytest.fixture(scope="module")
def result(model: TinyChunkDenoiser) -> QualityResult:
    calls: list[tuple[int, int]] = []
    res = run_quality(model, TINY, real=tiny_process, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1], "the progress total is the number of model calls made"
    return res


def test_tuning_and_evaluation_seeds_must_be_disjoint() -> None:
    with pytest.raises(ValueError, match="disjoint; both hold \\[1\\]"):
        replace(TINY, tune_seeds=(0, 1))
    with pytest.raises(ValueError, match="must include 'none'"):
        replace(TINY, conditions=("eps",))
    with pytest.raises(ValueError, match="overlaps calib_seeds"):
        replace(TINY, real_seed_offset=49)


def test_every_condition_scheduler_and_step_count_is_reported(result: QualityResult) -> None:
    assert [(s.scheduler, s.steps) for s in result.settings] == [
        ("euler", 2), ("euler", 3), ("unipc", 2), ("unipc", 3),
    ]  # fmt: skip
    for s in result.settings:
        assert set(s.evaluation) == set(CONDITIONS)
        for e in s.evaluation.values():
            assert e.seeds == list(TINY.eval_seeds)  # reported numbers come from the evaluation seeds only
            assert e.windows[0][0] == 0 and e.windows[-1][1] == TINY.num_frames
            assert len(e.fd) == len(e.fd_ci) == len(e.windows) and all(lo <= hi for lo, hi in e.fd_ci)
            assert len(e.drift_curve) == TINY.num_frames and len(e.own_drift) == len(TINY.eval_seeds)
            assert set(e.start_end) == set(bq.START_END)
        # Tuned parameters come from the candidates, chosen on the tuning seeds by the lowest objective.
        for cond, records in s.tuning.items():
            best = min(records, key=lambda r: r["objective"])
            assert s.chosen[cond]["label"] == best["label"]
        assert [r["params"]["scale"] for r in s.tuning["eps"]] == list(TINY.eps_scales)
        assert len(s.tuning["dcw2d_paper"]) == len(TINY.paper_low) + 1  # low-band search, then detail
        assert s.best_vidfix in bq.VIDFIX_CONDITIONS
        assert set(s.calibration) == {"2d", "3d"} and set(s.calibration["3d"]["lam"]) == {
            "low", "spatial", "temporal",
        }  # fmt: skip
    assert result.real.seeds == [TINY.real_seed_offset + s for s in TINY.eval_seeds]


def test_baselines_do_what_they_say(result: QualityResult) -> None:
    ev = result.settings[0].evaluation
    # Colour matching pins each chunk's channel mean/std to chunk 0's: less own-start drift than none.
    assert ev["color"].own(len(ev["color"].fd) - 1)[0] < ev["none"].own(len(ev["none"].fd) - 1)[0]
    # Teacher forcing conditions on real frames: different videos from the free rollout of the same seeds.
    assert ev["teacher"].fd != ev["none"].fd


def test_markdown_plots_and_json(result: QualityResult, tmp_path: Path) -> None:
    plots = bq.plot_quality(result, tmp_path / "docs" / "bench")
    assert set(plots) == {"euler_2", "euler_3", "unipc_2", "unipc_3"}
    for p in plots.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 200_000
    text = bq.quality_markdown(
        result,
        command="vidfix bench quality --tiny",
        plots={k: f"docs/bench/{p.name}" for k, p in plots.items()},
    )
    assert "Command: `vidfix bench quality --tiny`" in text and "### Targets" in text
    rows = [line for line in text.splitlines() if line.startswith(("| euler |", "| unipc |"))]
    # One row per setting in the targets table, one per condition x setting in each of the two result tables.
    over_time = sum(3 if s.best_vidfix else 2 for s in result.settings)  # none, teacher, best vidfix
    assert len(rows) == 4 + 2 * 4 * len(CONDITIONS) + sum(len(s.tuning) for s in result.settings) + over_time
    # The over-time table: one column per window, each FD equal to the result's.
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("| scheduler | steps | condition | 0-"))
    assert lines[at].count("|") - 4 == len(result.real.windows)
    s0 = result.settings[0]
    row = next(line for line in lines[at:] if line.startswith(f"| {s0.scheduler} | {s0.steps} | teacher"))
    assert row.split("|")[4].strip().split(" ")[0] == bq._g(s0.evaluation["teacher"].fd[0])
    assert "![euler_2](docs/bench/quality_euler_2.png)" in text
    md = write_section("quality", text, path=tmp_path / "BENCHMARKS.md")
    assert "<!-- bench:quality -->" in md.read_text() and "<!-- /bench:quality -->" in md.read_text()
    # JSON round trip (strict JSON: no NaN).
    saved = result.save(tmp_path / "quality.json")
    json.loads(saved.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    again = QualityResult.load(saved)
    assert bq.quality_markdown(again, command="x") == bq.quality_markdown(result, command="x")


def test_targets_read_the_evaluation_numbers(result: QualityResult) -> None:
    s = result.settings[0]
    t = bq.targets(s)
    b = s.evaluation[t["best"]]
    assert t["late_ratio"] == pytest.approx(b.fd[-1] / s.evaluation["none"].fd[-1])
    assert t["drift_cut"] == (t["late_ratio"] <= 0.5)
    assert set(t["beats"]) == {c for c in bq.BASELINES if c != "none"}


def test_rerun_gives_the_same_numbers(model: TinyChunkDenoiser) -> None:
    small = replace(
        TINY, schedulers=("unipc",), steps=(3,), conditions=("none", "dcw3d_cal", "renoise"), batch_size=1
    )
    a = run_quality(model, small, real=tiny_process)
    again = run_quality(model, small, real=tiny_process)
    assert [asdict(e) for e in a.settings[0].evaluation.values()] == [
        asdict(e) for e in again.settings[0].evaluation.values()
    ]  # bit for bit: every draw is seeded
    b = run_quality(model, replace(small, batch_size=2), real=tiny_process)  # batching changes only rounding
    for x, y in zip(a.settings[0].evaluation.values(), b.settings[0].evaluation.values()):
        assert x.fd == pytest.approx(y.fd, rel=1e-4)
        for k in x.start_end:
            assert x.start_end[k] == pytest.approx(y.start_end[k], rel=1e-3, abs=1e-6)


def test_cli_writes_a_section(
    model: TinyChunkDenoiser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    monkeypatch.setattr(bq, "procedural_source", lambda _folder, _size: tiny_process)
    out = tmp_path / "BENCHMARKS.md"
    argv = [
        "--model", str(folder), "--model-class", "_tiny_models:TinyChunkDenoiser", "--schedulers", "euler",
        "--steps", "2", "--frames", "16", "--conditions", "none", "dcw2d_cal", "color", "--tune-seeds", "0",
        "--eval-seeds", "1-2", "--dcw-strengths", "1", "--window", "8", "--window-step", "8",
        "--calib-seeds", "50-51", "--reference-seeds", "60-63", "--reference-frames", "8", "--bootstrap", "5",
        "--real-seed-offset", "100", "--output", str(out), "--plots", str(tmp_path / "plots"), "--no-progress",
    ]  # fmt: skip
    assert bench_quality.main(argv) == 0
    text = out.read_text()
    assert "Command: `vidfix bench quality --model" in text and "| euler | 2 | DCW 2D, calibrated" in text
    assert "![euler_2](plots/quality_euler_2.png)" in text and (tmp_path / "plots" / "quality.json").is_file()
    # Re-render from the JSON: same section, no generation.
    out.unlink()
    assert bench_quality.main(["--from-json", str(tmp_path / "plots" / "quality.json"), "--output", str(out),
                               "--plots", str(tmp_path / "plots")]) == 0  # fmt: skip
    assert out.read_text() == text
    # --no-write: nothing written in the working folder (BENCHMARKS.md, plots, JSON go nowhere near it).
    monkeypatch.chdir(tmp_path / "plots")
    before = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert bench_quality.main(["--from-json", "quality.json", "--output", "B.md", "--no-write"]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == before


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        bench_quality.main(["--help"])
    assert info.value.code == 0 and "vidfix bench quality" in capsys.readouterr().out
