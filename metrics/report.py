"""Drift reports: one call from videos (files, arrays, tensors) to a JSON-ready dict, a terminal table and PNG plots.

JSON schema ``vidfix.drift/1`` (stable: fields are only ever added; NaN and inf are written as ``null``)::

    {
      "schema": "vidfix.drift/1",
      "vidfix_version": str,
      "settings": {"fraction": float, "chunk_frames": int|null, "chunks": int|null, "lags": [int],
                   "lag_every": int, "window": int, "stride": int, "subsample": int|"auto",
                   "size": [H, W]|null, "reference": [str]|null},
      "metrics": {name: {"unit": str, "description": str, "rise": str, "kind": "statistic"|"anchor"|"adjacent"}},
      "features": [str],                        # columns of the Frechet feature vector
      "videos": [{
        "name": str, "source": str, "frames": int, "fps": float|null, "height": int, "width": int,
        "subsample": int, "stride": int, "anchor_frames": int,
        "frame_index": [int],                   # source frame number of each analysed frame
        "series": {metric: [float|null]},       # one value per analysed frame
        "start_end": {metric: {"start", "end", "signed", "abs": float|null, "frames": int}},
        "chunks": null | {"bounds": [[start, stop]], "curve": {metric: [float|null]},
                          "means": {metric: [float|null]}, "vde": {metric: float|null}},
        "lag": {"ssim": {"lags": [int], "values": [float|null]},
                "abs_change": {"lags": [int], "values": {metric: [float|null]}}},
        "frechet": null | {"window": int, "start": [int], "stop": [int], "distance": [float]},
        "lpips": null | {"net": str, "weights": str, "reportable": bool}
      }],
      "comparison": null | {"baseline": str, "metrics": {metric: {"signed": {video: float},
                                                                  "abs": {video: float}, "ratio": {video: float}}}}
    }

``chunks.curve`` is each chunk's mean minus chunk 0's (chunk 0 is also the colour anchor of ``delta_e``);
``lag.ssim.values[i]`` is the mean SSIM of frame pairs at ``lag.ssim.lags[i]`` frames; ``lag.abs_change`` is
:func:`vidfix.metrics.lag_curve` per metric; ``frechet`` is present when a reference was given; ``comparison``
when there are two or more videos (baseline: the first; ``ratio`` < 1 means less drift than the baseline).

Example:
    >>> report = drift_report(["a.mp4", "b.mp4"], chunk_frames=16)     # doctest: +SKIP
    >>> print(format_table(report)); plot_report(report, "drift.png")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from vidfix.metrics.drift import (
    chunk_bounds,
    chunk_curve,
    chunk_means,
    compare,
    lag_curve,
    start_end,
    video_drift_error,
    windowed_frechet,
)
from vidfix.metrics.io import Backend, probe
from vidfix.metrics.layout import Layout
from vidfix.metrics.measure import DEFAULT_LAGS, FEATURE_NAMES, METRICS, VideoMetrics, measure, with_anchor
from vidfix.metrics.perceptual import LPIPSModel, load_lpips

__all__ = [
    "SCHEMA",
    "UnreportableError",
    "drift_report",
    "format_table",
    "load_report",
    "plot_report",
    "save_report",
]

SCHEMA = "vidfix.drift/1"


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


def _split_batch(videos: Any, layout: Layout) -> tuple[list[Any], Layout]:
    """A single batched tensor/array (a ``B...`` layout) becomes its B videos, each with B = 1."""
    if isinstance(videos, (str, os.PathLike, VideoMetrics)):
        return [videos], layout
    if hasattr(videos, "shape"):
        if layout.startswith("B") and len(videos.shape) == 5:
            return [videos[i : i + 1] for i in range(videos.shape[0])], layout
        return [videos], layout
    return list(videos), layout


def _check_compatible(
    items: list[Any], labels: list[str], layout: Layout, fps: float | None, mismatch: str, ignore_fps: bool
) -> tuple[int, int] | None:
    sizes = [_size_of(v, layout) for v in items]
    known = {s for s in sizes if s is not None}
    size: tuple[int, int] | None = None
    if len(known) > 1:
        listing = ", ".join(
            f"{n}: {s[1]}x{s[0]}" for n, s in zip(labels, sizes, strict=False) if s is not None
        )
        if mismatch != "resize":
            raise ValueError(
                f"videos differ in size ({listing}); sharpness, SSIM and features depend on scale, so they are not "
                "compared across sizes. Pass mismatch='resize' (CLI: --resize) to resize all to the first video's size."
            )
        if any(isinstance(v, VideoMetrics) for v in items):
            raise ValueError(
                f"videos differ in size ({listing}) and some are already measured; measure them with size="
            )
        size = sizes[0]
    rates = [_fps_of(v, fps) for v in items]
    frames_per_s = {round(r, 3) for r in rates if r}
    if len(frames_per_s) > 1 and not ignore_fps:
        listing = ", ".join(f"{n}: {r:g} fps" for n, r in zip(labels, rates, strict=False) if r)
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
    entry: dict[str, Any] = {
        "name": vm.name,
        "source": vm.source,
        "frames": vm.frames,
        "fps": vm.fps,
        "height": vm.height,
        "width": vm.width,
        "subsample": vm.subsample,
        "stride": vm.stride,
        "anchor_frames": vm.anchor_frames,
        "frame_index": vm.index,
        "series": vm.series,
        "start_end": {m: vars(start_end(s, fraction=fraction)) for m, s in vm.series.items()},
        "chunks": None,
        "lag": {
            "ssim": {"lags": sorted(vm.lag_ssim), "values": [vm.lag_ssim[k] for k in sorted(vm.lag_ssim)]},
            "abs_change": {
                "lags": [k for k in sorted({int(k) for k in lags}) if k < vm.frames],
                "values": {
                    m: list(lag_curve(s, sorted({int(k) for k in lags})).values())
                    for m, s in vm.series.items()
                },
            },
        },
        "frechet": None,
        "lpips": vm.lpips,
    }
    if chunk_frames is not None or chunks is not None:
        n_chunks = None if chunks is None else min(chunks, vm.frames)
        means = {m: chunk_means(s, chunk_frames=chunk_frames, chunks=n_chunks) for m, s in vm.series.items()}
        entry["chunks"] = {
            "bounds": [list(b) for b in chunk_bounds(vm.frames, chunk_frames=chunk_frames, chunks=n_chunks)],
            "means": means,
            "curve": {
                m: chunk_curve(s, chunk_frames=chunk_frames, chunks=n_chunks) for m, s in vm.series.items()
            },
            "vde": {m: video_drift_error(v) for m, v in means.items()},
        }
    if reference_features is not None:
        curve = windowed_frechet(vm.features, reference_features, window=window)
        entry["frechet"] = {
            "window": window,
            "start": curve.start,
            "stop": curve.stop,
            "distance": curve.distance,
        }
    return entry


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
    mismatch: Literal["error", "resize"] = "error",
    ignore_fps: bool = False,
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    subsample: int | Literal["auto"] = "auto",
    batch_size: int = 16,
    backend: Backend = "auto",
    progress: Callable[[str, int | None], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Measure videos and summarise their drift as a JSON-ready dict (schema in the module docstring).

    Args:
        videos: paths, arrays/tensors (in ``layout``), :class:`VideoMetrics`, or one batched tensor (a ``B...`` layout)
            meaning its B videos (vidfix's sampler output: ``layout="BCTHW", value_range=(-1, 1)``).
        names: labels for the videos (default: file names, ``video0``...).
        reference: real/reference videos (one or a list, same forms) for the windowed Frechet distance.
        chunk_frames, chunks: chunk length or count for per-chunk curves; the chunk is also the colour anchor.
        fraction: start-end share of frames at each end (FramePack: 0.15).
        lags, lag_every: lag curve settings (:func:`vidfix.metrics.measure`).
        window: frames per Frechet window.
        lpips: ``True`` to load LPIPS from the torch hub cache (:func:`vidfix.metrics.load_lpips`), or a loaded model.
        allow_unreportable: keep LPIPS numbers from a random/unverified backbone (flagged in the JSON) instead of failing.
        mismatch: videos of different sizes: ``"error"`` or ``"resize"`` all to the first video's size.
        ignore_fps: compare videos of different frame rates frame by frame instead of failing.
        layout, value_range, fps: how arrays/tensors are read (:func:`vidfix.metrics.as_frames`).
        stride, start, end, max_frames, subsample, batch_size, backend: passed to :func:`vidfix.metrics.measure`.
        progress: called as ``progress(name, expected_frames or None)`` when a video starts; returns a callback
            that receives the number of frames done after each batch (the CLI's progress bar).

    Raises:
        UnreportableError: LPIPS from a random or unverified backbone without ``allow_unreportable``.
        ValueError: sizes or frame rates differ (see ``mismatch``/``ignore_fps``), fewer than 2 frames, bad options.
    """
    if (chunk_frames is not None) and (chunks is not None):
        raise ValueError("give chunk_frames or chunks, not both")
    if mismatch not in ("error", "resize"):
        raise ValueError(f"unknown mismatch {mismatch!r}; allowed: 'error', 'resize'")
    items, layout = _split_batch(videos, layout)
    if not items:
        raise ValueError("drift_report needs at least one video")
    labels = list(names) if names is not None else [_label(v, i) for i, v in enumerate(items)]
    if len(labels) != len(items):
        raise ValueError(f"got {len(labels)} names for {len(items)} videos")
    if len(set(labels)) != len(labels):
        raise ValueError(f"video names must be unique, got {labels}; pass names=")
    refs: list[Any] = []
    if reference is not None:
        refs, _ = _split_batch(reference, layout)
    size = _check_compatible(
        items + refs, labels + [f"reference {i}" for i in range(len(refs))], layout, fps, mismatch, ignore_fps
    )

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
        subsample=subsample,
        size=size,
        lags=lags,
        lag_every=lag_every,
        batch_size=batch_size,
        backend=backend,
    )

    def run(video: Any, label: str, with_lpips: bool) -> VideoMetrics:
        if isinstance(video, VideoMetrics):
            return video
        ticks: list[Callable[[int], None]] = []

        def started(expected: int | None) -> None:
            if progress is not None:
                ticks.append(progress(label, expected))

        def done(frames: int) -> None:
            for tick in ticks:
                tick(frames)

        return measure(
            video,
            name=label,
            lpips=model if with_lpips else None,
            on_start=started,
            on_frames=done,
            **options,
        )

    measured = [run(v, n, True) for v, n in zip(items, labels, strict=False)]
    if chunk_frames is not None or chunks is not None:  # chunk 0 is the colour anchor
        measured = [
            with_anchor(
                vm,
                chunk_bounds(
                    vm.frames,
                    chunk_frames=chunk_frames,
                    chunks=None if chunks is None else min(chunks, vm.frames),
                )[0][1],
            )
            for vm in measured
        ]
    ref_features = None
    if refs:
        ref_features = np.concatenate([run(r, f"reference {i}", False).features for i, r in enumerate(refs)])
    entries = [
        _video_entry(
            vm,
            fraction=fraction,
            chunk_frames=chunk_frames,
            chunks=chunks,
            lags=lags,
            reference_features=ref_features,
            window=window,
        )
        for vm in measured
    ]
    comparison = None
    if len(measured) > 1:
        comparison = {
            "baseline": measured[0].name,
            "metrics": compare(measured, metrics=list(measured[0].series), fraction=fraction),
        }
    from vidfix import __version__

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
            "subsample": subsample,
            "size": list(size) if size else None,
            "reference": [_label(r, i) for i, r in enumerate(refs)] or None,
        },
        "metrics": {m: vars(info) for m, info in METRICS.items() if any(m in vm.series for vm in measured)},
        "features": list(FEATURE_NAMES),
        "videos": entries,
        "comparison": comparison,
    }
    return _clean(report)


