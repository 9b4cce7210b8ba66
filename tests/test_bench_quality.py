"""``vidfix bench quality`` end to end on a tiny reference model and a tiny random judge (16x16 frames), so the
benchmark cannot rot: every condition runs, tuning picks from the grid on the tuning seeds, the tables and
plots are written, and a rerun gives the same numbers."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from _tiny_models import tiny_reference_model
from vidfix.bench import conditions as C
from vidfix.bench.quality import QualityConfig, QualityResult, objective, run_quality, skip_reason
from vidfix.bench.report import plot_quality, quality_markdown
from vidfix.pipelines.reference.judge import SpriteJudge
from vidfix.pipelines.reference.model import ReferenceVideoModel

TINY = QualityConfig(
    processes=("stationary", "trend"), schedulers=("euler",), steps=(2,), num_frames=16, tune_frames=8, window=8,
    tune_seeds=(0,), eval_seeds=(1, 2), conditions=("none", "teacher", "eps", "anchor", "dcw3d_cal"),
    grids={"eps": (1.001, 1.05), "anchor": (0.5,), "dcw3d_cal": (1.0,)}, calib_seeds=(50, 51), pool_videos=4,
)  # fmt: skip


@pytest.fixture(scope="module")
def tiny() -> tuple[ReferenceVideoModel, SpriteJudge]:
    model = tiny_reference_model()  # the judge's weights continue from its global-RNG state
    return model, SpriteJudge(channels=(8, 16), feature_dim=4).eval()


@pytest.fixture(scope="module")
def result(tiny: tuple[ReferenceVideoModel, SpriteJudge]) -> QualityResult:
    calls: list[tuple[int, int]] = []
    res = run_quality(*tiny, TINY, log=lambda s: None, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1], "the progress total is the number of frames generated"
    return res


def test_config_refuses_bad_inputs() -> None:
    with pytest.raises(ValueError, match="disjoint"):
        replace(TINY, tune_seeds=(1,))
    with pytest.raises(ValueError, match="multiples of window"):
        replace(TINY, num_frames=12)
    with pytest.raises(ValueError, match="unknown condition 'magic'"):
        replace(TINY, conditions=("magic",))


@pytest.mark.slow
def test_every_condition_runs_and_is_reported(result: QualityResult, tmp_path: Path) -> None:
    assert [(s.process, s.scheduler, s.steps) for s in result.settings] == [
        ("stationary", "euler", 2),
        ("trend", "euler", 2),
    ]
    for s in result.settings:
        assert set(s.rows) == {"real", *TINY.conditions}
        for row in s.rows.values():
            assert len(row.table["object"]) == 2 and len(row.frames_to_half) == 2
            assert all(0.0 <= v <= 1.0 for v in row.table["object"])
        # Tuning: one objective per candidate, the chosen one is the best.
        eps = s.rows["eps"]
        assert set(eps.tuning) == {"scale 1.001", "scale 1.05"}
        assert eps.parameter == max(eps.tuning, key=eps.tuning.__getitem__)
        assert s.rows["none"].tuning == {}
        assert (s.process == "trend") == bool(s.rows["none"].trend)
    # Teacher forcing reads the real frames: it differs from the free rollout after the first chunk.
    assert (
        s.rows["teacher"].table["object"] != s.rows["none"].table["object"]
        or s.rows["teacher"].table["fvd"] != s.rows["none"].table["fvd"]
    )
    plots = plot_quality(result, tmp_path)
    assert all(p.stat().st_size > 0 for p in plots.values())
    text = quality_markdown(
        result,
        command="vidfix bench quality --tiny",
        machine="m",
        date="d",
        plots={k: str(v) for k, v in plots.items()},
        json_path="q.json",
    )
    assert (
        "vidfix bench quality --tiny" in text
        and "teacher forcing (floor)" in text
        and "frames to half" in text
    )


@pytest.mark.slow
def test_result_round_trips_through_json(result: QualityResult, tmp_path: Path) -> None:
    result.save(tmp_path / "q.json")
    back = QualityResult.load(tmp_path / "q.json")
    assert json.loads(json.dumps(back.config)) == json.loads(json.dumps(result.config))
    for a, b in zip(result.settings, back.settings):
        for name in a.rows:
            for k, v in a.rows[name].table.items():
                assert all(
                    (math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(v, b.rows[name].table[k])
                )
    json.loads(
        (tmp_path / "q.json").read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}")
    )


@pytest.mark.slow
def test_fewstep_skips_the_calibrated_conditions_and_runs_the_rest(
    tiny: tuple[ReferenceVideoModel, SpriteJudge], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--schedulers fewstep``: the x0 / re-noise mode runs every condition but the ones that read a solver-step
    calibration, which are skipped with the reason in the result, the JSON and the report."""
    import vidfix.bench.quality as Q
    from vidfix.pipelines import factory
    from vidfix.pipelines.fewstep import FewStepScheduler

    built: list[object] = []
    make = factory.make_scheduler
    monkeypatch.setattr(factory, "make_scheduler", lambda *a, **k: built.append(make(*a, **k)) or built[-1])
    monkeypatch.setattr(Q, "calibrate", lambda *a, **k: pytest.fail("fewstep settings must not calibrate"))
    config = replace(TINY, processes=("stationary",), schedulers=("fewstep",), conditions=("none", "teacher", "eps", "dcw3d_cal"))  # fmt: skip
    calls: list[tuple[int, int]] = []
    res = run_quality(*tiny, config, log=lambda s: None, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1], "the progress total leaves out the skipped conditions"
    assert built and all(isinstance(s, FewStepScheduler) for s in built)
    assert all(s.config.shift == TINY.shift for s in built)  # the benchmark's shift, like euler and unipc
    (s,) = res.settings
    assert s.scheduler == "fewstep" and set(s.rows) == {"real", "none", "teacher", "eps"}
    assert set(s.skipped) == {"dcw3d_cal"} and "one-step calibration (3D)" in s.skipped["dcw3d_cal"]
    for row in s.rows.values():  # motion is NaN under every scheduler here: the random judge tracks no sprite
        finite = {k: v for k, v in row.table.items() if k != "motion"}
        assert all(len(v) == 2 and all(map(math.isfinite, v)) for v in finite.values()), row.condition
        assert all(0.0 <= v <= 1.0 for v in row.table["object"])
    assert set(s.rows["eps"].tuning) == {"scale 1.001", "scale 1.05"}
    result_path = tmp_path / "q.json"
    res.save(result_path)
    assert QualityResult.load(result_path).settings[0].skipped == s.skipped
    text = quality_markdown(res, command="c", machine="m", date="d", plots={}, json_path="q.json")
    assert "stationary process, fewstep, 2 steps" in text
    assert f"Not run: DCW 3D, one-step calibrated (`dcw3d_cal`): {s.skipped['dcw3d_cal']}." in text


