"""The quality benchmark's on-path conditions (band anchoring, closed loop, rollout-calibrated DCW, TTC): each
builds its corrector from the benchmark context and drives a short rollout of a tiny random-weight reference
model, changing it where it should (seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from _tiny_models import tiny_reference_model
from vidfix.bench import conditions as C
from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
from vidfix.pipelines.factory import make_scheduler
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference.model import ReferenceVideoModel
from vidfix.pipelines.sampler import SamplerConfig, sample_video

from vidfix.correctors import DCW, TTC, BandAnchor, ClosedLoop

NEW = ("band_anchor", "closed_loop", "dcw_rollout", "ttc")
STEPS = 4  # s = 1, 0.75, 0.5, 0.25: the last step is inside every late-step corrector's range
SEEDS = (3, 4)  # 3 chunks each: the closed loop measures chunk 1 against chunk 0 and acts on chunk 2


@pytest.fixture(scope="module")
def model() -> ReferenceVideoModel:
    return tiny_reference_model()


def _config(m: ReferenceVideoModel, chunks: int) -> SamplerConfig:
    mc = m.config
    return SamplerConfig(
        num_frames=chunks * mc.chunk_frames, chunk_frames=mc.chunk_frames, context_frames=mc.max_context_frames,
        channels=3, height=mc.sample_size, width=mc.sample_size, num_steps=STEPS, context_noise=50.0,
    )  # fmt: skip


def _start(m: ReferenceVideoModel, seeds: tuple[int, ...]) -> torch.Tensor:
    size = m.config.sample_size
    data = SpriteVideoConfig(height=size, width=size)
    return reference_videos(list(seeds), m.config.max_context_frames, config=data)  # (B, 3, K, 16, 16)


@pytest.fixture(scope="module")
def context(model: ReferenceVideoModel) -> C.Context:
    """What the conditions read: the model (TTC) and a rollout calibration (3 tuning seeds, 2 chunks)."""
    tune = (10, 11, 12)
    cal = calibrate_rollout(
        model, make_scheduler("euler"), _config(model, 2), seeds=tune, context=_start(model, tune),
        options=RolloutCalibrationConfig(validate=False), denoiser_kwargs={"context_sigma": 0.0},
    )  # fmt: skip
    return C.Context(context_noise=50.0, extra={"model": model, "rollout": cal})


@torch.no_grad()
def _rollout(m: ReferenceVideoModel, setup: C.Setup) -> torch.Tensor:
    gens = [torch.Generator().manual_seed(s) for s in SEEDS]
    return sample_video(
        m, make_scheduler("euler"), _config(m, 3), generators=gens, context=_start(m, SEEDS),
        corrector=setup.corrector,
    )  # fmt: skip


def test_new_conditions_are_registered_outside_the_default() -> None:
    assert set(NEW) <= set(C.names()) and not set(NEW) & set(C.CONDITIONS)
    assert C.get("dcw_rollout").needs == ("rollout",) and C.get("ttc").needs == ("model",)
    assert C.get("closed_loop").grid == ()  # the loop needs no per-setting tuning


@pytest.mark.parametrize("name", NEW)
def test_condition_builds_and_changes_a_short_rollout(
    name: str, model: ReferenceVideoModel, context: C.Context
) -> None:
    cond = C.get(name)
    value = cond.grid[-1] if cond.grid else None
    setup = cond.build(value, context)
    kind = {"band_anchor": BandAnchor, "closed_loop": ClosedLoop, "dcw_rollout": DCW, "ttc": TTC}[name]
    assert isinstance(setup.corrector, kind)
    plain = _rollout(model, C.Setup())
    video = _rollout(model, setup)
    assert video.shape == plain.shape == (2, 3, 12, 16, 16) and bool(torch.isfinite(video).all())
    if name == "dcw_rollout":
        cal = context.extra["rollout"]
        assert setup.corrector == cal.to_dcw(strength=value)
        if not any(cal.rollout["coefficients"].values()):  # all refused on random weights: nothing to do
            return
    if name == "ttc":
        assert setup.corrector.s_max == value and setup.corrector.calls > 0
        assert setup.corrector.denoiser_kwargs == {"context_sigma": 0.0}  # its reference frame is clean
    assert not torch.equal(video, plain), f"{name} left the rollout unchanged"


def test_conditions_name_what_the_context_lacks() -> None:
    for name, key in (("dcw_rollout", "rollout"), ("ttc", "model")):
        with pytest.raises(ValueError, match=f"{name}.*{key}"):
            C.get(name).build(None, C.Context())


def test_the_quality_benchmark_fills_what_they_read(model: ReferenceVideoModel) -> None:
    """Regression: run_quality gave the conditions no model and no rollout calibration, so asking for
    ``dcw_rollout`` or ``ttc`` stopped the whole run; now it measures them (calibration seeds only)."""
    from vidfix.bench.quality import QualityConfig, run_quality
    from vidfix.pipelines.reference.judge import SpriteJudge

    cfg = QualityConfig(
        processes=("stationary",), schedulers=("euler",), steps=(2,), num_frames=8, tune_frames=8, window=8,
        tune_seeds=(0,), eval_seeds=(1,), conditions=("none", "dcw_rollout", "ttc"),
        grids={"dcw_rollout": (1.0,), "ttc": (0.5,)}, calib_seeds=(50, 51, 52), pool_videos=2, rollout_chunks=2,
    )  # fmt: skip
    res = run_quality(model, SpriteJudge(channels=(8, 16), feature_dim=4).eval(), cfg, log=lambda s: None)
    rows = res.settings[0].rows
    assert set(rows) == {"real", "none", "dcw_rollout", "ttc"}
    assert all(math.isfinite(v) for r in rows.values() for v in r.table["std_drift"])
