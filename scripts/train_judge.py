"""``vidfix train-judge``: train the structure judge (sprite detector and scene encoder) on the sprite process.

Thin CLI over :func:`vidfix.pipelines.reference.judge_train.train_judge`. The defaults reproduce the shipped
judge; rerun the same command after a kill (or after ``--max-minutes``) to continue from the checkpoint.
"""

from __future__ import annotations

import shutil
import sys
import time

from vidfix.scripts._common import Parser, nonnegative_int, positive_float, positive_int
from vidfix.scripts.cli import command

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "train the structure judge (object, motion and clip scores) on the sprite process"

_EPILOG = """examples:
  vidfix train-judge runs/judge                      # reproduce the shipped judge (about 30 minutes, 1 thread)
  vidfix train-judge runs/judge --install            # also copy it into the package's judge_weights folder
"""


def build_parser() -> Parser:
    p = Parser(
        prog="vidfix train-judge",
        description="Train the structure judge on the sprite process's ground truth. Seeded; rerunning resumes.",
        epilog=_EPILOG,
    )
    p.add_argument("output_dir", help="run folder (checkpoint, loss log, weights in <output_dir>/model)")
    # Defaults are JudgeTrainConfig's (the shipped recipe), read after parsing: --help imports no torch.
    p.add_argument("--steps", type=positive_int, help="optimiser steps (default: the shipped recipe's, 2500)")
    p.add_argument("--seed", type=nonnegative_int, help="run seed (default: the shipped recipe's, 0)")
    p.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1)")
    p.add_argument("--max-minutes", type=positive_float, default=90.0, help="stop (with a checkpoint) after this long")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--install", action="store_true", help="copy the result into the package's judge_weights")
    return p


@command("vidfix train-judge")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    from vidfix.pipelines.reference.judge import JUDGE_WEIGHTS_DIR
    from vidfix.pipelines.reference.judge_train import JudgeTrainConfig, train_judge

    given = {k: v for k, v in {"steps": ns.steps, "seed": ns.seed}.items() if v is not None}
    cfg = JudgeTrainConfig(output_dir=ns.output_dir, threads=ns.threads, **given)
    start = time.perf_counter()
    folder = train_judge(cfg, progress=not ns.no_progress, max_seconds=60 * ns.max_minutes)
    print(f"judge: {folder} ({time.perf_counter() - start:.0f} s this run)")
    if ns.install:
        JUDGE_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            shutil.copy2(f, JUDGE_WEIGHTS_DIR / f.name)
        print(f"installed into {JUDGE_WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
