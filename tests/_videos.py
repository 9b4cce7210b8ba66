"""Procedural test videos for the metrics tests, and drift injected into them frame by frame.

Videos are float64 numpy ``(T, H, W, 3)`` in [0, 1]; ``to_u8`` quantises them. The base scene is *stationary*:
a fixed smooth background with mid-range colours, two small squares moving across it, and fresh mild noise
each frame, so its true statistics do not change with time and every trend comes from the injected drift.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = [
    "ramp",
    "scene",
    "static",
    "to_u8",
    "with_blur",
    "with_brightness",
    "with_colour_cast",
    "with_contrast_loss",
    "with_saturation",
]

LUMA = np.array([0.2126, 0.7152, 0.0722])


def scene(t: int = 48, h: int = 64, w: int = 96, *, seed: int = 0, noise: float = 0.01) -> np.ndarray:
    """A stationary scene: smooth background, two moving squares, fresh noise per frame; values in [0.2, 0.75]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack(
        [
            0.45 + 0.15 * np.sin(2 * np.pi * (xx * 1.5 + 0.1)),
            0.45 + 0.12 * np.cos(2 * np.pi * (yy * 1.2 + xx * 0.5)),
            0.40 + 0.10 * np.sin(2 * np.pi * (yy * 2.0 - xx)),
        ],
        axis=-1,
    )
    texture = ndimage.gaussian_filter(rng.normal(0, 0.08, (h, w, 3)), sigma=(1.0, 1.0, 0))
    base = base + texture
    frames = np.repeat(base[None], t, axis=0)
    s = max(4, h // 6)
    for i in range(t):
        for k, colour in enumerate(([0.7, 0.3, 0.3], [0.3, 0.6, 0.7])):
            y0 = int((h - s) * (0.5 + 0.4 * np.sin(2 * np.pi * (i / t + 0.3 * k))))
            x0 = (int(i * (w - s) / t) + k * w // 2) % (w - s)
            frames[i, y0 : y0 + s, x0 : x0 + s] = colour
    frames += rng.normal(0, noise, frames.shape)
    return np.clip(frames, 0.2, 0.75)


def static(t: int = 24, h: int = 64, w: int = 96, *, seed: int = 0) -> np.ndarray:
    """The first frame of :func:`scene`, repeated: a video with exactly no change."""
    first = scene(1, h, w, seed=seed)[0]
    return np.repeat(first[None], t, axis=0)


def ramp(t: int) -> np.ndarray:
    """0 at the first frame to 1 at the last, linear: ``(T,)``."""
    return np.linspace(0.0, 1.0, t)


def to_u8(frames: np.ndarray) -> np.ndarray:
    """Quantise [0, 1] floats to uint8 (round half up), as an encoder would."""
    return np.floor(np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)


def with_brightness(frames: np.ndarray, delta: float) -> np.ndarray:
    """Add ``delta * ramp`` to every channel (a brightness ramp)."""
    return frames + delta * ramp(len(frames))[:, None, None, None]


def with_colour_cast(frames: np.ndarray, rgb: tuple[float, float, float]) -> np.ndarray:
    """Add ``rgb * ramp`` per channel (a growing colour cast)."""
    return frames + np.asarray(rgb)[None, None, None, :] * ramp(len(frames))[:, None, None, None]


def with_saturation(frames: np.ndarray, gain: float) -> np.ndarray:
    """Scale each pixel's chroma (distance from its luma) by ``1 + gain * ramp``: saturation creep."""
    y = (frames @ LUMA)[..., None]
    k = 1 + gain * ramp(len(frames))[:, None, None, None]
    return y + k * (frames - y)


def with_contrast_loss(frames: np.ndarray, loss: float) -> np.ndarray:
    """Shrink each frame towards its mean by ``1 - loss * ramp`` (contrast fading)."""
    m = frames.mean(axis=(1, 2), keepdims=True)
    k = 1 - loss * ramp(len(frames))[:, None, None, None]
    return m + k * (frames - m)


def with_blur(frames: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur growing from 0 to ``sigma`` pixels (progressive loss of detail)."""
    out = frames.copy()
    for i, s in enumerate(sigma * ramp(len(frames))):
        if s > 0:
            out[i] = ndimage.gaussian_filter(frames[i], sigma=(s, s, 0))
    return out


def three_scenes(t_each: int = 30, h: int = 64, w: int = 96, *, seed: int = 0) -> np.ndarray:
    """Three stationary shots cut together (cuts at ``t_each`` and ``2 * t_each``): each its own palette and level.

    The first is :func:`scene`; the second has its colour channels rotated and is brighter; the third is darker
    and bluer. No drift anywhere: every change between shots is a cut.
    """
    a = scene(t_each, h, w, seed=seed)
    b = np.clip(scene(t_each, h, w, seed=seed + 1)[..., [2, 0, 1]] + 0.2, 0, 1)
    c = np.clip(scene(t_each, h, w, seed=seed + 2) * np.array([0.5, 0.6, 1.1]) - 0.05, 0, 1)
    return np.concatenate([a, b, c])


def moving_square(
    t: int = 24, h: int = 64, w: int = 96, *, speed: float = 2.0, jitter: float = 0.0, seed: int = 0
) -> np.ndarray:
    """A textured square gliding right at ``speed`` px/frame over a fixed background; ``jitter`` adds a random
    shift of up to that many pixels per frame (a stuttering camera). ``speed=0, jitter=0``: a frozen video."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    background = np.stack(
        [0.4 + 0.2 * np.sin(6 * xx), 0.45 + 0.2 * np.cos(5 * yy), 0.5 + 0.1 * np.sin(4 * (xx + yy))], -1
    )
    background = background + ndimage.gaussian_filter(rng.normal(0, 0.1, (h, w, 3)), (1.5, 1.5, 0))
    s = h // 3
    patch = np.clip(0.6 + ndimage.gaussian_filter(rng.normal(0, 0.3, (s, s, 3)), (1, 1, 0)), 0, 1)
    frames = np.empty((t, h, w, 3))
    for i in range(t):
        dx, dy = rng.uniform(-jitter, jitter, 2) if jitter else (0.0, 0.0)
        frame = ndimage.shift(background, (dy, dx, 0), mode="nearest") if jitter else background.copy()
        x0 = round(4 + speed * i + dx) % (w - s)
        y0 = round((h - s) / 2 + dy)
        frame[y0 : y0 + s, x0 : x0 + s] = patch
        frames[i] = frame
    return np.clip(frames, 0, 1)
