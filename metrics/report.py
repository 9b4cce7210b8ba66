"""Drift reports: one call from videos (files, arrays, tensors, lists of frames) to a JSON-ready dict and a table.

JSON schema ``vidfix.drift/2`` (stable: fields are only ever added; NaN and inf are written as ``null``)::

    {
      "schema": "vidfix.drift/2",
      "vidfix_version": str,
      "settings": {"fraction": float, "chunk_frames": int|null, "chunks": int|null, "lags": [int],
                   "lag_every": int, "window": int, "stride": int, "grid": int|null, "scenes": "warn"|"split"|"off",
                   "size": [H, W]|null, "reference": [str]|null},
      "metrics": {name: {"unit": str, "description": str, "rise": str,
                         "kind": "statistic"|"anchor"|"adjacent", "score": bool}},
      "features": [str],                        # columns of the Frechet feature vector
      "videos": [VIDEO],                        # the videos measured
      "references": [VIDEO],                    # the reference videos (no comparison, no Frechet of their own)
      "comparison": null | {"baseline": str, "spread_from": str,
                            "metrics": {metric: {"signed": {video: float}, "abs": {video: float},
                                                 "difference": {video: float}, "spread": float,
                                                 "in_spread": {video: float|null}}}},
      "notes": [str]                            # everything read or summarised with a caveat
    }
    VIDEO = {
        "name": str, "source": str, "frames": int, "fps": float|null, "height": int, "width": int,
        "grid": [h, w], "stride": int, "anchor_frames": int,
        "frame_index": [int],                   # source frame number of each analysed frame
        "times": [float]|null,                  # seconds from the first frame (file timestamps)
        "cuts": [int],                          # analysed-frame positions where a detected scene starts
        "scenes": [[start, stop]],              # scenes measured separately ([[0, frames]] unless split)
        "series": {metric: [float|null]},       # one value per analysed frame
        "spread": {metric: float|null},         # scatter about a straight line (drift.spread)
        "start_end": {metric: {"start", "end", "signed", "abs": float|null, "frames": int}},
        "chunks": null | {"bounds": [[start, stop]], "curve": {metric: [float|null]},
                          "means": {metric: [float|null]}, "vde": {metric: float}},   # vde: scores only
        "lag": {"ssim": {"lags": [int], "values": [float|null]},
                "abs_change": {"lags": [int], "values": {metric: [float|null]}}},
        "frechet": null | {"window": int, "start": [int], "stop": [int], "distance": [float]},
        "lpips": null | {"net": str, "weights": str, "reportable": bool},
        "notes": [str]
    }

Summaries (start-end, chunks, lags, comparison) use each series stitched across cuts when scenes are split
(:func:`vidfix.metrics.stitch`); ``series`` is as measured. ``chunks.curve`` is each chunk's mean minus chunk 0's
(chunk 0 is also the colour anchor of ``delta_e``); ``chunks.vde`` is LV-Bench's video drift error, given only
for positive quality scores (``metrics[m].score``). ``comparison`` is present with two or more videos (baseline:
the first): ``difference`` is ``|drift| - |drift of the baseline|`` (negative: less drift) and ``in_spread`` that
difference in spreads of the references (or of the baseline when there are none).

Example:
    >>> report = drift_report(["a.mp4", "b.mp4"], chunk_frames=16)     # doctest: +SKIP
    >>> print(format_table(report)); plot_report(report, "drift.png")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from vidfix.metrics.drift import (
    MIN_FRECHET_FRAMES,
    chunk_bounds,
    chunk_curve,
    chunk_means,
    compare,
    drift_series,
    lag_curve,
    spread,
    start_end,
    video_drift_error,
    windowed_frechet,
)
from vidfix.metrics.grid import GRID, grid_shape
from vidfix.metrics.io import Backend, probe
from vidfix.metrics.layout import Layout
from vidfix.metrics.measure import DEFAULT_LAGS, FEATURE_NAMES, METRICS, VideoMetrics, measure, with_anchor
from vidfix.metrics.perceptual import LPIPSModel, load_lpips
from vidfix.metrics.scenes import SceneMode
from vidfix.metrics.scorers import FrameScorer

__all__ = ["SCHEMA", "UnreportableError", "drift_report", "format_table", "load_report", "save_report"]

SCHEMA = "vidfix.drift/2"


class UnreportableError(ValueError):
    """LPIPS numbers from a random or unverified backbone were about to go into a report."""


def _clean(x: Any) -> Any:
    """JSON-safe copy: numpy to Python, NaN/inf to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _size_of(video: Any, layout: Layout) -> tuple[int, int] | None:
    if isinstance(video, VideoMetrics):
        return (video.height, video.width)
    if isinstance(video, (str, os.PathLike)):
        info = probe(video)
        return (info.height, info.width)
    if isinstance(video, (list, tuple)) and video:  # a list of frames
        shape = (len(video), *np.shape(video[0]))
    else:
        shape = tuple(getattr(video, "shape", ()))
    if len(shape) != len(layout):
        return None  # measure() raises the layout error
    h, w = layout.index("H"), layout.index("W")
    return (int(shape[h]), int(shape[w]))


