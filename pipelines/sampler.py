"""Chunked autoregressive sampler: a long video, one chunk at a time, each conditioned on the frames before it.

Latents are ``(B, C, F, H, W)``; each batch item is its own video with its own ``torch.Generator``.

The method (one chunk ``k`` of ``F`` frames starting at video frame ``start_k = k (F - O)``):

1. **Context**: the ``K`` frames right before ``start_k`` (the start context, then generated frames;
   the real frames under teacher forcing), optionally re-noised SkyReels-style:
   ``c' = c (1 - 0.001 a) + 0.001 a eps`` (``a = 20`` recommended). Only the model input is re-noised.
2. **Denoise**: pure noise through ``num_steps`` solver steps of a fresh copy of the scheduler
   (``set_timesteps`` per chunk), tapped (:func:`vidfix.tap.tap`), so the correction acts inside every
   step of every chunk; or, with a :class:`~vidfix.pipelines.fewstep.FewStepScheduler`, the few-step mode
   of distilled causal models: predict x0, correct it, re-noise it to the next level with the video's own
   noise. Either way the corrector is applied by one :class:`vidfix.ARLoop`, the object a hand-written AR
   loop calls, which also calls stateful correctors' chunk hooks and the per-chunk callbacks.
3. **Anchor** (optional baselines): match the chunk's per-channel low-band mean/std to chunk 0's
   (statistics anchoring) and/or its full-frame mean/std (colour matching), each with a strength.
4. **Merge**: the chunk's first ``O`` frames re-generate the last ``O`` frames of the video; they are
   crossfaded linearly, new weight ``(j + 1) / (O + 1)`` at overlap frame ``j``; the rest is appended.
   The last chunk is cropped to ``num_frames``.

Chunk ``k``'s context is thus the tail of chunk ``k - 1`` before its overlap (``O = 0``: its last ``K``
frames). Every chunk goes to the per-chunk callbacks (a :class:`vidfix.DriftTracker` is one) and every
step to one per-step callback that sees the same dict (k-diffusion style). A :class:`SamplerState` after
each chunk holds everything needed to continue bit-identically (see :mod:`vidfix.pipelines.runs`).

Example:
    >>> config = SamplerConfig(num_frames=64, chunk_frames=8, context_frames=4, channels=3, height=64, width=64)
    >>> gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    >>> video = sample_video(model, scheduler, config, generators=gens, corrector=DCW(low=0.01))  # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor
from vidfix.pipelines.fewstep import FewStepScheduler

from vidfix._checks import check_latents
from vidfix.bands import band_filter
from vidfix.calibration import scale_input, scheduler_step
from vidfix.loop import ARLoop
from vidfix.protocols import Corrector, Denoiser
from vidfix.tap import TapEvent, tap

__all__ = [
    "ChunkCallback",
    "NonFiniteChunkError",
    "SamplerConfig",
    "SamplerState",
    "StepCallback",
    "Teacher",
    "channel_stats",
    "check_denoiser",
    "chunk_starts",
    "context_before",
    "match_statistics",
    "merge_chunk",
    "renoise_context",
    "sample_video",
    "video_teacher",
]

StepCallback = Callable[[dict[str, Any]], None]
Teacher = Callable[[int, int, int], "Tensor | None"]


class ChunkCallback(Protocol):
    """Called with each finished chunk ``(B, C, F, H, W)`` (a :class:`vidfix.DriftTracker` fits)."""

    def __call__(
        self, chunk: Tensor, *, index: int, start: int, video: Tensor, state: SamplerState, restored: bool
    ) -> Any: ...


@dataclass(frozen=True, kw_only=True)
class SamplerConfig:
    """Everything that determines a chunked rollout besides the model, scheduler, corrector and seeds."""

    num_frames: int  # N: frames of the finished video
    chunk_frames: int  # F: frames the model denoises per call
    context_frames: int  # K: clean frames before a chunk that condition it (0: unconditioned chunks)
    channels: int  # C of the latents
    height: int  # H of the latents
    width: int  # W of the latents
    overlap: int = 0  # O: frames at a chunk's start that re-generate the video's last O frames (crossfaded)
    num_steps: int = 16  # solver steps per chunk
    context_noise: float = (
        0.0  # a: SkyReels context re-noising c (1 - 0.001 a) + 0.001 a eps; 20 typical, 0 off
    )
    anchor: float = 0.0  # strength of low-band per-channel mean/std anchoring to chunk 0 (0 off, 1 full)
    color_match: float = (
        0.0  # strength of full-frame per-channel mean/std matching to chunk 0 (0 off, 1 full)
    )

    def __post_init__(self) -> None:
        for name in ("num_frames", "chunk_frames", "channels", "height", "width", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.context_frames < 0:
            raise ValueError(f"context_frames must be >= 0, got {self.context_frames}")
        if not 0 <= self.overlap < self.chunk_frames:
            raise ValueError(
                f"overlap must be in [0, chunk_frames) = [0, {self.chunk_frames}), got {self.overlap}"
            )
        if self.num_frames < self.chunk_frames:
            raise ValueError(
                f"num_frames ({self.num_frames}) must be >= chunk_frames ({self.chunk_frames}): "
                "the model generates whole chunks"
            )
        if not 0.0 <= self.context_noise <= 1000.0:
            raise ValueError(f"context_noise must be in [0, 1000], got {self.context_noise}")
        for name in ("anchor", "color_match"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} strength must be in [0, 1], got {getattr(self, name)}")

    @property
    def num_chunks(self) -> int:
        return len(chunk_starts(self))


@dataclass(frozen=True)
class SamplerState:
    """What a rollout needs to continue after its finished chunks (batched; item ``b`` is one video).

    Attributes:
        chunks: the finished chunks, each ``(B, C, F, H, W)`` after anchoring (the video is their merge).
        generator_states: ``torch.Generator.get_state()`` of each video's generator after the last chunk.
        stats: ``(B, C, 4)`` chunk 0's low-band mean and std, full mean and std (the anchoring targets).
        start_context: ``(B, C, K0, H, W)`` clean frames before the video, or None.
    """

    chunks: tuple[Tensor, ...]
    generator_states: tuple[Tensor, ...]
    stats: Tensor | None
    start_context: Tensor | None = None

    @property
    def next_chunk(self) -> int:
        return len(self.chunks)

    def select(self, b: int) -> SamplerState:
        """The state of video ``b`` alone (batch of one)."""
        return SamplerState(
            tuple(c[b : b + 1] for c in self.chunks),
            (self.generator_states[b],),
            None if self.stats is None else self.stats[b : b + 1],
            None if self.start_context is None else self.start_context[b : b + 1],
        )

    @staticmethod
    def stack(states: Sequence[SamplerState]) -> SamplerState:
        """Batch the states of several videos at the same chunk."""
        done = {s.next_chunk for s in states}
        if len(done) != 1:
            raise ValueError(f"cannot batch videos at different chunks: {sorted(done)}")
        ctx = [s.start_context for s in states]
        if any(c is None for c in ctx) and not all(c is None for c in ctx):
            raise ValueError("cannot batch videos with and without a start context")
        stats = [s.stats for s in states]
        return SamplerState(
            tuple(torch.cat(cs, 0) for cs in zip(*(s.chunks for s in states))),
            tuple(g for s in states for g in s.generator_states),
            None if stats[0] is None else torch.cat(stats, 0),  # type: ignore[arg-type]  # every state past chunk 0 has stats
            None if ctx[0] is None else torch.cat(ctx, 0),  # type: ignore[arg-type]  # all or none: checked above
        )


class NonFiniteChunkError(FloatingPointError):
    """A chunk came out NaN/inf; ``video`` holds the finished frames before it, ``items`` the bad videos."""

    def __init__(self, message: str, *, chunk: int, items: list[int], video: Tensor | None) -> None:
        super().__init__(message)
        self.chunk, self.items, self.video = chunk, items, video


# --------------------------------------------------------------------------------------------------------
# Pieces of the method (pure functions over tensors).


def chunk_starts(config: SamplerConfig) -> list[int]:
    """First video frame of each chunk: ``k (F - O)`` until a chunk reaches ``num_frames``."""
    stride = config.chunk_frames - config.overlap
    rest = max(0, config.num_frames - config.chunk_frames)
    return [k * stride for k in range(1 + -(-rest // stride))]


def renoise_context(context: Tensor, a: float, noise: Tensor) -> Tensor:
    """SkyReels-V2 context noise: ``c (1 - 0.001 a) + 0.001 a eps``."""
    return context * (1.0 - 0.001 * a) + noise * (0.001 * a)


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-video, per-channel mean and std over (F, H, W): each ``(B, C)``."""
    flat = x.float().flatten(2)  # (B, C, F*H*W)
    return flat.mean(-1), flat.std(-1, unbiased=False)


