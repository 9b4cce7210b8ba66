"""Write generated videos as .mp4 files (and side by side), for people to look at.

Videos here are one video ``(C, F, H, W)`` with C = 3 (RGB) or 1 (grey), values in ``value_range``.
Uses :func:`vidfix.metrics.write_video` when the metrics package provides it, else the diffusers runner's
H.264 writer (:func:`vidfix.pipelines.diffusers_run.write_video`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ["side_by_side", "to_uint8", "write_mp4"]


def to_uint8(video: Tensor, *, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """``(C, F, H, W)`` in ``value_range`` to uint8 RGB frames ``(F, H, W, 3)``."""
    if video.dim() != 4 or video.shape[0] not in (1, 3):
        raise ValueError(
            f"expected one RGB or grey video (C, F, H, W) with C in (1, 3), got {tuple(video.shape)}"
        )
    lo, hi = value_range
    x = ((video.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    x = x.expand(3, *x.shape[1:])  # (3, F, H, W)
    q = (x * 255.0 + 0.5).floor().to(torch.uint8)
    return q.permute(1, 2, 3, 0).contiguous().numpy()  # (F, H, W, 3)


def side_by_side(*videos: Tensor, gap: int = 2) -> Tensor:
    """Videos ``(C, F, H, W)`` of equal C, F, H next to each other, with a ``gap``-pixel dark border: ``(C, F, H, sum W)``."""
    if not videos:
        raise ValueError("need at least one video")
    C, F, H, _ = videos[0].shape
    sep = videos[0].new_full((C, F, H, gap), float(videos[0].min()))  # (C, F, H, gap)
    parts: list[Tensor] = []
    for i, v in enumerate(videos):
        if v.shape[:3] != (C, F, H):
            raise ValueError(f"video {i} has shape {tuple(v.shape)}; expected ({C}, {F}, {H}, W)")
        parts += [sep, v] if i else [v]
    return torch.cat(parts, dim=3)  # (C, F, H, W_total)


def write_mp4(
    path: str | os.PathLike[str],
    video: Tensor,
    *,
    fps: float = 8.0,
    value_range: tuple[float, float] = (-1.0, 1.0),
    scale: int = 1,
) -> Path:
    """Encode one video ``(C, F, H, W)`` as H.264 .mp4; ``scale`` enlarges tiny frames (nearest neighbour)."""
    if scale > 1:
        video = video.repeat_interleave(scale, -1).repeat_interleave(scale, -2)  # (C, F, sH, sW)
    frames = to_uint8(video, value_range=value_range)
    if frames.shape[1] % 2 or frames.shape[2] % 2:  # 4:2:0 needs even sizes
        frames = np.pad(
            frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge"
        )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        from vidfix.metrics import write_video  # the metrics package's writer, where this build has it
    except ImportError:
        from vidfix.pipelines.diffusers_run import write_video as write_float

        return write_float(frames.astype(np.float32) / 255.0, out, fps=round(fps))
    return Path(write_video(out, frames, fps=fps))
