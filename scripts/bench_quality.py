"""``vidfix bench quality``: drift of the reference model with each corrector and baseline, written to BENCHMARKS.md.

Thin: parse arguments, build the frozen :class:`vidfix.pipelines.benchmark.QualityConfig`, load the model, call
:func:`vidfix.pipelines.benchmark.run_quality`, write the JSON of every number, the PNG plots and the
``<!-- bench:quality -->`` section of BENCHMARKS.md (with this exact command next to the numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY", "build_parser", "config_from_args", "main"]

SUMMARY = (
    "drift of the reference model with each corrector and baseline (tuned on some seeds, reported on others)"
)

_EXAMPLES = """examples:
  vidfix bench quality                                   # the BENCHMARKS.md run (shipped reference model)
  vidfix bench quality --steps 4 --schedulers euler --conditions none dcw3d_cal anchor --no-write
  vidfix bench quality --from-json docs/bench/quality.json   # re-render tables and plots, no generation

Seeds: --tune-seeds choose every parameter (epsilon scale, the paper's coefficient, calibrated-DCW strength,
anchoring strength); every reported number comes from --eval-seeds (disjoint). Process seeds (real frames):
--calib-seeds (calibration clips), --reference-seeds (Frechet reference), and --real-seed-offset + k for
sampler seed k's real video (its first K frames start every rollout of seed k; teacher forcing reads the
rest; the "real videos" row measures it). A rerun of the same command gives the
same numbers (one seeded generator per video; one torch thread by default)."""


def build_parser() -> argparse.ArgumentParser:
    from vidfix.pipelines.benchmark import CONDITIONS, QualityConfig
    from vidfix.pipelines.factory import format_seeds

    d = QualityConfig()
    p = argparse.ArgumentParser(
        prog="vidfix bench quality",
        description="Measure drift of a chunk denoiser with each corrector and baseline; write BENCHMARKS.md.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="DIR", help="model folder (default: the shipped reference model)")
    g.add_argument(
        "--model-class", metavar="MODULE:CLASS", help="model class, when config.json's is not in vidfix"
    )
    g.add_argument("--shift", type=float, help="timestep shift (default: the model folder's, else 1)")
    g = p.add_argument_group("what runs")
    g.add_argument("--schedulers", nargs="+", default=list(d.schedulers), choices=("euler", "unipc"))
    g.add_argument("--steps", nargs="+", type=int, default=list(d.steps), help="solver steps per chunk")
    g.add_argument(
        "--frames", type=int, default=d.num_frames, help=f"frames per video (default {d.num_frames})"
    )
    g.add_argument("--conditions", nargs="+", default=list(d.conditions), choices=CONDITIONS, metavar="NAME",
                   help=f"conditions to run (default all: {', '.join(CONDITIONS)})")  # fmt: skip
    g.add_argument(
        "--tune-seeds", default=format_seeds(d.tune_seeds), help="sampler seeds that choose the parameters"
    )
    g.add_argument(
        "--eval-seeds",
        default=format_seeds(d.eval_seeds),
        help=f"sampler seeds that are reported (default {format_seeds(d.eval_seeds)})",
    )
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="videos per model call")
    g = p.add_argument_group("candidate parameters (tuned on --tune-seeds)")
    g.add_argument(
        "--eps-scales", type=float, nargs="+", default=list(d.eps_scales), metavar="X", help="epsilon scales"
    )
    g.add_argument("--paper-low", type=float, nargs="+", default=list(d.paper_low), metavar="X",
                   help="paper DCW 2D low-band coefficients (detail off)")  # fmt: skip
    g.add_argument("--paper-spatial", type=float, nargs="*", default=list(d.paper_spatial), metavar="X",
                   help="paper DCW 2D detail coefficients tried at the best low one")  # fmt: skip
    g.add_argument("--dcw-strengths", type=float, nargs="+", default=list(d.dcw_strengths), metavar="X",
                   help="multipliers of the calibrated coefficients")  # fmt: skip
    g.add_argument("--anchor-strengths", type=float, nargs="+", default=list(d.anchor_strengths), metavar="X")
    g.add_argument("--color-strengths", type=float, nargs="+", default=list(d.color_strengths), metavar="X")
    g.add_argument("--context-noise", type=float, default=d.context_noise, help="SkyReels a (default 20)")
    g = p.add_argument_group("real frames and metrics")
    g.add_argument(
        "--calib-seeds", default=format_seeds(d.calib_seeds), help="process seeds of the calibration clips"
    )
    g.add_argument(
        "--reference-seeds",
        default=format_seeds(d.reference_seeds),
        help="process seeds of the Frechet reference",
    )
    g.add_argument(
        "--reference-frames", type=int, default=d.reference_frames, help="frames per reference video"
    )
    g.add_argument("--real-seed-offset", type=int, default=d.real_seed_offset)
    g.add_argument(
        "--no-start-context",
        action="store_true",
        help="chunk 0 without real context (default: each video continues K real frames of its seed)",
    )
    g.add_argument("--window", type=int, default=d.window, help="frames per Frechet / drift window")
    g.add_argument("--window-step", type=int, default=d.window_step)
    g.add_argument("--bootstrap", type=int, default=d.bootstrap, help="bootstrap resamples over videos")
    g.add_argument("--seed", type=int, default=d.seed, help="clip positions, calibration noise, bootstrap")
    g = p.add_argument_group("machine and output")
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the numbers' bits)")
    g.add_argument(
        "--output", default="BENCHMARKS.md", help="markdown file whose quality section is replaced"
    )
    g.add_argument(
        "--plots", help="folder of the PNG plots (default docs/bench; with --no-write a temporary folder)"
    )
    g.add_argument("--json", help="every number as JSON (default: PLOTS/quality.json)")
    g.add_argument("--from-json", metavar="FILE", help="re-render a saved result (no generation)")
    g.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    g.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(ns: argparse.Namespace) -> Any:
    """The frozen :class:`QualityConfig` the arguments describe."""
    from vidfix.pipelines.benchmark import QualityConfig
    from vidfix.pipelines.factory import parse_seeds

    return QualityConfig(
        schedulers=tuple(ns.schedulers), steps=tuple(ns.steps), num_frames=ns.frames,
        tune_seeds=tuple(parse_seeds(ns.tune_seeds)), eval_seeds=tuple(parse_seeds(ns.eval_seeds)),
        conditions=tuple(ns.conditions), shift=ns.shift, eps_scales=tuple(ns.eps_scales),
        paper_low=tuple(ns.paper_low), paper_spatial=tuple(ns.paper_spatial),
        dcw_strengths=tuple(ns.dcw_strengths), anchor_strengths=tuple(ns.anchor_strengths),
        color_strengths=tuple(ns.color_strengths), context_noise=ns.context_noise,
        calib_seeds=tuple(parse_seeds(ns.calib_seeds)), reference_seeds=tuple(parse_seeds(ns.reference_seeds)),
        reference_frames=ns.reference_frames, real_seed_offset=ns.real_seed_offset,
        start_context=not ns.no_start_context, window=ns.window,
        window_step=ns.window_step, bootstrap=ns.bootstrap, batch_size=ns.batch_size, seed=ns.seed,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(args)

    import torch
    from vidfix.pipelines.benchmark import (
        QualityResult,
        plot_quality,
        procedural_source,
        quality_markdown,
        run_quality,
    )
    from vidfix.pipelines.factory import describe_model, load_denoiser
    from vidfix.scripts._common import progress_bar
    from vidfix.scripts.bench import machine_line, today, write_section

    torch.set_num_threads(ns.threads)
    command = " ".join(["vidfix bench quality", *args])
    # --no-write leaves the repository alone: plots and JSON go to a temporary folder unless named.
    plots_dir = Path(
        ns.plots or (tempfile.mkdtemp(prefix="vidfix-bench-quality-") if ns.no_write else "docs/bench")
    )
    json_path = Path(ns.json) if ns.json else plots_dir / "quality.json"
    try:
        if ns.from_json:
            result = QualityResult.load(ns.from_json)
            command = result.command or command
            machine, date = result.machine or machine_line(), result.date or today()
        else:
            config = config_from_args(ns)
            model, folder = load_denoiser(ns.model, model_class=ns.model_class, device=ns.device)
            real = procedural_source(folder, int(model.config.sample_size))
            bar, progress = progress_bar("bench quality", unit="call", disable=ns.no_progress)
            result = run_quality(
                model, config, real=real, model_folder=folder, model_info=describe_model(model, folder),
                device=ns.device, progress=progress, log=bar.write,
            )  # fmt: skip
            bar.close()
            result.command, result.machine, result.date = command, machine_line(), today()
            machine, date = result.machine, result.date
            json_path.parent.mkdir(parents=True, exist_ok=True)
            result.save(json_path)
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"vidfix bench quality: error: {err}", file=sys.stderr)
        return 2
    out = Path(ns.output)
    plots = plot_quality(result, plots_dir)
    links = {k: os.path.relpath(v, out.resolve().parent) for k, v in plots.items()}
    text = quality_markdown(
        result, command=command, plots=links, machine=machine, date=date,
        json_path=os.path.relpath(json_path, out.resolve().parent),
    )  # fmt: skip
    print(text)
    if not ns.no_write:
        print(f"\nwritten to {write_section('quality', text, path=out)}")
    elif not ns.plots:
        print(f"\n--no-write: BENCHMARKS.md left alone; plots and JSON in {plots_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