def _fps_of(video: Any, fps: float | None) -> float | None:
    if isinstance(video, VideoMetrics):
        return video.fps
    if isinstance(video, (str, os.PathLike)):
        return probe(video).fps
    return fps


def _is_frame(x: Any, layout: Layout) -> bool:
    """One frame (not a video) of ``layout``: an array/tensor/image of rank one less than the layout's."""
    return not isinstance(x, (str, os.PathLike, VideoMetrics)) and np.ndim(x) == len(layout) - 1


def _split_batch(videos: Any, layout: Layout) -> list[Any]:
    """The videos in ``videos``: a batched array (a ``B...`` layout) is its B videos; a list of frames is one video."""
    if isinstance(videos, (str, os.PathLike, VideoMetrics)):
        return [videos]
    if hasattr(videos, "shape"):
        if layout.startswith("B") and len(videos.shape) == 5:
            return [videos[i : i + 1] for i in range(videos.shape[0])]
        return [videos]
    items = list(videos)
    if items and not layout.startswith("B") and all(_is_frame(v, layout) for v in items):
        return [items]  # a list of frames
    return items


def _check_compatible(
    items: list[Any],
    labels: list[str],
    layout: Layout,
    fps: float | None,
    mismatch: str,
    ignore_fps: bool,
    grid: int | None,
) -> tuple[int, int] | None:
    """The size to resize every video to (``None``: none needed). Videos compare on their analysis grids."""
    sizes = [_size_of(v, layout) for v in items]
    grids = {grid_shape(*s, grid) for s in sizes if s is not None}
    size: tuple[int, int] | None = None
    if len(grids) > 1:
        listing = ", ".join(
            f"{n}: {s[1]}x{s[0]}" for n, s in zip(labels, sizes, strict=False) if s is not None
        )
        if mismatch != "resize":
            raise ValueError(
                f"videos differ in size ({listing}) and so in analysis grid; sharpness, SSIM and features depend on "
                "scale, so they are not compared across grids. Pass mismatch='resize' (CLI: --resize) to resize all "
                "to the first video's size."
            )
        if any(isinstance(v, VideoMetrics) for v in items):
            raise ValueError(
                f"videos differ in size ({listing}) and some are already measured; measure them with size="
            )
        size = sizes[0]
    rates = [_fps_of(v, fps) for v in items]
    frames_per_s = {round(r, 3) for r in rates if r}
    if len(frames_per_s) > 1 and not ignore_fps:
        listing = ", ".join(f"{n}: {r:.4g} fps" for n, r in zip(labels, rates, strict=False) if r)
        raise ValueError(
            f"videos differ in frame rate ({listing}); chunks and lags count frames, so they would cover different "
            "times. Pass ignore_fps=True (CLI: --ignore-fps) to compare frame by frame anyway."
        )
    return size


