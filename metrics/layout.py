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
error, because it almost always means the wrong range was declared. Two more mistakes are caught on the whole
input: a uint16 array holding only 8-bit values (0-255) with no range declared is an error (it would read as
black), and data entirely in [0, 1] declared as ``(-1, 1)`` gives a :class:`DataRangeWarning` (it would read
as half as bright and half the contrast; a real [-1, 1] video almost always goes below 0).

A list or tuple of frames (arrays, tensors, or anything ``np.asarray`` takes, e.g. PIL images) is stacked along a
new first axis: ``layout="THWC"`` for frames ``(H, W, C)`` (the default), ``"TCHW"`` for frames ``(C, H, W)``.

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

import math
import warnings
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "LAYOUTS",
    "DataRangeWarning",
    "Layout",
    "as_frames",
    "as_videos",
    "check_frames",
    "check_layout",
    "stack_frames",
    "to_uint8",
]

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


class DataRangeWarning(UserWarning):
    """Data that fits a different value range than the one declared (measured as declared)."""


def stack_frames(x: Any, layout: Layout) -> Any:
    """A list or tuple of frames as one array (or tensor), stacked along a new first axis (T); others unchanged.

    Raises:
        ValueError: an empty list, frames of different shapes, or a layout whose first axis is not T.
    """
    if not isinstance(x, (list, tuple)):
        return x
    if layout not in ("THWC", "TCHW"):
        raise ValueError(
            f"a list of frames is stacked along a new first axis (T): pass layout='THWC' for frames (H, W, C) or "
            f"'TCHW' for frames (C, H, W), not {layout!r}"
        )
    if not x:
        raise ValueError("the list of frames is empty")
    items = [f.detach() if isinstance(f, Tensor) else np.asarray(f) for f in x]
    shapes = {tuple(f.shape) for f in items}
    if len(shapes) > 1:
        raise ValueError(f"the frames in the list differ in shape: {sorted(shapes)}")
    if all(isinstance(f, Tensor) for f in items):
        return torch.stack([f for f in items if isinstance(f, Tensor)])  # (T, ...)
    return np.stack([f.cpu().numpy() if isinstance(f, Tensor) else f for f in items])  # (T, ...)


