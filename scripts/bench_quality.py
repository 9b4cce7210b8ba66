"""``vidfix bench quality``: the reference model under each corrector and baseline, judged by the structure judge.

Thin: parse arguments, build the frozen :class:`vidfix.bench.quality.QualityConfig`, load the model and the
judge, call :func:`vidfix.bench.quality.run_quality`, write the JSON of every number, the PNG plots and the
``<!-- bench:quality -->`` section of BENCHMARKS.md (with this exact command next to the numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "drift of the reference model with each corrector and baseline, judged by the structure judge"

_EXAMPLES = """examples:
  vidfix bench quality                                   # the BENCHMARKS.md run (shipped model and judge)
  vidfix bench quality --processes stationary --schedulers euler --frames 128 --conditions none teacher --no-write
  vidfix bench quality --schedulers euler unipc fewstep  # also the few-step x0 / re-noise mode
  vidfix bench quality --from-json docs/bench/quality.json   # re-render tables and plots, no generation

Seeds: --tune-seeds choose every parameter; every reported number comes from --eval-seeds (disjoint). A
rerun of the same command gives the same numbers (one seeded generator per video; one torch thread)."""


def build_parser() -> argparse.ArgumentParser:
    from vidfix.bench import conditions as C
    from vidfix.bench.quality import QualityConfig
    from vidfix.pipelines.choices import SCHEDULERS
    from vidfix.pipelines.factory import format_seeds

    d = QualityConfig()
    p = argparse.ArgumentParser(
        prog="vidfix bench quality",
        description="Measure drift of the reference model with each corrector and baseline; write BENCHMARKS.md.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("what runs")
    g.add_argument("--model", metavar="DIR", help="model folder (default: the shipped reference model)")
    g.add_argument("--judge", metavar="DIR", help="judge folder (default: the shipped judge)")
    g.add_argument("--processes", nargs="+", default=list(d.processes), choices=("stationary", "trend"))
    g.add_argument("--schedulers", nargs="+", default=list(d.schedulers), choices=SCHEDULERS,
                   help="solver per chunk (default euler unipc); fewstep: the few-step x0 / re-noise mode, "
                   "where the conditions that need a step calibration (2d, 3d, rollout) are skipped, with a note")  # fmt: skip
    g.add_argument("--steps", nargs="+", type=int, default=list(d.steps), help="solver steps per chunk")
    g.add_argument(
        "--frames", type=int, default=d.num_frames, help=f"frames per video (default {d.num_frames})"
    )
    g.add_argument(
        "--tune-frames",
        type=int,
        default=d.tune_frames,
        help=f"frames per tuning video (default {d.tune_frames})",
    )
    g.add_argument("--window", type=int, default=d.window, help=f"frames per window (default {d.window})")
    g.add_argument("--conditions", nargs="+", default=list(d.conditions), choices=C.names(), metavar="NAME",
                   help=f"conditions to run (default all: {', '.join(d.conditions)})")  # fmt: skip
    g.add_argument(
        "--tune-seeds", default=format_seeds(d.tune_seeds), help="sampler seeds that choose parameters"
    )
    g.add_argument("--eval-seeds", default=format_seeds(d.eval_seeds), help="sampler seeds that are reported")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="videos per model call")
    g.add_argument(
        "--pool-videos", type=int, default=d.pool_videos, help="fresh real videos of the FVD reference"
    )
    g = p.add_argument_group("machine and output")
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


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    ns = build_parser().parse_args(args)

    import torch
    from vidfix.bench.quality import QualityConfig, QualityResult, run_quality
    from vidfix.bench.report import plot_quality, quality_markdown
    from vidfix.pipelines.factory import parse_seeds
    from vidfix.pipelines.reference import load_reference_model
    from vidfix.pipelines.reference.judge import load_judge
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
        else:
            config = QualityConfig(
                processes=tuple(ns.processes), schedulers=tuple(ns.schedulers), steps=tuple(ns.steps),
                num_frames=ns.frames, tune_frames=ns.tune_frames, window=ns.window,
                tune_seeds=tuple(parse_seeds(ns.tune_seeds)), eval_seeds=tuple(parse_seeds(ns.eval_seeds)),
                conditions=tuple(ns.conditions), batch_size=ns.batch_size, pool_videos=ns.pool_videos,
            )  # fmt: skip
            model = load_reference_model(path=ns.model)
            judge = load_judge(path=ns.judge)
            bar, progress = progress_bar("bench quality", unit="frame", disable=ns.no_progress)
            result = run_quality(model, judge, config, log=bar.write, progress=progress)
            bar.close()
            result.command, result.machine, result.date = command, machine_line(), today()
            if not ns.no_write:
                json_path.parent.mkdir(parents=True, exist_ok=True)
                result.save(json_path)
    except (ValueError, TypeError, OSError) as err:
        print(f"vidfix bench quality: error: {err}", file=sys.stderr)
        return 2
    out = Path(ns.output)
    plots = plot_quality(result, plots_dir) if not ns.no_write else {}
    links = {k: os.path.relpath(v, out.resolve().parent) for k, v in plots.items()}
    text = quality_markdown(
        result, command=result.command or command, plots=links, machine=result.machine or machine_line(),
        date=result.date or today(), json_path=os.path.relpath(json_path, out.resolve().parent),
    )  # fmt: skip
    print(text)
    if not ns.no_write:
        print(f"\nwritten to {write_section('quality', text, path=out)}")
    elif not ns.plots:
        print(f"\n--no-write: BENCHMARKS.md left alone; plots and JSON in {plots_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
