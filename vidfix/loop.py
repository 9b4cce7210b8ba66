"""Loop-level API: the corrector, stateful chunk hooks and drift tracking for hand-written AR samplers.

Few-step causal models (Self-Forcing, CausVid, Causal Forcing, Rolling Forcing, LongLive) are not driven by a
diffusers scheduler: each chunk is denoised by predicting ``x0`` and re-noising it to the next level of a
short list (for example 1000, 750, 500, 250), with a KV cache of clean context. An :class:`ARLoop` is the
one object such a loop calls at the three places that matter:

* ``loop.start_chunk(k, context=...)`` before chunk ``k`` (stateful correctors see the clean context);
* ``x0 = loop.x0(x0, x, s, s_next)`` between the x0 prediction and the re-noise, with the current and next
  noise levels (floats, or per-frame tensors): the corrector acts on the data prediction per band (3D over
  the chunk), exactly where it acts inside a scheduler step;
* ``loop.end_chunk(chunk)`` after the chunk (drift tracker, stateful correctors, per-chunk callbacks).

vidfix's own chunked sampler drives the same object (through :func:`vidfix.tap.tap` for diffusers schedulers,
since an :class:`ARLoop` is itself a :class:`vidfix.protocols.Corrector`), so there is one code path.

Noise levels follow flow matching: ``x_s = (1 - s) x0 + s eps`` (``s`` in [0, 1], timestep ``t = 1000 s``).
Latents are ``(B, C, F, H, W)`` (``layout="BFCHW"`` for loops that keep frames first, as Self-Forcing does).

Example (the Self-Forcing loop shape; ``docs/examples/self_forcing_loop.py`` runs it):
    >>> loop = ARLoop(DCW(low=0.01), tracker=DriftTracker())
    >>> for k in range(num_chunks):                                    # doctest: +SKIP
    ...     loop.start_chunk(k, context=clean_context)
    ...     x = torch.randn(shape, generator=g)
    ...     for s, s_next in zip(levels, [*levels[1:], 0.0]):
    ...         x0 = x - s * model(x, 1000 * s, kv_cache=cache)        # x0 prediction (flow matching)
    ...         x0 = loop.x0(x0, x, s, s_next)                         # corrected per band
    ...         x = x0 if s_next == 0 else (1 - s_next) * x0 + s_next * torch.randn(shape, generator=g)
    ...     loop.end_chunk(x0)
    >>> loop.tracker.curve("std")                                      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_latents, check_same_shape
from vidfix.protocols import ChunkAware, Corrector, StepInfo
from vidfix.tracker import DriftTracker

__all__ = ["ARLoop", "ChunkHook", "Level", "LoopLayout", "flow_step_info"]

LoopLayout: TypeAlias = Literal["BCFHW", "BFCHW"]
Level: TypeAlias = "float | Tensor"


ChunkHook: TypeAlias = Callable[
    ..., Any
]  # fn(chunk, index=k, **info) with each finished (B, C, F, H, W) chunk


def _as_level(v: Level, x: Tensor, name: str) -> Level:
    """A noise level as a float, or a tensor broadcastable to ``x`` ``(B, C, F, H, W)``.

    Tensors may be 0-d, per frame ``(F,)``, per video and frame ``(B, F)``, or already 5-D.
    """
    if not isinstance(v, Tensor):
        f = float(v)
        if not 0.0 <= f <= 1.0:
            raise ValueError(f"{name} must be a noise level in [0, 1] (s = t / 1000), got {f}")
        return f
    B, _, F = x.shape[:3]
    if v.dim() == 0:
        return _as_level(float(v), x, name)
    if v.dim() == 1 and v.shape[0] == F:
        v = v.view(1, 1, F, 1, 1)  # (1, 1, F, 1, 1)
    elif v.dim() == 2 and tuple(v.shape) == (B, F):
        v = v.view(B, 1, F, 1, 1)  # (B, 1, F, 1, 1)
    elif v.dim() != 5:
        raise ValueError(
            f"{name} has shape {tuple(v.shape)}; expected a float, (F,) = ({F},), (B, F) = ({B}, {F}) "
            "or a tensor broadcastable to the (B, C, F, H, W) latents"
        )
    if bool((v < 0).any()) or bool((v > 1).any()):
        raise ValueError(f"{name} must hold noise levels in [0, 1] (s = t / 1000)")
    return v.to(device=x.device, dtype=x.dtype)


def flow_step_info(s: Level, s_next: Level, *, index: int = -1, num_steps: int = 0) -> StepInfo:
    """The :class:`StepInfo` of a flow-matching step from level ``s`` to ``s_next`` (``x = (1 - s) x0 + s eps``)."""
    return StepInfo(1 - s, s, 1 - s_next, s_next, s, "flow", index, num_steps)


@dataclass(eq=False)
class ARLoop:
    """What a hand-written AR loop calls: corrector per step, chunk hooks and drift tracking per chunk.

    Attributes:
        corrector: applied to every data prediction (``DCW``, ``EpsScaling``, ...; None: no correction,
            the loop's result stays bit-identical). A :class:`vidfix.protocols.ChunkAware` corrector also
            gets ``start_chunk(index, context=)`` and ``end_chunk(chunk, index=)``.
        tracker: a :class:`vidfix.DriftTracker` fed every finished chunk (cleared when chunk 0 starts again).
        on_chunk: more per-chunk callbacks, called as ``fn(chunk, index=k, **info)`` after the tracker.
        layout: the loop's latent layout, ``"BCFHW"`` or ``"BFCHW"`` (frames first, as in Self-Forcing);
            correctors, trackers and callbacks always see ``(B, C, F, H, W)``.
        index: the current (or last finished) chunk, -1 before the first.
        steps: data predictions corrected in the current chunk.
    """

    corrector: Corrector | None = None
    tracker: DriftTracker | None = None
    on_chunk: Sequence[ChunkHook] = ()
    layout: LoopLayout = "BCFHW"
    index: int = field(default=-1, init=False)
    steps: int = field(default=0, init=False)
    _open: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        check_choice("layout", self.layout, get_args(LoopLayout))
        if self.corrector is not None and not callable(self.corrector):
            raise TypeError(
                f"corrector must be callable as corrector(x0, x, step), got {type(self.corrector).__name__}"
            )
        self.on_chunk = [self.on_chunk] if callable(self.on_chunk) else list(self.on_chunk)

    # -- layout ----------------------------------------------------------------------------------------

    def _to5(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if self.layout == "BFCHW" else t  # (B, C, F, H, W)

    def _from5(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if self.layout == "BFCHW" else t  # the loop's layout

    # -- the three calls -------------------------------------------------------------------------------

    def start_chunk(self, index: int | None = None, *, context: Tensor | None = None) -> None:
        """Chunk ``index`` (default: the next one; 0 starts a new rollout) is about to be denoised.

        ``context``: its clean context frames in the loop's layout (what the KV cache holds), or None.
        """
        k = self.index + 1 if index is None else int(index)
        if self._open:
            raise RuntimeError(
                f"chunk {self.index} was started but not ended: call loop.end_chunk(chunk) first"
            )
        if k not in (0, self.index + 1):
            raise ValueError(f"chunks come in order: expected chunk 0 or {self.index + 1}, got {k}")
        if k == 0 and self.tracker is not None:
            self.tracker.records.clear()
        ctx = None
        if context is not None:
            ctx = self._to5(check_latents(context, "context", ranks=(5,)))
        if isinstance(self.corrector, ChunkAware):
            self.corrector.start_chunk(k, context=ctx)
        self.index, self.steps, self._open = k, 0, True

    def x0(
        self, x0: Tensor, x: Tensor, s: Level, s_next: Level, *, index: int | None = None, num_steps: int = 0
    ) -> Tensor:
        """The corrected data prediction of one step from noise level ``s`` to ``s_next`` (flow matching).

        Call it between the model's x0 prediction and the re-noise (or the solver step). ``s`` and
        ``s_next`` are floats, or per-frame tensors ``(F,)`` / ``(B, F)``; frames whose level does not go
        down (already clean, or held at their level) are left as they are. Returns ``x0`` itself (the
        same object) when the corrector changes nothing.

        Args:
            x0: the model's data prediction, in the loop's layout.
            x: the sample it was predicted from (same shape).
            s, s_next: current and next noise level in [0, 1] (``t / 1000``; 0 is clean).
            index: step index within the chunk (default: counted by the loop).
            num_steps: steps per chunk, when known (schedules may use it).
        """
        check_latents(x0, "x0", ranks=(5,))
        check_same_shape(x, x0)
        x0_5, x_5 = self._to5(x0), self._to5(x)
        lv, lv_next = _as_level(s, x0_5, "s"), _as_level(s_next, x0_5, "s_next")
        moving: Tensor | None = None
        if isinstance(lv, Tensor) or isinstance(lv_next, Tensor):
            # Per-frame levels: frames whose level does not go down get (0, 0), a step no corrector touches.
            moving = torch.as_tensor(lv_next, device=x0.device) < torch.as_tensor(lv, device=x0.device)
            if not bool(moving.any()):
                return self._skip(x0)
            zero = torch.zeros((), device=x0.device, dtype=x0.dtype)
            lv, lv_next = torch.where(moving, lv, zero), torch.where(moving, lv_next, zero)
        elif not lv_next < lv:
            return self._skip(x0)  # no step that lowers the noise: nothing to correct
        i = self.steps if index is None else int(index)
        new = self(x0_5, x_5, flow_step_info(lv, lv_next, index=i, num_steps=num_steps))
        if new is x0_5:
            return x0
        if moving is not None and not bool(moving.all()):
            new = torch.where(moving, new, x0_5)
        return self._from5(new)

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        """The :class:`vidfix.protocols.Corrector` call: ``tap(scheduler, loop)`` routes a scheduler's steps here.

        ``x0`` and ``x`` are ``(B, C, F, H, W)`` (or ``(B, C, H, W)`` frames) whatever the loop's layout.
        """
        self._count_step()
        return x0 if self.corrector is None else self.corrector(x0, x, step)

    @property
    def correct_output(self) -> Callable[..., Tensor] | None:
        """The corrector's folded form, ``v' = correct_output(v, x, step, a=, b=)`` for a solver that consumes
        ``v`` with ``x0 = a x + b v``, where the corrector has one (a scheduler tap prefers it); else None."""
        fold = getattr(self.corrector, "correct_output", None)
        if fold is None:
            return None

        def correct_output(v: Tensor, x: Tensor, step: StepInfo, **coefficients: Any) -> Tensor:
            self._count_step()
            return fold(v, x, step, **coefficients)

        return correct_output

    def end_chunk(self, chunk: Tensor, *, index: int | None = None, **info: Any) -> None:
        """Chunk ``index`` (default: the current one) finished as ``chunk`` (what goes into the video).

        The tracker records it, a stateful corrector sees it, then each ``on_chunk`` callback gets
        ``fn(chunk, index=k, **info)`` (``info``: anything the loop wants to hand on).
        """
        k = self.index if index is None else int(index)
        if not self._open or k != self.index:
            raise RuntimeError(f"end_chunk({k}) without start_chunk({k})")
        c = self._to5(check_latents(chunk, "chunk", ranks=(5,)))
        if isinstance(self.corrector, ChunkAware):
            self.corrector.end_chunk(c, index=k)
        if self.tracker is not None:
            self.tracker(c, index=k)
        for fn in self.on_chunk:
            fn(c, index=k, **info)
        self._open = False

    @property
    def wants_context(self) -> bool:
        """Whether ``start_chunk`` uses its context (a :class:`vidfix.protocols.ChunkAware` corrector)."""
        return isinstance(self.corrector, ChunkAware)

    def _skip(self, x0: Tensor) -> Tensor:
        self._count_step()
        return x0

    def _count_step(self) -> None:
        """One step of the open chunk (every per-step entry point counts here)."""
        if not self._open:
            raise RuntimeError("call loop.start_chunk(k, context=...) before the chunk's first step")
        self.steps += 1
