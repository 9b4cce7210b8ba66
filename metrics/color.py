"""Colour statistics per frame: channel means/stds, CIELAB, luma, clipping, HSV saturation, contrast.

Frames are ``(T, 3, H, W)`` float in [0, 1], sRGB-encoded RGB (what video files hold). Every statistic is one
number per frame, signed where drift has a direction (a brightening video raises ``luma_mean``; a colour cast
moves ``lab_a``/``lab_b``; saturation creep raises ``saturation``).

Definitions (units in brackets):

- ``mean_r/g/b``, ``std_r/g/b``: per-channel mean and population std of sRGB values [0-1].
- ``lab_l/a/b``: mean CIELAB of the pixels (sRGB -> linear -> XYZ -> Lab, D65 white, IEC 61966-2-1 and CIE 15)
  [Lab units, L in 0-100].
- ``contrast``: population std of L* over the frame's pixels [L units].
- ``luma_mean``, ``luma_p99``: mean and 99th percentile of Rec. 709 luma ``Y' = .2126 R' + .7152 G' + .0722 B'``
  on the encoded values [0-1]. The percentile is the nearest-rank (inverted-CDF) value, exact.
- ``clip_high``, ``clip_low``: fraction of pixels with at least one channel at the top (>= 254.5/255) or bottom
  (<= 0.5/255) code value, i.e. blown highlights and crushed shadows [0-1].
- ``saturation``: mean HSV saturation ``(max - min) / max`` (0 for black) [0-1].

Example:
    >>> stats = color_stats(torch.rand(4, 3, 32, 32))
    >>> sorted(stats)[:3], stats["lab_l"].shape
    (['clip_high', 'clip_low', 'contrast'], torch.Size([4]))
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from vidfix.metrics.layout import check_frames

__all__ = [
    "COLOR_STATS",
    "LUMA_WEIGHTS",
    "SRGB_TO_LINEAR_U8",
    "color_stats",
    "color_stats_and_luma",
    "delta_e",
    "kth_smallest",
    "lab_to_rgb",
    "luma",
    "rgb_to_lab",
    "srgb_to_linear",
]

COLOR_STATS: tuple[str, ...] = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "lab_l",
    "lab_a",
    "lab_b",
    "contrast",
    "luma_mean",
    "luma_p99",
    "clip_high",
    "clip_low",
    "saturation",
)
LUMA_WEIGHTS: tuple[float, float, float] = (0.2126, 0.7152, 0.0722)  # Rec. 709

# Linear sRGB -> XYZ (IEC 61966-2-1), rows divided by the D65 white (Xn, Yn, Zn) so that white maps to (1, 1, 1).
_WHITE = (0.95047, 1.0, 1.08883)
_RGB2XYZ = (
    (0.4124564, 0.3575761, 0.1804375),
    (0.2126729, 0.7151522, 0.0721750),
    (0.0193339, 0.1191920, 0.9503041),
)
_EPS = (6.0 / 29.0) ** 3  # CIE 15 breakpoint of f(t)
_HIGH = 254.5 / 255.0
_LOW = 0.5 / 255.0


def _matrix(device: torch.device, dtype: torch.dtype) -> Tensor:
    m = torch.tensor(_RGB2XYZ, dtype=torch.float64)
    return (m / torch.tensor(_WHITE, dtype=torch.float64)[:, None]).to(device=device, dtype=dtype)


def _on_cpu(x: Tensor) -> bool:
    return x.device.type == "cpu" and not x.requires_grad


def _pow_(x: Tensor, exponent: float) -> Tensor:
    """``x ** exponent`` in place on a fresh tensor ``x``.

    numpy's float32 power and cbrt are several times faster than torch's on CPU; same values to float32 rounding.
    """
    if _on_cpu(x) and x.is_contiguous():
        xn = x.numpy()
        if exponent == 1.0 / 3.0:
            np.cbrt(xn, out=xn)
        else:
            np.power(xn, np.asarray(exponent, dtype=xn.dtype), out=xn)
        return x
    return x.pow_(exponent)


def kth_smallest(x: Tensor, k: int) -> Tensor:
    """The ``k``-th smallest value (1-based) of each row of ``x`` (T, N): ``(T,)``; exact (a partial sort)."""
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"k must be in 1..{x.shape[1]}, got {k}")
    if _on_cpu(x):
        xn = x.contiguous().numpy()
        return torch.from_numpy(np.ascontiguousarray(np.partition(xn, k - 1, axis=1)[:, k - 1]))
    return torch.kthvalue(x, k, dim=1).values


def srgb_to_linear(x: Tensor) -> Tensor:
    """sRGB decoding (IEC 61966-2-1): encoded values in [0, 1] to linear light.

    Written without ``torch.where`` (slow on CPU): the two branches meet at 0.04045, so
    ``pow(max(x, .04045)) + (min(x, .04045) - .04045) / 12.92`` is the same function.
    """
    knee = 0.04045
    out = _pow_(x.clamp_min(knee).add_(0.055).mul_(1 / 1.055), 2.4)
    return out.add_(x.clamp_max(knee), alpha=1 / 12.92).sub_(knee / 12.92)


# sRGB decoding of every 8-bit code value: exact, and one table look-up instead of a power per pixel.
SRGB_TO_LINEAR_U8: np.ndarray = (
    lambda c: np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)
)(np.arange(256) / 255.0)


def _linear_to_srgb(x: Tensor) -> Tensor:
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(0.0031308) ** (1 / 2.4) - 0.055)


def _lab_f(t: Tensor) -> Tensor:
    # CIE f(t): cbrt above (6/29)^3, linear below; the branches meet there, so max/min pick them without a where.
    slope = 1 / (3 * (6.0 / 29.0) ** 2)
    return _pow_(t.clamp_min(_EPS), 1.0 / 3.0).add_(t.clamp_max(_EPS), alpha=slope).sub_(_EPS * slope)


def rgb_to_lab(frames: Tensor) -> Tensor:
    """CIELAB (D65) of every pixel: ``(T, 3, H, W)`` sRGB in [0, 1] to ``(T, 3, H, W)`` (L*, a*, b*)."""
    check_frames(frames)
    lin = srgb_to_linear(frames)
    xyz = torch.einsum("ij,tjhw->tihw", _matrix(frames.device, frames.dtype), lin)  # (T, 3, H, W) / white
    f = _lab_f(xyz)
    fx, fy, fz = f.unbind(1)  # (T, H, W) each
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)  # (T, 3, H, W)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_lab` (for building test colours): ``(..., 3)`` Lab to ``(..., 3)`` sRGB, unclipped."""
    lab = lab.to(torch.float64)
    fy = (lab[..., 0] + 16) / 116
    f = torch.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], dim=-1)  # (..., 3)
    t = torch.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    lin = t @ torch.linalg.inv(_matrix(lab.device, torch.float64)).T  # (..., 3)
    return _linear_to_srgb(lin)


