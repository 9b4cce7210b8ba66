"""Epsilon scaling (Ning et al., ICLR 2024, arXiv 2308.15321): divide the predicted noise by ``scale``.

Published scales are 1.0006 to 1.017. With ``x = alpha x0 + beta eps``:

* VP / VE models: ``eps' = eps / scale`` at fixed ``x``, so ``x0' = x0 + (1 - 1/scale) beta eps / alpha``.
* Flow models: the noise part of the velocity ``v = eps - x0`` is scaled, ``v' = eps/scale - x0``, so the
  step's data prediction moves by ``(1 - 1/scale) beta eps`` (no division by ``alpha``, which is 0 at s = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vidfix._checks import check_finite, check_latents, check_same_shape
from vidfix.protocols import StepInfo

__all__ = ["EpsScaling"]


@dataclass(frozen=True, kw_only=True)
class EpsScaling:
    """Divide the predicted noise by ``scale`` (> 1 shrinks it; 1 is the identity)."""

    scale: float = 1.005
    check_finite: bool = True

    def __post_init__(self) -> None:
        if not self.scale > 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        check_latents(x0, "x0", ranks=(3, 4, 5))
        check_same_shape(x, x0)
        if self.scale == 1.0:
            return x0
        if step.param != "flow" and not isinstance(step.alpha, Tensor) and step.alpha <= 0.0:
            return x0  # zero terminal SNR (CogVideoX's first step): x = eps, no x0 to correct through eps
        k = 1.0 - 1.0 / self.scale
        noise = x - x0 * step.alpha  # beta * eps
        gain = k if step.param == "flow" else k / step.alpha
        out = x0 + noise * gain
        if self.check_finite:
            check_finite(out, "epsilon-scaled x0 (are x or x0 finite?)")
        return out

    def to_dict(self) -> dict[str, object]:
        return {"type": "eps_scaling", "scale": self.scale}