def _low(x: Tensor) -> Tensor:
    """The per-frame Haar low band (coarse colour and contrast), as a full-size tensor."""
    return band_filter(x, {"low": 1.0}, dims="2d")


def match_statistics(x: Tensor, mean: Tensor, std: Tensor, *, strength: float, low_band: bool) -> Tensor:
    """Move ``x``'s per-channel mean/std toward ``(mean, std)`` ``(B, C)`` by ``strength`` (1: exact match).

    ``low_band=True`` matches the per-frame low band and keeps the detail bands (statistics anchoring);
    ``low_band=False`` matches the full frames (colour matching).
    """
    if strength == 0.0:
        return x
    part = _low(x) if low_band else x
    mu, sd = channel_stats(part)
    scale = (std / sd.clamp_min(1e-8))[..., None, None, None]  # (B, C, 1, 1, 1)
    matched = (part - mu[..., None, None, None]) * scale.to(x.dtype) + mean[..., None, None, None].to(x.dtype)
    return x + (matched - part) * strength


def merge_chunk(video: Tensor, chunk: Tensor, start: int) -> Tensor:
    """Put ``chunk`` ``(B, C, F, H, W)`` at video frame ``start``: frames it shares with ``video`` are
    crossfaded (new weight ``(j + 1) / (O + 1)`` at shared frame ``j``), the rest appended."""
    o = video.shape[2] - start
    if o < 0:
        raise ValueError(f"chunk starts at frame {start}, after the video's end ({video.shape[2]} frames)")
    if o == 0:
        return torch.cat([video, chunk], 2)  # (B, C, T + F, H, W)
    w = torch.arange(1, o + 1, device=chunk.device, dtype=chunk.dtype) / (o + 1)
    w = w.view(1, 1, o, 1, 1)  # (1, 1, O, 1, 1)
    shared = video[:, :, start:] * (1 - w) + chunk[:, :, :o] * w  # (B, C, O, H, W)
    return torch.cat([video[:, :, :start], shared, chunk[:, :, o:]], 2)  # (B, C, start + F, H, W)


