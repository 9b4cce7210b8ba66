"""The chunked sampler: exactness against a plain diffusers loop, seed independence, bookkeeping, options, errors."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from _tiny_models import ChunkRecorder, PerItem, PlainDenoiser, Spy, TinyChunkDenoiser
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from vidfix.pipelines import (
    NonFiniteChunkError,
    SamplerConfig,
    channel_stats,
    chunk_starts,
    match_statistics,
    merge_chunk,
    sample_video,
    video_teacher,
)

from vidfix import DCW, DriftTracker, EpsScaling, Identity
from vidfix.bands import band_filter


def euler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)


def unipc() -> UniPCMultistepScheduler:
    return UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True)


SCHEDULERS = {"euler": euler, "unipc": unipc}


def config(**overrides: object) -> SamplerConfig:
    base = dict(num_frames=14, chunk_frames=4, context_frames=2, channels=3, height=8, width=8, num_steps=3)
    return SamplerConfig(**(base | overrides))  # type: ignore[arg-type]


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


@pytest.fixture(scope="module")
def model() -> TinyChunkDenoiser:
    return TinyChunkDenoiser().eval()


@torch.no_grad()
def plain_rollout(
    model: TinyChunkDenoiser, scheduler: object, cfg: SamplerConfig, seeds: list[int]
) -> torch.Tensor:
    """The method written out with stock diffusers only (no tap, overlap 0, no re-noising, no anchoring)."""
    g = gens(*seeds)
    video = torch.zeros(len(seeds), cfg.channels, 0, cfg.height, cfg.width)
    while video.shape[2] < cfg.num_frames:
        context = video[:, :, -cfg.context_frames :] if video.shape[2] else None
        x = torch.stack(
            [torch.randn(cfg.channels, cfg.chunk_frames, cfg.height, cfg.width, generator=gi) for gi in g]
        )
        scheduler.set_timesteps(cfg.num_steps)  # type: ignore[attr-defined]
        for t in scheduler.timesteps:  # type: ignore[attr-defined]
            x = scheduler.step(model(x, t, context=context), t, x).prev_sample  # type: ignore[attr-defined]
        video = torch.cat([video, x], 2)
    return video[:, :, : cfg.num_frames]


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_identity_corrector_reproduces_the_plain_loop(model: TinyChunkDenoiser, name: str) -> None:
    cfg = config()
    want = plain_rollout(model, SCHEDULERS[name](), cfg, [3, 5])
    for corrector in (None, Identity(), DCW(low=0.0), EpsScaling(scale=1.0)):
        got = sample_video(model, SCHEDULERS[name](), cfg, generators=gens(3, 5), corrector=corrector)
        assert torch.equal(got, want), corrector
    corrected = sample_video(model, SCHEDULERS[name](), cfg, generators=gens(3, 5), corrector=DCW(low=0.05))
    assert not torch.equal(corrected, want)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_video_depends_only_on_its_seed(model: TinyChunkDenoiser, name: str) -> None:
    cfg = config(overlap=1, context_noise=20.0, anchor=0.5, color_match=0.5)
    kw = dict(corrector=DCW(low=0.02, spatial=0.01, temporal=-0.01))
    # Bit-identical through the sampler (a model that runs items apart); CPU convolutions themselves vary
    # in the last bits with the batch size, so a batched model agrees to rounding.
    pair = sample_video(PerItem(model), SCHEDULERS[name](), cfg, generators=gens(3, 5), **kw)
    alone = sample_video(PerItem(model), SCHEDULERS[name](), cfg, generators=gens(5), **kw)
    assert torch.equal(pair[1], alone[0])
    assert not torch.equal(pair[0], pair[1])
    batched = sample_video(model, SCHEDULERS[name](), cfg, generators=gens(3, 5), **kw)
    assert torch.allclose(batched, pair, atol=1e-4)


@pytest.mark.parametrize(
    ("frames", "chunk", "context", "overlap"),
    [(4, 4, 0, 0), (5, 4, 2, 0), (14, 4, 2, 0), (14, 4, 3, 1), (17, 4, 4, 3), (9, 4, 1, 2)],
)
def test_bookkeeping_exact_frames_and_contexts(frames: int, chunk: int, context: int, overlap: int) -> None:
    model = Spy(TinyChunkDenoiser(max_context_frames=4))
    cfg = config(num_frames=frames, chunk_frames=chunk, context_frames=context, overlap=overlap, num_steps=2)
    chunks: list[torch.Tensor] = []
    video = sample_video(model, euler(), cfg, generators=gens(0), on_chunk=lambda c, **_: chunks.append(c))
    starts = chunk_starts(cfg)
    assert video.shape == (1, 3, frames, 8, 8)
    assert len(chunks) == len(starts) and starts[-1] + chunk >= frames > starts[-1]
    assert model.calls == len(starts) * cfg.num_steps
    for k, start in enumerate(starts):
        ctx = model.contexts[k * cfg.num_steps]
        want = video[:, :, max(0, start - context) : start]
        if want.shape[2] == 0:
            assert ctx is None
        else:
            assert torch.equal(ctx, want)
            if overlap == 0 and k > 0:
                assert torch.equal(ctx, chunks[k - 1][:, :, -context:])  # the tail of the previous chunk
        assert all(
            c is ctx or torch.equal(c, ctx)
            for c in model.contexts[k * cfg.num_steps : (k + 1) * cfg.num_steps]
        )
    # Frames no later chunk touches are the chunk's own; overlapped ones are the crossfade.
    for k, start in enumerate(starts):
        own_end = starts[k + 1] if k + 1 < len(starts) else frames
        lo = start + (overlap if k else 0)
        assert torch.equal(video[:, :, lo:own_end], chunks[k][:, :, lo - start : own_end - start])
        if k and 0 < overlap <= chunk - overlap:  # (longer overlaps crossfade frames already crossfaded)
            w = torch.arange(1, overlap + 1, dtype=torch.float32).view(1, 1, -1, 1, 1) / (overlap + 1)
            prev = chunks[k - 1][:, :, start - starts[k - 1] :]
            assert torch.allclose(
                video[:, :, start : start + overlap], prev * (1 - w) + chunks[k][:, :, :overlap] * w
            )


def test_merge_chunk_crossfade() -> None:
    video, chunk = torch.zeros(1, 1, 5, 1, 1), torch.ones(1, 1, 4, 1, 1)
    out = merge_chunk(video, chunk, 3)  # overlap 2
    assert out.flatten().tolist() == pytest.approx([0, 0, 0, 1 / 3, 2 / 3, 1, 1])
    with pytest.raises(ValueError, match="after the video's end"):
        merge_chunk(video, chunk, 6)


def test_teacher_forcing_supplies_the_given_frames(model: TinyChunkDenoiser) -> None:
    spy = Spy(model)
    real = torch.randn(2, 3, 40, 8, 8, generator=torch.Generator().manual_seed(9))
    asked: list[tuple[int, int, int]] = []

    real_frames = video_teacher(real, offset=10)  # 10 real frames before the generated video

    def teacher(k: int, start: int, count: int) -> torch.Tensor | None:
        asked.append((k, start, count))
        return real_frames(k, start, count)

    cfg = config()
    sample_video(spy, euler(), cfg, generators=gens(1, 2), teacher=teacher)
    assert [a[1] for a in asked] == chunk_starts(cfg)
    for k, start in enumerate(chunk_starts(cfg)):
        assert torch.equal(spy.contexts[k * cfg.num_steps], real[:, :, 8 + start : 10 + start])
    with pytest.raises(ValueError, match="real video has 40"):
        sample_video(
            spy, euler(), config(num_frames=40), generators=gens(1, 2), teacher=video_teacher(real, offset=10)
        )


def test_teacher_without_frames_before_the_video_leaves_chunk_0_unconditioned(
    model: TinyChunkDenoiser,
) -> None:
    """``video_teacher(real)`` (offset 0) has no real frames before chunk 0: it runs without context, like
    an ordinary rollout, and later chunks get the real frames."""
    spy = Spy(model)
    real = torch.randn(1, 3, 14, 8, 8, generator=torch.Generator().manual_seed(3))
    cfg = config()
    sample_video(spy, euler(), cfg, generators=gens(1), teacher=video_teacher(real))
    assert spy.contexts[0] is None
    start = chunk_starts(cfg)[1]
    assert torch.equal(spy.contexts[cfg.num_steps], real[:, :, start - 2 : start])


def test_start_context_conditions_the_first_chunk(model: TinyChunkDenoiser) -> None:
    spy = Spy(model)
    start = torch.randn(1, 3, 5, 8, 8)
    sample_video(spy, euler(), config(), generators=gens(0), context=start)
    assert torch.equal(spy.contexts[0], start[:, :, -2:])


def test_context_renoising_follows_skyreels(model: TinyChunkDenoiser) -> None:
    clean, noisy = Spy(model), Spy(model)
    cfg = config(num_frames=8, context_frames=2)
    sample_video(clean, euler(), cfg, generators=gens(4), teacher=lambda k, s, n: torch.ones(1, 3, n, 8, 8))
    sample_video(
        noisy,
        euler(),
        replace(cfg, context_noise=20.0),
        generators=gens(4),
        teacher=lambda k, s, n: torch.ones(1, 3, n, 8, 8),
    )
    eps = (noisy.contexts[cfg.num_steps] - clean.contexts[cfg.num_steps] * 0.98) / 0.02
    assert 0.7 < float(eps.std()) < 1.3 and abs(float(eps.mean())) < 0.3  # standard normal noise, a = 20


@pytest.mark.parametrize("low_band", [True, False])
def test_anchoring_matches_the_anchor_statistics(model: TinyChunkDenoiser, low_band: bool) -> None:
    field = "anchor" if low_band else "color_match"
    cfg = config(num_frames=16, num_steps=3)
    free = sample_video(model, euler(), cfg, generators=gens(2, 7))
    chunks: list[torch.Tensor] = []
    sample_video(
        model,
        euler(),
        replace(cfg, **{field: 1.0}),
        generators=gens(2, 7),
        on_chunk=lambda c, **_: chunks.append(c),
    )

    def stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return channel_stats(band_filter(x, {"low": 1.0}, dims="2d") if low_band else x)

    mu0, sd0 = stats(chunks[0])
    for c in chunks[1:]:
        mu, sd = stats(c)
        assert torch.allclose(mu, mu0, atol=1e-5) and torch.allclose(sd, sd0, atol=1e-5)
    off = sample_video(model, euler(), replace(cfg, **{field: 0.0}), generators=gens(2, 7))
    assert torch.equal(off, free)


def test_match_statistics_strength() -> None:
    x = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 + 1
    mean, std = torch.zeros(2, 3), torch.ones(2, 3)
    assert match_statistics(x, mean, std, strength=0.0, low_band=False) is x
    half = match_statistics(x, mean, std, strength=0.5, low_band=False)
    full = match_statistics(x, mean, std, strength=1.0, low_band=False)
    assert torch.allclose(half, (x + full) / 2, atol=1e-6)
    mu, sd = channel_stats(full)
    assert torch.allclose(mu, mean, atol=1e-5) and torch.allclose(sd, std, atol=1e-5)


def test_tracker_gets_one_record_per_chunk_and_steps_one_dict(model: TinyChunkDenoiser) -> None:
    cfg = config(num_frames=14)
    tracker, steps = DriftTracker(), []
    sample_video(
        model,
        unipc(),
        cfg,
        generators=gens(0, 1),
        corrector=DCW(low=0.02),
        on_chunk=tracker,
        callback=steps.append,
    )
    assert [r.index for r in tracker.records] == list(range(cfg.num_chunks))
    assert len(tracker.curve("std")) == cfg.num_chunks and tracker.curve("std")[0] == 0.0
    assert len(steps) == cfg.num_chunks * cfg.num_steps
    assert all(set(d) == set(steps[0]) for d in steps)
    assert {"chunk", "step", "t", "x", "x0", "x_next"} <= set(steps[0])
    assert all(d["x0"] is not None and d["x0"].shape == d["x"].shape for d in steps)
    assert [(d["chunk"], d["step"]) for d in steps[:4]] == [(0, 0), (0, 1), (0, 2), (1, 0)]


def test_invalid_sizes_and_options_are_refused(model: TinyChunkDenoiser) -> None:
    with pytest.raises(ValueError, match=r"num_frames .* must be >= chunk_frames"):
        config(num_frames=3)
    with pytest.raises(ValueError, match="overlap"):
        config(overlap=4)
    with pytest.raises(ValueError, match="anchor"):
        config(anchor=1.5)
    with pytest.raises(ValueError, match="exactly 4 frames"):
        sample_video(model, euler(), config(chunk_frames=5), generators=gens(0))
    with pytest.raises(ValueError, match="at most 2 context frames"):
        sample_video(model, euler(), config(context_frames=3), generators=gens(0))
    with pytest.raises(ValueError, match="8x8"):
        sample_video(model, euler(), config(height=16, width=16), generators=gens(0))
    plain = PlainDenoiser(channels=3)
    with pytest.raises(ValueError, match="PlainDenoiser takes chunks of 4"):
        sample_video(plain, euler(), config(chunk_frames=3), generators=gens(0))
    assert sample_video(plain, euler(), config(), generators=gens(0)).shape[2] == 14
    with pytest.raises(TypeError, match=r"not supported .*FlowMatchEulerDiscreteScheduler"):
        sample_video(model, DDPMScheduler(), config(), generators=gens(0))
    with pytest.raises(TypeError, match="corrector must be callable"):
        sample_video(model, euler(), config(), generators=gens(0), corrector="dcw")  # type: ignore[arg-type]


def test_non_finite_chunk_stops_and_names_it(model: TinyChunkDenoiser) -> None:
    cfg = config()
    spy = Spy(model, nan_at=2 * cfg.num_steps + 1)  # second step of chunk 2
    seen: list[int] = []
    with pytest.raises(NonFiniteChunkError, match=r"chunk 2 \(frames 8-11\)") as info:
        sample_video(spy, euler(), cfg, generators=gens(0), on_chunk=lambda c, index, **_: seen.append(index))
    assert seen == [0, 1] and info.value.chunk == 2 and info.value.video.shape[2] == 8
    with pytest.raises(NonFiniteChunkError, match="chunk 2"):  # DCW's own finiteness check inside a step
        sample_video(
            Spy(model, nan_at=2 * cfg.num_steps), euler(), cfg, generators=gens(0), corrector=DCW(low=0.1)
        )


def test_chunk_aware_corrector_sees_every_chunk_and_again_on_resume(model: TinyChunkDenoiser) -> None:
    cfg = config(num_frames=12)
    rec, states = ChunkRecorder(), []
    video = sample_video(
        model,
        euler(),
        cfg,
        generators=gens(3),
        corrector=rec,
        on_chunk=lambda c, **kw: states.append(kw["state"]),
    )
    assert [(kind, i) for kind, i, _ in rec.calls] == [
        ("start", 0),
        ("end", 0),
        ("start", 1),
        ("end", 1),
        ("start", 2),
        ("end", 2),
    ]
    assert rec.calls[0][2] is None  # chunk 0 has no context
    torch.testing.assert_close(rec.calls[2][2], video[:, :, 2:4])  # chunk 1's context: frames 2, 3
    torch.testing.assert_close(rec.calls[5][2], video[:, :, 8:12])  # the finished chunk

    # Resume after chunk 1: the corrector is told about chunks 0 and 1 again, with the same tensors.
    again = ChunkRecorder()
    resumed = sample_video(model, euler(), cfg, generators=gens(3), corrector=again, state=states[1])
    assert torch.equal(resumed, video)
    assert [(kind, i) for kind, i, _ in again.calls] == [(kind, i) for kind, i, _ in rec.calls]
    for (_, _, a), (_, _, b) in zip(again.calls, rec.calls):
        assert (a is None and b is None) or torch.equal(a, b)