def save_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write a report as JSON (strict: no NaN tokens) and return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_clean(report), indent=1, allow_nan=False) + "\n")
    return out


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a report written by :func:`save_report`, checking its schema."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise ValueError(
            f"{str(path)!r} is not a {SCHEMA} report (schema: {data.get('schema') if isinstance(data, dict) else None!r})"
        )
    return data


def _fmt(x: float | None, unit: str = "") -> str:
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


def format_table(report: dict[str, Any], *, metrics: Sequence[str] | None = None) -> str:
    """A readable terminal table: per metric and video, ``start -> end`` and the signed start-end drift."""
    videos = report["videos"]
    names = (
        list(metrics) if metrics is not None else [m for m in report["metrics"] if m in videos[0]["series"]]
    )
    head = ["metric", "unit"] + [v["name"] for v in videos]
    if len(videos) > 1:
        head.append(f"|drift| vs {videos[0]['name']}")
    rows: list[list[str]] = []
    for m in names:
        row = [m, report["metrics"][m]["unit"]]
        for v in videos:
            se = v["start_end"].get(m)
            row.append(
                "-" if se is None else f"{_fmt(se['start'])} -> {_fmt(se['end'])} ({_sign(se['signed'])})"
            )
        if len(videos) > 1:
            ratio = (report.get("comparison") or {}).get("metrics", {}).get(m, {}).get("ratio", {})
            row.append("  ".join(f"{_fmt(ratio.get(v['name']))}x" for v in videos[1:]))
        rows.append(row)
    extra: list[list[str]] = []
    for label, get in (
        (
            "lag SSIM",
            lambda v: (
                " ".join(
                    f"{k}:{_fmt(s)}"
                    for k, s in zip(v["lag"]["ssim"]["lags"], v["lag"]["ssim"]["values"], strict=False)
                )
                or "-"
            ),
        ),
        (
            "frechet",
            lambda v: (
                "-"
                if not v["frechet"]
                else f"{_fmt(v['frechet']['distance'][0])} -> {_fmt(v['frechet']['distance'][-1])} ({len(v['frechet']['distance'])} windows)"
            ),
        ),
    ):
        extra.append([label, ""] + [get(v) for v in videos] + ([""] if len(videos) > 1 else []))
    table = [head, *rows, *extra]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    frames = ", ".join(f"{v['name']}: {v['frames']} frames" for v in videos)
    pct = round(report["settings"]["fraction"] * 100)
    title = f"start-end drift (mean of last {pct}% minus first {pct}% of frames); {frames}"
    notes = [v["name"] for v in videos if v.get("lpips") and not v["lpips"]["reportable"]]
    tail = (
        [f"WARNING: LPIPS of {', '.join(notes)} comes from a random/unverified backbone: not reportable"]
        if notes
        else []
    )
    return "\n".join([title, *lines, *tail])


