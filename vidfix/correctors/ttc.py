"""TTC-style baseline: pathwise test-time correction toward the first frame (Xiang et al., arXiv 2602.05871,
ICML 2026), written from the paper's public description.

What the paper describes (abstract, method summary and the authors' README): the sampling trajectory has a
structure stage (high noise) and an appearance-refinement stage (low noise); TTC intervenes only in the
refinement stage, with the video's initial frame as a stable reference anchor, and corrects *on the
sampling path*: at a correction step

1. **reference-guided correction**: the step's predicted clean chunk is re-noised and denoised again with
   the initial frame as the model's context;
2. **noise-level restoration**: that corrected prediction is re-noised back to the current noise level with
   fresh Gaussian noise;
3. **context-aware re-denoising**: the re-noised state is denoised again with the chunk's own
   autoregressive context, and sampling continues from it (no overwrite of the finished frames).

Here, inside the tapped step (two extra model calls per corrected step): stage 1 re-noises ``x0_hat`` to the
step's own level ``s``; stage 3's prediction ``x0_new`` from the re-noised state ``x'`` is returned as
``x0_new + (c1 / c0) (x' - x)``, so the solver's first-order step from ``x`` lands exactly where the same step
from ``x'`` would: the path continues from the corrected state. That is exact for Euler / DDIM and for
few-step "predict x0, re-noise" loops (which use ``x0`` alone); multistep solvers (UniPC) see it through
their first-order part.

What could not be reproduced from the public material: the paper's exact set of correction timesteps
(another public reimplementation uses 750/500/250 of a 1000/750/500/250 schedule; here every step with
``s <= s_max``), the level stage 1 re-noises to (here the current one), its "strength" setting, and how the
initial frame enters a KV-cache model with positional encodings (here: it is passed as the model's context,
which for vidfix's chunk denoisers means "the frame before the chunk"). No code of the authors was
available. The reference is the earliest frame vidfix has: the start context's first frame if the rollout
has one, else the first generated frame.

Implements :class:`vidfix.protocols.ChunkAware`. Latents ``(B, C, F, H, W)``; batch item ``b`` is one video;
its fresh noise comes from a generator seeded by ``(seed, b, chunk, step)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_finite, check_latents, check_same_shape, scalar_noise_level
from vidfix.protocols import Denoiser, StepInfo

__all__ = ["TTC"]

Prediction = Literal["flow", "epsilon", "v_prediction", "sample"]


def _x0_from(pred: Prediction, out: Tensor, x: Tensor, alpha: float, beta: float) -> Tensor:
    """Data prediction from a model output, for samples ``x = alpha x0 + beta eps``."""
    if pred == "flow":  # v = eps - x0, x = (1 - s) x0 + s eps  =>  x0 = x - s v
        return x - out * beta
    if pred == "epsilon":
        return (x - out * beta) / alpha
    if pred == "v_prediction":
        return x * alpha - out * beta
    return out


@dataclass(kw_only=True, eq=False)
class TTC:
    """Pathwise test-time correction toward the first frame, in the later steps, re-noised and continued.

    Attributes:
        denoiser: the model the sampler runs (called twice more per corrected step).
        s_max: steps with normalised noise level ``s <= s_max`` (the refinement stage) are corrected.
        frames: how many reference frames (from the start) are the model's context in stage 1.
        prediction: the model output's type, to read ``x0`` from it (``flow``: velocity).
        timestep: maps a step to the model's timestep (default flow matching: ``s * 1000``).
        seed: seed of the fresh noise.
        denoiser_kwargs: extra keyword arguments of every model call.
        calls: extra model calls made so far.
    """

    denoiser: Denoiser
    s_max: float = 0.5
    frames: int = 1
    prediction: Prediction = "flow"
    timestep: Callable[[StepInfo], Tensor] | None = None
    seed: int = 0
    denoiser_kwargs: dict[str, Any] = field(default_factory=dict)
    calls: int = 0
    _ref: Tensor | None = field(init=False, repr=False, default=None)
    _ctx: Tensor | None = field(init=False, repr=False, default=None)
    _chunk: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        check_choice("prediction", self.prediction, ("flow", "epsilon", "v_prediction", "sample"))
        if not 0.0 <= self.s_max <= 1.0:
            raise ValueError(f"s_max must be in [0, 1], got {self.s_max}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        if not callable(self.denoiser):
            raise TypeError(
                f"denoiser must be callable as denoiser(x, t, context=...), got {type(self.denoiser).__name__}"
            )

    # -- chunk hooks -------------------------------------------------------------------------------------

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        if index == 0:
            self._ref = (
                None if context is None or context.shape[2] == 0 else context[:, :, : self.frames].clone()
            )
        self._ctx = context
        self._chunk = index

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        if self._ref is None:
            self._ref = chunk[:, :, : self.frames].detach().clone()

    # -- the corrector -----------------------------------------------------------------------------------

    def _noise(self, like: Tensor, step: StepInfo, stage: int) -> Tensor:
        draws = []
        for b in range(like.shape[0]):
            key = (
                ((self.seed * 1_000_003 + b) * 100_003 + self._chunk) * 1009 + max(step.index, 0) * 2 + stage
            )
            g = torch.Generator().manual_seed(key % (2**63 - 1))
            draws.append(torch.randn(like.shape[1:], generator=g, dtype=torch.float32))
        return torch.stack(draws).to(like.device, like.dtype)

    def _t(self, step: StepInfo, like: Tensor) -> Tensor:
        if self.timestep is not None:
            return self.timestep(step)
        return torch.tensor(float(step.s) * 1000.0, device=like.device)

    def _x0(self, x: Tensor, step: StepInfo, context: Tensor | None) -> Tensor:
        out = self.denoiser(x, self._t(step, x), context=context, **self.denoiser_kwargs)
        self.calls += 1
        return _x0_from(self.prediction, out, x, float(step.alpha), float(step.beta))

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        check_latents(x0, "x0", ranks=(5,))
        check_same_shape(x, x0)
        s, alpha, beta = scalar_noise_level(step.s, "TTC"), float(step.alpha), float(step.beta)
        if self._ref is None or s > self.s_max or beta <= 0.0 or self._ref.shape[0] != x0.shape[0]:
            return x0
        ref = self._ref.to(x0.device, x0.dtype)
        # 1. Reference-guided correction: re-noise the prediction, denoise it with the first frame as context.
        x0_ref = self._x0(x0 * alpha + self._noise(x0, step, 0) * beta, step, ref)
        # 2. Noise-level restoration: back to the current level with fresh noise.
        x_new = x0_ref * alpha + self._noise(x0, step, 1) * beta
        # 3. Context-aware re-denoising with the chunk's own context; continue the path from x_new.
        x0_new = self._x0(x_new, step, self._ctx)
        c0, c1 = float(step.c0), float(step.c1)
        out = x0_new if c0 <= 0.0 or c1 == 0.0 else x0_new + (x_new - x) * (c1 / c0)
        check_finite(out, "TTC-corrected x0")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ttc", "s_max": self.s_max, "frames": self.frames, "prediction": self.prediction,
                "seed": self.seed}  # fmt: skip