def luma(frames: Tensor) -> Tensor:
    """Rec. 709 luma of sRGB-encoded frames: ``(T, 3, H, W)`` to ``(T, H, W)`` in [0, 1]."""
    check_frames(frames)
    w = torch.tensor(LUMA_WEIGHTS, device=frames.device, dtype=frames.dtype)
    return torch.einsum("c,tchw->thw", w, frames)


def delta_e(lab: Tensor, reference: Tensor) -> Tensor:
    """CIE76 colour difference ``||lab - reference||`` over the last axis (Lab triples; broadcasts)."""
    return torch.linalg.vector_norm(lab - reference, dim=-1)


def _centered_var(x: Tensor, mean: Tensor) -> Tensor:
    # Centred two-pass variance: E[x^2] - E[x]^2 in float32 leaves ~1e-7 noise, and its square root ~3e-4.
    d = x - mean[..., None]
    return (d * d).sum(-1) / x.shape[-1]


@torch.no_grad()
def color_stats(frames: Tensor) -> dict[str, Tensor]:
    """Colour statistics of each frame (module docstring): ``(T, 3, H, W)`` in [0, 1] to ``{name: (T,)}``."""
    check_frames(frames)
    return color_stats_and_luma(frames)[0]


def color_stats_and_luma(frames: Tensor, linear: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """:func:`color_stats` and the luma planes ``(T, H, W)`` it computes on the way (no input checks).

    ``linear``: the frames already decoded to linear light (e.g. by :data:`SRGB_TO_LINEAR_U8` from 8-bit values).
    """
    t = frames.shape[0]
    x = frames.reshape(t, 3, -1)  # (T, 3, N)
    n = x.shape[2]
    mean = x.sum(2) / n  # (T, 3); plain sums: var_mean is far slower on CPU
    var = _centered_var(x, mean)
    w = torch.tensor(LUMA_WEIGHTS, device=x.device, dtype=x.dtype)
    y = (w[None, :] @ x)[:, 0]  # (T, N) luma

    r, g, b = x.unbind(1)  # (T, N) each; elementwise max/min beat a strided amax over channels
    hi = torch.maximum(torch.maximum(r, g), b)
    lo = torch.minimum(torch.minimum(r, g), b)
    saturation = (hi - lo).div_(hi.clamp_min(1e-12)).sum(1) / n

    lin = srgb_to_linear(x) if linear is None else linear.reshape(t, 3, -1)  # (T, 3, N)
    xyz = _matrix(x.device, x.dtype) @ lin  # (T, 3, N) XYZ / white
    f = _lab_f(xyz)  # (T, 3, N); Lab is affine in f, so mean Lab comes from mean f
    f_mean = f.sum(2) / n  # (T, 3)
    fy_var = _centered_var(f[:, 1], f_mean[:, 1])

    return {
        "mean_r": mean[:, 0],
        "mean_g": mean[:, 1],
        "mean_b": mean[:, 2],
        "std_r": var[:, 0].sqrt(),
        "std_g": var[:, 1].sqrt(),
        "std_b": var[:, 2].sqrt(),
        "lab_l": 116 * f_mean[:, 1] - 16,
        "lab_a": 500 * (f_mean[:, 0] - f_mean[:, 1]),
        "lab_b": 200 * (f_mean[:, 1] - f_mean[:, 2]),
        "contrast": 116 * fy_var.sqrt(),
        "luma_mean": mean @ w,
        "luma_p99": kth_smallest(y, max(1, math.ceil(0.99 * n))),
        "clip_high": (hi >= _HIGH).sum(1).to(x.dtype) / n,
        "clip_low": (lo <= _LOW).sum(1).to(x.dtype) / n,
        "saturation": saturation,
    }, y.view(t, *frames.shape[2:])  # (T, H, W)
