"""Measure a video, frame by frame, in one streaming pass: every per-frame metric, features and lag SSIM.

A video is a file path (decoded in batches by :func:`vidfix.metrics.iter_video`), or an array/tensor in a stated
layout (:mod:`vidfix.metrics.layout`). :func:`measure` returns a :class:`VideoMetrics`: one float64 series
``(T,)`` per metric (the registry :data:`METRICS` says what each is, its unit and its direction), the frame
feature vectors used for Frechet distances, and the mean SSIM of frame pairs at each lag.

**Analysis grid.** Statistics are computed on every ``subsample``-th row and column of each frame (a regular
grid of point samples, no filtering). ``"auto"`` picks ``max(1, min(H, W) // 160)``, the largest step that keeps
at least 160 grid rows: 1 below 320 px, 2 at 360p, 3 at 480p, 4 at 720p, 6 at 1080p (grids of 160-320 rows, the
scale most video metrics resize to). Pixel statistics (means, stds, percentiles, clipping, saturation, Lab,
flicker) on such a grid are unbiased estimates of the full-frame ones; sharpness, wavelet shares and SSIM are
measured at the grid's scale (blur still lowers them; aliasing is the same in every frame). ``subsample=1``
uses every pixel. This is what lets the metrics keep up with decoding (``vidfix bench metrics``).

**Anchors.** SSIM and LPIPS compare each frame with the first analysed frame; ``delta_e`` compares each frame's
mean Lab with the mean Lab of the first ``anchor_frames`` frames (the first chunk, when a chunk length is known).
Metrics of adjacent frames (``flicker``, ``lpips_adjacent``) are NaN on the first frame. Lags count analysed frames
(after ``stride``); the lag curve averages the pairs ``(t - k, t)`` for every ``lag_every``-th frame ``t``.

Example:
    >>> vm = measure("clip.mp4", stride=2)                              # doctest: +SKIP
    >>> vm.series["luma_mean"][-1] - vm.series["luma_mean"][0]          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from vidfix.metrics.color import SRGB_TO_LINEAR_U8, color_stats_and_luma, delta_e
from vidfix.metrics.io import Backend, iter_video, probe, select_indices
from vidfix.metrics.layout import Layout, as_frames, check_frames
from vidfix.metrics.perceptual import LPIPSModel, lpips_distance, resize_short_side
from vidfix.metrics.sharpness import laplacian_variance, wavelet_energy_shares
from vidfix.metrics.similarity import block_moments, flicker, ssim_from_moments

__all__ = [
    "DEFAULT_LAGS",
    "FEATURE_NAMES",
    "METRICS",
    "WAVELET_LEVELS",
    "MetricInfo",
    "VideoMetrics",
    "auto_subsample",
    "frame_stats",
    "measure",
    "with_anchor",
]

DEFAULT_LAGS: tuple[int, ...] = (2, 5, 10, 20, 50)
WAVELET_LEVELS = 3
_GRID_SIDE = 160  # "auto" keeps at least this many grid rows (short side)
_MIN_SIDE = 16  # smallest analysis grid side: SSIM blocks and 3 wavelet levels need room


@dataclass(frozen=True)
class MetricInfo:
    """What a per-frame metric is: unit, one-line meaning, and what a rise means."""

    unit: str
    description: str
    rise: str  # what an increase over time means, e.g. "brighter"
    kind: Literal["statistic", "anchor", "adjacent"] = "statistic"


METRICS: dict[str, MetricInfo] = {
    "mean_r": MetricInfo("0-1", "mean red (sRGB)", "redder"),
    "mean_g": MetricInfo("0-1", "mean green (sRGB)", "greener"),
    "mean_b": MetricInfo("0-1", "mean blue (sRGB)", "bluer"),
    "std_r": MetricInfo("0-1", "std of red", "more red contrast"),
    "std_g": MetricInfo("0-1", "std of green", "more green contrast"),
    "std_b": MetricInfo("0-1", "std of blue", "more blue contrast"),
    "lab_l": MetricInfo("L*", "mean CIELAB lightness", "lighter"),
    "lab_a": MetricInfo("a*", "mean CIELAB a* (green - / red +)", "redder (magenta cast)"),
    "lab_b": MetricInfo("b*", "mean CIELAB b* (blue - / yellow +)", "yellower (warm cast)"),
    "delta_e": MetricInfo(
        "dE76", "CIE76 distance of mean Lab to the anchor frames", "colour moved away", "anchor"
    ),
    "contrast": MetricInfo("L*", "std of L* over pixels", "more contrast"),
    "luma_mean": MetricInfo("0-1", "mean Rec.709 luma", "brighter"),
    "luma_p99": MetricInfo("0-1", "99th percentile of luma", "brighter highlights"),
    "clip_high": MetricInfo("fraction", "pixels with a channel at 255", "more blown highlights"),
    "clip_low": MetricInfo("fraction", "pixels with a channel at 0", "more crushed shadows"),
    "saturation": MetricInfo("0-1", "mean HSV saturation", "more saturated"),
    "sharpness": MetricInfo("255^2", "variance of the Laplacian of luma", "sharper / noisier"),
    "wavelet_l1": MetricInfo("share", "AC energy share, Haar detail level 1 (finest)", "more fine detail"),
    "wavelet_l2": MetricInfo("share", "AC energy share, Haar detail level 2", "more mid detail"),
    "wavelet_l3": MetricInfo("share", "AC energy share, Haar detail level 3", "more coarse detail"),
    "flicker": MetricInfo(
        "0-1", "VBench temporal flickering vs previous frame (1 = still)", "steadier", "adjacent"
    ),
    "ssim": MetricInfo(
        "0-1", "SSIM (8x8 blocks) of luma to the first frame", "closer to the first frame", "anchor"
    ),
    "lpips_anchor": MetricInfo("LPIPS", "LPIPS to the first frame", "further from the first frame", "anchor"),
    "lpips_adjacent": MetricInfo("LPIPS", "LPIPS to the previous frame", "less steady", "adjacent"),
}

FEATURE_NAMES: tuple[str, ...] = (
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
    "saturation",
    "luma_p99",
    "log_sharpness",
    "wavelet_l1",
    "wavelet_l2",
    "wavelet_l3",
    "thumb_tl",
    "thumb_tr",
    "thumb_bl",
    "thumb_br",
)


@dataclass
class VideoMetrics:
    """Per-frame metrics of one video (see the module docstring for the grid and anchors)."""

    name: str
    source: str  # the file path, or "array"
    index: np.ndarray  # (T,) int64 source frame numbers
    series: dict[str, np.ndarray]  # metric -> (T,) float64, NaN where undefined
    features: np.ndarray  # (T, D) float64, columns FEATURE_NAMES
    lag_ssim: dict[int, float]  # lag (analysed frames) -> mean block SSIM of pairs at that lag
    fps: float | None
    height: int
    width: int
    subsample: int
    stride: int = 1
    anchor_frames: int = 1
    lpips: dict[str, Any] | None = None  # {"net", "weights", "reportable"} when LPIPS was measured
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Number of analysed frames."""
        return len(self.index)


