"""Evaluation of the reference model: teacher-forced and free rollouts against fresh real video.

A minimal private chunk loop (stock ``FlowMatchEulerDiscreteScheduler``) generates ``num_frames`` frames:

* *teacher forcing*: every chunk is conditioned on the real frames right before it (one-chunk quality);
* *free rollout*: every chunk is conditioned on the model's own previous frames (where drift compounds).

Both start from the same real context, so they can be compared frame by frame with the real video and
window by window with the process's statistics (:func:`frame_statistics`). The full chunked sampler with
correctors, resume and tracking lives in :mod:`vidfix.pipelines.sampler`; this loop exists only to measure
the model. Latents are pixels, ``(B, C, F, H, W)`` in [-1, 1].

Example:
    >>> report = evaluate(load_reference_model(), num_videos=8, num_frames=128)   # doctest: +SKIP
    >>> print(format_report(report))                                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from vidfix.pipelines.reference_data import SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference_model import ReferenceVideoModel

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
STATISTICS: tuple[str, ...] = ("mean_r", "mean_g", "mean_b", "contrast", "saturation", "sharpness", "detail")


def frame_statistics(video: Tensor) -> dict[str, Tensor]:
    """Per-frame statistics of ``(B, 3, F, H, W)`` video in [-1, 1]; each value ``(B, F)``.

    ``mean_*``: channel means in [0, 1]; ``contrast``: std of luma; ``saturation``: mean HSV saturation;
    ``sharpness``: variance of the luma Laplacian; ``detail``: mean energy of the level-1 Haar detail bands
    of luma (high-frequency wavelet energy).
    """
    rgb = ((video.float() + 1) / 2).clamp(0, 1)  # (B, 3, F, H, W)
    luma = 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]  # (B, F, H, W)
    mx, mn = rgb.amax(1), rgb.amin(1)  # (B, F, H, W)
    sat = (mx - mn) / mx.clamp(min=1e-6)
    lap = luma[..., 1:-1, :-2] + luma[..., 1:-1, 2:] + luma[..., :-2, 1:-1] + luma[..., 2:, 1:-1] - 4 * luma[..., 1:-1, 1:-1]
    H2, W2 = luma.shape[-2] // 2 * 2, luma.shape[-1] // 2 * 2
    q = luma[..., :H2, :W2].unflatten(-1, (W2 // 2, 2)).unflatten(-3, (H2 // 2, 2))  # (B, F, H/2, 2, W/2, 2)
    a, b, c, d = q[..., 0, :, 0], q[..., 0, :, 1], q[..., 1, :, 0], q[..., 1, :, 1]  # (B, F, H/2, W/2) each
    detail = ((a - b + c - d) ** 2 + (a + b - c - d) ** 2 + (a - b - c + d) ** 2) / 4  # Haar LH, HL, HH energy
    return {
        "mean_r": rgb[:, 0].mean((-2, -1)),
        "mean_g": rgb[:, 1].mean((-2, -1)),
        "mean_b": rgb[:, 2].mean((-2, -1)),
        "contrast": luma.flatten(2).std(-1),
        "saturation": sat.mean((-2, -1)),
        "sharpness": lap.flatten(2).var(-1),
        "detail": detail.mean((-2, -1)),
    }


@torch.no_grad()
def _sample_chunk(
    model: ReferenceVideoModel,
    noise: Tensor,
    context: Tensor | None,
    *,
    steps: int,
    shift: float,
) -> Tensor:
    """Denoise one chunk from ``noise`` ``(B, C, F, H, W)`` with the stock flow-matching Euler scheduler."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=model.config.num_train_timesteps, shift=shift)
    scheduler.set_timesteps(steps)
    x = noise
    for t in scheduler.timesteps:
        v = model(x, t, context=context)
        x = scheduler.step(v, t, x).prev_sample
    return x


@torch.no_grad()
def rollout(
    model: ReferenceVideoModel,
    real: Tensor,
    num_frames: int,
    *,
    mode: Mode,
    generators: Sequence[torch.Generator],
    steps: int = 16,
    shift: float = 1.0,
    context_frames: int | None = None,
) -> Tensor:
    """Generate ``num_frames`` frames after the first ``context_frames`` frames of ``real`` ``(B, C, N, H, W)``.

    ``mode="teacher"`` conditions every chunk on the real frames before it (``real`` must then hold
    ``context_frames + num_frames`` frames); ``mode="free"`` on the generated ones. One generator per video
    draws its noise, so a video does not depend on its batch. Returns ``(B, C, num_frames, H, W)``.
    """
    mc = model.config
    K = mc.max_context_frames if context_frames is None else context_frames
    Fr = mc.chunk_frames
    if mode not in ("teacher", "free"):
        raise ValueError(f"unknown mode {mode!r}; allowed: 'teacher', 'free'")
    need = K + (num_frames if mode == "teacher" else 0)
    if real.shape[2] < need:
        raise ValueError(f"real video has {real.shape[2]} frames; mode {mode!r} needs {need}")
    if len(generators) != real.shape[0]:
        raise ValueError(f"need one generator per video: {len(generators)} for {real.shape[0]} videos")
    B, C, _, H, W = real.shape
    video = real[:, :, :K].clone()  # (B, C, K, H, W): real start context, dropped at the end
    n_chunks = -(-num_frames // Fr)
    for i in range(n_chunks):
        pos = K + i * Fr  # index of the chunk's first frame in the video
        source = real if mode == "teacher" else video
        context = source[:, :, pos - K : pos] if K > 0 else None  # (B, C, K, H, W)
        noise = torch.stack([torch.randn(C, Fr, H, W, generator=g) for g in generators])  # (B, C, F, H, W)
        chunk = _sample_chunk(model, noise.to(real.dtype), context, steps=steps, shift=shift)
        video = torch.cat([video, chunk], 2)  # (B, C, pos + F, H, W)
    return video[:, :, K : K + num_frames]


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
    return (10 * torch.log10(4.0 / mse.clamp(min=1e-10))).unflatten(1, (-1, window)).mean((0, 2))  # (windows,)


def evaluate(
    model: ReferenceVideoModel,
    *,
    num_videos: int = 8,
    num_frames: int = 128,
    window: int = 16,
    steps: int = 16,
    shift: float = 1.0,
    seed: int = 0,
    data: SpriteVideoConfig | None = None,
) -> EvalReport:
    """Teacher-forced and free rollouts of videos ``seed .. seed + num_videos - 1`` against the real video,
    plus fresh real videos of other seeds (the process's own spread), per ``window`` frames."""
    if num_frames % window:
        raise ValueError(f"num_frames {num_frames} must be a multiple of window {window}")
    size = model.config.sample_size
    data = data or SpriteVideoConfig(height=size, width=size)
    K = model.config.max_context_frames
    seeds = list(range(seed, seed + num_videos))
    real = reference_videos(seeds, K + num_frames, config=data)  # (B, C, K + N, H, W)
    fresh = reference_videos([s + 500_000 for s in seeds], num_frames, start=K, config=data)
    out: dict[str, Tensor] = {}
    for mode in ("teacher", "free"):
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        out[mode] = rollout(model, real, num_frames, mode=mode, generators=gens, steps=steps, shift=shift)  # type: ignore[arg-type]
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
        for label, stats in (("real", report.real), ("fresh", report.fresh), ("teacher", report.teacher), ("free", report.free)):
            lines.append(f"{name:<11} {label:<7} " + " ".join(f"{float(v):8.4f}" for v in stats[name]))
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
    pil = Image.fromarray(np.ascontiguousarray(arr)).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil.save(path)
    return path
