"""Measure a video, frame by frame, in one streaming pass: every per-frame metric, features, lag SSIM, scene cuts.

A video is a file path (decoded frame by frame by :func:`vidfix.metrics.iter_video`), an array/tensor in a stated
layout, or a list of frames (:mod:`vidfix.metrics.layout`). :func:`measure` returns a :class:`VideoMetrics`: one
float64 series ``(T,)`` per metric (the registry :data:`METRICS` says what each is, its unit and its direction),
the frame feature vectors used for Frechet distances, the mean SSIM of frame pairs at each lag, where scenes
start, and notes on anything read with a caveat.

**Analysis grid** (:mod:`vidfix.metrics.grid`): every frame is resized, antialiased, to a 160-pixel short side
(``grid=``; ``None`` for every pixel) as soon as it is decoded, so memory stays small at any resolution and every
statistic is measured at one scale. Networks (LPIPS, DINO, CLIP, scorers) get their own sizes from the full frame.

**Anchors.** SSIM and LPIPS compare each frame with the first frame; ``delta_e`` compares each frame's mean Lab
with the mean Lab of the first ``anchor_frames`` frames (the first chunk, when a chunk length is known). Metrics
of adjacent frames (``flicker``, ``lpips_adjacent``) are NaN on the first frame. With ``scenes="split"`` all of
this restarts at each scene cut (:mod:`vidfix.metrics.scenes`). Lags count analysed frames (after ``stride``);
the lag curve averages the pairs ``(t - k, t)`` for every ``lag_every``-th frame ``t`` (never across a cut when
scenes are split).

**Scorers** (:mod:`vidfix.metrics.scorers`) add series of their own in the same pass: subject and background
consistency (:mod:`~vidfix.metrics.features`), motion (:mod:`~vidfix.metrics.motion`), or your own.

Example:
    >>> vm = measure("clip.mp4", stride=2)                              # doctest: +SKIP
    >>> vm.series["luma_mean"][-1] - vm.series["luma_mean"][0]          # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import queue
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor
from vidfix.metrics.color import color_stats_and_luma, delta_e
from vidfix.metrics.grid import GRID, block_ssim, cv2_threads, flicker_pair, grid_shape, grid_stats, to_grid
from vidfix.metrics.io import Backend, VideoReader, VideoReadWarning, iter_video, probe, select_indices
from vidfix.metrics.layout import (
    Layout,
    as_frames,
    check_frames,
    check_layout,
    check_values,
    stack_frames,
    value_span,
)
from vidfix.metrics.perceptual import LPIPSModel, lpips_distance
from vidfix.metrics.scenes import SCENE_MODES, CutDetector, SceneMode, segments
from vidfix.metrics.scorers import FrameScorer, MetricInfo
from vidfix.metrics.sharpness import laplacian_variance, wavelet_energy_shares

__all__ = [
    "DEFAULT_LAGS",
    "FEATURE_NAMES",
    "METRICS",
    "WAVELET_LEVELS",
    "MetricInfo",
    "MetricsWarning",
    "VideoMetrics",
    "frame_stats",
    "measure",
    "with_anchor",
]

DEFAULT_LAGS: tuple[int, ...] = (2, 5, 10, 20, 50)
WAVELET_LEVELS = 3
_MIN_SIDE = 16  # smallest analysis grid side: SSIM blocks and 3 wavelet levels need room
_FRAME_BYTES = 1 << 27  # float frames converted at once from an array: about this many bytes
_NATIVE = 1 << 30  # a short side no frame reaches: frames at their own size


class MetricsWarning(UserWarning):
    """A measurement with a caveat: scene cuts read as drift, too few frames for a summary, random weights."""


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
    "sharpness": MetricInfo(
        "255^2", "variance of the Laplacian of luma on the analysis grid", "sharper / noisier", score=True
    ),
    "wavelet_l1": MetricInfo("share", "AC energy share, Haar detail level 1 (finest)", "more fine detail"),
    "wavelet_l2": MetricInfo("share", "AC energy share, Haar detail level 2", "more mid detail"),
    "wavelet_l3": MetricInfo("share", "AC energy share, Haar detail level 3", "more coarse detail"),
    "flicker": MetricInfo(
        "0-1", "VBench temporal flickering vs previous frame (1 = still)", "steadier", "adjacent", score=True
    ),
    "ssim": MetricInfo(
        "0-1",
        "SSIM (8x8 blocks) of luma to the first frame",
        "closer to the first frame",
        "anchor",
        score=True,
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
    """Per-frame metrics of one video (see the module docstring for the grid, anchors and scenes)."""

    name: str
    source: str  # the file path, or "array"
    index: np.ndarray  # (T,) int64 source frame numbers
    series: dict[str, np.ndarray]  # metric -> (T,) float64, NaN where undefined
    features: np.ndarray  # (T, D) float64, columns FEATURE_NAMES
    lag_ssim: dict[int, float]  # lag (analysed frames) -> mean block SSIM of pairs at that lag
    fps: float | None
    height: int
    width: int
    grid: tuple[int, int]  # (h, w) of the analysis grid
    stride: int = 1
    anchor_frames: int = 1
    times: np.ndarray | None = None  # (T,) seconds from the first frame (files: timestamps); None if unknown
    cuts: list[int] = field(default_factory=list)  # analysed-frame positions where a detected scene starts
    scenes: SceneMode = "warn"
    notes: list[str] = field(default_factory=list)  # what was read or measured with a caveat
    metric_info: dict[str, MetricInfo] = field(default_factory=dict)  # scorers' series (METRICS has the rest)
    lpips: dict[str, Any] | None = None  # {"net", "weights", "reportable"} when LPIPS was measured
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        """Number of analysed frames."""
        return len(self.index)

    @property
    def scene_bounds(self) -> list[tuple[int, int]]:
        """``[(start, stop), ...]`` of the scenes measured separately (one scene unless ``scenes="split"``)."""
        return segments(self.frames, self.cuts if self.scenes == "split" else [])

    def info(self, metric: str) -> MetricInfo:
        """What ``metric`` is (built-in or from a scorer)."""
        return self.metric_info.get(metric) or METRICS[metric]


def _luma_stats(g: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    stats, y = color_stats_and_luma(g)  # y: (T, h, w) luma
    stats["sharpness"] = laplacian_variance(y)
    shares = wavelet_energy_shares(y, levels=WAVELET_LEVELS)  # (T, levels)
    for k in range(WAVELET_LEVELS):
        stats[f"wavelet_l{k + 1}"] = shares[:, k]
    return stats, y


@torch.no_grad()
def frame_stats(frames: Tensor) -> dict[str, Tensor]:
    """Every per-frame statistic that needs no other frame, ``(T, 3, H, W)`` in [0, 1] to ``{name: (T,)}``.

    Colour (:func:`vidfix.metrics.color_stats`), ``sharpness`` and ``wavelet_l1..3`` on the frames as given (no
    grid, no anchors): the reference definitions the fast grid path is tested against.
    """
    check_frames(frames)
    return _luma_stats(frames.float())[0]


def _delta_e_series(
    series: dict[str, np.ndarray], anchor_frames: int, bounds: Sequence[tuple[int, int]]
) -> np.ndarray:
    lab = np.stack([series["lab_l"], series["lab_a"], series["lab_b"]], axis=1)  # (T, 3)
    out = np.empty(len(lab))
    for a, b in bounds:  # each scene against its own first frames
        ref = lab[a : min(b, a + anchor_frames)].mean(0)  # (3,)
        out[a:b] = delta_e(torch.from_numpy(lab[a:b]), torch.from_numpy(ref)).numpy()
    return out


def with_anchor(video: VideoMetrics, anchor_frames: int) -> VideoMetrics:
    """The same measurements with ``delta_e`` against the mean Lab of the first ``anchor_frames`` frames (of each scene)."""
    if anchor_frames < 1:
        raise ValueError(f"anchor_frames must be >= 1, got {anchor_frames}")
    series = dict(video.series)
    series["delta_e"] = _delta_e_series(series, anchor_frames, video.scene_bounds)
    return replace(video, series=series, anchor_frames=anchor_frames)


Moments = tuple[np.ndarray, np.ndarray, np.ndarray]  # a luma plane, its 8x8 block means and mean squares


@dataclass
class _LagPairs:
    """Running mean block SSIM of frame pairs ``(t - k, t)`` for each lag k, for every ``every``-th frame t."""

    lags: list[int]
    every: int
    history: deque[Moments] = field(default_factory=deque)  # the last max(lags) frames
    total: dict[int, float] = field(default_factory=dict)
    count: dict[int, int] = field(default_factory=dict)

    def update(self, t: int, moments: Moments, scene_start: int) -> None:
        """Frame ``t`` (analysed-frame position); pairs reach back no further than ``scene_start``."""
        if t % self.every == 0:
            for k in self.lags:
                if t - k >= scene_start and k <= len(self.history):
                    s = block_ssim(moments, self.history[-k])
                    self.total[k] = self.total.get(k, 0.0) + s
                    self.count[k] = self.count.get(k, 0) + 1
        self.history.append(moments)
        if len(self.history) > max(self.lags):
            self.history.popleft()

    def means(self) -> dict[int, float]:
        return {k: self.total[k] / self.count[k] for k in self.lags if self.count.get(k)}


@dataclass
class _LpipsTrack:
    """LPIPS of each frame to the scene's first frame and to the previous frame, across batches."""

    model: LPIPSModel
    anchor: Tensor | None = None
    previous: Tensor | None = None

    def __call__(self, frames: Tensor, starts: Tensor) -> dict[str, Tensor]:
        to_anchor = torch.empty(len(frames), dtype=torch.float64)
        adjacent = torch.full((len(frames),), math.nan, dtype=torch.float64)
        for i in range(len(frames)):  # anchors change at scene starts: frame by frame
            f = frames[i : i + 1]
            if self.anchor is None or bool(starts[i]):
                self.anchor = f
            elif self.previous is not None:
                adjacent[i] = float(lpips_distance(self.model, f, self.previous)[0])
            to_anchor[i] = float(lpips_distance(self.model, f, self.anchor)[0])
            self.previous = f
        return {"lpips_anchor": to_anchor, "lpips_adjacent": adjacent}