def check_denoiser(denoiser: Any, config: SamplerConfig) -> None:
    """Refuse sizes the model cannot take, before any model call.

    Uses ``denoiser.check_chunk(chunk_frames, context_frames)`` when the model has it (it should raise
    ``ValueError``); otherwise reads ``chunk_frames``, ``max_context_frames``, ``sample_size`` and
    ``in_channels`` from ``denoiser.config`` where present.
    """
    hook = getattr(denoiser, "check_chunk", None)
    if callable(hook):
        hook(config.chunk_frames, config.context_frames)
        return
    cfg = getattr(denoiser, "config", None)
    if cfg is None:
        return
    get = cfg.get if isinstance(cfg, dict) else lambda k, d=None: getattr(cfg, k, d)
    name = type(denoiser).__name__
    fixed = get("chunk_frames", None)
    if fixed is not None and int(fixed) != config.chunk_frames:
        raise ValueError(
            f"{name} denoises chunks of exactly {fixed} frames (config.chunk_frames); got chunk_frames={config.chunk_frames}"
        )
    most = get("max_context_frames", None)
    if most is not None and config.context_frames > int(most):
        raise ValueError(
            f"{name} takes at most {most} context frames (config.max_context_frames); got context_frames={config.context_frames}"
        )
    size = get("sample_size", None)
    if isinstance(size, int) and (config.height, config.width) != (size, size):
        raise ValueError(
            f"{name} takes {size}x{size} frames (config.sample_size); got {config.height}x{config.width}"
        )
    channels = get("in_channels", None)
    if isinstance(channels, int) and channels != config.channels:
        raise ValueError(f"{name} takes {channels} channels (config.in_channels); got {config.channels}")


def context_before(prefix: Tensor, video: Tensor, start: int, count: int) -> Tensor | None:
    """The last ``count`` frames before video frame ``start`` (start context first): ``(B, C, <= count, H, W)``,
    or None when there are none."""
    if count == 0:
        return None
    c = torch.cat([prefix, video[:, :, :start]], 2)[:, :, -count:]  # (B, C, <= count, H, W)
    return c if c.shape[2] > 0 else None


