"""Drift summaries over per-frame metric series: start-end, per-chunk, lag, Frechet distance, comparisons.

A series is a 1-D array ``(T,)`` of one per-frame metric (NaN where undefined, e.g. ``flicker`` on frame 0);
everything here is generic over the metric. :class:`vidfix.metrics.VideoMetrics` holds the series of a video.

- **Start-end** (FramePack, arXiv 2504.12626): mean of the last 15% of frames minus mean of the first 15%,
  signed (over-exposure and saturation creep have a direction) and absolute.
- **Per-chunk curve**: each chunk's mean minus chunk 0's, for chunks of ``chunk_frames`` frames (the last may
  be shorter) or ``chunks`` near-equal chunks. :func:`video_drift_error` is LV-Bench's VDE (BlockVid, arXiv
  2511.22973): ``sum_i w_i |M_i - M_1| / |M_1|`` over chunks i = 2..N, weights ``N - i + 1`` (linear) or their log.
  It is a relative error, so it is defined only for positive quality scores (``MetricInfo.score``: sharpness,
  SSIM, flicker, consistency, motion smoothness); on a signed or near-zero metric (a colour cast, ``delta_e``,
  clipping) it divides by noise and is not reported. Its weights also fall with time, so a steady ramp can score
  below a noisy clean clip: read it beside the per-chunk curve.
- **Scenes**: where scenes are measured separately, :func:`stitch` removes the jump at each cut before any
  summary, so a cut is not drift and drift on both sides of it adds up.
- **Comparisons** (:func:`compare`): the difference of absolute drifts, ``|d_video| - |d_baseline|``, and that
  difference in units of the reference's own **spread** (:func:`spread`: the scatter of its per-frame values
  about a straight line, scene by scene), never a ratio of two small numbers.
- **Lag curve**: mean ``|M(t + k) - M(t)|`` over t, for lags k = 2, 5, 10, 20, 50 frames; flat means coherent.
  (:func:`vidfix.metrics.measure` also gives the frame-pair SSIM at each lag.)
- **Frechet distance** of frame features (``VideoMetrics.features``, columns ``FEATURE_NAMES``: colour, contrast,
  saturation, luma p99, log sharpness, wavelet shares and a 2x2 luma thumbnail) between windows of a video's
  frames and a reference set of frames. Features are standardised by the reference's mean and std (each std
  floored so a feature constant in the reference cannot explode), so the distance is unit-free, deterministic and
  offline. It is ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (FID's formula on these features).

Example:
    >>> s = np.linspace(0.5, 0.6, 100)                 # a brightness ramp
    >>> round(start_end(s).signed, 3)
    0.085
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from vidfix.metrics.measure import DEFAULT_LAGS, FEATURE_NAMES, VideoMetrics, measure

__all__ = [
    "CHANNEL_METRICS",
    "DRIFT_METRICS",
    "FEATURE_FLOORS",
    "MIN_FRECHET_FRAMES",
    "FrechetCurve",
    "StartEnd",
    "channel_drift",
    "chunk_bounds",
    "chunk_curve",
    "chunk_means",
    "compare",
    "drift_series",
    "frechet_distance",
    "frechet_over_time",
    "lag_curve",
    "spread",
    "standardize",
    "start_end",
    "start_end_drift",
    "stitch",
    "video_drift_error",
    "window_bounds",
    "windowed_frechet",
]

# The headline drift metrics: colour, contrast, saturation, sharpness, flicker.
DRIFT_METRICS: tuple[str, ...] = (
    "luma_mean",
    "lab_l",
    "lab_a",
    "lab_b",
    "delta_e",
    "contrast",
    "saturation",
    "sharpness",
    "wavelet_l1",
    "flicker",
)
CHANNEL_METRICS: tuple[str, ...] = ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b")
MIN_FRECHET_FRAMES = 8  # fewer frames per window give a covariance of too low a rank to compare
_EDGE = 8  # frames on each side of a cut used to estimate its jump

# Smallest std used to standardise each feature (in its own unit): below this a change is not meaningful.
FEATURE_FLOORS: dict[str, float] = {
    **dict.fromkeys(
        ("mean_r", "mean_g", "mean_b", "std_r", "std_g", "std_b", "saturation", "luma_p99"), 2e-3
    ),
    **dict.fromkeys(("lab_l", "lab_a", "lab_b", "contrast"), 0.2),
    "log_sharpness": 0.01,
    **dict.fromkeys(("wavelet_l1", "wavelet_l2", "wavelet_l3"), 1e-4),
    **dict.fromkeys(("thumb_tl", "thumb_tr", "thumb_bl", "thumb_br"), 2e-3),
}


@dataclass(frozen=True)
class StartEnd:
    """Start-end drift of one series: means of the first and last ``frames`` frames and their difference."""

    start: float
    end: float
    signed: float  # end - start
    abs: float
    frames: int  # frames averaged at each end


@dataclass(frozen=True)
class FrechetCurve:
    """Frechet distance of consecutive frame windows to a reference set."""

    start: np.ndarray  # (W,) first frame (row) of each window
    stop: np.ndarray  # (W,) one past the last frame
    distance: np.ndarray  # (W,)


def _series(x: Any, name: str = "series") -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1 or a.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D series (T,), got shape {a.shape}")
    return a


def _nanmean(a: np.ndarray) -> float:
    a = a[~np.isnan(a)]
    return float(a.mean()) if a.size else math.nan


def start_end(series: Any, *, fraction: float = 0.15) -> StartEnd:
    """Start-end drift: mean of the last ``fraction`` of frames minus the first (at least one frame each; NaNs skipped)."""
    s = _series(series)
    if not 0 < fraction <= 0.5:
        raise ValueError(f"fraction must be in (0, 0.5], got {fraction}")
    k = max(1, math.ceil(fraction * len(s)))
    first, last = _nanmean(s[:k]), _nanmean(s[-k:])
    if math.isnan(first) and len(s) > k:  # e.g. flicker: undefined on frame 0 only
        first = _nanmean(s[: k + 1])
    return StartEnd(start=first, end=last, signed=last - first, abs=abs(last - first), frames=k)


def chunk_bounds(
    n: int, *, chunk_frames: int | None = None, chunks: int | None = None
) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` frame ranges: chunks of ``chunk_frames`` (last may be shorter) or ``chunks`` near-equal ones."""
    if (chunk_frames is None) == (chunks is None):
        raise ValueError("give exactly one of chunk_frames or chunks")
    if chunk_frames is not None:
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        return [(a, min(n, a + chunk_frames)) for a in range(0, n, chunk_frames)]
    assert chunks is not None
    if not 1 <= chunks <= n:
        raise ValueError(f"chunks must be in 1..{n} (the number of frames), got {chunks}")
    edges = np.linspace(0, n, chunks + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def chunk_means(series: Any, *, chunk_frames: int | None = None, chunks: int | None = None) -> np.ndarray:
    """Mean of a series over each chunk: ``(K,)``."""
    s = _series(series)
    return np.array(
        [_nanmean(s[a:b]) for a, b in chunk_bounds(len(s), chunk_frames=chunk_frames, chunks=chunks)]
    )


def chunk_curve(series: Any, *, chunk_frames: int | None = None, chunks: int | None = None) -> np.ndarray:
    """Each chunk's mean minus chunk 0's mean, signed: ``(K,)`` starting at 0."""
    m = chunk_means(series, chunk_frames=chunk_frames, chunks=chunks)
    base = m[0] if not math.isnan(m[0]) or len(m) < 2 else m[1]
    return m - base


def video_drift_error(chunk_values: Any, *, weight: Literal["linear", "log"] = "linear") -> float:
    """LV-Bench video drift error of per-chunk metric values ``M_1..M_N``; NaN if ``M_1`` is 0 (relative error)."""
    m = _series(chunk_values, "chunk_values")
    n = len(m)
    if n < 2:
        return 0.0
    if m[0] == 0 or math.isnan(m[0]):
        return math.nan
    i = np.arange(2, n + 1)
    if weight == "linear":
        w = (n - i + 1).astype(np.float64)
    elif weight == "log":
        w = np.log(n - i + 1.0)
    else:
        raise ValueError(f"unknown weight {weight!r}; allowed: 'linear', 'log'")
    return float(np.nansum(w * np.abs(m[1:] - m[0]) / abs(m[0])))


def lag_curve(series: Any, lags: Iterable[int] = DEFAULT_LAGS) -> dict[int, float]:
    """Mean ``|M(t + k) - M(t)|`` for each lag k shorter than the series (NaN pairs skipped)."""
    s = _series(series)
    out: dict[int, float] = {}
    for k in lags:
        if k < 1:
            raise ValueError(f"lags must be >= 1, got {k}")
        if k < len(s):
            out[int(k)] = _nanmean(np.abs(s[k:] - s[:-k]))
    return out


def _edge_level(s: np.ndarray, at: float) -> float:
    """Level of a short series at position ``at`` (a straight line through its finite values; their mean if < 3)."""
    x = np.flatnonzero(np.isfinite(s)).astype(np.float64)
    if len(x) == 0:
        return math.nan
    if len(x) < 3:
        return float(s[x.astype(int)].mean())
    slope, offset = np.polyfit(x, s[x.astype(int)], 1)
    return float(offset + slope * at)


def stitch(series: Any, cuts: Sequence[int]) -> np.ndarray:
    """The series with the jump at each cut removed, so that it continues across scenes.

    At each cut ``c`` (the first frame of a scene) the level just before and just after the boundary is estimated
    from up to 8 frames on each side (a straight-line fit, so a steady trend is kept) and the difference is
    subtracted from everything after it. Drift within scenes is kept and adds up; the cut itself is gone.
    """
    s = _series(series).copy()
    bounds = [0, *sorted({int(c) for c in cuts if 0 < int(c) < len(s)}), len(s)]
    for k in range(1, len(bounds) - 1):
        a, c, b = bounds[k - 1], bounds[k], bounds[k + 1]
        before = s[max(a, c - _EDGE) : c]
        after = s[c : min(b, c + _EDGE)]
        jump = _edge_level(after, -0.5) - _edge_level(before, len(before) - 0.5)
        if math.isfinite(jump):
            s[c:] -= jump
    return s


def spread(series: Any, bounds: Sequence[tuple[int, int]] | None = None) -> float:
    """Scatter of a series about a straight line (per scene ``bounds``): the root mean square residual.

    The noise a drift estimate has to stand out from: frame-to-frame variation, not the trend. NaN if fewer than
    3 finite values.
    """
    s = _series(series)
    squares, dof = 0.0, 0
    for a, b in bounds or [(0, len(s))]:
        part = s[a:b]
        x = np.flatnonzero(np.isfinite(part)).astype(np.float64)
        if len(x) < 3:
            continue
        y = part[x.astype(int)]
        resid = y - np.polyval(np.polyfit(x, y, 1), x)
        squares += float(resid @ resid)
        dof += len(x) - 2
    return math.sqrt(squares / dof) if dof > 0 else math.nan


def drift_series(video: VideoMetrics, metric: str) -> np.ndarray:
    """The series drift summaries use: as measured, or stitched across cuts when scenes were measured separately."""
    s = video.series[metric]
    return stitch(s, video.cuts) if video.scenes == "split" and video.cuts else s


def start_end_drift(
    video: VideoMetrics, *, metrics: Sequence[str] | None = None, fraction: float = 0.15
) -> dict[str, StartEnd]:
    """Start-end drift of each metric of a video (default: every metric it has), in one call."""
    names = list(video.series) if metrics is None else list(metrics)
    missing = [m for m in names if m not in video.series]
    if missing:
        raise KeyError(f"{video.name!r} has no metric {missing}; it has {', '.join(video.series)}")
    return {m: start_end(drift_series(video, m), fraction=fraction) for m in names}


def channel_drift(
    video: VideoMetrics, *, chunk_frames: int | None = None, chunks: int | None = None
) -> dict[str, np.ndarray]:
    """Per-channel mean and std drift of a video from its own start, in one call.

    Per frame (``(T,)``, minus the mean of the first ``video.anchor_frames`` frames) without chunking, or per
    chunk (``(K,)``, minus chunk 0) with ``chunk_frames`` or ``chunks``.
    """
    out: dict[str, np.ndarray] = {}
    for m in CHANNEL_METRICS:
        s = drift_series(video, m)
        if chunk_frames is None and chunks is None:
            out[m] = s - s[: video.anchor_frames].mean()
        else:
            out[m] = chunk_curve(s, chunk_frames=chunk_frames, chunks=chunks)
    return out


def _features(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x.features if isinstance(x, VideoMetrics) else x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 2:
        raise ValueError(f"{name} must be frame features (N >= 2, D), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds non-finite features")
    return a


def standardize(features: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    """Z-score both feature sets by the reference's mean and std (std floored per :data:`FEATURE_FLOORS`)."""
    a, r = _features(features, "features"), _features(reference, "reference")
    if a.shape[1] != r.shape[1]:
        raise ValueError(f"features have {a.shape[1]} columns but the reference has {r.shape[1]}")
    floors = (
        np.array([FEATURE_FLOORS.get(n, 1e-6) for n in FEATURE_NAMES])
        if r.shape[1] == len(FEATURE_NAMES)
        else 1e-6
    )
    mu = r.mean(0)
    sd = np.sqrt(r.var(0) + np.square(floors))
    return (a - mu) / sd, (r - mu) / sd


def frechet_distance(a: Any, b: Any) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature rows ``(N, D)`` (unbiased covariances)."""
    x, y = _features(a, "a"), _features(b, "b")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"feature sets differ in width: {x.shape[1]} vs {y.shape[1]}")
    mu = x.mean(0) - y.mean(0)
    sa = np.atleast_2d(np.cov(x, rowvar=False))
    sb = np.atleast_2d(np.cov(y, rowvar=False))
    # Tr sqrt(Sa Sb) = sum of sqrt of the eigenvalues of Sa^(1/2) Sb Sa^(1/2) (symmetric PSD, so real and stable).
    w, v = np.linalg.eigh(sa)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = half @ sb @ half
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    d = float(mu @ mu + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(np.clip(ev, 0, None)).sum())
    return max(d, 0.0)


def windowed_frechet(
    features: Any, reference: Any, *, window: int = 32, step: int | None = None
) -> FrechetCurve:
    """Frechet distance of windows of ``window`` frames to the reference frames, first window to last frame.

    Windows start about ``step`` frames apart (default ``window``: back to back), spread evenly so that the first
    starts at frame 0 and the last ends at the last frame (they overlap a little when ``step`` does not divide
    the length). Both sets are standardised by the reference (:func:`standardize`).

    Raises:
        ValueError: fewer frames than one window, or a window shorter than :data:`MIN_FRECHET_FRAMES`.
    """
    a, r = standardize(features, reference)
    if len(a) < window:
        raise ValueError(
            f"{len(a)} frames are fewer than one Frechet window of {window}; use a shorter window (at least "
            f"{MIN_FRECHET_FRAMES} frames) or a longer video"
        )
    bounds = window_bounds(len(a), window=window, step=step)
    dist = [frechet_distance(a[s:e], r) for s, e in bounds]
    return FrechetCurve(
        start=np.array([s for s, _ in bounds]), stop=np.array([e for _, e in bounds]), distance=np.array(dist)
    )


def window_bounds(n: int, *, window: int = 32, step: int | None = None) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` of the windows :func:`windowed_frechet` uses on ``n`` frames.

    Equal windows of ``window`` frames about ``step`` (default ``window``) apart, spread evenly so that the
    first starts at frame 0 and the last ends at frame ``n``; one window of all frames when ``n <= window``.
    ``window`` is at least :data:`MIN_FRECHET_FRAMES`.
    """
    if window < MIN_FRECHET_FRAMES:
        raise ValueError(
            f"window must be at least {MIN_FRECHET_FRAMES} frames (fewer give a covariance of too low a rank to "
            f"compare), got {window}"
        )
    step = window if step is None else step
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    if n <= window:
        return [(0, n)]
    k = math.ceil((n - window) / step) + 1
    starts = sorted({round(x) for x in np.linspace(0, n - window, k)})
    return [(s, s + window) for s in starts]


def frechet_over_time(
    video: VideoMetrics | str | os.PathLike[str] | Any,
    reference: VideoMetrics | str | os.PathLike[str] | Any | Sequence[Any],
    *,
    window: int = 32,
    step: int | None = None,
    **measure_options: Any,
) -> FrechetCurve:
    """Windowed Frechet distance of a video against fresh reference frames, in one call.

    ``video`` and ``reference`` (one or a list of videos) are :class:`VideoMetrics` or anything
    :func:`vidfix.metrics.measure` takes (measured here with ``measure_options``).
    """
    vm = video if isinstance(video, VideoMetrics) else measure(video, **measure_options)
    refs: list[Any] = list(reference) if isinstance(reference, (list, tuple)) else [reference]
    feats = [
        r.features if isinstance(r, VideoMetrics) else measure(r, **measure_options).features for r in refs
    ]
    return windowed_frechet(vm.features, np.concatenate(feats), window=window, step=step)


def compare(
    videos: Sequence[VideoMetrics],
    *,
    baseline: int = 0,
    metrics: Sequence[str] = DRIFT_METRICS,
    fraction: float = 0.15,
    reference: Sequence[VideoMetrics] = (),
) -> dict[str, dict[str, Any]]:
    """Compare start-end drift across videos (e.g. with and without a stabilizer).

    Returns ``{metric: {"signed": {name: d}, "abs": {name: |d|}, "difference": {name: |d| - |d_base|},
    "spread": s, "in_spread": {name: (|d| - |d_base|) / s}}}``: a negative difference means less drift than the
    baseline video, by that many of the reference's spreads (:func:`spread`; the ``reference`` videos pooled, or
    the baseline's own when none is given; ``None`` when the spread is 0 or undefined). Names must be unique.
    """
    if not videos:
        raise ValueError("compare needs at least one video")
    names = [v.name for v in videos]
    if len(set(names)) != len(names):
        raise ValueError(f"video names must be unique to compare them, got {names}")
    if not 0 <= baseline < len(videos):
        raise ValueError(f"baseline must index one of the {len(videos)} videos, got {baseline}")
    scale_from = list(reference) or [videos[baseline]]
    out: dict[str, dict[str, Any]] = {}
    for m in metrics:
        if not all(m in v.series for v in videos):
            continue
        se = {v.name: start_end(drift_series(v, m), fraction=fraction) for v in videos}
        base = se[names[baseline]].abs
        sd = _pooled_spread(scale_from, m)
        diff = {n: d.abs - base for n, d in se.items()}
        out[m] = {
            "signed": {n: d.signed for n, d in se.items()},
            "abs": {n: d.abs for n, d in se.items()},
            "difference": diff,
            "spread": sd,
            "in_spread": {n: (v / sd if sd > 0 else None) for n, v in diff.items()},
        }
    return out


def _pooled_spread(videos: Sequence[VideoMetrics], metric: str) -> float:
    """Root mean square of the videos' spreads of ``metric`` (0 if none has one)."""
    values = [spread(v.series[metric], v.scene_bounds) for v in videos if metric in v.series]
    finite = [x for x in values if math.isfinite(x)]
    return math.sqrt(sum(x * x for x in finite) / len(finite)) if finite else 0.0