@dataclass
class _Batch:
    """Consecutive analysed frames: on the grid, at each requested short side, their frame numbers and times."""

    grid: np.ndarray  # (B, h, w, 3) uint8, or float32 in [0, 1]
    sized: dict[int, Tensor]  # short side -> (B, 3, h', w') float32 in [0, 1]
    index: np.ndarray  # (B,) int64
    times: np.ndarray  # (B,) float64 seconds


@dataclass
class _Source:
    batches: Iterator[_Batch]
    fps: float | None
    source: str
    height: int
    width: int
    estimate: int | None  # frames expected, for progress bars
    reader: VideoReader | None = None


def _float_frames(frames: Any) -> Tensor:
    """Decoded uint8 ``(B, H, W, 3)`` or float ``(B, 3, H, W)`` as float32 ``(B, 3, H, W)`` in [0, 1]."""
    if isinstance(frames, np.ndarray):
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255)  # (B, 3, H, W)
    return frames.float()


def _shrink(
    frames: Any, shapes: dict[int, tuple[int, int]], grid: tuple[int, int], index: Any, times: Any
) -> _Batch:
    """One batch of full frames (uint8 ``(B, H, W, 3)`` or float ``(B, 3, H, W)``) on the grid and at each size."""
    sized = {}
    for side, shape in shapes.items():
        s = to_grid(frames, shape)  # (B, h', w', 3)
        sized[side] = _float_frames(s) if s.dtype == np.uint8 else torch.from_numpy(s).permute(0, 3, 1, 2)
    return _Batch(to_grid(frames, grid), sized, np.asarray(index, np.int64), np.asarray(times, np.float64))


