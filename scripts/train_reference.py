"""``vidfix train-reference``: train (or resume) the reference model that ships in ``vidfix.pipelines``.

Thin CLI over :func:`vidfix.pipelines.reference.train.train_reference`. The defaults reproduce the shipped
weights; rerun the same command after a kill to continue from the last checkpoint.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

__all__ = ["SUMMARY", "main"]

SUMMARY = "train (or resume) the shipped reference video model on the sprite process"

_EPILOG = """examples:
  vidfix train-reference runs/reference                 # reproduce the shipped weights (about 30 minutes)
  vidfix train-reference runs/reference                 # killed? the same command resumes from the checkpoint
  vidfix train-reference runs/quick --steps 300         # a quick smoke run
  vidfix train-reference runs/reference --install       # also copy the result into the package's weights folder
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vidfix train-reference",
        description="Train the reference chunk denoiser with flow matching on the procedural sprite process. "
        "Step-budgeted and seeded: the same arguments give the same weights; rerunning resumes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # Defaults are TrainConfig's (the shipped recipe), read after parsing: --help stays fast (no torch import).
    recipe = "default: the shipped recipe's"
    parser.add_argument("output_dir", help="run folder (checkpoint, loss log, weights in <output_dir>/model)")
    parser.add_argument("--steps", type=int, help=f"optimiser steps ({recipe})")
    parser.add_argument("--batch-size", type=int, help=f"clips per step ({recipe})")
    parser.add_argument("--lr", type=float, help=f"peak learning rate ({recipe})")
    parser.add_argument("--seed", type=int, help=f"run seed ({recipe})")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the shipped weights were trained with 1; other counts change the last "
        "bits of every step, so the weights differ slightly)",
    )
    parser.add_argument("--checkpoint-every", type=int, help=f"steps per checkpoint ({recipe})")
    parser.add_argument(
        "--device", default="cpu", help="cpu or cuda (default cpu); a checkpoint written on one resumes on the other"
    )
    parser.add_argument("--precision", choices=("float32", "bfloat16"), help=f"compute dtype ({recipe})")
    parser.add_argument(
        "--max-minutes", type=float, default=90.0,
        help="stop with a checkpoint after this long (default 90); the same command continues",
    )  # fmt: skip
    parser.add_argument("--init-from", metavar="PATH", help="start from a checkpoint.pt or model folder (fine-tuning)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--install",
        action="store_true",
        help="copy the trained weights into the package (vidfix/pipelines/reference/weights)",
    )
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.threads < 1 or ns.max_minutes <= 0 or ns.device.split(":")[0] not in ("cpu", "cuda"):
        print("vidfix train-reference: --threads must be >= 1, --max-minutes > 0, --device cpu or cuda[:N]",
              file=sys.stderr)  # fmt: skip
        return 2

    from vidfix.pipelines import REFERENCE_WEIGHTS_DIR
    from vidfix.pipelines.reference.train import TrainConfig, train_reference

    given = {"steps": ns.steps, "batch_size": ns.batch_size, "lr": ns.lr, "seed": ns.seed,
             "checkpoint_every": ns.checkpoint_every, "precision": ns.precision, "init_from": ns.init_from}  # fmt: skip
    start = time.perf_counter()
    try:
        cfg = TrainConfig(
            output_dir=ns.output_dir, threads=ns.threads, device=ns.device,
            **{k: v for k, v in given.items() if v is not None},
        )  # fmt: skip
        result = train_reference(cfg, progress=not ns.no_progress, max_seconds=60 * ns.max_minutes)
    except ValueError as err:
        print(f"vidfix train-reference: {err}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    summary = {
        "steps": cfg.steps,
        "wall_s_this_session": round(elapsed, 1),
        "final_loss_mean_100": sum(result.losses[-100:]) / min(100, len(result.losses)),
    }
    print(json.dumps(summary))
    print(f"weights: {result.model_dir}")
    if ns.install:
        dest = Path(REFERENCE_WEIGHTS_DIR)
        dest.mkdir(parents=True, exist_ok=True)
        for f in result.model_dir.iterdir():
            shutil.copy2(f, dest / f.name)
        print(f"installed into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