def auto_subsample(height: int, width: int) -> int:
    """The ``"auto"`` analysis grid step: the largest that keeps 160 grid rows, ``max(1, min(H, W) // 160)``."""
    return max(1, min(height, width) // _GRID_SIDE)


def _luma_stats(g: Tensor, linear: Tensor | None = None) -> tuple[dict[str, Tensor], Tensor]:
    stats, y = color_stats_and_luma(g, linear)  # y: (T, h, w) luma
    stats["sharpness"] = laplacian_variance(y)
    shares = wavelet_energy_shares(y, levels=WAVELET_LEVELS)  # (T, levels)
    for k in range(WAVELET_LEVELS):
        stats[f"wavelet_l{k + 1}"] = shares[:, k]
    return stats, y


@torch.no_grad()
def frame_stats(frames: Tensor) -> dict[str, Tensor]:
    """Every per-frame statistic that needs no other frame, ``(T, 3, H, W)`` in [0, 1] to ``{name: (T,)}``.

    Colour (:func:`vidfix.metrics.color_stats`), ``sharpness`` and ``wavelet_l1..3``; no grid, no anchors.
    """
    check_frames(frames)
    return _luma_stats(frames.float())[0]


def _thumb(y: Tensor) -> Tensor:
    """2x2 luma thumbnail (quadrant means), the spatial part of the Frechet features: ``(T, h, w)`` to ``(T, 4)``."""
    t, h, w = y.shape
    q = y[:, : h // 2 * 2, : w // 2 * 2].reshape(t, 2, h // 2, 2, w // 2)  # (T, 2, h/2, 2, w/2) quadrants
    return q.mean((2, 4)).reshape(t, 4)  # (T, 4): top-left, top-right, bottom-left, bottom-right


def _delta_e_series(series: dict[str, np.ndarray], anchor_frames: int) -> np.ndarray:
    lab = np.stack([series["lab_l"], series["lab_a"], series["lab_b"]], axis=1)  # (T, 3)
    ref = lab[: min(anchor_frames, len(lab))].mean(0)  # (3,)
    return delta_e(torch.from_numpy(lab), torch.from_numpy(ref)).numpy()


def with_anchor(video: VideoMetrics, anchor_frames: int) -> VideoMetrics:
    """The same measurements with ``delta_e`` against the mean Lab of the first ``anchor_frames`` frames."""
    if anchor_frames < 1:
        raise ValueError(f"anchor_frames must be >= 1, got {anchor_frames}")
    series = dict(video.series)
    series["delta_e"] = _delta_e_series(series, anchor_frames)
    return replace(video, series=series, anchor_frames=anchor_frames)


Moments = tuple[Tensor, Tensor, Tensor]  # luma planes and their 8x8 block means and mean squares


@dataclass
class _LagPairs:
    """Running mean block SSIM of frame pairs ``(t - k, t)`` for each lag k, for every ``every``-th frame t."""

    lags: list[int]
    every: int
    history: Moments | None = None  # the last max(lags) frames
    seen: int = 0  # frames before the current batch
    total: dict[int, float] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)

    def update(self, moments: Moments) -> None:
        b = moments[0].shape[0]
        pool = (
            moments
            if self.history is None
            else tuple(torch.cat(p) for p in zip(self.history, moments, strict=True))
        )
        offset = pool[0].shape[0] - b  # pool row of this batch's first frame
        ends = torch.arange(b, device=moments[0].device)
        ends = ends[(ends + self.seen) % self.every == 0]  # batch rows that end a pair
        for k in self.lags:
            rows = ends[ends + offset - k >= 0]
            if len(rows):
                s = ssim_from_moments(
                    (moments[0][rows], moments[1][rows], moments[2][rows]),
                    (pool[0][rows + offset - k], pool[1][rows + offset - k], pool[2][rows + offset - k]),
                )
                self.total[k] = self.total.get(k, 0.0) + float(s.double().sum())
                self.count[k] = self.count.get(k, 0) + len(rows)
        keep = max(self.lags)
        self.history = (pool[0][-keep:], pool[1][-keep:], pool[2][-keep:])
        self.seen += b

    def means(self) -> dict[int, float]:
        return {k: self.total[k] / self.count[k] for k in self.lags if self.count.get(k)}


@dataclass
class _LpipsTrack:
    """LPIPS of each frame to the first frame and to the previous frame, across batches."""

    model: LPIPSModel
    size: int | None
    anchor: Tensor | None = None
    previous: Tensor | None = None

    def update(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        lp = resize_short_side(frames, self.size)  # (B, 3, h, w)
        if self.anchor is None:
            self.anchor = lp[:1].clone()
        to_anchor = lpips_distance(self.model, lp, self.anchor)
        seq = lp if self.previous is None else torch.cat([self.previous, lp])
        adjacent = lpips_distance(self.model, seq[1:], seq[:-1]) if len(seq) > 1 else torch.empty(0)
        if self.previous is None:
            adjacent = torch.cat([torch.full((1,), float("nan")), adjacent])
        self.previous = lp[-1:].clone()
        return to_anchor, adjacent


@dataclass
class _Source:
    batches: Iterator[
        tuple[Any, np.ndarray]
    ]  # (frames batch, source index); uint8 THWC numpy or (B, 3, H, W) float
    fps: float | None
    source: str
    estimate: int | None  # frames expected, for progress bars


def _array_source(
    video: Any,
    layout: Layout,
    value_range: tuple[float, float] | None,
    fps: float | None,
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    batch_size: int,
) -> _Source:
    lay: str = layout
    x = video
    if lay.startswith("B"):
        if len(x.shape) != 5:
            as_frames(x, layout=layout, value_range=value_range)  # raises the layout error
        if x.shape[0] != 1:
            raise ValueError(
                f"layout {layout!r} holds {x.shape[0]} videos; measure one (x[i:i+1]) or pass the batch to drift_report"
            )
        x, lay = x[0], lay[1:]  # BCTHW -> CTHW, BTCHW -> TCHW
    if len(x.shape) != len(lay):
        as_frames(x, layout=layout, value_range=value_range)  # raises the layout error
    t_axis = lay.index("T")
    kept = select_indices(
        x.shape[t_axis], fps=fps, stride=stride, start=start, end=end, max_frames=max_frames
    )
    if len(kept) == 0:
        raise ValueError(f"no frames selected from a video of {x.shape[t_axis]} frames")

    # Decoded-style uint8 (T, H, W, 3) arrays take the decoder's fast path: no full-size float copy.
    raw = isinstance(x, np.ndarray) and x.dtype == np.uint8 and lay == "THWC" and x.shape[-1] == 3
    raw = raw and value_range in (None, (0, 255))

    def batches() -> Iterator[tuple[Any, np.ndarray]]:
        for i in range(0, len(kept), batch_size):
            part = kept[i : i + batch_size]
            sl = (slice(None),) * t_axis + (slice(part.start, part.stop, part.step),)
            frames = x[sl] if raw else as_frames(x[sl], layout=lay, value_range=value_range)  # type: ignore[arg-type]
            yield frames, np.asarray(part, dtype=np.int64)

    return _Source(batches(), fps, "array", len(kept))


def _prefetch(items: Iterator[Any], depth: int = 2) -> Iterator[Any]:
    """Run ``items`` in a background thread, ``depth`` ahead: decoding (which releases the GIL) overlaps the metrics."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def worker() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        box.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            box.put(("done", None))
        except BaseException as err:  # handed to the consumer, raised there
            box.put(("error", err))

    thread = threading.Thread(target=worker, name="vidfix-decode", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = box.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()


def _file_source(
    path: str | os.PathLike[str],
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    batch_size: int,
    backend: Backend,
    threads: int,
) -> _Source:
    info = probe(path)
    estimate = None
    if info.frame_count:
        try:
            estimate = len(
                select_indices(
                    info.frame_count, fps=info.fps, stride=stride, start=start, end=end, max_frames=max_frames
                )
            )
        except ValueError:
            estimate = None
    it = iter_video(
        path,
        batch_size=batch_size,
        stride=stride,
        start=start,
        end=end,
        max_frames=max_frames,
        backend=backend,
        threads=threads,
    )
    return _Source(_prefetch((b.frames, b.index) for b in it), info.fps, str(path), estimate)


def _to_grid(
    batch: Any, step: int, size: tuple[int, int] | None
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The analysis grid ``(B, 3, h, w)`` float32 in [0, 1]; its linear-light values when it is 8-bit (one table
    look-up instead of a power per value); and the full frames when they were needed (to resize)."""
    full: Tensor | None = None
    if isinstance(batch, np.ndarray):  # decoded uint8 (B, H, W, 3)
        if size is not None and batch.shape[1:3] != size:
            full = _full_frames(batch)
        else:
            g8 = np.ascontiguousarray(batch[:, ::step, ::step].transpose(0, 3, 1, 2))  # (B, 3, h, w) uint8
            g = g8.astype(np.float32)
            g *= np.float32(1 / 255)
            return torch.from_numpy(g), torch.from_numpy(SRGB_TO_LINEAR_U8[g8]), None
    else:
        full = batch.float()
    if size is not None and tuple(full.shape[-2:]) != size:
        full = F.interpolate(full, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(
            0, 1
        )
    return full[:, :, ::step, ::step].contiguous(), None, full  # (B, 3, h, w)


def _full_frames(batch: Any) -> Tensor:
    if isinstance(batch, np.ndarray):
        return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W)
    return batch.float()


@torch.no_grad()
def measure(
    video: str | os.PathLike[str] | np.ndarray | Tensor,
    *,
    name: str | None = None,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    subsample: int | Literal["auto"] = "auto",
    size: tuple[int, int] | None = None,
    anchor_frames: int = 1,
    lags: Sequence[int] = DEFAULT_LAGS,
    lag_every: int = 4,
    lpips: LPIPSModel | None = None,
    lpips_size: int | None = 256,
    batch_size: int = 16,
    backend: Backend = "auto",
    decode_threads: int = 0,
    on_frames: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> VideoMetrics:
    """Measure every per-frame metric of a video in one streaming pass.

    Args:
        video: a file path, or an array/tensor laid out as ``layout`` (one video; a ``B*`` layout needs B = 1).
        name: label for reports (default: the file name, or "video").
        layout, value_range: how an array/tensor is laid out and scaled (:func:`vidfix.metrics.as_frames`).
        fps: frame rate of an array/tensor (files state their own); needed for ``start``/``end`` on arrays.
        stride, start, end, max_frames: frame selection (:func:`vidfix.metrics.iter_video`).
        subsample: analysis grid step, or ``"auto"`` (module docstring).
        size: ``(H, W)`` to resize every frame to first (antialiased bilinear), to compare videos of other sizes.
        anchor_frames: how many first frames form the colour anchor of ``delta_e`` (e.g. the chunk length).
        lags: frame-pair lags for the lag SSIM curve (empty to skip).
        lag_every: the lag curve uses pairs ending on every ``lag_every``-th frame (1: all; the mean is the same
            in expectation, at a fraction of the cost).
        lpips: a model from :func:`vidfix.metrics.load_lpips` to add ``lpips_anchor`` and ``lpips_adjacent``.
        lpips_size: short side larger frames are shrunk to for LPIPS (``None``: native size).
        batch_size: frames decoded and measured at once.
        backend, decode_threads: file reader and its threads (:func:`vidfix.metrics.iter_video`); files are decoded
            in a background thread, one batch ahead of the metrics.
        on_start: called once with the expected number of frames (or ``None``), e.g. to size a progress bar.
        on_frames: called after each batch with the number of frames just measured.

    Raises:
        ValueError: fewer than 2 frames, frames too small for the grid, or bad layout/range/selection.
        FileNotFoundError, VideoReadError: unreadable files.
    """
    if anchor_frames < 1:
        raise ValueError(f"anchor_frames must be >= 1, got {anchor_frames}")
    if lag_every < 1:
        raise ValueError(f"lag_every must be >= 1, got {lag_every}")
    if subsample != "auto" and (
        isinstance(subsample, bool) or not isinstance(subsample, int) or subsample < 1
    ):
        raise ValueError(f"subsample must be an integer >= 1 or 'auto', got {subsample!r}")
    lag_list = sorted({int(k) for k in lags})
    if any(k < 1 for k in lag_list):
        raise ValueError(f"lags must be >= 1, got {tuple(lags)}")
    if isinstance(video, (str, os.PathLike)):
        src = _file_source(video, stride, start, end, max_frames, batch_size, backend, decode_threads)
        label = name or os.path.basename(os.fspath(video))
    else:
        src = _array_source(video, layout, value_range, fps, stride, start, end, max_frames, batch_size)
        label = name or "video"
    if on_start is not None:
        on_start(src.estimate)

    parts: dict[str, list[np.ndarray]] = {}
    thumbs: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    step = 1
    height = width = 0
    anchor: Moments | None = None  # the first frame's block moments
    prev: Tensor | None = None  # the last frame of the previous batch
    pairs = _LagPairs(lag_list, lag_every) if lag_list else None
    track = _LpipsTrack(lpips, lpips_size) if lpips is not None else None

    def keep(key: str, value: Tensor) -> None:
        parts.setdefault(key, []).append(value.double().cpu().numpy())

    for batch, index in src.batches:
        # Fix the size and the grid on the first batch.
        hb, wb = (int(v) for v in (batch.shape[1:3] if isinstance(batch, np.ndarray) else batch.shape[-2:]))
        if anchor is None:
            height, width = size if size is not None else (hb, wb)
            step = auto_subsample(height, width) if subsample == "auto" else subsample
            gh, gw = math.ceil(height / step), math.ceil(width / step)
            if min(gh, gw) < _MIN_SIDE:
                raise ValueError(
                    f"frames of {width}x{height} with subsample={step} leave a {gw}x{gh} analysis grid; "
                    f"need at least {_MIN_SIDE}x{_MIN_SIDE} (lower subsample)"
                )
        elif size is None and (hb, wb) != (height, width):
            raise ValueError(f"frame size changed mid-video from {width}x{height} to {wb}x{hb}")

        # Per-frame statistics on the analysis grid.
        g, linear, full = _to_grid(batch, step, size)  # (B, 3, h, w)
        stats, y = _luma_stats(g, linear)  # y: (B, h, w) luma
        for key, value in stats.items():
            keep(key, value)
        thumbs.append(_thumb(y).double().cpu().numpy())

        # Frame against the first frame, the previous frame, and the frames `lags` back.
        moments = block_moments(y)
        if anchor is None:
            anchor = (moments[0][:1].clone(), moments[1][:1].clone(), moments[2][:1].clone())
        keep("ssim", ssim_from_moments(moments, anchor))
        keep("flicker", flicker(g, previous=prev))
        prev = g[-1:].clone()
        if pairs is not None:
            pairs.update(moments)
        if track is not None:
            to_anchor, adjacent = track.update(full if full is not None else _full_frames(batch))
            keep("lpips_anchor", to_anchor)
            keep("lpips_adjacent", adjacent)

        indices.append(np.asarray(index, dtype=np.int64))
        if on_frames is not None:
            on_frames(len(index))

    n = sum(len(i) for i in indices)
    if n < 2:
        raise ValueError(f"{label!r}: drift needs at least 2 frames, got {n}")
    series = {key: np.concatenate(vals) for key, vals in parts.items()}
    series["delta_e"] = _delta_e_series(series, anchor_frames)
    ordered = {key: series[key] for key in METRICS if key in series}
    thumb = np.concatenate(thumbs)  # (T, 4)
    cols = [ordered[k] for k in FEATURE_NAMES[:12]]
    cols.append(np.log10(1.0 + ordered["sharpness"]))
    cols += [ordered[f"wavelet_l{k}"] for k in (1, 2, 3)]
    features = np.column_stack([*cols, thumb])  # (T, D)
    return VideoMetrics(
        name=label,
        source=src.source,
        index=np.concatenate(indices),
        series=ordered,
        features=features,
        lag_ssim=pairs.means() if pairs is not None else {},
        fps=src.fps,
        height=height,
        width=width,
        subsample=step,
        stride=stride,
        anchor_frames=anchor_frames,
        lpips=None
        if lpips is None
        else {"net": lpips.net, "weights": lpips.weights, "reportable": lpips.reportable},
        settings={
            "start": start,
            "end": end,
            "max_frames": max_frames,
            "size": list(size) if size else None,
            "lpips_size": lpips_size if lpips is not None else None,
        },
    )
