"""Frames from arrays and tensors: one stated, checked layout and value range in, RGB frames out.

Everything in ``vidfix.metrics`` works on **frames** ``(T, 3, H, W)`` float32 in [0, 1] (RGB, sRGB-encoded),
or, straight from a decoder, on uint8 ``(T, H, W, 3)``. Inputs name their layout; nothing is guessed:

=========  ======================  ==================================================
layout     shape                   typical source
=========  ======================  ==================================================
``THWC``   ``(T, H, W, C)``        decoded video, numpy uint8 (the default)
``TCHW``   ``(T, C, H, W)``        torchvision-style frame stacks
``CTHW``   ``(C, T, H, W)``        one video of a ``(B, C, F, H, W)`` batch
``BCTHW``  ``(B, C, T, H, W)``     vidfix, Wan, HunyuanVideo, SkyReels decoded output
``BTCHW``  ``(B, T, C, H, W)``     CogVideoX decoded output
``BTHWC``  ``(B, T, H, W, C)``     diffusers ``pipe(..., output_type="np").frames``
=========  ======================  ==================================================

Value range: integers default to their full range (uint8 ``(0, 255)``, uint16 ``(0, 65535)``), floats to
``(0, 1)``; pass ``value_range=(-1, 1)`` for decoder output in [-1, 1]. Values may overshoot the declared range
by up to 5% of its width (decoders do); they are clamped, as a video encoder would. Anything further out is an
error, because it almost always means the wrong range was declared.

Channel conversions (documented, not guessed): C=1 (grayscale) is repeated to RGB; C=4 (RGBA) drops alpha
(colour channels used as stored, not composited); C=2 (gray + alpha) keeps gray. 16-bit integers keep their
precision (divided by 65535).

Example:
    >>> x = torch.rand(1, 3, 9, 32, 32) * 2 - 1              # (B, C, F, H, W) in [-1, 1]
    >>> frames = as_videos(x, layout="BCTHW", value_range=(-1, 1))[0]
    >>> frames.shape
    torch.Size([9, 3, 32, 32])
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor

__all__ = ["LAYOUTS", "Layout", "as_frames", "as_videos", "check_frames", "to_uint8"]

Layout: TypeAlias = Literal["THWC", "TCHW", "CTHW", "BCTHW", "BTCHW", "BTHWC"]
LAYOUTS: tuple[Layout, ...] = get_args(Layout)

_CHANNELS = (1, 2, 3, 4)
_OVERSHOOT = 0.05
# Permutation from each layout to (B, T, C, H, W); a missing B gets a leading axis of 1 first.
_TO_BTCHW: dict[str, tuple[int, ...]] = {
    "THWC": (0, 1, 4, 2, 3),
    "TCHW": (0, 1, 2, 3, 4),
    "CTHW": (0, 2, 1, 3, 4),
    "BCTHW": (0, 2, 1, 3, 4),
    "BTCHW": (0, 1, 2, 3, 4),
    "BTHWC": (0, 1, 4, 2, 3),
}
_CHANNEL_AXIS = {"THWC": 3, "TCHW": 1, "CTHW": 0, "BCTHW": 1, "BTCHW": 2, "BTHWC": 4}


def _to_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # torch has limited uint16 support: widen losslessly.
            return torch.from_numpy(x.astype(np.int32))
        if x.dtype.kind not in "uif":
            raise TypeError(f"{name} has dtype {x.dtype}; expected uint8, uint16 or a float dtype")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _default_range(x: Any) -> tuple[float, float]:
    dtype = x.dtype
    if dtype in (np.uint8, torch.uint8):
        return (0.0, 255.0)
    if dtype in (np.uint16, getattr(torch, "uint16", None)):
        return (0.0, 65535.0)
    if (isinstance(x, np.ndarray) and x.dtype.kind == "f") or (
        isinstance(x, Tensor) and x.is_floating_point()
    ):
        return (0.0, 1.0)
    raise TypeError(
        f"cannot infer the value range of dtype {dtype}; pass value_range=(lo, hi), e.g. (0, 255) or (-1, 1)"
    )


def _guess_layout(shape: tuple[int, ...]) -> str:
    """A hint for the error message only: which layouts would have a channel axis of size 1, 3 or 4."""
    fits = [lay for lay in LAYOUTS if len(lay) == len(shape) and shape[_CHANNEL_AXIS[lay]] in (1, 3, 4)]
    return f"; shape {shape} fits layout {' or '.join(repr(f) for f in fits)}" if fits else ""


def as_videos(
    x: Any,
    *,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
) -> list[Tensor]:
    """Convert an array or tensor holding one or more videos to a list of ``(T, 3, H, W)`` float32 frames in [0, 1].

    Args:
        x: numpy array or torch tensor (any device; results stay on its device).
        layout: how ``x`` is laid out (see the module table); checked against ``x.ndim`` and the channel size.
        value_range: ``(lo, hi)`` mapped to (0, 1); default from the dtype (uint8 0-255, uint16 0-65535, float 0-1).

    Raises:
        ValueError: wrong rank for the layout, a channel axis that is not 1-4, empty input, values well outside
            the declared range, or non-finite values.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(repr(v) for v in LAYOUTS)}")
    t = _to_tensor(x, "video")
    shape = tuple(t.shape)
    if t.dim() != len(layout):
        raise ValueError(
            f"video of shape {shape} (rank {t.dim()}) does not match layout {layout!r} (rank {len(layout)})"
            + _guess_layout(shape)
        )
    c = shape[_CHANNEL_AXIS[layout]]
    if c not in _CHANNELS:
        raise ValueError(
            f"video of shape {shape} has {c} channels on the C axis of layout {layout!r}; expected 1 (gray), "
            f"3 (RGB) or 4 (RGBA)" + _guess_layout(shape)
        )
    if t.numel() == 0:
        raise ValueError(f"video is empty: shape {shape} in layout {layout!r}")
    lo, hi = (float(v) for v in (value_range if value_range is not None else _default_range(x)))
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range}")

    v = t if layout.startswith("B") else t.unsqueeze(0)  # batch axis first, B = 1 if absent
    v = v.permute(*_TO_BTCHW[layout])  # (B, T, C, H, W)
    v = v.float() if not v.is_floating_point() or v.dtype == torch.float64 else v.to(torch.float32)
    if not bool(torch.isfinite(v).all()):
        raise ValueError("video holds NaN or inf values")
    vmin, vmax = float(v.min()), float(v.max())
    slack = _OVERSHOOT * (hi - lo)
    if vmin < lo - slack or vmax > hi + slack:
        hint = (
            " (looks like [-1, 1]: pass value_range=(-1, 1))" if vmin < 0 <= lo and vmin >= -1 - slack else ""
        )
        if vmax > 1.5 and hi <= 1:
            hint = " (looks like 0-255: pass value_range=(0, 255) or a uint8 array)"
        raise ValueError(
            f"video values span [{vmin:.4g}, {vmax:.4g}] but value_range is ({lo:g}, {hi:g}){hint}"
        )
    v = ((v - lo) / (hi - lo)).clamp_(0.0, 1.0)
    if c == 1:
        v = v.expand(-1, -1, 3, -1, -1)  # (B, T, 3, H, W) gray repeated
    elif c == 2:
        v = v[:, :, :1].expand(-1, -1, 3, -1, -1)  # (B, T, 3, H, W) gray kept, alpha dropped
    elif c == 4:
        v = v[:, :, :3]  # (B, T, 3, H, W) alpha dropped
    return [vid.contiguous() for vid in v]


