"""Evaluation of the reference model: rollouts judged by the structure judge, per window of frames.

The chunked sampler (:func:`vidfix.pipelines.sample_video`, a stock flow-matching scheduler) generates
frames after ``K`` real frames of each seed's video:

* *teacher forcing*: every chunk is conditioned on the real frames right before it (one-chunk quality);
* *free rollout*: every chunk is conditioned on the model's own previous frames (where drift compounds).

Measures (:func:`measure_videos`): the judge's per-frame **object score** and per-pair **motion score**
(:mod:`vidfix.pipelines.reference.judge`), clip embeddings for the **reference FVD** (Frechet distance of a
window's clips to a pool of fresh real clips), and the colour view (per-frame channel mean and std,
contrast, saturation, sharpness; the background's hue from the judge's sprite mask, for the **trend**).
Summaries: per window (:func:`window_table`), frames until the object score falls below half of a level
(:func:`frames_to_half`), measured hue trend over the true one (:func:`trend_kept`). Latents are pixels,
``(B, C, F, H, W)`` in [-1, 1].

Example:
    >>> report = evaluate(load_reference_model(), load_judge(), num_frames=128)    # doctest: +SKIP
    >>> print(format_report(report))                                              # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from vidfix.pipelines.factory import SchedulerName
from vidfix.pipelines.reference.data import TREND, SpriteVideoConfig, reference_videos, sample_params
from vidfix.pipelines.reference.judge import SpriteJudge, clip_embeddings, judge_video, require_process
from vidfix.pipelines.reference.model import ReferenceVideoModel

__all__ = [
    "COLOUR_STATS",
    "EvalReport",
    "Measured",
    "Mode",
    "RealPool",
    "evaluate",
    "format_report",
    "frame_statistics",
    "frames_to_half",
    "hue_series",
    "measure_videos",
    "real_pool",
    "rollout",
    "save_strip",
    "trend_kept",
    "window_table",
]

Mode = Literal["teacher", "free"]
# Per-frame colour statistics (see vidfix.metrics.color and .sharpness for units).
COLOUR_STATS: tuple[str, ...] = (
    "mean_r",
    "mean_g",
    "mean_b",
    "std_r",
    "std_g",
    "std_b",
    "contrast",
    "saturation",
    "sharpness",
)


def frame_statistics(video: Tensor) -> dict[str, Tensor]:
    """:data:`COLOUR_STATS` of each frame of ``(B, 3, F, H, W)`` video in [-1, 1]; each value ``(B, F)``.

    ``mean_*``/``std_*``: channel mean and std [0-1]; ``contrast``: std of L* [Lab units]; ``saturation``:
    mean HSV saturation; ``sharpness``: variance of the luma Laplacian [0-255 units]. Computed by
    :func:`vidfix.metrics.frame_stats`.
    """
    from vidfix.metrics import frame_stats

    B, _, Fr, H, W = video.shape
    frames = ((video.float() + 1) / 2).clamp(0, 1).transpose(1, 2).reshape(B * Fr, 3, H, W)  # (B F, 3, H, W)
    stats = frame_stats(frames)
    flat = frames.flatten(2)  # (B F, 3, H W)
    stats = {**stats, "std_r": flat[:, 0].std(-1), "std_g": flat[:, 1].std(-1), "std_b": flat[:, 2].std(-1)}
    return {k: stats[k].reshape(B, Fr) for k in COLOUR_STATS}  # (B, F) each


def hue_series(video: Tensor, mask: Tensor) -> Tensor:
    """Background hue per frame in turns, unwrapped over time: ``(B, F)``.

    The background is every pixel the judge's sprite mask ``(B, F, H, W)`` leaves below 0.2; its median
    colour's HSV hue, unwrapped frame to frame (a turn never jumps by more than half a turn per frame).
    """
    rgb = ((video.float() + 1) / 2).clamp(0, 1)  # (B, 3, F, H, W)
    B, _, Fn, H, W = rgb.shape
    bg = (mask < 0.2).view(B, 1, Fn, H * W)
    flat = rgb.view(B, 3, Fn, H * W)
    # Median of the background pixels per channel (NaN-aware: sprite pixels masked out).
    med = torch.where(bg, flat, torch.full_like(flat, float("nan"))).nanmedian(-1).values  # (B, 3, F)
    r, g, b = med.unbind(1)
    mx, mn = med.amax(1), med.amin(1)
    d = (mx - mn).clamp_min(1e-6)
    h = torch.where(mx == r, ((g - b) / d) % 6, torch.where(mx == g, (b - r) / d + 2, (r - g) / d + 4)) / 6
    h = torch.nan_to_num(h, nan=0.0).double()
    step = torch.remainder(h[:, 1:] - h[:, :-1] + 0.5, 1.0) - 0.5  # (B, F-1) shortest signed turn
    return torch.cat([h[:, :1], h[:, :1] + step.cumsum(1)], 1)  # (B, F)


@dataclass(frozen=True)
class Measured:
    """Per-frame measures of ``B`` videos of ``F`` frames (see the module docstring).

    Attributes:
        object: ``(B, F)``; motion: ``(B, F - lag)`` (NaN: no sprite seen in both frames);
        clips: ``(B, n, E)`` clip embeddings, clip ``i`` starting at frame ``clip_stride * i``;
        stats: :data:`COLOUR_STATS` ``{name: (B, F)}``; hue: ``(B, F)`` background hue in turns;
        flicker: ``(B, F - 1)`` mean absolute change between neighbouring frames ([0, 1] units).
    """

    object: Tensor
    motion: Tensor
    clips: Tensor
    clip_frames: int
    clip_stride: int
    stats: dict[str, Tensor]
    hue: Tensor
    flicker: Tensor


@torch.no_grad()
def measure_videos(
    video: Tensor,
    judge: SpriteJudge,
    *,
    seeds: Sequence[int],
    data: SpriteVideoConfig,
    clip_frames: int = 8,
    clip_stride: int = 4,
) -> Measured:
    """Judge and colour measures of videos ``(B, 3, F, H, W)`` whose sprites are those of ``seeds``."""
    scores = judge_video(judge, video, seeds=seeds, data=data)
    B, _, Fn, H, W = video.shape
    frames = video.transpose(1, 2).reshape(B * Fn, 3, H, W).float()
    mask = torch.cat([judge(frames[i : i + 256])["mask"].cpu() for i in range(0, B * Fn, 256)])
    rgb = (video.float() + 1) / 2
    return Measured(
        object=scores.object,
        motion=scores.motion,
        clips=clip_embeddings(scores, clip_frames=clip_frames, stride=clip_stride),
        clip_frames=clip_frames,
        clip_stride=clip_stride,
        stats=frame_statistics(video),
        hue=hue_series(video, mask.view(B, Fn, H, W)),
        flicker=(rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean((1, 3, 4)),
    )


@dataclass(frozen=True)
class RealPool:
    """Fresh real video of the process (seeds no evaluation uses): the reference for the FVD and the
    process's own spread of every measure."""

    measured: Measured
    seeds: tuple[int, ...]

    def standardize(self, clips: Tensor) -> np.ndarray:
        """Clip embeddings ``(..., E)`` in units of the pool's per-dimension spread (floored at 0.02), rows
        ``(n, E)``: every dimension counts by how unusual it is for real video."""
        ref = self.measured.clips.flatten(0, 1).double()
        mu, sd = ref.mean(0), ref.std(0).clamp_min(0.02)
        return ((clips.reshape(-1, ref.shape[1]).double() - mu) / sd).numpy()

    def clips(self) -> np.ndarray:
        return self.standardize(self.measured.clips)