def _sizes(height: int, width: int, sides: set[int]) -> dict[int, tuple[int, int]]:
    return {s: grid_shape(height, width, s) for s in sides}


def _regroup(batches: Iterator[_Batch], size: int) -> Iterator[_Batch]:
    """Frame-sized batches regrouped into batches of ``size`` frames."""
    pending: list[_Batch] = []
    count = 0
    for b in batches:
        pending.append(b)
        count += len(b.index)
        if count >= size:
            yield _concat(pending)
            pending, count = [], 0
    if pending:
        yield _concat(pending)


def _concat(parts: list[_Batch]) -> _Batch:
    if len(parts) == 1:
        return parts[0]
    return _Batch(
        np.concatenate([p.grid for p in parts]),
        {s: torch.cat([p.sized[s] for p in parts]) for s in parts[0].sized},
        np.concatenate([p.index for p in parts]),
        np.concatenate([p.times for p in parts]),
    )


def _array_source(
    video: Any,
    layout: Layout,
    value_range: tuple[float, float] | None,
    fps: float | None,
    selection: dict[str, Any],
    batch_size: int,
    grid: int | None,
    size: tuple[int, int] | None,
    sides: set[int],
) -> _Source:
    x = stack_frames(video, layout)
    if not hasattr(x, "shape"):
        raise TypeError(
            f"video must be a file path, an array, a tensor or a list of frames, got {type(video).__name__}"
        )
    shape = tuple(int(v) for v in x.shape)
    check_layout(shape, layout)  # errors show the input's shape
    lay: str = layout
    if lay.startswith("B"):
        if shape[0] != 1:
            raise ValueError(
                f"layout {layout!r} holds {shape[0]} videos (shape {shape}); measure one (x[i:i+1]) or pass the "
                "batch to drift_report"
            )
        x, lay = x[0], lay[1:]  # BCTHW -> CTHW, BTCHW -> TCHW, BTHWC -> THWC
    t_axis = lay.index("T")
    n = int(x.shape[t_axis])
    kept = select_indices(n, fps=fps, **selection)
    if len(kept) == 0:
        raise ValueError(f"no frames selected from a video of {n} frames")
    lo_hi = value_span(x)
    check_values(*lo_hi, dtype=x.dtype, value_range=value_range)  # once, on the whole input

    height, width = int(x.shape[lay.index("H")]), int(x.shape[lay.index("W")])
    target = size or (height, width)
    gshape = grid_shape(*target, grid)
    shapes = _sizes(*target, sides)
    # Decoded-style uint8 (T, H, W, 3) arrays take the decoder's path: no float copy at full size.
    raw = isinstance(x, np.ndarray) and x.dtype == np.uint8 and lay == "THWC" and x.shape[-1] == 3
    raw = raw and value_range in (None, (0, 255))
    rows = batch_size if raw else max(1, min(batch_size, _FRAME_BYTES // max(1, 12 * height * width)))

    def batches() -> Iterator[_Batch]:
        for i in range(0, len(kept), rows):
            part = kept[i : i + rows]
            sl = (slice(None),) * t_axis + (slice(part.start, part.stop, part.step),)
            if raw:
                frames: Any = x[sl]
            else:
                frames = as_frames(x[sl], layout=lay, value_range=value_range, check_data=False)  # type: ignore[arg-type]  # lay: a Layout less its B
            when = np.asarray(part) / fps if fps else np.full(len(part), math.nan)  # seconds, if known
            yield _shrink(frames, shapes, gshape, np.asarray(part), when)

    return _Source(_regroup(batches(), batch_size), fps, "array", height, width, len(kept))


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
    selection: dict[str, Any],
    batch_size: int,
    backend: Backend,
    threads: int,
    grid: int | None,
    size: tuple[int, int] | None,
    sides: set[int],
) -> _Source:
    info = probe(path)
    estimate = None
    if info.frame_count:
        try:
            estimate = len(select_indices(info.frame_count, fps=info.fps, **selection))
        except ValueError:
            estimate = None
    reader = iter_video(path, batch_size=1, backend=backend, threads=threads, warn=False, **selection)
    target: tuple[int, int] = size or (info.height, info.width)
    gshape = grid_shape(*target, grid)
    shapes = _sizes(target[0], target[1], sides)

    def frames() -> Iterator[_Batch]:  # in the decode thread: each frame shrinks as soon as it is decoded
        for b in reader:
            if b.frames.shape[1:3] != (info.height, info.width) and size is None:
                raise ValueError(
                    f"frame size changed mid-video from {info.width}x{info.height} to {b.frames.shape[2]}x{b.frames.shape[1]}"
                )
            yield _shrink(b.frames, shapes, gshape, b.index, b.times)

    batches = _prefetch(_regroup(frames(), batch_size))
    return _Source(batches, info.fps, str(path), info.height, info.width, estimate, reader)


def _check_options(
    anchor_frames: int, lag_every: int, grid: int | None, lags: Sequence[int], scenes: str
) -> list[int]:
    if anchor_frames < 1:
        raise ValueError(f"anchor_frames must be >= 1, got {anchor_frames}")
    if lag_every < 1:
        raise ValueError(f"lag_every must be >= 1, got {lag_every}")
    if grid is not None and (isinstance(grid, bool) or not isinstance(grid, int) or grid < _MIN_SIDE):
        raise ValueError(
            f"grid must be an integer >= {_MIN_SIDE} (the grid's short side) or None, got {grid!r}"
        )
    if scenes not in SCENE_MODES:
        raise ValueError(f"unknown scenes {scenes!r}; allowed: {', '.join(repr(s) for s in SCENE_MODES)}")
    lag_list = sorted({int(k) for k in lags})
    if any(k < 1 for k in lag_list):
        raise ValueError(f"lags must be >= 1, got {tuple(lags)}")
    return lag_list


@torch.no_grad()
def measure(
    video: str | os.PathLike[str] | np.ndarray | Tensor | Sequence[Any],
    *,
    name: str | None = None,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    grid: int | None = GRID,
    size: tuple[int, int] | None = None,
    anchor_frames: int = 1,
    lags: Sequence[int] = DEFAULT_LAGS,
    lag_every: int = 4,
    lpips: LPIPSModel | None = None,
    lpips_size: int | None = 256,
    scorers: Sequence[FrameScorer] = (),
    scenes: SceneMode = "warn",
    batch_size: int = 16,
    backend: Backend = "auto",
    decode_threads: int = 0,
    on_frames: Callable[[int], None] | None = None,
    on_start: Callable[[int | None], None] | None = None,
) -> VideoMetrics:
    """Measure every per-frame metric of a video in one streaming pass.

    Args:
        video: a file path, an array/tensor laid out as ``layout`` (one video; a ``B*`` layout needs B = 1), or a
            list of frames (stacked along a new first axis).
        name: label for reports (default: the file name, or "video").
        layout, value_range: how an array/tensor is laid out and scaled (:func:`vidfix.metrics.as_frames`).
        fps: frame rate of an array/tensor (files state their own); needed for ``start``/``end`` on arrays.
        stride, start, end, max_frames: frame selection (:func:`vidfix.metrics.iter_video`; files by timestamps).
        grid: short side of the analysis grid (:mod:`vidfix.metrics.grid`), or ``None`` for every pixel.
        size: ``(H, W)`` to resize every frame to first (antialiased), to compare videos of other aspect ratios.
        anchor_frames: how many first frames form the colour anchor of ``delta_e`` (e.g. the chunk length).
        lags: frame-pair lags for the lag SSIM curve (empty to skip).
        lag_every: the lag curve uses pairs ending on every ``lag_every``-th frame (1: all; the mean is the same
            in expectation, at a fraction of the cost).
        lpips: a model from :func:`vidfix.metrics.load_lpips` to add ``lpips_anchor`` and ``lpips_adjacent``.
        lpips_size: short side frames are shrunk to for LPIPS (``None``: native size).
        scorers: :class:`~vidfix.metrics.FrameScorer` objects adding their own series (consistency, motion...).
        scenes: ``"warn"`` (detect cuts and say where), ``"split"`` (measure within scenes), or ``"off"``
            (:mod:`vidfix.metrics.scenes`).
        batch_size: frames measured at once.
        backend, decode_threads: file reader and its threads (:func:`vidfix.metrics.iter_video`); files are decoded
            in a background thread, ahead of the metrics.
        on_start: called once with the expected number of frames (or ``None``), e.g. to size a progress bar.
        on_frames: called after each batch with the number of frames just measured.

    Raises:
        ValueError: fewer than 2 frames, frames too small for the grid, or bad layout/range/selection/options.
        FileNotFoundError, VideoReadError: unreadable files.

    Warns:
        VideoReadWarning: a file read with a caveat (truncated, variable frame rate, wrong header rate).
        MetricsWarning: scene cuts found but not split, random-weight scorers.
    """
    lag_list = _check_options(anchor_frames, lag_every, grid, lags, scenes)
    selection = dict(stride=stride, start=start, end=end, max_frames=max_frames)
    scorer_list = list(scorers)
    seen: set[str] = set()
    for s in scorer_list:
        if not isinstance(s, FrameScorer):
            raise TypeError(
                f"{type(s).__name__} is not a frame scorer (needs metrics, size, start() and __call__)"
            )
        for key in s.metrics:
            if key in METRICS:
                raise ValueError(f"scorer series {key!r} is a built-in metric; give it another name")
            if key in seen:
                raise ValueError(f"series {key!r} comes from two scorers; each series needs its own name")
            seen.add(key)
    sides = {s.size for s in scorer_list if s.size is not None}
    if lpips is not None:
        sides.add(lpips_size or _NATIVE)
    if isinstance(video, (str, os.PathLike)):
        src = _file_source(video, selection, batch_size, backend, decode_threads, grid, size, sides)
        label = name or os.path.basename(os.fspath(video))
    else:
        src = _array_source(video, layout, value_range, fps, selection, batch_size, grid, size, sides)
        label = name or "video"
    if on_start is not None:
        on_start(src.estimate)
    with cv2_threads(1):
        vm = _measure_pass(src, label, lag_list, lag_every, lpips, lpips_size, scorer_list, scenes, on_frames)
    vm.stride, vm.settings = (
        stride,
        {
            "start": start,
            "end": end,
            "max_frames": max_frames,
            "grid": grid,
            "size": list(size) if size else None,
            "lpips_size": lpips_size if lpips is not None else None,
        },
    )
    vm = with_anchor(vm, anchor_frames)
    read = len(src.reader.notes) if src.reader is not None else 0  # the reader's notes come first
    for i, note in enumerate(vm.notes):
        warnings.warn(note, VideoReadWarning if i < read else MetricsWarning, stacklevel=3)
    if vm.cuts and scenes == "split":  # information, not a warning
        vm.notes.append(
            f"{vm.name}: measured within {len(vm.cuts) + 1} scenes (cuts at frame {_listing(vm.index[vm.cuts])})"
        )
    return vm


def _measure_pass(
    src: _Source,
    label: str,
    lag_list: list[int],
    lag_every: int,
    lpips: LPIPSModel | None,
    lpips_size: int | None,
    scorers: list[FrameScorer],
    scenes: SceneMode,
    on_frames: Callable[[int], None] | None,
) -> VideoMetrics:
    parts: dict[str, list[np.ndarray]] = {}
    thumbs: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    times: list[np.ndarray] = []
    cuts: list[int] = []
    detector = CutDetector() if scenes != "off" else None
    pairs = _LagPairs(lag_list, lag_every) if lag_list else None
    track = _LpipsTrack(lpips) if lpips is not None else None
    for s in scorers:
        s.start()
    t = 0  # analysed frames so far
    scene_start = 0
    anchor: Moments | None = None
    prev: np.ndarray | None = None  # the previous grid frame
    gshape: tuple[int, int] | None = None

    def keep(key: str, value: Any) -> None:
        parts.setdefault(key, []).append(np.asarray(value, dtype=np.float64))

    for batch in src.batches:
        b = len(batch.index)
        if gshape is None:  # first batch: check the grid
            gshape = (int(batch.grid.shape[1]), int(batch.grid.shape[2]))
            if min(gshape) < _MIN_SIDE:
                raise ValueError(
                    f"frames of {src.width}x{src.height} leave a {gshape[1]}x{gshape[0]} analysis grid; need at "
                    f"least {_MIN_SIDE}x{_MIN_SIDE}"
                )
        # Scene cuts, and where anchors restart.
        cut = detector(batch.grid) if detector is not None else np.zeros(b, dtype=bool)
        cuts += [t + int(i) for i in np.flatnonzero(cut)]
        starts = cut.copy() if scenes == "split" else np.zeros(b, dtype=bool)
        if t == 0:
            starts[0] = True
        # Per-frame statistics on the grid.
        gs = grid_stats(batch.grid)
        for key, value in gs.stats.items():
            keep(key, value)
        thumbs.append(gs.thumb)
        # Frame against the scene's first frame, the previous frame, and the frames `lags` back.
        ssim_v, flick = np.empty(b), np.full(b, math.nan)
        for i in range(b):
            moments = (gs.luma[i], gs.block_mean[i], gs.block_sq[i])
            if starts[i]:
                anchor, scene_start = moments, t + i
            elif prev is not None:
                flick[i] = flicker_pair(prev, batch.grid[i])
            assert anchor is not None
            ssim_v[i] = block_ssim(moments, anchor)
            if pairs is not None:
                pairs.update(t + i, moments, scene_start)
            prev = batch.grid[i]
        keep("ssim", ssim_v)
        keep("flicker", flick)
        # Networks and scorers, each at its frame size.
        start_mask = torch.from_numpy(starts)
        if track is not None:
            for key, tracked in track(batch.sized[lpips_size or _NATIVE], start_mask).items():
                keep(key, tracked)
        for s in scorers:
            frames = batch.sized[s.size] if s.size is not None else _grid_tensor(batch.grid)
            got = s(frames, start_mask)
            for key in s.metrics:
                keep(key, got[key].double().cpu().numpy())
        indices.append(batch.index)
        times.append(batch.times)
        t += b
        if on_frames is not None:
            on_frames(b)

    notes = list(src.reader.notes) if src.reader is not None else []
    if t < 2:
        raise ValueError(
            f"{label!r}: drift needs at least 2 frames, got {t}" + (f" ({notes[0]})" if notes else "")
        )
    index = np.concatenate(indices)
    all_times = np.concatenate(times)
    if cuts and scenes == "warn":
        notes.append(
            f"{label}: {len(cuts)} scene cut(s) at frame {_listing(index[cuts])} (content detector): a cut reads as "
            "drift; measure within scenes with scenes='split' (vidfix drift --scenes)"
        )
    notes += [str(getattr(s, "note")) for s in scorers if getattr(s, "note", None)]  # noqa: B009
    series = {key: np.concatenate(vals) for key, vals in parts.items()}
    series["delta_e"] = np.zeros(t)  # set by with_anchor
    info = {k: v for s in scorers for k, v in s.metrics.items()}
    order = [*METRICS, *info]
    ordered = {key: series[key] for key in order if key in series}
    features = _features(ordered, np.concatenate(thumbs))
    return VideoMetrics(
        name=label,
        source=src.source,
        index=index,
        series=ordered,
        features=features,
        lag_ssim=pairs.means() if pairs is not None else {},
        fps=src.reader.fps if src.reader is not None and src.reader.fps else src.fps,
        height=src.height,
        width=src.width,
        grid=gshape or (0, 0),
        times=None if np.isnan(all_times).all() else all_times,
        cuts=[int(c) for c in cuts],  # positions in the analysed frames
        scenes=scenes,
        notes=notes,
        metric_info=info,
        lpips=None
        if lpips is None
        else {"net": lpips.net, "weights": lpips.weights, "reportable": lpips.reportable},
    )


def _listing(frames: Any, most: int = 8) -> str:
    values = [str(int(f)) for f in frames]
    return ", ".join(values[:most]) + (" ..." if len(values) > most else "")


def _grid_tensor(grid: np.ndarray) -> Tensor:
    """Grid frames ``(B, h, w, 3)`` as float32 ``(B, 3, h, w)`` in [0, 1] for scorers."""
    if grid.dtype == np.uint8:
        return _float_frames(grid)
    return torch.from_numpy(np.ascontiguousarray(grid)).permute(0, 3, 1, 2)


def _features(series: dict[str, np.ndarray], thumb: np.ndarray) -> np.ndarray:
    """Frame features ``(T, D)``, columns :data:`FEATURE_NAMES`."""
    cols = [series[k] for k in FEATURE_NAMES[:12]]
    cols.append(np.log10(1.0 + series["sharpness"]))
    cols += [series[f"wavelet_l{k}"] for k in (1, 2, 3)]
    return np.column_stack([*cols, thumb])  # (T, D)
