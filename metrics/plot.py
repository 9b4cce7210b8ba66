"""Plots of a drift report (:func:`vidfix.metrics.drift_report`) that a person reads at a glance.

One PNG, top to bottom:

- **Start-end drift** of each headline metric, every video side by side, in spreads (the metric's own
  frame-to-frame scatter, :func:`vidfix.metrics.spread`), so metrics of different units share one axis; the grey
  band is +-2 spreads, the size of drift noise alone makes.
- **Per-chunk drift**, when chunks are given: one heat map per video, a row per headline metric and a column per
  chunk, the chunk's mean minus chunk 0's in spreads (red up, blue down; one colour scale for all, linear within
  +-2 spreads and logarithmic beyond, so small and large drifts both show).
- **Each metric over time**, one panel per metric (no shared axes, no legend over the data): x is the source
  frame number; chunk boundaries are thin grey lines, scene cuts dashed red lines.
- Lag SSIM and the windowed Frechet distance, where measured.

The first video is drawn in the first colour, the others in further colours and dash patterns (so equal lines
stay visible); reference videos are drawn distinctly, thick, black and dashed, above the others. The legend sits
in its own band above the panels. Spreads come from the references when given, else from the first video.

Example:
    >>> plot_report(report, "drift.png")                                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from vidfix.metrics.drift import DRIFT_METRICS

__all__ = ["plot_report"]

_STYLES = ("-", "--", "-.", ":")
_REF_STYLE: dict[str, Any] = {
    "color": "black",
    "linestyle": (0, (5, 2)),
    "linewidth": 2.0,
    "alpha": 0.8,
    "zorder": 5,
}


def _values(x: Sequence[Any]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in x], dtype=float)


def _headline(report: dict[str, Any]) -> list[str]:
    """Headline metrics for the summary panels: the drift metrics and every scorer score present."""
    have = report["videos"][0]["series"]
    scores = [
        m for m, i in report["metrics"].items() if m not in DRIFT_METRICS and i.get("kind") != "statistic"
    ]
    return [m for m in (*DRIFT_METRICS, *scores) if m in have and m in report["metrics"]]


def _spreads(report: dict[str, Any], metrics: Sequence[str]) -> dict[str, float]:
    """The unit of each metric's drift: the comparison's spread, else the first video's own."""
    cmp = (report.get("comparison") or {}).get("metrics", {})
    first = report["videos"][0]["spread"]
    out = {}
    for m in metrics:
        s = (cmp.get(m) or {}).get("spread")
        s = s if s else first.get(m)
        refs = [r["spread"].get(m) for r in report.get("references", []) if r["spread"].get(m)]
        if refs and not cmp:
            s = math.sqrt(sum(x * x for x in refs) / len(refs))
        out[m] = float(s) if s else math.nan
    return out


def _style(i: int, colours: list[str]) -> dict[str, Any]:  # Line2D keywords
    return {
        "color": colours[i % len(colours)],
        "linestyle": _STYLES[i % len(_STYLES)],
        "linewidth": 1.3,
        "zorder": 3,
    }


def _start_end_panel(
    ax: Any, report: dict[str, Any], metrics: list[str], sd: dict[str, float], colours: list[str]
) -> None:
    videos, refs = report["videos"], report.get("references", [])
    groups = [*videos, *refs]
    height = 0.8 / max(1, len(groups))
    y = np.arange(len(metrics))
    for g, v in enumerate(groups):
        z = [(v["start_end"][m]["signed"] or 0.0) / sd[m] if sd[m] > 0 else np.nan for m in metrics]
        is_ref = g >= len(videos)
        ax.barh(
            y - 0.4 + height * (g + 0.5),
            z,
            height=height,
            color="0.55" if is_ref else colours[g % len(colours)],
            hatch="//" if is_ref else None,
            edgecolor="black" if is_ref else "none",
            linewidth=0.5,
            label=None,
        )
    ax.axvspan(-2, 2, color="0.9", zorder=0)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, metrics, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("signed start-end drift, in spreads (grey: +-2)", fontsize=8)
    ax.set_title("start-end drift (last 15% minus first 15%)", fontsize=9)
    ax.tick_params(labelsize=7)


def _chunk_panel(
    fig: Any, ax: Any, v: dict[str, Any], metrics: list[str], sd: dict[str, float], vmax: float
) -> Any:
    curve = v["chunks"]["curve"]
    z = np.array(
        [_values(curve[m]) / sd[m] if sd[m] > 0 else np.full(len(curve[m]), np.nan) for m in metrics]
    )
    from matplotlib.colors import SymLogNorm

    norm = SymLogNorm(linthresh=2.0, vmin=-vmax, vmax=vmax, base=10)  # linear inside the +-2 noise band
    image = ax.imshow(z, cmap="RdBu_r", norm=norm, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(metrics)), metrics, fontsize=7)
    ax.set_xlabel("chunk", fontsize=8)
    ax.set_title(f"per-chunk drift vs chunk 0 (spreads): {v['name']}", fontsize=9)
    ax.tick_params(labelsize=7)
    return image


