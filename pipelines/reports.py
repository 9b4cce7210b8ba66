"""PNG plots of the sampler's results: calibration curves and drift per chunk.

Plots read the JSON-able results (:class:`vidfix.calibration.CalibrationResult`, :class:`vidfix.DriftTracker`),
never the model. matplotlib runs headless (Agg).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vidfix.calibration import CalibrationResult
from vidfix.tracker import DriftTracker, Stat

__all__ = ["drift_summary", "format_drift_summary", "plot_calibration", "plot_drift"]

_COLOURS = {"low": "tab:blue", "spatial": "tab:orange", "temporal": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Lay out, write (atomically) and close a figure (figures are not kept open between plots)."""
    from vidfix.pipelines.runs import atomic_path

    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_path(out) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        _pyplot().close(fig)
    return out


def plot_calibration(result: CalibrationResult, path: str | os.PathLike[str]) -> Path:
    """Per-step gap (one-step noise-norm ratio - 1; dashed: the full chain) and DCW coefficient per band group."""
    plt = _pyplot()
    steps = list(range(result.num_steps))
    fig, (ax_gap, ax_lam) = plt.subplots(1, 2, figsize=(10, 3.8))
    for g in result.groups:
        c = _COLOURS.get(g)
        if g in result.gap:  # the one-step probe's gap (regression and rollout calibrations have none)
            ax_gap.plot(steps, result.gap[g], "o-", color=c, label=g, ms=3)
        if result.chain_gap:
            ax_gap.plot(steps, result.chain_gap[g], "--", color=c, alpha=0.6)
        ax_lam.plot(steps, result.lam[g], "o-", color=c, label=g, ms=3)
    for ax, title in (
        (ax_gap, "SNR-t gap per step (noise-norm ratio - 1)"),
        (ax_lam, "DCW coefficient per step"),
    ):
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_xlabel("solver step")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(
        f"{result.scheduler}, {result.num_steps} steps, {result.dims}, {result.samples} samples", fontsize=10
    )
    return _save(fig, path)


def plot_drift(
    trackers: Mapping[str, DriftTracker | Sequence[DriftTracker]],
    path: str | os.PathLike[str],
    *,
    stats: Sequence[Stat] = ("mean", "std", "energy_spatial"),
    frames_per_chunk: int | None = None,
    title: str = "drift per chunk against chunk 0",
) -> Path:
    """One panel per statistic: drift against chunk 0 per chunk, one line per condition (RMS over channels;
    with several trackers per condition, their mean with a band from min to max)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(stats), figsize=(4.2 * len(stats), 3.6), squeeze=False)
    for ax, stat in zip(axes[0], stats):
        for name, trs in trackers.items():
            runs = [trs] if isinstance(trs, DriftTracker) else list(trs)
            curves = [tr.curve(stat, relative=stat != "mean") for tr in runs]
            n = min(len(c) for c in curves)
            x = [k * (frames_per_chunk or 1) for k in range(n)]
            mean = [sum(c[k] for c in curves) / len(curves) for k in range(n)]
            (line,) = ax.plot(x, mean, "o-", ms=3, label=name)
            if len(curves) > 1:
                lo = [min(c[k] for c in curves) for k in range(n)]
                hi = [max(c[k] for c in curves) for k in range(n)]
                ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("frame" if frames_per_chunk else "chunk")
        ax.set_ylabel(f"{stat} drift" + (" (relative)" if stat != "mean" else ""))
        ax.set_title(stat, fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def drift_summary(
    trackers: Mapping[str, DriftTracker],
    *,
    stats: Sequence[Stat] = ("mean", "std", "energy_spatial"),
    late_fraction: float = 0.25,
) -> dict[str, dict[str, float]]:
    """Late drift per condition and statistic: the mean of the drift curve (RMS over videos and channels
    against chunk 0; relative for all but ``mean``) over the last ``late_fraction`` of the chunks."""
    out: dict[str, dict[str, float]] = {}
    for name, tr in trackers.items():
        row: dict[str, float] = {}
        for stat in stats:
            curve = tr.curve(stat, relative=stat != "mean")
            n = max(1, round(len(curve) * late_fraction))
            row[stat] = sum(curve[-n:]) / n
        out[name] = row
    return out


def format_drift_summary(
    summary: Mapping[str, Mapping[str, float]], *, baseline: str | None = None, compared: Sequence[str] = ()
) -> str:
    """A small table of :func:`drift_summary`; the ``compared`` rows also show their change against ``baseline``."""
    stats = list(next(iter(summary.values())))
    head = f"  {'':<14}" + "".join(f"{s:>16}" for s in stats)
    lines = [head]
    for name, row in summary.items():
        cells = []
        for s in stats:
            cell = f"{row[s]:.4f}"
            if baseline is not None and name in compared and summary[baseline][s] > 0:
                cell += f" ({100 * (row[s] / summary[baseline][s] - 1):+.0f}%)"
            cells.append(f"{cell:>16}")
        lines.append(f"  {name:<14}" + "".join(cells))
    return "\n".join(lines)
