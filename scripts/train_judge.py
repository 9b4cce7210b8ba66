"""``vidfix train-judge``: train the structure judge (sprite detector and scene encoder) on the sprite process.

Thin CLI over :func:`vidfix.pipelines.reference.judge_train.train_judge`. The defaults reproduce the shipped
judge; rerun the same command after a kill (or after ``--max-minutes``) to continue from the checkpoint.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time

__all__ = ["SUMMARY", "main"]

SUMMARY = "train the structure judge (object, motion and clip scores) on the sprite process"

_EPILOG = """examples:
  vidfix train-judge runs/judge                      # reproduce the shipped judge (about 30 minutes, 1 thread)
  vidfix train-judge runs/judge --install            # also copy it into the package's judge_weights folder
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vidfix train-judge",
        description="Train the structure judge on the sprite process's ground truth. Seeded; rerunning resumes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("output_dir", help="run folder (checkpoint, loss log, weights in <output_dir>/model)")
    # Defaults are JudgeTrainConfig's (the shipped recipe), read after parsing: --help imports no torch.
    parser.add_argument("--steps", type=int, help="optimiser steps (default: the shipped recipe's, 2500)")
    parser.add_argument("--seed", type=int, help="run seed (default: the shipped recipe's, 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--max-minutes", type=float, default=90.0, help="stop (with a checkpoint) after this long")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--install", action="store_true", help="copy the result into the package's judge_weights")
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if (ns.steps is not None and ns.steps < 1) or ns.threads < 1 or ns.max_minutes <= 0:
        print("vidfix train-judge: --steps and --threads must be >= 1 and --max-minutes > 0", file=sys.stderr)
        return 2

    from vidfix.pipelines.reference.judge import JUDGE_WEIGHTS_DIR
    from vidfix.pipelines.reference.judge_train import JudgeTrainConfig, train_judge

    given = {k: v for k, v in {"steps": ns.steps, "seed": ns.seed}.items() if v is not None}
    cfg = JudgeTrainConfig(output_dir=ns.output_dir, threads=ns.threads, **given)
    start = time.perf_counter()
    try:
        folder = train_judge(cfg, progress=not ns.no_progress, max_seconds=60 * ns.max_minutes)
    except ValueError as err:
        print(f"vidfix train-judge: {err}", file=sys.stderr)
        return 2
    print(f"judge: {folder} ({time.perf_counter() - start:.0f} s this run)")
    if ns.install:
        JUDGE_WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
        for f in folder.iterdir():
            shutil.copy2(f, JUDGE_WEIGHTS_DIR / f.name)
        print(f"installed into {JUDGE_WEIGHTS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