def _label(video: Any, i: int) -> str:
    if isinstance(video, VideoMetrics):
        return video.name
    if isinstance(video, (str, os.PathLike)):
        return os.path.basename(os.fspath(video))
    return f"video{i}"


def _chunks(
    vm: VideoMetrics, chunk_frames: int | None, chunks: int | None, notes: list[str]
) -> dict[str, Any] | None:
    if chunk_frames is None and chunks is None:
        return None
    n_chunks = None if chunks is None else min(chunks, vm.frames)
    bounds = chunk_bounds(vm.frames, chunk_frames=chunk_frames, chunks=n_chunks)
    if len(bounds) < 2:
        asked = f"chunks of {chunk_frames} frames" if chunk_frames else f"{chunks} chunks"
        notes.append(f"{vm.name}: {vm.frames} frames make fewer than 2 {asked}: no per-chunk curve")
        return None
    drift = {m: drift_series(vm, m) for m in vm.series}
    means = {m: chunk_means(s, chunk_frames=chunk_frames, chunks=n_chunks) for m, s in drift.items()}
    return {
        "bounds": [list(b) for b in bounds],
        "means": means,
        "curve": {m: chunk_curve(s, chunk_frames=chunk_frames, chunks=n_chunks) for m, s in drift.items()},
        "vde": {m: video_drift_error(v) for m, v in means.items() if vm.info(m).score},
    }


def _frechet(
    vm: VideoMetrics, reference: np.ndarray | None, window: int, notes: list[str]
) -> dict[str, Any] | None:
    if reference is None:
        return None
    if vm.frames < window:
        notes.append(
            f"{vm.name}: {vm.frames} frames are fewer than one Frechet window of {window}: no Frechet distance"
        )
        return None
    curve = windowed_frechet(vm.features, reference, window=window)
    return {"window": window, "start": curve.start, "stop": curve.stop, "distance": curve.distance}


def _video_entry(
    vm: VideoMetrics,
    *,
    fraction: float,
    chunk_frames: int | None,
    chunks: int | None,
    lags: Sequence[int],
    reference_features: np.ndarray | None,
    window: int,
) -> dict[str, Any]:
    notes = list(vm.notes)
    lag_list = sorted({int(k) for k in lags})
    k_end = max(1, math.ceil(fraction * vm.frames))
    if vm.frames < 2 * math.ceil(1 / fraction):
        notes.append(
            f"{vm.name}: only {vm.frames} frames: start-end drift compares {k_end} frame(s) at each end"
        )
    drift = {m: drift_series(vm, m) for m in vm.series}
    return {
        "name": vm.name,
        "source": vm.source,
        "frames": vm.frames,
        "fps": vm.fps,
        "height": vm.height,
        "width": vm.width,
        "grid": list(vm.grid),
        "stride": vm.stride,
        "anchor_frames": vm.anchor_frames,
        "frame_index": vm.index,
        "times": vm.times,
        "cuts": vm.cuts,
        "scenes": [list(b) for b in vm.scene_bounds],
        "series": vm.series,
        "spread": {m: spread(s, vm.scene_bounds) for m, s in vm.series.items()},
        "start_end": {m: vars(start_end(s, fraction=fraction)) for m, s in drift.items()},
        "chunks": _chunks(vm, chunk_frames, chunks, notes),
        "lag": {
            "ssim": {"lags": sorted(vm.lag_ssim), "values": [vm.lag_ssim[k] for k in sorted(vm.lag_ssim)]},
            "abs_change": {
                "lags": [k for k in lag_list if k < vm.frames],
                "values": {m: list(lag_curve(s, lag_list).values()) for m, s in drift.items()},
            },
        },
        "frechet": _frechet(vm, reference_features, window, notes),
        "lpips": vm.lpips,
        "notes": notes,
    }


