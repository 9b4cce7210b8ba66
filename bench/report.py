"""Tables and plots of a quality benchmark result (markdown for BENCHMARKS.md, PNG per setting)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from vidfix.bench import conditions as C
from vidfix.bench.quality import QualityResult, Row, SettingResult

__all__ = ["late_early", "plot_quality", "quality_markdown", "summary_line", "window_markdown"]


def _f(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return f"{x:.{digits}f}"


def late_early(values: Sequence[float], frames: int, window: int) -> tuple[float, float]:
    """Mean over the first and the last 128 frames' windows (or the first and last quarter if shorter)."""
    n = len(values)
    k = max(1, min(n // 2, 128 // window)) if frames >= 256 else max(1, n // 4)
    arr = np.array(values, dtype=float)
    return float(np.nanmean(arr[:k])), float(np.nanmean(arr[-k:]))


def _half(row: Row) -> str:
    return ", ".join("never" if v is None else str(v) for v in row.frames_to_half)


def summary_line(setting: SettingResult, frames: int, window: int) -> dict[str, dict[str, float]]:
    """Per condition: early/late object and motion, FVD late over early, std drift late, trend kept, flicker."""
    out = {}
    for name, row in setting.rows.items():
        t = row.table
        o0, o1 = late_early(t["object"], frames, window)
        m0, m1 = late_early(t["motion"], frames, window)
        f0, f1 = late_early(t["fvd"], frames, window)
        out[name] = {
            "object_early": o0, "object_late": o1, "motion_early": m0, "motion_late": m1, "fvd_early": f0,
            "fvd_late": f1, "std_drift_late": late_early(t["std_drift"], frames, window)[1],
            "flicker": float(np.nanmean(t["flicker"])),
            "trend": float(np.nanmean(row.trend)) if row.trend else math.nan,
        }  # fmt: skip
    return out


def window_markdown(
    setting: SettingResult, window: int, names: Sequence[str] = ("real", "teacher", "none")
) -> str:
    """Per-window table (object, motion, reference FVD) of a few rows."""
    rows = [setting.rows[n] for n in names if n in setting.rows]
    if not rows:
        return ""
    n = len(rows[0].table["object"])
    head = (
        "| measure | source | " + " | ".join(f"{i * window}-{(i + 1) * window - 1}" for i in range(n)) + " |"
    )
    lines = [head, "|" + "---|" * (n + 2)]
    for measure, digits in (("object", 2), ("motion", 2), ("fvd", 1)):
        for r in rows:
            lines.append(
                f"| {measure} | {r.condition} | " + " | ".join(_f(v, digits) for v in r.table[measure]) + " |"
            )
    return "\n".join(lines)


def quality_markdown(
    result: QualityResult, *, command: str, machine: str, date: str, plots: dict[str, str], json_path: str
) -> str:
    """The ``quality`` section of BENCHMARKS.md."""
    cfg = result.config
    frames, window = int(cfg["num_frames"]), int(cfg["window"])
    out = [
        "## Quality on the reference model (structure judge)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine}; date {date}. Every number: evaluation seeds {cfg['eval_seeds']}, "
        f"{frames} frames each; parameters chosen on tuning seeds {cfg['tune_seeds']} ({cfg['tune_frames']} frames). "
        f"All numbers in [{json_path}]({json_path}).",
        "",
        "Object score: sprites detected and matched to the seed's real sprites (1 = all there, right shape, colour "
        "and size); motion: displacement over 4 frames against the true speed (1 = moving like real video, 0 = "
        "frozen); reference FVD: Frechet distance of 8-frame clip embeddings of the judge to fresh real clips "
        "(lower is better; real video's own level is the floor). Early / late: first / last 128 frames.",
    ]
    for s in result.settings:
        summary = summary_line(s, frames, window)
        out += ["", f"### {s.process} process, {s.scheduler}, {s.steps} steps", ""]
        out.append(window_markdown(s, window))
        out += [
            "",
            "| condition | parameter | object early | object late | motion late | FVD early | FVD late | "
            "std drift late | trend kept | flicker | frames to half object (per seed) |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, row in s.rows.items():
            v = summary[name]
            label = C.get(name).label if name in C.names() else "real video"
            out.append(
                f"| {label} | {row.parameter} | {_f(v['object_early'])} | {_f(v['object_late'])} | "
                f"{_f(v['motion_late'])} | {_f(v['fvd_early'], 1)} | {_f(v['fvd_late'], 1)} | "
                f"{_f(v['std_drift_late'], 3)} | {_f(v['trend'])} | {_f(v['flicker'], 4)} | {_half(row)} |"
            )
        if s.skipped:  # conditions this setting cannot run (the calibrated ones under fewstep)
            out += [""] + [
                f"Not run: {C.get(name).label if name in C.names() else name} (`{name}`): {why}.  "
                for name, why in s.skipped.items()
            ]
        key = f"{s.process}_{s.scheduler}_{s.steps}"
        if key in plots:
            out += ["", f"![{key}]({plots[key]})"]
    return "\n".join(out)


def plot_quality(result: QualityResult, folder: str | os.PathLike[str], *, dpi: int = 80) -> dict[str, Path]:
    """One PNG per setting: object, motion and reference FVD per window, one line per condition."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    window = int(result.config["window"])
    paths = {}
    for s in result.settings:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
        for ax, (measure, title) in zip(
            axes, (("object", "object score"), ("motion", "motion score"), ("fvd", "reference FVD"))
        ):
            for name, row in s.rows.items():
                y = np.array(row.table[measure], dtype=float)
                x = (np.arange(len(y)) + 0.5) * window
                style = {
                    "real": dict(color="black", lw=2.5, ls="--"),
                    "teacher": dict(color="grey", lw=2),
                }.get(name, {})
                ax.plot(x, y, marker="o", ms=3, label=name, **style)
            ax.set_title(title)
            ax.set_xlabel("frame")
            if measure == "fvd":
                ax.set_yscale("log")
        axes[-1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
        fig.suptitle(f"{s.process} process, {s.scheduler}, {s.steps} steps (evaluation seeds)")
        key = f"{s.process}_{s.scheduler}_{s.steps}"
        path = folder / f"quality_{key}.png"
        fig.savefig(path, dpi=dpi)
        plt.close(fig)
        paths[key] = path
    return paths
