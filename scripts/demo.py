"""``vidfix demo``: a long video from the shipped reference model with and without vidfix, offline.

Thin: load the model, get DCW coefficients (a shipped or given calibration file, else a quick calibration
on the model's own procedural video), generate the same seed uncorrected and corrected with
:func:`vidfix.pipelines.generate_videos`, then write the videos, a side-by-side video, the drift JSON and
a drift plot, and print a short drift summary.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vidfix.scripts._common import Parser, device_name, positive_float, positive_int, seeds
from vidfix.scripts.cli import command

if TYPE_CHECKING:
    from vidfix.tracker import Stat

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "offline demo: a long video from the shipped model with and without vidfix, drift plot and summary"

_EXAMPLES = """examples:
  vidfix demo                                     # 128 frames, seed 0, into outputs/demo (a few minutes on 2 CPU cores)
  vidfix demo --frames 256 --seeds 0-3 --out outputs/demo256
  vidfix demo --calibration calibration.json      # coefficients from `vidfix calibrate`

Writes OUT/side_by_side.mp4 (real | uncorrected | vidfix), OUT/drift.png, OUT/uncorrected.mp4, OUT/vidfix.mp4,
OUT/drift.json, OUT/metrics.json and .png (vidfix.metrics report), and per-seed run folders under OUT/uncorrected
and OUT/vidfix. A rerun with the same options reuses what is finished (an interrupted demo continues where it
stopped). outputs/ is ignored by git."""

_TUNING_SEEDS = list(range(1000, 1004))  # procedural videos used to calibrate: never the demo's seeds
_HEADLINE: dict[Stat, str] = {
    "mean": "mean",
    "std": "std",
    "energy_spatial": "detail energy",
}  # drift statistic -> name shown


def build_parser() -> Parser:
    from vidfix.pipelines.choices import SCHEDULERS

    p = Parser(
        prog="vidfix demo",
        description="Generate a long video with and without the vidfix stabilizer and show the drift.",
        epilog=_EXAMPLES,
    )
    p.add_argument("--frames", type=positive_int, default=128, help="frames per video (default 128)")
    p.add_argument("--steps", type=positive_int, default=8, help="solver steps per chunk (default 8)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="euler", help="solver (default euler)")
    p.add_argument("--seeds", type=seeds, default="0",
                   help="video seeds, e.g. 0 or 0-3 (default 0; the side-by-side shows the first)")  # fmt: skip
    p.add_argument(
        "--calibration",
        metavar="FILE",
        help="DCW coefficients: a `vidfix calibrate` file or a DCW JSON (default: the model folder's "
        "calibration_<scheduler>_<steps>.json, the shipped model's best corrector from BENCHMARKS.md; else "
        "measured now)",
    )
    p.add_argument("--out", default="outputs/demo", help="output folder (default outputs/demo)")
    p.add_argument("--model", metavar="DIR", help="model folder (default: the shipped reference model)")
    p.add_argument("--model-class", metavar="MODULE:CLASS",
                   help="model class, when config.json's is not in vidfix or diffusers")  # fmt: skip
    p.add_argument("--fps", type=positive_float, default=8.0, help="frame rate of the .mp4 files (default 8)")
    p.add_argument("--scale", type=positive_int, default=3,
                   help="enlarge the side-by-side video by this factor (default 3)")  # fmt: skip
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


@dataclass(frozen=True)
class _DemoModel:
    """The model the demo runs, and the procedural process it was trained on (None for other models)."""

    model: Any
    folder: Path
    process: Any
    sprites: Any
    description: str


def _load_model(ns: Any, device: Any) -> _DemoModel:
    """The demo's model: the one place that decides what ``vidfix demo`` runs (default: the shipped model)."""
    from vidfix.pipelines.factory import load_denoiser, sprite_process_config

    model, folder = load_denoiser(ns.model, model_class=ns.model_class, device=device)
    process: Any = None
    sprites: Any = None
    if type(model).__name__ == "ReferenceVideoModel":
        try:
            from vidfix.pipelines.reference import data as process
        except ImportError:
            process = None
        if process is not None:
            sprites = sprite_process_config(folder, int(model.config.sample_size))
    described = "the shipped reference model" if ns.model is None else f"the model in {folder}"
    return _DemoModel(model, folder, process, sprites, described)


