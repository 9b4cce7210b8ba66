"""The small interfaces everything in vidfix adapts to or consumes.

Latents are ``(B, C, F, H, W)`` (batch, channels, frames, height, width) unless a layout says otherwise.

* :class:`Denoiser`: ``model(x_t, t, context=...) -> model_output``; diffusers models and the reference
  model adapt to it; the chunked sampler and calibration consume it.
* :class:`StepInfo`: what a corrector sees of one solver step, scheduler-independent. Every supported
  scheduler writes its sample as ``x = alpha * x0 + beta * eps`` (flow: ``alpha = 1 - s, beta = s``;
  VP: ``sqrt(abar), sqrt(1 - abar)``; VE: ``1, sigma``).
* :class:`Corrector`: ``corrector(x0_hat, x, step) -> x0_hat'`` corrects the data prediction the solver
  consumes; the scheduler tap turns that back into the model output the scheduler expects.
* :class:`FoldableCorrector`: a corrector that can also correct the tensor a solver consumes directly (the
  scheduler tap's fast path: no data prediction formed).
* :class:`ChunkAware`: a corrector with state across the chunks of an autoregressive rollout (an anchor to
  a reference, closed-loop gains); the chunk loop tells it where each chunk starts and hands it each
  finished chunk. Plain correctors need neither method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

from torch import Tensor

__all__ = ["ChunkAware", "Corrector", "Denoiser", "FoldableCorrector", "Parameterization", "Scalar", "StepInfo"]

Scalar: TypeAlias = "float | Tensor"
Parameterization: TypeAlias = Literal["flow", "vp", "ve"]


@dataclass(frozen=True)
class StepInfo:
    """One solver step from noise level ``beta`` down to ``beta_next``, in the scheduler's sample space.

    Coefficients are floats, or tensors broadcastable to the latents for per-frame / per-token noise levels.

    Attributes:
        alpha, beta: signal and noise scale of the current sample ``x = alpha x0 + beta eps``.
        alpha_next, beta_next: the same at the step's target noise level.
        s: normalised noise level in [0, 1] (noise scale over the schedule's largest), for coefficient schedules.
        param: ``flow``, ``vp`` or ``ve``: how the scheduler writes its sample (epsilon scaling needs it).
        index: step index within the run (0 = first step), or -1 when unknown.
        num_steps: number of steps of the run, or 0 when unknown.
    """

    alpha: Scalar
    beta: Scalar
    alpha_next: Scalar
    beta_next: Scalar
    s: Scalar
    param: Parameterization = "flow"
    index: int = -1
    num_steps: int = 0

    @property
    def c1(self) -> Scalar:
        """Weight of ``x`` in the first-order (DDIM / Euler) step ``x_next = c0 x0 + c1 x``."""
        return self.beta_next / self.beta

    @property
    def c0(self) -> Scalar:
        """Weight of ``x0`` in the first-order step ``x_next = c0 x0 + c1 x``."""
        return self.alpha_next - self.c1 * self.alpha

    def euler_next(self, x0: Tensor, x: Tensor) -> Tensor:
        """The first-order step's result ``alpha_next x0 + beta_next eps_hat`` (DDIM / flow Euler)."""
        return x0 * self.c0 + x * self.c1


@runtime_checkable
class Corrector(Protocol):
    """Corrects the data prediction ``x0_hat`` of one step; must return ``x0_hat`` itself when it does nothing."""

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor: ...


@runtime_checkable
class FoldableCorrector(Protocol):
    """Optional fast path: the same correction applied to the tensor ``v`` a solver consumes (the model output,
    or a multistep solver's converted output), where the step writes ``x0 = a x + b v``.

    Must return ``v`` itself when it does nothing, and equal ``v + (corrector(x0, x, step) - x0) / b``.
    """

    def correct_output(self, v: Tensor, x: Tensor, step: StepInfo, *, a: Scalar, b: Scalar) -> Tensor: ...


@runtime_checkable
class ChunkAware(Protocol):
    """Optional chunk hooks of a stateful corrector; an AR loop calls them around each chunk, in order.

    Batch item ``b`` is one video throughout, so per-video state is indexed by the batch.
    """

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        """Chunk ``index`` (0 = first) is about to be denoised from the clean ``context`` ``(B, C, K, H, W)``
        (None when it has none); ``index == 0`` starts a new rollout (reset per-video state)."""
        ...

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        """Chunk ``index`` finished as ``chunk`` ``(B, C, F, H, W)`` (what goes into the video)."""
        ...


@runtime_checkable
class Denoiser(Protocol):
    """A chunk denoiser: noisy chunk ``x_t`` at scheduler timestep ``t`` (with optional clean context frames)
    to the model output the scheduler expects (velocity, epsilon, v or sample, per its prediction type).

    Shapes: ``x_t`` ``(B, C, F, H, W)``; ``t`` a scalar tensor or ``(B,)``; ``context`` ``(B, C, K, H, W)`` or None.
    """

    def __call__(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **kwargs: Any) -> Tensor: ...