def drift_report(
    videos: Any,
    *,
    names: Sequence[str] | None = None,
    reference: Any = None,
    chunk_frames: int | None = None,
    chunks: int | None = None,
    fraction: float = 0.15,
    lags: Sequence[int] = DEFAULT_LAGS,
    lag_every: int = 4,
    window: int = 32,
    lpips: bool | LPIPSModel = False,
    allow_unreportable: bool = False,
    scorers: Sequence[FrameScorer] = (),
    scenes: SceneMode = "warn",
    mismatch: Literal["error", "resize"] = "error",
    ignore_fps: bool = False,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    grid: int | None = GRID,
    batch_size: int = 16,
    backend: Backend = "auto",
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Measure videos and summarise their drift as a JSON-ready dict (schema in the module docstring).

    Args:
        videos: paths, arrays/tensors (in ``layout``), lists of frames, :class:`VideoMetrics`, or one batched
            tensor (a ``B...`` layout) meaning its B videos (vidfix's sampler output: ``layout="BCTHW",
            value_range=(-1, 1)``). A list of frames (each of rank ``len(layout) - 1``) is one video.
        names: labels for the videos (default: file names, ``video0``...).
        reference: real/reference videos (one or a list, same forms): the Frechet distance's reference frames, the
            spread comparisons are measured in, and drawn distinctly in plots.
        chunk_frames, chunks: chunk length or count for per-chunk curves; the chunk is also the colour anchor.
        fraction: start-end share of frames at each end (FramePack: 0.15).
        lags, lag_every: lag curve settings (:func:`vidfix.metrics.measure`).
        window: frames per Frechet window (at least 8).
        lpips: ``True`` to load LPIPS from the torch hub cache (:func:`vidfix.metrics.load_lpips`), or a loaded model.
        allow_unreportable: keep LPIPS numbers from a random/unverified backbone (flagged in the JSON) instead of failing.
        scorers: frame scorers adding series (:mod:`vidfix.metrics.scorers`: consistency, motion, your own).
        scenes: ``"warn"``, ``"split"`` (measure within scenes) or ``"off"`` (:mod:`vidfix.metrics.scenes`).
        mismatch: videos whose analysis grids differ: ``"error"`` or ``"resize"`` all to the first video's size.
        ignore_fps: compare videos of different frame rates frame by frame instead of failing.
        layout, value_range, fps: how arrays/tensors are read (:func:`vidfix.metrics.as_frames`).
        stride, start, end, max_frames, grid, batch_size, backend: passed to :func:`vidfix.metrics.measure`.
        progress: called as ``progress(name, expected_frames or None)`` when a video starts; returns a callback
            that receives the number of frames done after each batch (the CLI's progress bar).

    Raises:
        UnreportableError: LPIPS from a random or unverified backbone without ``allow_unreportable``.
        ValueError: grids or frame rates differ (see ``mismatch``/``ignore_fps``), fewer than 2 frames, bad options.
    """
    if (chunk_frames is not None) and (chunks is not None):
        raise ValueError("give chunk_frames or chunks, not both")
    if mismatch not in ("error", "resize"):
        raise ValueError(f"unknown mismatch {mismatch!r}; allowed: 'error', 'resize'")
    if window < MIN_FRECHET_FRAMES:
        raise ValueError(f"window must be at least {MIN_FRECHET_FRAMES} frames, got {window}")
    items = _split_batch(videos, layout)
    if not items:
        raise ValueError("drift_report needs at least one video")
    labels = list(names) if names is not None else [_label(v, i) for i, v in enumerate(items)]
    if len(labels) != len(items):
        raise ValueError(f"got {len(labels)} names for {len(items)} videos")
    if len(set(labels)) != len(labels):
        raise ValueError(f"video names must be unique, got {labels}; pass names=")
    refs = _split_batch(reference, layout) if reference is not None else []
    ref_labels = [f"reference {_label(r, i)}" for i, r in enumerate(refs)]
    size = _check_compatible(items + refs, labels + ref_labels, layout, fps, mismatch, ignore_fps, grid)

    model: LPIPSModel | None = None
    if lpips is True:
        model = load_lpips()
    elif isinstance(lpips, LPIPSModel):
        model = lpips
    if model is not None and not model.reportable and not allow_unreportable:
        raise UnreportableError(
            f"LPIPS backbone {model.weights!r} is random or unverified; its numbers mean nothing and are not "
            "reported. Load the published weights (load_lpips()), or pass allow_unreportable=True for plumbing tests."
        )

    options: dict[str, Any] = dict(
        layout=layout,
        value_range=value_range,
        fps=fps,
        stride=stride,
        start=start,
        end=end,
        max_frames=max_frames,
        grid=grid,
        size=size,
        lags=lags,
        lag_every=lag_every,
        scenes=scenes,
        batch_size=batch_size,
        backend=backend,
        scorers=scorers,
        lpips=model,
    )

    def run(video: Any, label: str) -> VideoMetrics:
        if isinstance(video, VideoMetrics):
            return video
        ticks: list[Callable[[int], None]] = []

        def started(expected: int | None) -> None:
            if progress is not None:
                ticks.append(progress(label, expected))

        def done(frames: int) -> None:
            for tick in ticks:
                tick(frames)

        return measure(video, name=label, on_start=started, on_frames=done, **options)

    measured = [_anchored(run(v, n), chunk_frames, chunks) for v, n in zip(items, labels, strict=False)]
    references = [_anchored(run(r, n), chunk_frames, chunks) for r, n in zip(refs, ref_labels, strict=False)]
    ref_features = np.concatenate([r.features for r in references]) if references else None
    entry = functools.partial(
        _video_entry, fraction=fraction, chunk_frames=chunk_frames, chunks=chunks, lags=lags, window=window
    )
    entries = [entry(vm, reference_features=ref_features) for vm in measured]
    ref_entries = [entry(vm, reference_features=None) for vm in references]  # no Frechet of their own
    comparison = None
    if len(measured) > 1:
        comparison = {
            "baseline": measured[0].name,
            "spread_from": "references" if references else measured[0].name,
            "metrics": compare(
                measured, metrics=list(measured[0].series), fraction=fraction, reference=references
            ),
        }
    from vidfix import __version__

    info = {**METRICS, **{k: v for vm in measured + references for k, v in vm.metric_info.items()}}
    report = {
        "schema": SCHEMA,
        "vidfix_version": __version__,
        "settings": {
            "fraction": fraction,
            "chunk_frames": chunk_frames,
            "chunks": chunks,
            "lags": sorted({int(k) for k in lags}),
            "lag_every": lag_every,
            "window": window,
            "stride": stride,
            "grid": grid,
            "scenes": scenes,
            "size": list(size) if size else None,
            "reference": [_label(r, i) for i, r in enumerate(refs)] or None,
        },
        "metrics": {m: vars(i) for m, i in info.items() if any(m in vm.series for vm in measured)},
        "features": list(FEATURE_NAMES),
        "videos": entries,
        "references": ref_entries,
        "comparison": comparison,
        "notes": [n for e in entries + ref_entries for n in e["notes"]],
    }
    return _clean(report)


def _anchored(vm: VideoMetrics, chunk_frames: int | None, chunks: int | None) -> VideoMetrics:
    """``delta_e`` anchored on the first chunk (of each scene) when chunks are given."""
    if chunk_frames is None and chunks is None:
        return vm
    first = chunk_bounds(
        vm.frames, chunk_frames=chunk_frames, chunks=None if chunks is None else min(chunks, vm.frames)
    )
    return with_anchor(vm, first[0][1])


def save_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a report as JSON (strict: no NaN tokens), atomically, and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(_clean(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, out)
    return out


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report written by :func:`save_report`, checking its schema."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else None
        raise ValueError(
            f"{str(path)!r} is not a {SCHEMA} report (schema: {got!r}); rerun vidfix drift to update it"
        )
    return data


def _fmt(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1000 or a < 1e-3:
        return f"{x:.3g}"
    if a >= 100:
        return f"{x:.1f}"
    if a >= 10:
        return f"{x:.2f}"
    return f"{x:.3f}" if a >= 0.1 else f"{x:.4f}"


def _sign(x: float | None) -> str:
    if x is None:
        return "-"
    return ("+" if x > 0 else "") + _fmt(x)


def _difference(report: dict[str, Any], metric: str, video: str) -> str:
    entry = (report.get("comparison") or {}).get("metrics", {}).get(metric)
    if entry is None:
        return "-"
    d, z = entry["difference"].get(video), entry["in_spread"].get(video)
    return f"{_sign(d)} ({z:+.{0 if abs(z) >= 10 else 1}f} sd)" if z is not None else _sign(d)


def format_table(report: dict[str, Any], *, metrics: Sequence[str] | None = None) -> str:
    """A readable terminal table: per metric and video, ``start -> end (signed drift)``; differences in spreads."""
    videos = report["videos"]
    names = (
        list(metrics) if metrics is not None else [m for m in report["metrics"] if m in videos[0]["series"]]
    )
    head = ["metric", "unit"] + [v["name"] for v in videos]
    base = videos[0]["name"]
    head += [f"|drift| - |{base}|: {v['name']}" for v in videos[1:]]
    rows: list[list[str]] = []
    for m in names:
        row = [m, report["metrics"][m]["unit"]]
        for v in videos:
            se = v["start_end"].get(m)
            row.append(
                "-" if se is None else f"{_fmt(se['start'])} -> {_fmt(se['end'])} ({_sign(se['signed'])})"
            )
        row += [_difference(report, m, v["name"]) for v in videos[1:]]
        rows.append(row)
    pad = [""] * (len(videos) - 1)
    rows.append(["lag SSIM", ""] + [_lag_text(v) for v in videos] + pad)
    if any(v["frechet"] for v in videos):
        rows.append(["frechet", ""] + [_frechet_text(v) for v in videos] + pad)
    vde = [_vde_text(v) for v in videos]
    if any(vde):
        rows.append(["VDE (scores)", ""] + [t or "-" for t in vde] + pad)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    frames = ", ".join(f"{v['name']}: {v['frames']} frames" for v in videos)
    pct = round(report["settings"]["fraction"] * 100)
    within = "; within scenes, cuts removed" if report["settings"].get("scenes") == "split" else ""
    title = f"start-end drift (mean of last {pct}% minus first {pct}% of frames{within}); {frames}"
    tail: list[str] = []
    if len(videos) > 1:
        cmp = report["comparison"]
        of = "the reference videos" if cmp["spread_from"] == "references" else cmp["spread_from"]
        tail.append(
            f"|drift| - |{base}|: negative = less drift than {base}; in parentheses in spreads (sd): the scatter of "
            f"the per-frame values of {of} about a straight line"
        )
    if any(vde):
        tail.append(
            "VDE: LV-Bench video drift error over chunks, for positive quality scores only (lower is better)"
        )
    bad = [v["name"] for v in videos if v.get("lpips") and not v["lpips"]["reportable"]]
    if bad:
        tail.append(
            f"WARNING: LPIPS of {', '.join(bad)} comes from a random/unverified backbone: not reportable"
        )
    tail += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join([title, *lines, *tail])


def _lag_text(v: dict[str, Any]) -> str:
    lag = v["lag"]["ssim"]
    return " ".join(f"{k}:{_fmt(s)}" for k, s in zip(lag["lags"], lag["values"], strict=False)) or "-"


def _frechet_text(v: dict[str, Any]) -> str:
    f = v["frechet"]
    if not f:
        return "-"
    return f"{_fmt(f['distance'][0])} -> {_fmt(f['distance'][-1])} ({len(f['distance'])} windows)"


def _vde_text(v: dict[str, Any]) -> str:
    vde = (v["chunks"] or {}).get("vde") or {}
    return " ".join(f"{m}:{_fmt(x)}" for m, x in vde.items())
