"""Closed loop: per-chunk feedback cuts drift without per-model tuning, leaves drift within the natural
spread alone, decays, stays bounded; plus the chain corrector it composes with."""

from __future__ import annotations

import pytest
import torch
from _testbed import roll_out_testbed
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_scheduler,
    gaussian_video,
)

from vidfix import DCW, BandAffine, BandAnchor, Chain, ChunkAware, ClosedLoop, Identity, StepInfo
from vidfix.correctors.closed_loop import chunk_moments, natural_spread

CFG = GaussianVideoConfig()
STEP = StepInfo(0.8, 0.2, 0.9, 0.1, 0.2, "flow", 6, 8)


def _rollout(error, corrector, *, chunks=24, videos=4, steps=8):
    sched = gaussian_scheduler("euler")
    model = GaussianVideoDenoiser(CFG, error=error).for_scheduler(sched, steps)
    return roll_out_testbed(model, sched, CFG, corrector, stat=chunk_moments, chunks=chunks, videos=videos,
                           steps=steps, start_seed=9)  # fmt: skip


def _colour_drift(stats, tail=8):
    return float(torch.stack([s[0] - stats[0][0] for s in stats[-tail:]]).abs().mean())


def _band_gap(stats, group, tail=8):
    return float(torch.stack([s[1][group] - stats[0][1][group] for s in stats[-tail:]]).mean())


def test_loop_cuts_colour_creep_of_a_biased_model():
    """A colour offset in the model compounds through the context; the loop measures and removes it."""
    err = ModelError(offset=(0.03, -0.02, 0.015))
    plain, _ = _rollout(err, None)
    looped, _ = _rollout(err, ClosedLoop())
    assert _colour_drift(plain) > 0.2
    assert _colour_drift(looped) < _colour_drift(plain) / 4


def test_loop_holds_band_spread_of_a_drifting_sampler():
    """The exact model's spatial band shrinks over chunks (the solver's drift); the loop holds it."""
    plain, _ = _rollout(ModelError(), None)
    looped, _ = _rollout(ModelError(), ClosedLoop())
    assert _band_gap(plain, "spatial") < -0.04
    assert abs(_band_gap(looped, "spatial")) < abs(_band_gap(plain, "spatial")) / 2


def test_drift_within_the_natural_spread_is_left_alone():
    """With the real video's spread as the dead band nothing beyond it happens: here the whole drift is
    inside a (deliberately wide) band, so the output equals the uncorrected one."""
    _, plain = _rollout(ModelError(), None, chunks=6)
    loop = ClosedLoop(spread=1.0, colour_spread=10.0)
    _, looped = _rollout(ModelError(), loop, chunks=6)
    assert torch.allclose(looped, plain, atol=1e-6)
    assert all(v == 0 for h in loop.history[1:] for g in h["log_gain"].values() for row in g for v in row)


def test_update_rules_decay_and_bounds():
    loop = ClosedLoop(
        groups=("spatial",), colour=False, gain=1.0, max_step=0.05, max_total=0.08, decay=0.5, spread=0.01
    )
    assert isinstance(loop, ChunkAware)
    x = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    loop.start_chunk(0, context=None)
    loop.end_chunk(x, index=0)  # the reference
    loop.end_chunk(2 * x, index=1)  # spread up by log 2: correction down, one bounded step
    u1 = torch.tensor(loop.history[-1]["log_gain"]["spatial"])
    assert torch.allclose(u1, torch.full_like(u1, -0.05))
    loop.end_chunk(2 * x, index=2)
    loop.end_chunk(2 * x, index=3)
    u3 = torch.tensor(loop.history[-1]["log_gain"]["spatial"])
    assert torch.allclose(u3, torch.full_like(u3, -0.08))  # total bound
    loop.end_chunk(x, index=4)  # back within the spread: the coefficient decays
    u4 = torch.tensor(loop.history[-1]["log_gain"]["spatial"])
    assert torch.allclose(u4, u3 * 0.5)
    # The action: late steps scale the group by exp(u); early steps and other groups untouched.
    out = loop(x, x, STEP)
    from vidfix.bands import band_filter

    sp = band_filter(x, {"spatial": 1.0})
    assert torch.allclose(out, x + sp * (torch.exp(u4).view(2, 3, 1, 1, 1) - 1), atol=1e-5)
    early = StepInfo(0.3, 0.7, 0.4, 0.6, 0.7, "flow", 1, 8)
    assert loop(x, x, early) is x


def test_natural_spread_of_real_video():
    real = gaussian_video(CFG, 64, generator=torch.Generator().manual_seed(4), batch=4)
    kw = natural_spread(real, 4)
    assert set(kw["spread"]) == {"low", "spatial", "temporal"}
    assert 0 < kw["spread"]["temporal"] < kw["spread"]["low"] < 1  # slow, coarse bands wander more
    assert kw["colour_spread"] > 0
    ClosedLoop(**kw)  # usable as is
    with pytest.raises(ValueError, match="at least 2 chunks"):
        natural_spread(real[:, :, :5], 4)


def test_chain_applies_in_order_and_forwards_hooks():
    x0 = torch.randn(1, 2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    x = torch.randn_like(x0)
    a, b = DCW(low=0.05), DCW(spatial=-0.03)
    chain = Chain(a, Chain(Identity(), b))
    assert len(chain.correctors) == 3  # nested chains are flattened
    assert torch.allclose(chain(x0, x, STEP), b(a(x0, x, STEP), x, STEP))
    loop = ClosedLoop()
    wrapped = Chain(DCW(low=0.01), loop)
    wrapped.start_chunk(0, context=None)
    wrapped.end_chunk(x0, index=0)
    assert loop.history and loop.history[0]["reference"]
    assert Chain()(x0, x, STEP) is x0
    with pytest.raises(TypeError, match="callable"):
        Chain(DCW(), 3)  # type: ignore[arg-type]
    assert wrapped.to_dict()["correctors"][1]["type"] == "closed_loop"


@pytest.mark.parametrize(
    "corrector",
    [ClosedLoop(), BandAnchor(), BandAffine(knots=(0.5,), gain={"low": [[0.1]]})],
    ids=["ClosedLoop", "BandAnchor", "BandAffine"],
)
def test_step_corrector_refuses_per_token_noise_levels(corrector):
    """One coefficient per step: a per-token ``s`` is refused with the corrector's name, a one-element one runs."""
    x = torch.randn(2, 3, 4, 8, 8)
    per_token = StepInfo(0.8, 0.2, 0.9, 0.1, torch.tensor([0.2, 0.3]), "flow", 6, 8)
    with pytest.raises(ValueError, match=f"{type(corrector).__name__} needs one noise level per step"):
        corrector(x, x, per_token)
    one = StepInfo(0.8, 0.2, 0.9, 0.1, torch.tensor([0.2]), "flow", 6, 8)
    assert corrector(x, x, one).shape == x.shape
