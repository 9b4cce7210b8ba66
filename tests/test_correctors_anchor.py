"""On-path band anchoring: the chosen bands move toward the anchor's statistics, the others stay put; the
step-level rules (late steps only, bounded moves, nothing before the anchor exists); resume replay."""

from __future__ import annotations

import pytest
import torch
from _testbed import roll_out_testbed
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.sampler import SamplerConfig, sample_video

from vidfix import BandAnchor, ChunkAware, StepInfo
from vidfix.correctors._bandstats import band_moments
from vidfix.correctors.closed_loop import chunk_moments

CFG = GaussianVideoConfig()
LATE = StepInfo(0.8, 0.2, 0.9, 0.1, 0.2, "flow", 6, 8)


def _rollout(corrector, *, chunks=24, videos=4, steps=8, kind="euler"):
    """Per chunk: (mean (B, C), {group: log std (B, C)}) of an exact-testbed rollout (it drifts)."""
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(CFG).for_scheduler(sched, steps)
    stats, _ = roll_out_testbed(model, sched, CFG, corrector, stat=chunk_moments, chunks=chunks, videos=videos,
                               steps=steps, start_seed=9)  # fmt: skip
    return stats


def _late_gap(stats, group, tail=8):
    """Mean over the last chunks and all videos/channels of log std minus chunk 0's."""
    ref = stats[0][1][group]
    return float(torch.stack([s[1][group] - ref for s in stats[-tail:]]).mean())


def test_anchoring_moves_the_chosen_band_and_leaves_the_others():
    plain = _rollout(None)
    anchored = _rollout(BandAnchor(groups=("spatial",), mean=False, strength=1.0, max_log_scale=0.2))
    # The exact model's spatial band shrinks over chunks; anchoring keeps it at chunk 0's.
    assert _late_gap(plain, "spatial") < -0.04
    assert abs(_late_gap(anchored, "spatial")) < abs(_late_gap(plain, "spatial")) / 4
    for g in ("low", "temporal"):  # untouched bands: within tolerance of the plain rollout
        assert abs(_late_gap(anchored, g) - _late_gap(plain, g)) < 0.03, g


def test_colour_anchoring_holds_the_channel_means():
    plain = _rollout(None)
    anchored = _rollout(BandAnchor(groups=(), mean=True, strength=1.0, max_shift=1.0))
    drift = lambda stats: float(torch.stack([s[0] - stats[0][0] for s in stats[-8:]]).abs().mean())  # noqa: E731
    assert drift(anchored) < drift(plain) / 4


def test_step_rules():
    anchor = BandAnchor(groups=("low", "spatial"), strength=1.0, max_log_scale=0.05, s_max=0.4)
    assert isinstance(anchor, ChunkAware)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 8, 8, generator=g)
    x = torch.randn(2, 3, 4, 8, 8, generator=g)
    anchor.start_chunk(0, context=None)
    assert anchor(x0, x, LATE) is x0  # no anchor before the first chunk finished
    anchor.end_chunk(x0, index=0)
    anchor.start_chunk(1, context=x0[:, :, -1:])
    early = StepInfo(0.3, 0.7, 0.4, 0.6, 0.7, "flow", 2, 8)
    assert anchor(2 * x0, x, early) is not None and torch.equal(anchor(2 * x0, x, early), 2 * x0)  # s > s_max
    out = anchor(2 * x0, x, LATE)
    before, _ = band_moments(2 * x0)
    after, _ = band_moments(out)
    for grp in ("low", "spatial"):  # the gap is log 2; each step closes at most max_log_scale of it
        step = (after.std[grp] / before.std[grp]).log()
        assert torch.allclose(step, torch.full_like(step, -0.05), atol=1e-4), grp
    assert torch.allclose(after.std["temporal"], before.std["temporal"], rtol=1e-4)  # not chosen
    # A new rollout (chunk 0 again) forgets the old anchor.
    anchor.start_chunk(0, context=None)
    assert not anchor.anchored and anchor(x0, x, LATE) is x0


def test_running_reference_follows_the_chunks():
    anchor = BandAnchor(reference="running", momentum=0.5)
    x = torch.randn(1, 3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    anchor.start_chunk(0, context=None)
    anchor.end_chunk(x, index=0)
    anchor.end_chunk(3 * x, index=1)
    got = anchor._anchor.std["spatial"] / band_moments(x)[0].std["spatial"]  # type: ignore[union-attr]
    assert torch.allclose(got, torch.full_like(got, 3**0.5), rtol=1e-4)  # log-space blend of 1x and 3x


def test_resume_replays_the_anchor(tmp_path):
    """Stopping after chunk 3 and resuming gives the same video: the anchor comes from finished chunks."""
    sched = gaussian_scheduler("euler")
    model = GaussianVideoDenoiser(CFG).for_scheduler(sched, 6)
    start = gaussian_video(CFG, 1, generator=torch.Generator().manual_seed(2), batch=2)
    conf = SamplerConfig(
        num_frames=24, chunk_frames=4, context_frames=1, channels=3, height=16, width=16, num_steps=6
    )
    gens = lambda: [torch.Generator().manual_seed(b) for b in range(2)]  # noqa: E731
    full = sample_video(
        model, sched, conf, generators=gens(), corrector=BandAnchor(strength=1.0), context=start
    )
    states = []
    short = SamplerConfig(**{**conf.__dict__, "num_frames": 12})
    sample_video(model, sched, short, generators=gens(), corrector=BandAnchor(strength=1.0), context=start,
                 on_chunk=lambda chunk, state, **_: states.append(state))  # fmt: skip
    resumed = sample_video(model, sched, conf, generators=gens(), corrector=BandAnchor(strength=1.0), context=start,
                           state=states[-1])  # fmt: skip
    assert torch.equal(full, resumed)


def test_bad_options():
    with pytest.raises(ValueError, match="band group"):
        BandAnchor(groups=("bogus",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength"):
        BandAnchor(strength=2.0)
    with pytest.raises(ValueError, match="reference"):
        BandAnchor(reference="last")  # type: ignore[arg-type]
