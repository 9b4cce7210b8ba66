"""Frame-to-frame similarity: SSIM to an anchor or at a lag, and VBench temporal flickering.

Luma planes are ``(T, H, W)`` in [0, 1]; frames are ``(T, 3, H, W)`` in [0, 1].

SSIM (Wang et al. 2004, constants ``K1 = 0.01``, ``K2 = 0.03``, data range 1) comes with two windows:

- ``"block"``: uniform 8x8 non-overlapping windows (the plane is cropped to a multiple of 8). The moments are
  block means, so one frame's moments are computed once and reused for every pair it is in; this is what
  :func:`vidfix.metrics.measure` tracks per frame (cheap enough to run beside decoding).
- ``"gaussian"``: the standard 11x11 Gaussian window, sigma 1.5, over the valid region (no padding).

Both use population moments (window weights sum to 1), so ``ssim(x, x) == 1``.

Flicker (VBench temporal flickering): ``(255 - mean |f_t - f_(t-1)|) / 255`` on 8-bit frames, i.e.
``1 - mean |f_t - f_(t-1)|`` on values in [0, 1] (identical for 8-bit video); 1 means no change.

Example:
    >>> y = torch.rand(3, 64, 64)
    >>> ssim(y, y[:1]).shape                      # each frame against the first
    torch.Size([3])
"""

from __future__ import annotations

import math
from typing import Literal, TypeAlias, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["BLOCK", "SsimWindow", "block_moments", "flicker", "ssim", "ssim_from_moments"]

SsimWindow: TypeAlias = Literal["block", "gaussian"]
BLOCK = 8
_C1 = 0.01**2
_C2 = 0.03**2


def _block_mean(x: Tensor) -> Tensor:
    return F.avg_pool2d(x[:, None], BLOCK)[:, 0]  # (T, H/8, W/8)


def _crop8(y: Tensor) -> Tensor:
    if y.dim() != 3 or y.shape[1] < BLOCK or y.shape[2] < BLOCK:
        raise ValueError(
            f"SSIM needs luma planes (T, H, W) of at least {BLOCK}x{BLOCK}, got {tuple(y.shape)}"
        )
    return y[:, : y.shape[1] // BLOCK * BLOCK, : y.shape[2] // BLOCK * BLOCK]


def block_moments(y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Crop to a multiple of 8 and return ``(plane, mean, mean of squares)`` per 8x8 block, for :func:`ssim_from_moments`."""
    y = _crop8(y)
    return y, _block_mean(y), _block_mean(y * y)


def ssim_from_moments(x: tuple[Tensor, Tensor, Tensor], y: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """Block SSIM from two :func:`block_moments` results (frames pair up, or one side has T = 1): ``(T,)``."""
    (px, mx, sx), (py, my, sy) = x, y
    cov = _block_mean(px * py) - mx * my  # (T, H/8, W/8)
    var_x = sx - mx * mx
    var_y = sy - my * my
    num = (2 * mx * my + _C1) * (2 * cov + _C2)
    den = (mx * mx + my * my + _C1) * (var_x + var_y + _C2)
    return (num / den).mean((1, 2))


def _gaussian_window(device: torch.device, dtype: torch.dtype) -> Tensor:
    g = torch.tensor([math.exp(-((i - 5) ** 2) / (2 * 1.5**2)) for i in range(11)], dtype=torch.float64)
    return (g / g.sum()).to(device=device, dtype=dtype)


def _gaussian_blur(x: Tensor) -> Tensor:
    g = _gaussian_window(x.device, x.dtype)
    x = F.conv2d(x[:, None], g.view(1, 1, 1, 11))  # (T, 1, H, W-10)
    return F.conv2d(x, g.view(1, 1, 11, 1))[:, 0]  # (T, H-10, W-10)


@torch.no_grad()
def ssim(x: Tensor, y: Tensor, *, window: SsimWindow = "block") -> Tensor:
    """Mean SSIM of luma planes ``x`` (T, H, W) against ``y`` (T, H, W) or (1, H, W), per frame: ``(T,)``."""
    if window not in get_args(SsimWindow):
        raise ValueError(
            f"unknown window {window!r}; allowed: {', '.join(repr(w) for w in get_args(SsimWindow))}"
        )
    if x.dim() != 3 or y.dim() != 3 or x.shape[1:] != y.shape[1:] or y.shape[0] not in (1, x.shape[0]):
        raise ValueError(
            f"SSIM needs planes (T, H, W) against (T or 1, H, W), got {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if window == "block":
        return ssim_from_moments(block_moments(x), block_moments(y))
    if x.shape[1] < 11 or x.shape[2] < 11:
        raise ValueError(f"Gaussian SSIM needs planes of at least 11x11, got {tuple(x.shape[1:])}")
    y = y.expand_as(x)
    mx, my = _gaussian_blur(x), _gaussian_blur(y)
    var_x = _gaussian_blur(x * x) - mx * mx
    var_y = _gaussian_blur(y * y) - my * my
    cov = _gaussian_blur(x * y) - mx * my
    num = (2 * mx * my + _C1) * (2 * cov + _C2)
    den = (mx * mx + my * my + _C1) * (var_x + var_y + _C2)
    return (num / den).mean((1, 2))


@torch.no_grad()
def flicker(frames: Tensor, previous: Tensor | None = None) -> Tensor:
    """VBench temporal flickering of each frame against the one before: ``(T, 3, H, W)`` in [0, 1] to ``(T,)``.

    The first frame has no predecessor unless ``previous`` (``(1, 3, H, W)``) is given; its value is NaN.
    """
    if frames.dim() != 4:
        raise ValueError(f"flicker needs frames (T, 3, H, W), got {tuple(frames.shape)}")
    first = (
        frames.new_full((1,), float("nan"))
        if previous is None
        else (frames[:1] - previous).abs_().mean((1, 2, 3))
    )
    rest = (frames[1:] - frames[:-1]).abs_().mean((1, 2, 3))  # (T - 1,)
    return 1.0 - torch.cat([first, rest])
