"""The analysis grid, and every per-frame statistic on it in one fast pass (the engine of :func:`measure`).

**Grid.** Each frame is resized so that its short side is ``grid`` pixels (default :data:`GRID`, 160), keeping
the aspect ratio, with torch's antialiased bilinear filter (the triangle filter of PIL and of torchvision's
``Resize(antialias=True)``); frames already that small are used as they are (never upscaled), and
``grid=None`` uses every pixel. So the statistics are measured at one scale whatever the resolution: a 4K clip
and its 1080p copy give the same numbers, and nothing aliases (a grid of point samples would fold detail finer
than the grid into it, and the sign of a sharpness change could then depend on the grid). 8-bit frames give an
8-bit grid (rounded, as a smaller video file would hold); float frames a float32 grid.

**Statistics** (one number per frame; the torch functions in :mod:`vidfix.metrics.color`,
:mod:`~vidfix.metrics.sharpness` and :mod:`~vidfix.metrics.similarity` define them and are the oracles this
module is tested against): channel means and stds, mean CIELAB, contrast (std of L*), luma mean and 99th
percentile, clipped shares, HSV saturation, Laplacian variance, Haar detail energy shares, and the 8x8 block
moments of luma that SSIM needs. Frames are ``(h, w, 3)`` numpy arrays (HWC); each statistic is a handful of
OpenCV calls, so a 160x285 grid costs well under a millisecond per frame (``vidfix bench metrics``).

Example:
    >>> grid_shape(2160, 3840)
    (160, 284)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from vidfix.metrics.color import _EPS, _HIGH, _LOW, LUMA_WEIGHTS, SRGB_TO_LINEAR_U8, _matrix

__all__ = [
    "GRID",
    "GridStats",
    "block_ssim",
    "cv2_threads",
    "flicker_pair",
    "grid_shape",
    "grid_stats",
    "to_grid",
]

GRID = 160  # default short side of the analysis grid
BLOCK = 8  # SSIM block, and the coarsest Haar level (3 levels)
_SLOPE = 1 / (3 * (6.0 / 29.0) ** 2)  # CIE f(t) below its breakpoint
_XYZ = _matrix(torch.device("cpu"), torch.float64).numpy().astype(np.float32)  # (3, 3) RGB -> XYZ / white
_LUMA = np.array([LUMA_WEIGHTS], dtype=np.float32)  # (1, 3)
_LUT = SRGB_TO_LINEAR_U8.reshape(1, 256)  # sRGB code -> linear light


def _cv2() -> Any:
    """OpenCV, imported on first use (its type stubs reject the scalar arguments used here, so it is untyped)."""
    import cv2

    return cv2


@contextmanager
def cv2_threads(n: int) -> Iterator[None]:
    """OpenCV's thread count set to ``n`` inside the block (the grid is small: one thread is fastest)."""
    cv2 = _cv2()

    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def grid_shape(height: int, width: int, grid: int | None = GRID) -> tuple[int, int]:
    """``(h, w)`` of the analysis grid of ``height x width`` frames: short side ``grid``, never upscaled."""
    if grid is None or min(height, width) <= grid:
        return height, width
    scale = grid / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_grid(frames: Any, shape: tuple[int, int]) -> np.ndarray:
    """Frames on the grid, ``(B, h, w, 3)``: uint8 from uint8 ``(B, H, W, 3)`` numpy, else float32 in [0, 1].

    ``frames`` is decoded uint8 ``(B, H, W, 3)`` or a float tensor ``(B, 3, H, W)`` in [0, 1] (any device).
    """
    if isinstance(frames, np.ndarray):
        if frames.shape[1:3] == shape:
            return frames
        x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (B, 3, H, W) channels-last view, no copy
        out = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False)
        return np.ascontiguousarray(
            out.permute(0, 2, 3, 1).numpy()
        )  # (B, h, w, 3) uint8 (no copy if channels-last)
    x = frames.detach().float()
    if tuple(x.shape[-2:]) != shape:
        x = F.interpolate(x, size=shape, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).cpu().numpy())  # (B, h, w, 3) float32


@dataclass
class GridStats:
    """Per-frame statistics of a batch of grid frames, and the luma planes later steps need."""

    stats: dict[str, np.ndarray]  # name -> (B,) float64
    luma: list[np.ndarray]  # B planes (h8, w8) float32, cropped to a multiple of 8
    block_mean: list[np.ndarray]  # B planes (h8 / 8, w8 / 8): 8x8 block means of luma
    block_sq: list[np.ndarray]  # B planes (h8 / 8, w8 / 8): 8x8 block means of luma squared
    thumb: np.ndarray  # (B, 4) 2x2 luma thumbnail (quadrant means)