def video_teacher(real: Tensor, *, offset: int = 0) -> Teacher:
    """Teacher forcing from real frames ``(B, C, T, H, W)`` whose frame ``offset`` is generated frame 0: each
    chunk's context is ``real[:, :, offset + start - count : offset + start]`` (fewer frames at the start)."""
    check_latents(real, "real", ranks=(5,))

    def teacher(chunk: int, start: int, count: int) -> Tensor:
        hi = offset + start
        if hi > real.shape[2]:
            raise ValueError(
                f"chunk {chunk} needs real frames up to {hi}; the real video has {real.shape[2]}"
            )
        return real[:, :, max(0, hi - count) : hi]

    return teacher


def _given_context(c: Tensor, count: int, like: Tensor) -> Tensor | None:
    """A teacher's frames: the last ``count``, on the latents' device and dtype; None when empty."""
    if c.dim() == 5 and c.shape[2] == 0:  # no real frames before the chunk (chunk 0): no context
        return None
    check_latents(c, "teacher context", ranks=(5,))
    return c[:, :, -count:].to(like)


def _noise(generators: Sequence[torch.Generator], shape: tuple[int, ...], like: Tensor) -> Tensor:
    """One draw per video from its own generator: ``(B, *shape)``; a video never depends on its batch."""
    draws = [torch.randn(shape, generator=g, device=g.device, dtype=torch.float32) for g in generators]
    return torch.stack(draws).to(like.device, like.dtype)


# --------------------------------------------------------------------------------------------------------
# The chunk loop.