def check_layout(shape: tuple[int, ...], layout: Layout) -> None:
    """Check an input's shape against its stated layout: rank, and a channel axis of 1-4 (messages show ``shape``).

    Raises:
        ValueError: unknown layout, wrong rank, a channel axis that is not 1-4, or an empty input.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; allowed: {', '.join(repr(v) for v in LAYOUTS)}")
    if len(shape) != len(layout):
        raise ValueError(
            f"video of shape {shape} (rank {len(shape)}) does not match layout {layout!r} (rank {len(layout)})"
            + _guess_layout(shape)
        )
    c = shape[_CHANNEL_AXIS[layout]]
    if c not in _CHANNELS:
        raise ValueError(
            f"video of shape {shape} has {c} channels on the C axis of layout {layout!r}; expected 1 (gray), "
            f"3 (RGB) or 4 (RGBA)" + _guess_layout(shape)
        )
    if math.prod(shape) == 0:
        raise ValueError(f"video is empty: shape {shape} in layout {layout!r}")


def check_values(
    vmin: float, vmax: float, *, dtype: Any, value_range: tuple[float, float] | None
) -> tuple[float, float]:
    """Check the value span ``[vmin, vmax]`` of a whole input against its range; returns the range used ``(lo, hi)``.

    Raises:
        ValueError: values well outside the range, non-finite values, or 8-bit values in a uint16 array with no
            range declared.

    Warns:
        DataRangeWarning: all values in [0, 1] while ``(-1, 1)`` (or another range below 0) was declared.
    """
    lo, hi = (float(v) for v in (value_range if value_range is not None else _default_range_of(dtype)))
    if not hi > lo:
        raise ValueError(f"value_range must be (lo, hi) with hi > lo, got {value_range}")
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        raise ValueError("video holds NaN or inf values")
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
    if value_range is None and _is_uint16(dtype) and vmax <= 255:
        raise ValueError(
            f"uint16 video holds values {vmin:g}-{vmax:g} only: 8-bit data in a 16-bit array? As 16-bit "
            "(0-65535) it would read as black; pass value_range=(0, 255), or convert it to uint8"
        )
    if lo < 0 <= vmin and vmax <= 1 + slack and hi - lo > 1.5:
        warnings.warn(
            f"video values span [{vmin:.4g}, {vmax:.4g}], all in [0, 1], but value_range is ({lo:g}, {hi:g}): "
            "data in [0, 1] declared as [-1, 1]? Measured as declared (half as bright, half the contrast); "
            "pass value_range=(0, 1) if it is [0, 1] data",
            DataRangeWarning,
            stacklevel=3,
        )
    return lo, hi


def _is_uint16(dtype: Any) -> bool:
    return dtype == np.uint16 or dtype == getattr(torch, "uint16", None)


def _default_range_of(dtype: Any) -> tuple[float, float]:
    if dtype in (np.uint8, torch.uint8):
        return (0.0, 255.0)
    if _is_uint16(dtype):
        return (0.0, 65535.0)
    if (isinstance(dtype, np.dtype) and dtype.kind == "f") or (
        isinstance(dtype, torch.dtype) and dtype.is_floating_point
    ):
        return (0.0, 1.0)
    raise TypeError(
        f"cannot infer the value range of dtype {dtype}; pass value_range=(lo, hi), e.g. (0, 255) or (-1, 1)"
    )


def value_span(x: Any) -> tuple[float, float]:
    """``(min, max)`` of an array or tensor (NaN if it holds any NaN), in one pass where the library allows."""
    if isinstance(x, Tensor):
        lo, hi = torch.aminmax(x.detach().float() if not x.is_floating_point() else x.detach())
        return float(lo), float(hi)
    a = np.asarray(x)
    return float(a.min()), float(a.max())


def _to_tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == np.uint16:  # torch has limited uint16 support: widen losslessly.
            return torch.from_numpy(x.astype(np.int32))
        if x.dtype.kind not in "uif":
            raise TypeError(f"{name} has dtype {x.dtype}; expected uint8, uint16 or a float dtype")
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(
        f"{name} must be a numpy array, a torch tensor or a list of frames, got {type(x).__name__}"
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
    check_data: bool = True,
) -> list[Tensor]:
    """Convert an array or tensor holding one or more videos to a list of ``(T, 3, H, W)`` float32 frames in [0, 1].

    Args:
        x: numpy array or torch tensor (any device; results stay on its device).
        layout: how ``x`` is laid out (see the module table); checked against ``x.ndim`` and the channel size.
        value_range: ``(lo, hi)`` mapped to (0, 1); default from the dtype (uint8 0-255, uint16 0-65535, float 0-1).
        check_data: check the values against the range (module docstring); off for slices of an input already
            checked whole (a dark slice of a uint16 video is not 8-bit data).

    Raises:
        ValueError: wrong rank for the layout, a channel axis that is not 1-4, empty input, values well outside
            the declared range, 8-bit values in uint16 with no range declared, or non-finite values.

    Warns:
        DataRangeWarning: data in [0, 1] declared as (-1, 1).
    """
    x = stack_frames(x, layout)
    t = _to_tensor(x, "video")
    shape = tuple(t.shape)
    check_layout(shape, layout)
    c = shape[_CHANNEL_AXIS[layout]]
    v = t if layout.startswith("B") else t.unsqueeze(0)  # batch axis first, B = 1 if absent
    v = v.permute(*_TO_BTCHW[layout])  # (B, T, C, H, W)
    v = v.float() if not v.is_floating_point() or v.dtype == torch.float64 else v.to(torch.float32)
    if check_data:
        vmin, vmax = value_span(v)
        lo, hi = check_values(vmin, vmax, dtype=x.dtype, value_range=value_range)
    else:
        lo, hi = (float(r) for r in (value_range if value_range is not None else _default_range_of(x.dtype)))
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
    check_data: bool = True,
) -> Tensor:
    """Convert one video to ``(T, 3, H, W)`` float32 frames in [0, 1]; see :func:`as_videos` for the options.

    Raises:
        ValueError: as :func:`as_videos`, or a batched layout holding more than one video.
    """
    videos = as_videos(x, layout=layout, value_range=value_range, check_data=check_data)
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
