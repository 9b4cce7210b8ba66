"""Input checks shared by the core: clear errors that name the problem and what is allowed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

__all__ = ["check_choice", "check_finite", "check_latents", "check_same_shape", "scalar_noise_level"]


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise ``ValueError`` listing the allowed values when ``value`` is not one of them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")


def check_latents(x: Any, name: str = "latents", *, ranks: tuple[int, ...] = (4, 5)) -> Tensor:
    """Check a latent tensor: a floating tensor of rank 5 ``(B, C, F, H, W)`` or 4 ``(B, C, H, W)``, non-empty."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() not in ranks:
        layouts = {5: "(B, C, F, H, W)", 4: "(B, C, H, W) frames", 3: "(B, N, C) tokens"}
        want = " or ".join(f"rank {r} {layouts.get(r, '')}".strip() for r in ranks)
        raise ValueError(f"{name} has shape {tuple(x.shape)} (rank {x.dim()}); expected {want}")
    if x.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating tensor (float32, float16, bfloat16, float64), got {x.dtype}"
        )
    return x


def check_finite(x: Tensor, name: str = "latents") -> Tensor:
    """Raise ``FloatingPointError`` if ``x`` holds NaN or inf (never propagate them silently).

    One float32 sum (a single read) screens the tensor: any NaN or inf makes it non-finite. Only then is the
    tensor inspected element-wise, to say how many values are bad.
    """
    if not bool(torch.isfinite(x.sum(dtype=torch.float32))) and not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise FloatingPointError(
            f"{name} holds non-finite values ({n_nan} NaN, {n_inf} inf) in shape {tuple(x.shape)}"
        )
    return x


def check_same_shape(a: Tensor, b: Tensor, names: tuple[str, str] = ("x", "x0")) -> None:
    """Raise ``ValueError`` if two tensors that must pair element-wise differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} {tuple(a.shape)} and {names[1]} {tuple(b.shape)} must have the same shape"
        )


def scalar_noise_level(s: float | Tensor, who: str) -> float:
    """A step's one noise level ``s`` as a float; ``ValueError`` naming ``who`` for per-token levels."""
    if isinstance(s, Tensor) and s.numel() > 1:
        raise ValueError(f"{who} needs one noise level per step (per-token noise levels are not supported)")
    return float(s)
