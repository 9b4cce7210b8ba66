"""Evaluation of the reference model: teacher-forced and free rollouts against fresh real video.

The chunked sampler (:func:`vidfix.pipelines.sample_video`, no corrector, a stock flow-matching
scheduler) generates ``num_frames`` frames:

* *teacher forcing*: every chunk is conditioned on the real frames right before it (one-chunk quality);
* *free rollout*: every chunk is conditioned on the model's own previous frames (where drift compounds).

Both start from the same real context, so they can be compared frame by frame with the real video and
window by window with the process's statistics (:func:`frame_statistics`). Latents are pixels,
``(B, C, F, H, W)`` in [-1, 1].

Example:
    >>> report = evaluate(load_reference_model(), num_videos=8, num_frames=128)   # doctest: +SKIP
    >>> print(format_report(report))                                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from vidfix.pipelines.factory import SchedulerName
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference.model import ReferenceVideoModel

__all__ = [
    "STATISTICS",
    "EvalReport",
    "Mode",
    "evaluate",
    "format_report",
    "frame_statistics",
    "rollout",
    "save_strip",
]

Mode = Literal["teacher", "free"]
# Per-frame statistics of vidfix.metrics reported here (see vidfix.metrics.color and .sharpness for units).
STATISTICS: tuple[str, ...] = (
    "mean_r",
    "mean_g",
    "mean_b",
    "contrast",
    "saturation",
    "sharpness",
    "wavelet_l1",
)


def frame_statistics(video: Tensor) -> dict[str, Tensor]:
    """:data:`STATISTICS` of each frame of ``(B, 3, F, H, W)`` video in [-1, 1]; each value ``(B, F)``.

    ``mean_*``: channel means [0-1]; ``contrast``: std of L* [Lab units]; ``saturation``: mean HSV saturation;
    ``sharpness``: variance of the luma Laplacian [0-255 units]; ``wavelet_l1``: share of the finest Haar
    detail level in the luma AC energy (high-frequency detail). Computed by :func:`vidfix.metrics.frame_stats`.
    """
    from vidfix.metrics import frame_stats

    B, _, Fr, H, W = video.shape
    frames = ((video.float() + 1) / 2).clamp(0, 1).transpose(1, 2).reshape(B * Fr, 3, H, W)  # (B F, 3, H, W)
    stats = frame_stats(frames)
    return {k: stats[k].reshape(B, Fr) for k in STATISTICS}  # (B, F) each


@torch.no_grad()
def rollout(
    model: ReferenceVideoModel,
    real: Tensor,
    num_frames: int,
    *,
    mode: Mode,
    generators: Sequence[torch.Generator],
    steps: int = 16,
    scheduler: SchedulerName = "euler",
    shift: float = 1.0,
) -> Tensor:
    """Generate ``num_frames`` frames after the first ``K = max_context_frames`` frames of ``real``
    ``(B, C, N, H, W)`` with :func:`vidfix.pipelines.sample_video` (no corrector).

    ``mode="teacher"`` conditions every chunk on the real frames before it (``real`` must then hold
    ``K + num_frames`` frames); ``mode="free"`` on the generated ones. One generator per video draws its
    noise, so a video does not depend on its batch. Returns ``(B, C, num_frames, H, W)``.
    """
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.pipelines.sampler import SamplerConfig, sample_video, video_teacher

    mc: Any = model.config  # a diffusers FrozenDict: keys are attributes too
    K = mc.max_context_frames
    if mode not in ("teacher", "free"):
        raise ValueError(f"unknown mode {mode!r}; allowed: 'teacher', 'free'")
    config = SamplerConfig(
        num_frames=num_frames, chunk_frames=mc.chunk_frames, context_frames=K, channels=mc.in_channels,
        height=mc.sample_size, width=mc.sample_size, num_steps=steps,
    )  # fmt: skip
    teacher = video_teacher(real, offset=K) if mode == "teacher" else None
    sched = make_scheduler(scheduler, shift=shift, num_train_timesteps=mc.num_train_timesteps)
    return sample_video(model, sched, config, generators=generators, context=real[:, :, :K], teacher=teacher)


@dataclass(frozen=True)
class EvalReport:
    """Per-window statistics (each ``{name: (windows,)}``) and PSNR to the real continuation per window."""

    window: int
    real: dict[str, Tensor]
    fresh: dict[str, Tensor]
    teacher: dict[str, Tensor]
    free: dict[str, Tensor]
    psnr_teacher: Tensor
    psnr_free: Tensor
    videos: dict[str, Tensor]


def _windowed(stats: dict[str, Tensor], window: int) -> dict[str, Tensor]:
    return {k: v.unflatten(1, (-1, window)).mean((0, 2)) for k, v in stats.items()}  # (windows,)


def _psnr(a: Tensor, b: Tensor, window: int) -> Tensor:
    mse = ((a - b) ** 2).mean((1, 3, 4))  # (B, F), pixel range [-1, 1]
    return (
        (10 * torch.log10(4.0 / mse.clamp(min=1e-10))).unflatten(1, (-1, window)).mean((0, 2))
    )  # (windows,)


def evaluate(
    model: ReferenceVideoModel,
    *,
    num_videos: int = 8,
    num_frames: int = 128,
    window: int = 16,
    steps: int = 16,
    scheduler: SchedulerName = "euler",
    shift: float = 1.0,
    seed: int = 0,
    data: SpriteVideoConfig | None = None,
) -> EvalReport:
    """Teacher-forced and free rollouts of videos ``seed .. seed + num_videos - 1`` against the real video,
    plus fresh real videos of other seeds (the process's own spread), per ``window`` frames."""
    if num_frames % window:
        raise ValueError(f"num_frames {num_frames} must be a multiple of window {window}")
    size = int(model.config["sample_size"])
    data = data or SpriteVideoConfig(height=size, width=size)
    K = int(model.config["max_context_frames"])
    seeds = list(range(seed, seed + num_videos))
    real = reference_videos(seeds, K + num_frames, config=data)  # (B, C, K + N, H, W)
    fresh = reference_videos([s + 500_000 for s in seeds], num_frames, start=K, config=data)
    out: dict[str, Tensor] = {}
    modes: tuple[Mode, ...] = ("teacher", "free")
    for mode in modes:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        out[mode] = rollout(
            model, real, num_frames, mode=mode, generators=gens, steps=steps, scheduler=scheduler, shift=shift
        )
    truth = real[:, :, K:]
    return EvalReport(
        window=window,
        real=_windowed(frame_statistics(truth), window),
        fresh=_windowed(frame_statistics(fresh), window),
        teacher=_windowed(frame_statistics(out["teacher"]), window),
        free=_windowed(frame_statistics(out["free"]), window),
        psnr_teacher=_psnr(out["teacher"], truth, window),
        psnr_free=_psnr(out["free"], truth, window),
        videos={"real": truth, "teacher": out["teacher"], "free": out["free"]},
    )


def format_report(report: EvalReport) -> str:
    """A plain-text table: each statistic per window for real, fresh real, teacher-forced and free rollout."""
    w = report.window
    n = report.psnr_free.numel()
    head = "stat        source  " + " ".join(f"{f'{i * w}-{(i + 1) * w - 1}':>8}" for i in range(n))
    lines = [head]
    for name in STATISTICS:
        for label, stats in (
            ("real", report.real),
            ("fresh", report.fresh),
            ("teacher", report.teacher),
            ("free", report.free),
        ):
            lines.append(f"{name:<11} {label:<7} " + " ".join(f"{float(v):8.4g}" for v in stats[name]))
    for label, p in (("teacher", report.psnr_teacher), ("free", report.psnr_free)):
        lines.append(f"{'psnr_dB':<11} {label:<7} " + " ".join(f"{float(v):8.2f}" for v in p))
    return "\n".join(lines)


def save_strip(rows: dict[str, Tensor], path: str | Path, *, every: int = 8, scale: int = 3) -> Path:
    """Save a PNG with one row per named video ``(3, F, H, W)`` showing every ``every``-th frame."""
    import numpy as np
    from PIL import Image

    tiles = []
    for video in rows.values():
        frames = video[:, ::every].clamp(-1, 1)  # (3, F', H, W)
        row = frames.permute(2, 1, 3, 0).flatten(1, 2)  # (H, F' W, 3)
        tiles.append(row)
    img = torch.cat(tiles, 0)  # (rows H, F' W, 3)
    arr = ((img + 1) * 127.5).round().to(torch.uint8).numpy()
    pil = Image.fromarray(np.ascontiguousarray(arr)).resize(
        (arr.shape[1] * scale, arr.shape[0] * scale), Image.Resampling.NEAREST
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