def test_fewstep_skip_reasons_name_the_calibration() -> None:
    assert {c: skip_reason(c, "fewstep") for c in ("dcw2d_cal", "dcw3d_cal", "dcw_cal_anchor", "dcw_rollout")} == {
        "dcw2d_cal": "needs the one-step calibration (2D), which probes a solver step; fewstep (predict x0, re-noise) has none",
        "dcw3d_cal": "needs the one-step calibration (3D), which probes a solver step; fewstep (predict x0, re-noise) has none",
        "dcw_cal_anchor": "needs the one-step calibration (3D), which probes a solver step; fewstep (predict x0, re-noise) has none",
        "dcw_rollout": "needs the rollout calibration, which probes a solver step; fewstep (predict x0, re-noise) has none",
    }  # fmt: skip
    runs = [c for c in C.names() if skip_reason(c, "fewstep") is None]
    assert set(runs) == {c for c in C.names() if not {"2d", "3d", "rollout"} & set(C.get(c).needs)}
    assert {"none", "teacher", "eps", "ttc", "closed_loop"} <= set(runs)
    assert all(skip_reason(c, s) is None for c in C.names() for s in ("euler", "unipc"))
    assert QualityConfig().schedulers == ("euler", "unipc")
    with pytest.raises(ValueError, match="unknown scheduler 'ddim'"):
        replace(TINY, schedulers=("ddim",))  # type: ignore[arg-type]


def test_objective_prefers_moving_sprites() -> None:
    still = {"object": [1.0, 1.0], "motion": [0.0, 0.0]}
    moving = {"object": [0.8, 0.8], "motion": [0.9, 0.9]}
    assert objective(moving, real_motion=0.9) > objective(still, real_motion=0.9)
    assert objective(moving, real_motion=0.9) == pytest.approx(0.8)


def test_registry_names_every_default_condition() -> None:
    # Registered but opt-in (``--conditions``): the on-path conditions; dcw_rollout and ttc read context the
    # benchmark does not fill yet (tests/test_bench_conditions.py runs them).
    opt_in = {"band_anchor", "closed_loop", "dcw_rollout", "ttc"}
    assert set(QualityConfig().conditions) == set(C.names()) - opt_in and opt_in <= set(C.names())
    assert C.get("teacher").family == "floor" and C.get("none").family == "baseline"