def _sign(x: float | None) -> str:
    if x is None:
        return "-"
    return ("+" if x > 0 else "") + _fmt(x)


def plot_report(
    report: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    columns: int = 4,
) -> Path:
    """Plot each metric over time (one line per video; x = source frame number) plus lag SSIM and Frechet panels.

    Uses matplotlib's Agg canvas directly (no pyplot state, no display needed).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    videos = report["videos"]
    names = (
        list(metrics) if metrics is not None else [m for m in report["metrics"] if m in videos[0]["series"]]
    )
    panels: list[str] = (
        names
        + ["lag SSIM"] * any(v["lag"]["ssim"]["lags"] for v in videos)
        + ["frechet"] * any(v["frechet"] for v in videos)
    )
    rows = max(1, math.ceil(len(panels) / columns))
    fig = Figure(figsize=(4.0 * columns, 2.6 * rows + 0.5), dpi=100)  # fixed layout: constrained is slow here
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        for v in videos:
            if panel == "lag SSIM":
                lag = v["lag"]["ssim"]
                ax.plot(
                    lag["lags"],
                    [np.nan if s is None else s for s in lag["values"]],
                    marker="o",
                    label=v["name"],
                )
                ax.set_xlabel("lag (frames)")
            elif panel == "frechet":
                if v["frechet"]:
                    mid = [
                        (a + b - 1) / 2
                        for a, b in zip(v["frechet"]["start"], v["frechet"]["stop"], strict=False)
                    ]
                    x = np.interp(mid, np.arange(len(v["frame_index"])), v["frame_index"])
                    ax.plot(x, v["frechet"]["distance"], marker=".", label=v["name"])
                ax.set_xlabel("frame")
            else:
                y = np.array([np.nan if s is None else s for s in v["series"].get(panel, [])], dtype=float)
                ax.plot(v["frame_index"][: len(y)], y, label=v["name"], linewidth=1.0)
                for b in (v["chunks"] or {}).get("bounds", [])[1:]:
                    ax.axvline(v["frame_index"][b[0]], color="0.85", linewidth=0.6, zorder=0)
                ax.set_xlabel("frame")
        info = report["metrics"].get(panel)
        ax.set_title(panel if info is None else f"{panel} [{info['unit']}]", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)  # fewer ticks: tick layout is most of the drawing time
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if videos:
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper center", ncols=min(len(videos), 6), fontsize=8, frameon=False)
    fig.subplots_adjust(
        left=0.05, right=0.98, bottom=0.06, top=1 - 0.45 / fig.get_figheight(), hspace=0.6, wspace=0.28
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
