"""TTC-style baseline: the reference, the late-step rule, the re-noised path it continues on, determinism,
and its pull toward the first frame on the Gaussian testbed."""

from __future__ import annotations

import pytest
import torch
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.sampler import SamplerConfig, sample_video

from vidfix import TTC, ChunkAware, StepInfo

CFG = GaussianVideoConfig()


class Recorder:
    """A flow model whose data prediction is ``0.5 x``; records the contexts it is called with."""

    def __init__(self) -> None:
        self.contexts: list[torch.Tensor | None] = []

    def __call__(self, x, t, *, context=None, **_):
        self.contexts.append(context)
        s = float(t) / 1000
        return (x - 0.5 * x) / s  # v = (x - x0) / s


def test_correction_stages_and_path_continuation():
    model = Recorder()
    ttc = TTC(denoiser=model, s_max=0.5, seed=3)
    assert isinstance(ttc, ChunkAware)
    g = torch.Generator().manual_seed(0)
    start = torch.randn(2, 3, 2, 4, 4, generator=g)
    ctx = torch.randn(2, 3, 1, 4, 4, generator=g)
    x0, x = torch.randn(2, 3, 4, 4, 4, generator=g), torch.randn(2, 3, 4, 4, 4, generator=g)
    ttc.start_chunk(0, context=start)  # the start context's first frame is the reference
    ttc.start_chunk(1, context=ctx)
    early = StepInfo(0.3, 0.7, 0.4, 0.6, 0.7, "flow", 1, 4)
    assert ttc(x0, x, early) is x0 and ttc.calls == 0  # the structure stage is left alone
    step = StepInfo(0.6, 0.4, 0.8, 0.2, 0.4, "flow", 2, 4)
    out = ttc(x0, x, step)
    assert ttc.calls == 2
    assert (
        torch.equal(model.contexts[0], start[:, :, :1]) and model.contexts[1] is ctx
    )  # reference, then AR context
    # Stage 1 input: x0 re-noised to the current level; stage 3 re-denoises x_new. Rebuild both.
    e0, e1 = ttc._noise(x0, step, 0), ttc._noise(x0, step, 1)
    x0_ref = 0.5 * (0.6 * x0 + 0.4 * e0)
    x_new = 0.6 * x0_ref + 0.4 * e1
    x0_new = 0.5 * x_new
    # The solver's first-order step from x with the returned x0 lands where the step from x_new would.
    assert torch.allclose(step.euler_next(out, x), step.euler_next(x0_new, x_new), atol=1e-5)
    # Deterministic per (seed, video, chunk, step); another seed draws other noise.
    same, other = TTC(denoiser=Recorder(), seed=3), TTC(denoiser=Recorder(), seed=4)
    for t in (same, other):
        t.start_chunk(1, context=ctx)
    assert torch.equal(same._noise(x0, step, 0), e0)
    assert not torch.equal(other._noise(x0, step, 0), e0)
    assert not torch.equal(same._noise(x0, step, 1), e0)  # each stage draws its own


def test_without_start_context_the_first_generated_frame_is_the_reference():
    model = Recorder()
    ttc = TTC(denoiser=model, s_max=1.0)
    x = torch.randn(1, 3, 4, 4, 4)
    step = StepInfo(0.6, 0.4, 0.8, 0.2, 0.4, "flow", 2, 4)
    ttc.start_chunk(0, context=None)
    assert ttc(x, x, step) is x  # chunk 0: nothing to anchor to yet
    ttc.end_chunk(2 * x, index=0)
    ttc.start_chunk(1, context=x[:, :, -1:])
    ttc(x, x, step)
    assert torch.equal(model.contexts[0], 2 * x[:, :, :1])


def _rollout(corrector_for, *, chunks=16, videos=4):
    sched = gaussian_scheduler("euler")
    model = GaussianVideoDenoiser(CFG).for_scheduler(sched, 8)
    start = gaussian_video(CFG, 1, generator=torch.Generator().manual_seed(5), batch=videos)
    conf = SamplerConfig(
        num_frames=4 * chunks, chunk_frames=4, context_frames=1, channels=3, height=16, width=16, num_steps=8
    )
    gens = [torch.Generator().manual_seed(b) for b in range(videos)]
    video = sample_video(model, sched, conf, generators=gens, corrector=corrector_for(model), context=start)
    return video, start


def test_pulls_late_chunks_toward_the_first_frame():
    plain, start = _rollout(lambda m: None)
    ttc, _ = _rollout(lambda m: TTC(denoiser=m, s_max=0.5))
    off, _ = _rollout(lambda m: TTC(denoiser=m, s_max=0.0))
    assert torch.equal(off, plain)  # no corrected step: bit-identical
    dist = lambda v: float((v[:, :, -16:] - start).pow(2).mean())  # noqa: E731
    assert dist(ttc) < 0.9 * dist(plain)


def test_bad_options():
    with pytest.raises(ValueError, match="s_max"):
        TTC(denoiser=Recorder(), s_max=2.0)
    with pytest.raises(ValueError, match="prediction"):
        TTC(denoiser=Recorder(), prediction="x0")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        TTC(denoiser=3)  # type: ignore[arg-type]