@command("vidfix demo")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)

    import torch
    from vidfix.pipelines.diffusers_run import make_corrector
    from vidfix.pipelines.factory import check_calibration, make_scheduler
    from vidfix.pipelines.reports import drift_summary, plot_calibration, plot_drift
    from vidfix.pipelines.runs import (
        ensure_writable,
        generate_videos,
        load_video,
        seed_folder,
        write_json_atomic,
    )
    from vidfix.pipelines.sampler import SamplerConfig, chunk_starts
    from vidfix.pipelines.video import side_by_side, write_mp4
    from vidfix.scripts._common import progress_bar, resolve_device

    from vidfix import DriftTracker
    from vidfix.calibration import calibrate

    if ns.threads:
        torch.set_num_threads(ns.threads)
    t_start = time.perf_counter()
    device = resolve_device(ns.device)
    out = ensure_writable(ns.out)
    demo = _load_model(ns, device)
    mc = demo.model.config
    size = int(mc.sample_size)
    config = SamplerConfig(
        num_frames=ns.frames, chunk_frames=int(mc.chunk_frames), context_frames=int(mc.max_context_frames),
        channels=int(mc.in_channels), height=size, width=size, num_steps=ns.steps,
    )  # fmt: skip
    K, F = config.context_frames, config.chunk_frames
    scheduler = make_scheduler(ns.scheduler, model_folder=demo.folder)
    process, sprites = demo.process, demo.sprites

    # Coefficients: given, shipped with the model, or measured now on real (context, chunk) clips.
    shipped = demo.folder / f"calibration_{ns.scheduler}_{ns.steps}.json"
    cal_path = Path(ns.calibration) if ns.calibration else shipped if shipped.is_file() else None
    if cal_path is None:
        if process is None:
            raise ValueError(
                "no calibration file for this model; make one with `vidfix calibrate` and pass --calibration"
            )
        cal_path = out / f"calibration_{ns.scheduler}_{ns.steps}.json"
        if not cal_path.is_file():
            gen = torch.Generator().manual_seed(0)
            starts = torch.randint(0, 10_000, (len(_TUNING_SEEDS),), generator=gen).tolist()
            clips = process.reference_videos(_TUNING_SEEDS, K + F, start=starts, config=sprites).to(device)
            bar, progress = progress_bar("calibrate", unit="call", disable=ns.no_progress)
            result = calibrate(
                demo.model, scheduler, clips[:, :, K:], num_steps=ns.steps, context=clips[:, :, :K] if K else None,
                generator=gen, progress=progress,
            )  # fmt: skip
            bar.close()
            write_json_atomic(result.to_dict() | {"dcw": result.to_dcw().to_dict()}, cal_path)
            plot_calibration(result, cal_path.with_suffix(".png"))
        cal_note = f"coefficients measured on procedural seeds {_TUNING_SEEDS[0]}-{_TUNING_SEEDS[-1]}"
    else:
        cal_note = f"coefficients from {cal_path}"
    check_calibration(cal_path, scheduler=scheduler, num_steps=ns.steps)
    corrector = make_corrector("dcw", calibration=cal_path)

    # The same seeds, uncorrected and corrected, from the same real start frames.
    start_context = None
    if process is not None and K:
        start_context = lambda s: process.reference_videos(s, K, config=sprites)  # noqa: E731
    folders: dict[str, Path] = {}
    for name, corr in (("uncorrected", None), ("vidfix", corrector)):
        bar, progress = progress_bar(name, unit="step", disable=ns.no_progress)
        records = generate_videos(
            demo.model, scheduler, config, ns.seeds, out_dir=out / name, corrector=corr, resume=True,
            start_context=start_context, progress=progress, device=device,
        )  # fmt: skip
        bar.close()
        folders[name] = Path(records[0]["folder"])  # the first seed's
    trackers: dict[str, list[DriftTracker]] = {
        name: [DriftTracker.from_json(seed_folder(out / name, s) / "drift.json") for s in ns.seeds]
        for name in folders
    }
    videos = {name: load_video(folders[name]) for name in folders}  # (C, N, H, W) of the first seed

    # The real continuation of the first seed, tracked the same way (flat: the process is stationary).
    if process is not None:
        real_all = process.reference_videos(ns.seeds, K + ns.frames, config=sprites)[
            :, :, K:
        ]  # (B, C, N, H, W)
        real_tr = DriftTracker()
        for s in chunk_starts(config):
            real_tr(real_all[:, :, s : s + F], index=len(real_tr.records))
        videos = {"real": real_all[0]} | videos
        trackers = {"real": [real_tr]} | trackers

    # Write the videos, the drift JSON and plot.
    for name in ("uncorrected", "vidfix"):
        write_mp4(out / f"{name}.mp4", videos[name], fps=ns.fps)
    write_mp4(out / "side_by_side.mp4", side_by_side(*videos.values()), fps=ns.fps, scale=ns.scale)
    merged = {name: _merge(trs) for name, trs in trackers.items()}
    summary = drift_summary(merged, stats=tuple(_HEADLINE))
    write_json_atomic({
        "frames": ns.frames, "seeds": ns.seeds, "scheduler": ns.scheduler, "steps": ns.steps,
        "chunk_starts": chunk_starts(config), "calibration": str(cal_path),
        "late_drift": summary, "conditions": {n: t.to_dict() for n, t in merged.items()},
    }, out / "drift.json")  # fmt: skip
    plot_drift(trackers, out / "drift.png", frames_per_chunk=F - config.overlap,
               title=f"drift against the first chunk, {ns.frames} frames, {ns.scheduler} {ns.steps} steps")  # fmt: skip
    _metrics_report(videos, out, F)

    minutes = (time.perf_counter() - t_start) / 60
    print(_summary_lines(ns, demo.description, out, list(videos), summary, cal_note, minutes))
    return 0