def _series_panel(ax: Any, panel: str, report: dict[str, Any], colours: list[str]) -> None:
    videos, refs = report["videos"], report.get("references", [])
    for i, v in enumerate([*videos, *refs]):
        style = _REF_STYLE if i >= len(videos) else _style(i, colours)
        if panel == "lag SSIM":
            lag = v["lag"]["ssim"]
            ax.plot(lag["lags"], _values(lag["values"]), marker="o", markersize=3, **style)
            ax.set_xlabel("lag (frames)", fontsize=8)
            continue
        if panel == "frechet":
            if v.get("frechet"):
                f = v["frechet"]
                mid = [(a + b - 1) / 2 for a, b in zip(f["start"], f["stop"], strict=False)]
                x = np.interp(mid, np.arange(len(v["frame_index"])), v["frame_index"])
                ax.plot(x, f["distance"], marker=".", **style)
            ax.set_xlabel("frame", fontsize=8)
            continue
        y = _values(v["series"].get(panel, []))
        ax.plot(v["frame_index"][: len(y)], y, **style)
        if i == 0:
            for b in (v["chunks"] or {}).get("bounds", [])[1:]:
                ax.axvline(v["frame_index"][b[0]], color="0.8", linewidth=0.6, zorder=0)
        if i < len(videos):
            for c in v.get("cuts", []):
                ax.axvline(v["frame_index"][c], color="tab:red", linestyle="--", linewidth=0.8, zorder=1)
        ax.set_xlabel("frame", fontsize=8)
    info = report["metrics"].get(panel)
    ax.set_title(panel if info is None else f"{panel} [{info['unit']}]", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.locator_params(nbins=4)
    ax.grid(alpha=0.3)


def plot_report(
    report: dict[str, Any],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[str] | None = None,
    columns: int = 4,
) -> Path:
    """Draw the report's summary panels and each metric over time into one PNG (module docstring).

    Uses matplotlib's Agg canvas directly (no pyplot state, no display needed); written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    videos, refs = report["videos"], report.get("references", [])
    names = (
        list(metrics) if metrics is not None else [m for m in report["metrics"] if m in videos[0]["series"]]
    )
    panels = names + ["lag SSIM"] * any(v["lag"]["ssim"]["lags"] for v in videos)
    panels += ["frechet"] * any(v.get("frechet") for v in videos)
    headline = _headline(report)
    sd = _spreads(report, headline)
    chunked = [v for v in videos if v.get("chunks")]

    import matplotlib as mpl

    colours = [c for c in mpl.rcParams["axes.prop_cycle"].by_key()["color"]]
    rows = max(1, math.ceil(len(panels) / columns))
    top = max(2.6, 0.22 * len(headline) * max(1, len(videos) + len(refs)) ** 0.5 + 1.0)
    fig = Figure(figsize=(4.0 * columns, top + 2.5 * rows + 0.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    upper, lower = np.asarray(fig.subfigures(2, 1, height_ratios=[top, 2.5 * rows])).ravel()
    summary = upper.subplots(1, 1 + len(chunked), squeeze=False, width_ratios=[1.3] + [1.0] * len(chunked))[0]
    _start_end_panel(summary[0], report, headline, sd, colours)
    if chunked:
        z_all = [
            abs(x / sd[m])
            for v in chunked
            for m in headline
            if sd[m] > 0
            for x in v["chunks"]["curve"][m]
            if x is not None
        ]
        vmax = max(3.0, float(np.nanmax(z_all)) if z_all else 3.0)
        image = None
        for ax, v in zip(summary[1:], chunked, strict=True):
            image = _chunk_panel(upper, ax, v, headline, sd, vmax)
        upper.colorbar(image, ax=list(summary[1:]), shrink=0.9, label="spreads")
    axes = lower.subplots(rows, columns, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _series_panel(ax, panel, report, colours)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    handles = [
        Line2D([], [], **{k: v for k, v in _style(i, colours).items() if k != "zorder"})
        for i in range(len(videos))
    ]
    handles += [Line2D([], [], **{k: v for k, v in _REF_STYLE.items() if k != "zorder"}) for _ in refs]
    labels = [v["name"] for v in videos] + [r["name"] for r in refs]
    fig.legend(
        handles, labels, loc="outside upper center", ncols=min(len(labels), 6), fontsize=9, frameon=False
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    os.replace(tmp, out)
    return out