def real_pool(
    judge: SpriteJudge, data: SpriteVideoConfig, *, videos: int = 48, frames: int = 64, seed: int = 900_000
) -> RealPool:
    """Measure ``videos`` fresh real videos of ``frames`` frames (from random start frames) once."""
    seeds = tuple(range(seed, seed + videos))
    starts = [int(s) * 37 % 5000 for s in seeds]
    parts = []
    for i in range(0, videos, 16):
        chunk = list(seeds[i : i + 16])
        parts.append(
            measure_videos(
                reference_videos(chunk, frames, start=starts[i : i + 16], config=data),
                judge,
                seeds=chunk,
                data=data,
            )
        )
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    m = Measured(
        object=cat("object"), motion=cat("motion"), clips=cat("clips"), clip_frames=parts[0].clip_frames,
        clip_stride=parts[0].clip_stride, stats={k: torch.cat([p.stats[k] for p in parts]) for k in parts[0].stats},
        hue=cat("hue"), flicker=cat("flicker"),
    )  # fmt: skip
    return RealPool(measured=m, seeds=seeds)


def _nanmean(x: Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else math.nan


def window_table(m: Measured, pool: RealPool, *, window: int = 32) -> dict[str, list[float]]:
    from vidfix.metrics import frechet_distance

    """Per window of ``window`` frames, over the videos: ``object``, ``motion`` (means), ``fvd`` (Frechet
    distance of the window's clips to the pool's), ``std_drift`` and ``mean_drift`` (RMS over channels of the
    window's channel std / mean minus the first window's, per video, then averaged), ``flicker``. The FVD's
    clip embeddings are standardised by the pool's per-dimension mean and spread."""
    Fn = m.object.shape[1]
    ref = pool.clips()
    out: dict[str, list[float]] = {
        k: [] for k in ("object", "motion", "fvd", "mean_drift", "std_drift", "flicker")
    }
    first = slice(0, window)
    for s in range(0, Fn - window + 1, window):
        w = slice(s, s + window)
        out["object"].append(float(m.object[:, w].mean()))
        out["motion"].append(_nanmean(m.motion[:, s : s + window]))
        inside = [
            i
            for i in range(m.clips.shape[1])
            if s <= i * m.clip_stride and i * m.clip_stride + m.clip_frames <= s + window
        ]
        clips = pool.standardize(m.clips[:, inside])
        out["fvd"].append(frechet_distance(clips, ref) if len(clips) >= 2 else math.nan)
        for kind in ("mean", "std"):
            keys = [f"{kind}_{c}" for c in "rgb"]
            now = torch.stack([m.stats[k][:, w].mean(1) for k in keys], 1)  # (B, 3)
            start = torch.stack([m.stats[k][:, first].mean(1) for k in keys], 1)
            out[f"{kind}_drift"].append(float((now - start).pow(2).mean(1).sqrt().mean()))
        out["flicker"].append(float(m.flicker[:, s : s + window - 1].mean()))
    return out


def frames_to_half(object_score: Tensor, level: Tensor | float, *, window: int = 16) -> list[int | None]:
    """Per video: the first frame at which the object score, averaged over ``window`` frames, falls below half
    of ``level`` (a float or ``(B,)``, e.g. teacher forcing's mean); None if it never does."""
    B, Fn = object_score.shape
    lv = torch.as_tensor(level, dtype=torch.float32).expand(B)
    out: list[int | None] = []
    for b in range(B):
        hit = None
        for s in range(0, Fn - window + 1):
            if float(object_score[b, s : s + window].mean()) < 0.5 * float(lv[b]):
                hit = s
                break
        out.append(hit)
    return out


def trend_kept(hue: Tensor, seeds: Sequence[int], data: SpriteVideoConfig) -> list[float]:
    """Per video: the least-squares slope of the background hue ``(B, F)`` (turns per frame) over the true
    hue speed of its seed in the trending process ``data`` (1: trend kept, 0: stopped)."""
    speed = sample_params(list(seeds), data).hue_speed  # (B,) turns per frame
    t = torch.arange(hue.shape[1], dtype=torch.float64)
    tc = t - t.mean()
    slope = ((hue - hue.mean(1, keepdim=True)) * tc).sum(1) / (tc * tc).sum()
    return [float(s / v) if float(v) != 0 else math.nan for s, v in zip(slope, speed)]


@torch.no_grad()
def rollout(
    model: ReferenceVideoModel,
    real: Tensor,
    num_frames: int,
    *,
    mode: Mode,
    generators: Sequence[torch.Generator],
    steps: int = 8,
    scheduler: SchedulerName = "euler",
    shift: float = 1.0,
    context_noise: float | None = None,
    corrector: Any = None,
) -> Tensor:
    """Generate ``num_frames`` frames after the first ``K = max_context_frames`` frames of ``real``
    ``(B, C, N, H, W)`` with :func:`vidfix.pipelines.sample_video`.

    ``mode="teacher"`` conditions every chunk on the real frames before it (``real`` must then hold
    ``K + num_frames`` frames); ``mode="free"`` on the generated ones. ``context_noise`` (SkyReels units,
    flow level / 1000) defaults to the model's ``context_sigma``. One generator per video draws its noise,
    so a video does not depend on its batch. Returns ``(B, C, num_frames, H, W)``.
    """
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.pipelines.sampler import SamplerConfig, sample_video, video_teacher

    mc: Any = model.config  # a diffusers FrozenDict: keys are attributes too
    K = mc.max_context_frames
    if mode not in ("teacher", "free"):
        raise ValueError(f"unknown mode {mode!r}; allowed: 'teacher', 'free'")
    a = 1000.0 * float(mc.get("context_sigma", 0.0)) if context_noise is None else float(context_noise)
    config = SamplerConfig(
        num_frames=num_frames, chunk_frames=mc.chunk_frames, context_frames=K, channels=mc.in_channels,
        height=mc.sample_size, width=mc.sample_size, num_steps=steps, context_noise=a,
    )  # fmt: skip
    teacher = video_teacher(real, offset=K) if mode == "teacher" else None
    sched = make_scheduler(scheduler, shift=shift, num_train_timesteps=mc.num_train_timesteps)
    return sample_video(
        model,
        sched,
        config,
        generators=generators,
        context=real[:, :, :K],
        teacher=teacher,
        corrector=corrector,
    )


@dataclass(frozen=True)
class EvalReport:
    """Per-window tables (``{measure: [per window]}``) for real video, teacher forcing and free rollout, per
    process (``stationary``, ``trend``), with frames-to-half per seed and the trend kept per seed."""

    window: int
    tables: dict[str, dict[str, dict[str, list[float]]]]
    frames_to_half: dict[str, list[int | None]]
    trend: dict[str, list[float]]
    seeds: tuple[int, ...]
    videos: dict[str, Tensor] = field(repr=False)


def evaluate(
    model: ReferenceVideoModel,
    judge: SpriteJudge,
    *,
    seeds: Sequence[int] = (100, 101, 102, 103),
    num_frames: int = 128,
    window: int = 32,
    steps: int = 8,
    scheduler: SchedulerName = "euler",
    shift: float = 1.0,
    data: SpriteVideoConfig | None = None,
    processes: Sequence[Literal["stationary", "trend"]] = ("stationary", "trend"),
) -> EvalReport:
    """Teacher-forced and free rollouts of ``seeds`` against their real videos, judged per ``window`` frames."""
    if num_frames % window:
        raise ValueError(f"num_frames {num_frames} must be a multiple of window {window}")
    size = int(model.config["sample_size"])
    base = data or SpriteVideoConfig(height=size, width=size)
    K = int(model.config["max_context_frames"])
    tables: dict[str, dict[str, dict[str, list[float]]]] = {}
    half: dict[str, list[int | None]] = {}
    trend: dict[str, list[float]] = {}
    videos: dict[str, Tensor] = {}
    for process in processes:
        cfg = replace(base, hue_speed=TREND.hue_speed) if process == "trend" else base
        require_process(judge, cfg)
        pool = real_pool(judge, cfg)
        real = reference_videos(list(seeds), K + num_frames, config=cfg)  # (B, C, K + N, H, W)
        rows = {"real": real[:, :, K:]}
        for mode in ("teacher", "free"):
            gens = [torch.Generator().manual_seed(s) for s in seeds]
            rows[mode] = rollout(
                model,
                real,
                num_frames,
                mode=mode,
                generators=gens,
                steps=steps,
                scheduler=scheduler,
                shift=shift,
            )
        measured = {k: measure_videos(v, judge, seeds=seeds, data=cfg) for k, v in rows.items()}
        tables[process] = {k: window_table(m, pool, window=window) for k, m in measured.items()}
        level = measured["teacher"].object.mean(1)
        half[process] = frames_to_half(measured["free"].object, level)
        if process == "trend":
            trend.update({k: trend_kept(m.hue, seeds, cfg) for k, m in measured.items()})
        videos.update({f"{process}/{k}": v for k, v in rows.items()})
    return EvalReport(window, tables, half, trend, tuple(seeds), videos)


def format_report(report: EvalReport) -> str:
    """A plain-text table: object, motion, reference FVD and colour drift per window, per process and source."""
    lines = []
    for process, table in report.tables.items():
        n = len(next(iter(table.values()))["object"])
        w = report.window
        lines.append(f"[{process}] " + "".join(f"{f'{i * w}-{(i + 1) * w - 1}':>9}" for i in range(n)))
        for measure in ("object", "motion", "fvd", "std_drift"):
            for source, values in table.items():
                lines.append(f"{measure:<9} {source:<8}" + "".join(f"{v:9.3g}" for v in values[measure]))
        lines.append(f"frames to half object score (free): {report.frames_to_half[process]}")
    if report.trend:
        lines.append("trend kept (measured / true hue speed): " + ", ".join(
            f"{k} {np.nanmean(v):.2f}" for k, v in report.trend.items()
        ))  # fmt: skip
    return "\n".join(lines)


def save_strip(
    rows: dict[str, Tensor],
    path: str | Path,
    *,
    every: int = 8,
    frames: Sequence[int] | None = None,
    scale: int = 3,
) -> Path:
    """Save a PNG with one row per named video ``(3, F, H, W)``: every ``every``-th frame, or the given
    ``frames``, with the row names and frame numbers written beside and above."""
    from PIL import Image, ImageDraw

    first = next(iter(rows.values()))
    picks = list(frames) if frames is not None else list(range(0, first.shape[1], every))
    H, W = first.shape[-2:]
    label_w, head_h = 70, 14
    tiles = []
    for video in rows.values():
        f = video[:, picks].clamp(-1, 1)  # (3, F', H, W)
        tiles.append(f.permute(2, 1, 3, 0).flatten(1, 2))  # (H, F' W, 3)
    img = ((torch.cat(tiles, 0) + 1) * 127.5).round().to(torch.uint8).numpy()  # (rows H, F' W, 3)
    pil = Image.fromarray(np.ascontiguousarray(img)).resize(
        (img.shape[1] * scale, img.shape[0] * scale), Image.Resampling.NEAREST
    )
    canvas = Image.new("RGB", (pil.width + label_w, pil.height + head_h), (255, 255, 255))
    canvas.paste(pil, (label_w, head_h))
    draw = ImageDraw.Draw(canvas)
    for i, name in enumerate(rows):
        draw.text((3, head_h + i * H * scale + H * scale // 2 - 5), name, fill=(0, 0, 0))
    for j, t in enumerate(picks):
        draw.text((label_w + j * W * scale + 3, 1), f"frame {t}", fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