#: Said under the shipped model's numbers: they are colour statistics of video that has lost its sprites.
_SHIPPED_CAVEAT = (
    "  note   this model loses its sprites in ~16 frames either way: colour numbers, not coherence (docs/reference)"
)


def _summary_lines(
    ns: Any,
    model: str,
    out: Path,
    shown: list[str],
    summary: dict[str, dict[str, float]],
    cal_note: str,
    minutes: float,
) -> str:
    """What a person reads at a glance: what was made, where, the headline drift numbers, what to open."""
    from vidfix.pipelines.factory import format_seeds

    cells = []
    for stat, label in _HEADLINE.items():
        a, b = summary["uncorrected"][stat], summary["vidfix"][stat]
        change = f" ({100 * (b / a - 1):+.0f}%)" if a > 0 else ""
        cells.append(f"{label} {a:.3f} -> {b:.3f}{change}")
    seeds_shown = format_seeds(ns.seeds)
    return "\n".join([
        f"vidfix demo: {ns.frames} frames of {model}, seed{'s' if len(ns.seeds) > 1 else ''} {seeds_shown}, "
        f"{ns.scheduler} {ns.steps} steps, with and without vidfix ({minutes:.1f} min)",
        f"  open   {out / 'side_by_side.mp4'}  ({' | '.join(shown)})",
        f"         {out / 'drift.png'}  (drift against the first chunk)",
        "  late drift against the first chunk, uncorrected -> vidfix (lower is steadier):",
        "         " + ";  ".join(cells),
        f"  more   {out}/ (drift.json, metrics.json and .png, run folders)",
        f"         {cal_note}",
        *([_SHIPPED_CAVEAT] if ns.model is None else []),
    ])  # fmt: skip


def _merge(trackers: list[Any]) -> Any:
    """One tracker whose records hold every seed's videos (the JSON and summary cover all seeds)."""
    from dataclasses import replace

    from vidfix import DriftTracker

    if len(trackers) == 1:
        return trackers[0]
    records = []
    for k in range(min(len(t.records) for t in trackers)):
        rs = [t.records[k] for t in trackers]
        fields = ("mean", "std", "energy_low", "energy_spatial", "energy_temporal")
        records.append(replace(rs[0], **{f: [row for r in rs for row in getattr(r, f)] for f in fields}))
    return DriftTracker(trackers[0].dims, trackers[0].level, records)


def _metrics_report(videos: dict[str, Any], out: Path, chunk_frames: int) -> None:
    """The metrics package's drift report (colour, contrast, sharpness, flicker ...) of the videos."""
    import torch
    from vidfix.metrics import drift_report, plot_report, save_report

    names = list(videos)
    # (B, C, N, H, W), clipped to [-1, 1] as the written videos are: samples may overshoot the data range.
    batch = torch.stack([videos[n].float().cpu() for n in names]).clamp(-1.0, 1.0)
    report = drift_report(
        batch, names=names, layout="BCTHW", value_range=(-1.0, 1.0), chunk_frames=chunk_frames
    )
    save_report(report, out / "metrics.json")
    plot_report(report, out / "metrics.png")


if __name__ == "__main__":
    sys.exit(main())