def _half(a: np.ndarray) -> np.ndarray:
    cv2 = _cv2()

    return cv2.resize(a, (a.shape[1] // 2, a.shape[0] // 2), interpolation=cv2.INTER_AREA)  # 2x2 means


def _kth(y: np.ndarray, k: int) -> float:
    """The ``k``-th smallest value (1-based) of a float32 plane, exactly, without sorting it all.

    A sparse sample gives a threshold safely below the answer; only the values above it are partially sorted.
    """
    cv2 = _cv2()

    flat = y.reshape(-1)
    n = flat.size
    if n > 4096:
        sample = flat[::16].copy()
        m = sample.size
        q = max(0, int(m * k / n - 4 * math.sqrt(m)) - 1)
        threshold = float(np.partition(sample, q)[q])
        mask = cv2.compare(flat, threshold, cv2.CMP_GE).reshape(-1).view(bool)
        above = flat[mask]
        below = n - above.size
        if below < k:
            return float(np.partition(above, k - below - 1)[k - below - 1])
    return float(np.partition(flat, k - 1)[k - 1])


def _mean_var(x: np.ndarray) -> tuple[float, float]:
    """Mean and population variance of a single-channel array (sums in float64: OpenCV's, several times faster
    than ``meanStdDev``)."""
    cv2 = _cv2()

    n = x.shape[0] * x.shape[1]
    mean = cv2.sumElems(x)[0] / n
    return mean, max(cv2.norm(x, cv2.NORM_L2SQR) / n - mean * mean, 0.0)


def _lab_f(lin: np.ndarray) -> tuple[np.ndarray, float]:
    """CIE f of X/Xn, Y/Yn, Z/Zn in place over linear RGB ``(h, w, 3)``, and the variance of f(Y/Yn).

    Lab is affine in f, so mean Lab comes from mean f. f(t) is the cube root above (6/29)^3 and linear below;
    the linear branch (very dark pixels) is only computed when a frame has any.
    """
    cv2 = _cv2()

    h, w = lin.shape[:2]
    xyz = cv2.transform(lin, _XYZ)  # (h, w, 3) X/Xn, Y/Yn, Z/Zn
    flat = xyz.reshape(h, w * 3)  # single-channel view: OpenCV scalars apply to every value
    dark = cv2.countNonZero(cv2.compare(flat, _EPS, cv2.CMP_LT))
    small = cv2.min(flat, _EPS) if dark else None
    if dark:
        cv2.max(flat, _EPS, dst=flat)
    np.cbrt(xyz, out=xyz)
    if small is not None:
        cv2.scaleAdd(small, _SLOPE, flat, dst=flat)
        cv2.subtract(flat, _EPS * _SLOPE, dst=flat)  # f(t) = t / (3 d^2) + 4/29 below the knee
    return xyz, _mean_var(cv2.extractChannel(xyz, 1))[1]


def _frame(g: np.ndarray) -> tuple[dict[str, float], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Statistics of one grid frame ``(h, w, 3)`` (uint8, or float32 in [0, 1])."""
    cv2 = _cv2()

    h, w = g.shape[:2]
    n = h * w
    channels = cv2.split(g)
    r, gg, b = channels
    hi, lo = cv2.max(cv2.max(r, gg), b), cv2.min(cv2.min(r, gg), b)  # (h, w) channel max and min
    moments = [_mean_var(c) for c in channels]
    scale = 255.0 if g.dtype == np.uint8 else 1.0
    mean = np.array([m for m, _ in moments]) / scale  # (3,)
    std = np.sqrt([v for _, v in moments]) / scale  # (3,) population std
    if g.dtype == np.uint8:
        lin = cv2.LUT(g, _LUT)  # (h, w, 3) float32 linear light, exact per code
        clip_high, clip_low = cv2.countNonZero(cv2.compare(hi, 254, cv2.CMP_GT)), n - cv2.countNonZero(lo)
        sat = cv2.divide(cv2.subtract(hi, lo), cv2.max(hi, 1), scale=1.0, dtype=cv2.CV_32F)
        y = cv2.transform(g.astype(np.float32), _LUMA / np.float32(255))  # (h, w) Rec.709 luma in [0, 1]
    else:
        knee = np.float32(0.04045)
        lin = np.power((np.maximum(g, knee) + np.float32(0.055)) / np.float32(1.055), np.float32(2.4))
        lin += (np.minimum(g, knee) - knee) / np.float32(12.92)
        clip_high = cv2.countNonZero(cv2.compare(hi, _HIGH, cv2.CMP_GE))
        clip_low = cv2.countNonZero(cv2.compare(lo, _LOW, cv2.CMP_LE))
        sat = cv2.divide(cv2.subtract(hi, lo), cv2.max(hi, 1e-12))
        y = cv2.transform(g, _LUMA)
    f, fy_var = _lab_f(lin)
    f_mean = cv2.mean(f)[:3]

    lap = cv2.Laplacian(y, cv2.CV_32F, ksize=1)[1:-1, 1:-1]  # 4-neighbour kernel, interior only

    # Haar detail energy per level: the AC energy of each approximation is n * var(block means).
    h8, w8 = h // BLOCK * BLOCK, w // BLOCK * BLOCK
    y8 = y[:h8, :w8]
    a1 = _half(y8)
    a2 = _half(a1)
    a3 = _half(a2)  # 8x8 block means
    var = [_mean_var(a)[1] for a in (y8, a1, a2, a3)]
    shares = [(var[k] - var[k + 1]) / var[0] if var[0] > 0 else 0.0 for k in range(3)]
    sq = cv2.resize(cv2.multiply(y8, y8), (w8 // BLOCK, h8 // BLOCK), interpolation=cv2.INTER_AREA)

    stats = {
        "mean_r": mean[0],
        "mean_g": mean[1],
        "mean_b": mean[2],
        "std_r": std[0],
        "std_g": std[1],
        "std_b": std[2],
        "lab_l": 116 * f_mean[1] - 16,
        "lab_a": 500 * (f_mean[0] - f_mean[1]),
        "lab_b": 200 * (f_mean[1] - f_mean[2]),
        "contrast": 116 * math.sqrt(fy_var),
        "luma_mean": float(mean @ np.asarray(LUMA_WEIGHTS)),
        "luma_p99": _kth(y, max(1, math.ceil(0.99 * n))),
        "clip_high": clip_high / n,
        "clip_low": clip_low / n,
        "saturation": cv2.mean(sat)[0],
        "sharpness": _mean_var(lap)[1] * 255.0**2,
        "wavelet_l1": max(shares[0], 0.0),
        "wavelet_l2": max(shares[1], 0.0),
        "wavelet_l3": max(shares[2], 0.0),
    }
    hq, wq = h // 2, w // 2
    thumb = np.array(
        [
            cv2.mean(q)[0]
            for q in (y[:hq, :wq], y[:hq, wq : 2 * wq], y[hq : 2 * hq, :wq], y[hq : 2 * hq, wq : 2 * wq])
        ]
    )
    return stats, y8, a3, sq, thumb


def grid_stats(grid: np.ndarray) -> GridStats:
    """Per-frame statistics of grid frames ``(B, h, w, 3)`` (uint8, or float32 in [0, 1]); h, w >= 8."""
    per = [_frame(g if g.flags.c_contiguous else np.ascontiguousarray(g)) for g in grid]
    names = per[0][0].keys()
    return GridStats(
        stats={k: np.array([p[0][k] for p in per], dtype=np.float64) for k in names},
        luma=[p[1] for p in per],
        block_mean=[p[2] for p in per],
        block_sq=[p[3] for p in per],
        thumb=np.stack([p[4] for p in per]),
    )


def block_ssim(
    a: tuple[np.ndarray, np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> float:
    """Block SSIM (8x8 windows) of two luma planes from their ``(plane, block means, block mean squares)``."""
    cv2 = _cv2()

    (pa, ma, sa), (pb, mb, sb) = a, b
    h8, w8 = pa.shape
    cross = cv2.resize(cv2.multiply(pa, pb), (w8 // BLOCK, h8 // BLOCK), interpolation=cv2.INTER_AREA)
    c1, c2 = 0.01**2, 0.03**2
    mm = ma * mb
    num = (2 * mm + c1) * (2 * (cross - mm) + c2)
    den = (ma * ma + mb * mb + c1) * (sa + sb - ma * ma - mb * mb + c2)
    return float((num / den).mean(dtype=np.float64))


def flicker_pair(a: np.ndarray, b: np.ndarray) -> float:
    """VBench temporal flickering of grid frame ``b`` after ``a``: ``1 - mean |b - a|`` on [0, 1] values."""
    cv2 = _cv2()

    diff = float(np.mean(cv2.mean(cv2.absdiff(a, b))[:3]))  # mean over pixels and channels
    return 1.0 - (diff / 255.0 if a.dtype == np.uint8 else diff)