def as_frames(
    x: Any,
    *,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
) -> Tensor:
    """Convert one video to ``(T, 3, H, W)`` float32 frames in [0, 1]; see :func:`as_videos` for the options.

    Raises:
        ValueError: as :func:`as_videos`, or a batched layout holding more than one video.
    """
    videos = as_videos(x, layout=layout, value_range=value_range)
    if len(videos) != 1:
        raise ValueError(
            f"layout {layout!r} holds {len(videos)} videos; pass one (x[i]) or use a function that takes several"
        )
    return videos[0]


def check_frames(frames: Any, name: str = "frames") -> Tensor:
    """Check canonical frames: a float tensor ``(T, 3, H, W)`` with T >= 1; values are assumed in [0, 1]."""
    if not isinstance(frames, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (T, 3, H, W) in [0, 1]; use as_frames() to convert")
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(
            f"{name} has shape {tuple(frames.shape)}; expected (T, 3, H, W); use as_frames() to convert"
        )
    if not frames.is_floating_point():
        raise TypeError(
            f"{name} must be floating point in [0, 1], got {frames.dtype}; use as_frames() to convert"
        )
    if frames.shape[0] == 0 or frames.shape[2] == 0 or frames.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(frames.shape)}")
    return frames


def to_uint8(frames: Tensor) -> np.ndarray:
    """Quantise ``(T, 3, H, W)`` frames in [0, 1] to uint8 ``(T, H, W, 3)`` (round half up), as an encoder sees them."""
    check_frames(frames)
    q = (frames.detach().float().clamp(0, 1) * 255.0 + 0.5).floor_().to(torch.uint8)
    return q.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (T, H, W, 3)
