"""``vidfix eval-reference``: teacher-forced vs free rollouts of the reference model against real video.

Thin CLI over :func:`vidfix.pipelines.reference.evaluate.evaluate`: per window of frames, the structure judge's
object score, motion score and reference FVD, beside the colour drift, for real video, teacher forcing and
free rollout, on the model's process and its non-stationary (turning hue) variant; frames until the free
rollout's object score falls below half of teacher forcing's, per seed; the trend kept. Writes the numbers as
JSON and PNG strips (rows: real, teacher-forced, free rollout).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from vidfix.pipelines.choices import SCHEDULERS
from vidfix.scripts._common import Parser, UsageError, positive_float, positive_int, seeds
from vidfix.scripts.cli import command

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "measure the reference model: teacher-forced vs free rollout vs real video, judged per window"

_EPILOG = """examples:
  vidfix eval-reference --out runs/eval                          # shipped model and judge, 4 seeds x 128 frames
  vidfix eval-reference --model runs/reference/model --frames 512 --window 32 --out runs/eval512
"""

STRIP_FRAMES = (0, 16, 32, 64, 128, 256, 511)


def build_parser() -> Parser:
    p = Parser(
        prog="vidfix eval-reference",
        description="Roll the reference model out teacher-forced and free, and judge both against the real "
        "video of its sprite process, per window of frames.",
        epilog=_EPILOG,
    )
    p.add_argument("--model", default=None, help="model folder (default: the shipped weights)")
    p.add_argument("--judge", default=None, help="judge folder (default: the shipped judge)")
    p.add_argument("--seeds", type=seeds, default="100-103", help="evaluation seeds, e.g. 100-103 or 5,9 (default 100-103)")
    p.add_argument("--frames", type=positive_int, default=128, help="generated frames per video (default 128)")
    p.add_argument("--window", type=positive_int, default=32, help="frames per window (default 32)")
    p.add_argument("--steps", type=positive_int, default=8, help="sampler steps per chunk (default 8)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="euler", help="sampler (default euler)")
    p.add_argument("--shift", type=positive_float, default=None, help="timestep shift (default: the model's)")
    p.add_argument(
        "--process", choices=("both", "stationary", "trend"), default="both",
        help="the model's process, its turning-hue variant, or both (default both)",
    )  # fmt: skip
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--out", default=None, help="folder for report.json and PNG strips")
    return p


@command("vidfix eval-reference")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    if ns.frames % ns.window:
        raise UsageError(f"--frames ({ns.frames}) must be a multiple of --window ({ns.window})")

    import torch
    from vidfix.pipelines.factory import sprite_process_config
    from vidfix.pipelines.reference.evaluate import evaluate, format_report, save_strip
    from vidfix.pipelines.reference.judge import load_judge
    from vidfix.pipelines.reference.loading import (
        REFERENCE_WEIGHTS_DIR,
        load_reference_model,
        reference_scheduler,
    )

    torch.set_num_threads(ns.threads)
    model = load_reference_model(path=ns.model)
    judge = load_judge(path=ns.judge)
    folder = Path(ns.model) if ns.model else REFERENCE_WEIGHTS_DIR
    shift = ns.shift if ns.shift is not None else float(reference_scheduler("euler").config.shift)
    processes: Any = ("stationary", "trend") if ns.process == "both" else (ns.process,)
    report = evaluate(
        model, judge, seeds=ns.seeds, num_frames=ns.frames, window=ns.window, steps=ns.steps,
        scheduler=ns.scheduler, shift=shift, data=sprite_process_config(folder, int(model.config["sample_size"])),
        processes=processes,
    )  # fmt: skip
    print(format_report(report))
    if ns.out:
        out = Path(ns.out)
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "args": vars(ns) | {"shift": shift},
            "window": report.window,
            "tables": report.tables,
            "frames_to_half": report.frames_to_half,
            "trend_kept": report.trend,
        }
        tmp = out / "report.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, default=float) + "\n")
        tmp.replace(out / "report.json")
        frames = [t for t in STRIP_FRAMES if t < ns.frames]
        written = []
        for process in processes:
            for i, s in enumerate(ns.seeds[:2]):
                rows = {k: report.videos[f"{process}/{k}"][i] for k in ("real", "teacher", "free")}
                written.append(save_strip(rows, out / f"strip_{process}_seed{s}.png", frames=frames))
        print(f"wrote {out / 'report.json'} and {len(written)} strips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