@torch.no_grad()
def sample_video(
    denoiser: Denoiser,
    scheduler: Any,
    config: SamplerConfig,
    *,
    generators: Sequence[torch.Generator],
    corrector: Corrector | None = None,
    context: Tensor | None = None,
    teacher: Teacher | None = None,
    callback: StepCallback | None = None,
    on_chunk: ChunkCallback | Sequence[ChunkCallback] = (),
    state: SamplerState | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    denoiser_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Tensor:
    """Generate ``config.num_frames`` frames chunk by chunk (the method is in the module docstring).

    Args:
        denoiser: ``denoiser(x, t, context=...) -> model output`` of the scheduler's prediction type.
        scheduler: a diffusers scheduler the tap supports (``vidfix.tap.SUPPORTED_SCHEDULERS``), or a
            :class:`~vidfix.pipelines.fewstep.FewStepScheduler` (x0 / re-noise mode); not modified.
        config: sizes, steps and options of the rollout.
        generators: one per video; they draw all its noise (chunk noise, then context noise, per chunk;
            then each step's re-noise in the few-step mode).
        corrector: applied inside every solver step of every chunk; None is no correction.
        context: clean frames ``(B, C, K0, H, W)`` before the video (chunk 0 sees its last ``K``), or None.
        teacher: teacher forcing: ``teacher(chunk, start, count)`` returns the real frames
            ``[start - count, start)`` ``(B, C, <= count, H, W)`` to use as that chunk's context (0 frames:
            none), or None to use the generated ones.
        callback: called after every step with one dict: ``chunk, step, num_steps, t, s, x, x0, x_next,
            context`` (``x0`` is the corrected data prediction the solver used).
        on_chunk: called with each finished chunk as ``fn(chunk, index=, start=, video=, state=, restored=)``.
        state: continue a rollout from its :class:`SamplerState` (resume); the finished chunks are replayed
            to ``on_chunk`` with ``restored=True`` (trackers see every chunk, at no model call).
        device, dtype: where and in which dtype the latents live.
        denoiser_kwargs: extra keyword arguments for every model call.
        progress: called as ``progress(done_steps, total_steps)``.

    Returns:
        The video ``(B, C, num_frames, H, W)``.

    Raises:
        ValueError: sizes the model cannot take, or inputs that do not fit the config.
        TypeError: a scheduler the tap does not support (the message lists the supported ones).
        NonFiniteChunkError: a chunk came out NaN/inf; it names the chunk; finished chunks were emitted.
    """
    cfg = config
    B = len(generators)
    C, F, K, H, W = cfg.channels, cfg.chunk_frames, cfg.context_frames, cfg.height, cfg.width
    if B < 1:
        raise ValueError("need at least one generator (one per video)")
    check_denoiser(denoiser, cfg)
    callbacks = [on_chunk] if callable(on_chunk) else list(on_chunk)
    kwargs = dict(denoiser_kwargs or {})
    # One code path for the correction: the loop object applies the corrector (through the tap inside a
    # diffusers scheduler's step, or directly in the few-step mode) and calls the chunk hooks.
    loop = ARLoop(corrector, on_chunk=callbacks)
    events: list[TapEvent] = []
    few_step = isinstance(scheduler, FewStepScheduler)
    # Each chunk is checked for NaN/inf below: no per-step check (a device sync) inside the tap.
    tapped = scheduler if few_step else tap(scheduler, loop, observer=events.append, check_finite=False)
    starts = chunk_starts(cfg)
    like = torch.empty(0, device=device, dtype=dtype)

    if state is not None:
        if len(state.generator_states) != B:
            raise ValueError(f"state holds {len(state.generator_states)} videos, got {B} generators")
        for g, s in zip(generators, state.generator_states):
            g.set_state(s)
        context = state.start_context
    if context is not None:
        check_latents(context, "context", ranks=(5,))
        if (context.shape[0], context.shape[1], *context.shape[3:]) != (B, C, H, W):
            raise ValueError(f"context has shape {tuple(context.shape)}; expected ({B}, {C}, K0, {H}, {W})")
        context = context.to(device, dtype)
    prefix = context if context is not None else like.new_zeros(B, C, 0, H, W)  # (B, C, K0, H, W)
    video = like.new_zeros(B, C, 0, H, W)  # (B, C, T, H, W): the frames so far
    chunks: list[Tensor] = []
    stats: Tensor | None = None

    def chunk_context(k: int, start: int) -> Tensor | None:
        """The K frames before the chunk (real ones under teacher forcing)."""
        c = teacher(k, start, K) if teacher is not None and K > 0 else None
        return context_before(prefix, video, start, K) if c is None else _given_context(c, K, like)

    # Replay the finished chunks of a resumed rollout (a stateful corrector sees them again).
    if state is not None:
        stats = state.stats
        for k, chunk in enumerate(state.chunks):
            loop.start_chunk(k, context=chunk_context(k, starts[k]) if loop.wants_context else None)
            chunks.append(chunk.to(device, dtype))
            video = merge_chunk(video, chunks[-1], starts[k])
            loop.end_chunk(chunks[-1], index=k, start=starts[k], video=video, state=state, restored=True)

    total, done = len(starts) * cfg.num_steps, len(chunks) * cfg.num_steps
    for k in range(len(chunks), len(starts)):
        start = starts[k]
        # Gather the context: the K frames before the chunk (real ones under teacher forcing).
        c = chunk_context(k, start)

        # Draw the chunk's noise, then the context's, from each video's own generator.
        x = _noise(generators, (C, F, H, W), like) * float(getattr(tapped, "init_noise_sigma", 1.0))
        # Re-noise the context (SkyReels): c (1 - 0.001 a) + 0.001 a eps.
        c_in = c
        if c is not None and cfg.context_noise > 0:
            c_in = renoise_context(c, cfg.context_noise, _noise(generators, tuple(c.shape[1:]), like))
        # A Diffusion-Forcing model is told its context's noise level (flow level 0.001 a); a model with a
        # sink sees the video's first frames (the start context's, else the first generated ones).
        step_kwargs = kwargs
        if c_in is not None and getattr(denoiser, "accepts_context_sigma", False):
            step_kwargs = {**step_kwargs, "context_sigma": 0.001 * cfg.context_noise}
        S = int(getattr(denoiser, "sink_frames", 0) or 0)
        if S and prefix.shape[2] + video.shape[2] >= S:
            step_kwargs = {**step_kwargs, "sink": torch.cat([prefix, video[:, :, :S]], 2)[:, :, :S]}

        # Denoise the chunk; the corrector acts on the data prediction of every step.
        loop.start_chunk(k, context=c)
        run = _ChunkRun(denoiser, k, c_in, step_kwargs, callback, x)
        if few_step:
            steps = run.few_step(copy.deepcopy(tapped), cfg.num_steps, loop, generators, device)
        else:
            steps = run.scheduler(copy.deepcopy(tapped), cfg.num_steps, events, device)
        try:
            for _ in steps:
                done += 1
                if progress is not None:
                    progress(done, total)
        except FloatingPointError as err:
            raise _non_finite(k, start, F, run.x, video, cfg, str(err)) from err
        x = run.x
        if not bool(torch.isfinite(x).all()):
            raise _non_finite(k, start, F, x, video, cfg, None)

        # Anchor the chunk's statistics to chunk 0: low band (anchoring) and/or full frames (colour).
        if stats is None:
            stats = torch.stack([*channel_stats(_low(x)), *channel_stats(x)], -1)  # (B, C, 4)
        x = match_statistics(x, stats[..., 0], stats[..., 1], strength=cfg.anchor, low_band=True)
        x = match_statistics(x, stats[..., 2], stats[..., 3], strength=cfg.color_match, low_band=False)

        # Merge the chunk into the video (crossfade the overlap) and hand it on.
        chunks.append(x)
        video = merge_chunk(video, x, start)
        state = SamplerState(tuple(chunks), tuple(g.get_state() for g in generators), stats, context)
        loop.end_chunk(x, index=k, start=start, video=video, state=state, restored=False)
    return video[:, :, : cfg.num_frames]


@dataclass
class _ChunkRun:
    """The steps of one chunk, as generators of the sample after each step (``x`` is the latest)."""

    denoiser: Denoiser
    chunk: int
    context: Tensor | None
    kwargs: dict[str, Any]
    callback: StepCallback | None
    x: Tensor  # the chunk's noise, then its sample after each step

    def _report(self, i: int, n: int, t: Tensor, s: Any, x: Tensor, x0: Any, x_next: Tensor) -> None:
        if self.callback is not None:
            self.callback({
                "chunk": self.chunk, "step": i, "num_steps": n, "t": t, "s": s, "x": x, "x0": x0,
                "x_next": x_next, "context": self.context,
            })  # fmt: skip

    def scheduler(
        self, sched: Any, num_steps: int, events: list[TapEvent], device: torch.device | str
    ) -> Iterator[Tensor]:
        """A fresh (tapped) diffusers scheduler: the loop corrects inside each ``step``."""
        sched.set_timesteps(num_steps, device=device)
        timesteps = sched.timesteps
        x = self.x
        for i, t in enumerate(timesteps):
            events.clear()
            out = self.denoiser(scale_input(sched, x, t), t, context=self.context, **self.kwargs)
            x_next = scheduler_step(sched, out, t, x, index=i, timesteps=timesteps)
            if self.callback is not None:  # ev.x0_corrected is a full-size tensor op: only when reported
                ev = events[-1] if events else None
                self._report(
                    i, len(timesteps), t, None if ev is None else ev.step.s, x,
                    None if ev is None else ev.x0_corrected, x_next,
                )  # fmt: skip
            x = self.x = x_next
            yield x

    def few_step(
        self,
        sched: FewStepScheduler,
        num_steps: int,
        loop: ARLoop,
        generators: Sequence[torch.Generator],
        device: torch.device | str,
    ) -> Iterator[Tensor]:
        """Predict x0, correct it (the loop), re-noise it to the next level with each video's own noise."""
        sched.set_timesteps(num_steps, device=device)
        n = len(sched.timesteps)
        x = self.x
        for i, t in enumerate(sched.timesteps):
            s, s_next = sched.levels(i)
            out = self.denoiser(x, t, context=self.context, **self.kwargs)
            x0 = loop.x0(sched.convert_model_output(out, x, i), x, s, s_next, index=i, num_steps=n)
            noise = _noise(generators, tuple(x.shape[1:]), x) if s_next > 0 else None
            x_next = sched.renoise(x0, noise, i)
            self._report(i, n, t, s, x, x0, x_next)
            x = self.x = x_next
            yield x


def _non_finite(
    k: int, start: int, F: int, x: Tensor, video: Tensor, cfg: SamplerConfig, detail: str | None
) -> NonFiniteChunkError:
    bad = [b for b in range(x.shape[0]) if not bool(torch.isfinite(x[b]).all())] or list(range(x.shape[0]))
    end = min(start + F, cfg.num_frames) - 1
    msg = (
        f"chunk {k} (frames {start}-{end}) became non-finite (NaN/inf) in batch item(s) {bad}; "
        f"stopped after {k} finished chunk(s) ({video.shape[2]} frames)"
    )
    if detail:
        msg += f": {detail}"
    return NonFiniteChunkError(msg, chunk=k, items=bad, video=video)
