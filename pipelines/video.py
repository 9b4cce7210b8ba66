"""Write generated videos as .mp4 files (and side by side), for people to look at.

Videos here are one video ``(C, F, H, W)`` with C = 3 (RGB) or 1 (grey), values in ``value_range``. Every
file goes through the one video writer, :func:`vidfix.metrics.write_video` (H.264, atomic, odd sizes padded
by repeating the last row/column).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["side_by_side", "write_mp4"]

_FRAMES_PER_BATCH = 64  # frames converted at a time: a long video is never in memory twice


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
    """Encode one video ``(C, F, H, W)`` as H.264 .mp4; ``scale`` enlarges tiny frames (nearest neighbour).

    Values outside ``value_range`` are clipped (samples may overshoot the data range); an odd height or width
    is padded by one repeated row or column (H.264 stores colour at half resolution).
    """
    from vidfix.metrics.io import write_video

    if video.dim() != 4 or video.shape[0] not in (1, 3):
        raise ValueError(
            f"expected one RGB or grey video (C, F, H, W) with C in (1, 3), got {tuple(video.shape)}"
        )
    lo, hi = value_range

    def batches() -> Iterator[Tensor]:
        for i in range(0, video.shape[1], _FRAMES_PER_BATCH):
            part = video[:, i : i + _FRAMES_PER_BATCH].detach().float().cpu().clamp(lo, hi)  # (C, f, H, W)
            if scale > 1:
                part = part.repeat_interleave(scale, -1).repeat_interleave(scale, -2)  # (C, f, sH, sW)
            yield part

    return write_video(path, batches(), fps=fps, layout="CTHW", value_range=value_range, odd_size="pad")
