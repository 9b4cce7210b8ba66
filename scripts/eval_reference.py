"""``vidfix eval-reference``: teacher-forced vs free rollouts of the reference model against real video.

Thin CLI over :func:`vidfix.pipelines.reference.evaluate.evaluate`: prints per-window statistics (mean colour,
contrast, saturation, sharpness, detail energy, PSNR to the real continuation), writes them as JSON and
saves PNG frame strips (rows: real, teacher-forced, free rollout).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["SUMMARY", "main"]

SUMMARY = "measure the reference model: teacher-forced vs free rollout vs real video, per window"

_EPILOG = """examples:
  vidfix eval-reference --out runs/eval                          # shipped model, 8 videos x 128 frames
  vidfix eval-reference --model runs/reference/model --frames 256 --videos 4 --out runs/eval256
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vidfix eval-reference",
        description="Roll the reference model out teacher-forced and free, and compare per-window statistics "
        "with the real video of the sprite process.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model folder (default: the shipped weights)")
    parser.add_argument(
        "--videos", type=int, default=8, help="videos (seeds seed .. seed+videos-1; default 8)"
    )
    parser.add_argument("--frames", type=int, default=128, help="generated frames per video (default 128)")
    parser.add_argument("--window", type=int, default=16, help="frames per statistics window (default 16)")
    parser.add_argument("--steps", type=int, default=16, help="Euler steps per chunk (default 16)")
    parser.add_argument(
        "--shift", type=float, default=None, help="timestep shift (default: the shipped scheduler's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="first video seed (default 0)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--out", default=None, help="folder for report.json and PNG strips")
    parser.add_argument("--strips", type=int, default=2, help="PNG strips to save (default 2)")
    ns = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import torch
    from vidfix.pipelines.reference.evaluate import evaluate, format_report, save_strip
    from vidfix.pipelines.reference.loading import load_reference_model, reference_scheduler

    torch.set_num_threads(ns.threads)
    model = load_reference_model(path=ns.model)
    shift = ns.shift if ns.shift is not None else float(reference_scheduler("euler").config.shift)
    report = evaluate(
        model,
        num_videos=ns.videos,
        num_frames=ns.frames,
        window=ns.window,
        steps=ns.steps,
        shift=shift,
        seed=ns.seed,
    )
    print(format_report(report))
    if ns.out:
        out = Path(ns.out)
        out.mkdir(parents=True, exist_ok=True)
        data = {
            "args": vars(ns) | {"shift": shift},
            **{
                src: {k: [round(float(x), 6) for x in v] for k, v in getattr(report, src).items()}
                for src in ("real", "fresh", "teacher", "free")
            },
            "psnr_teacher": [round(float(x), 3) for x in report.psnr_teacher],
            "psnr_free": [round(float(x), 3) for x in report.psnr_free],
        }
        (out / "report.json").write_text(json.dumps(data, indent=1) + "\n")
        for i in range(min(ns.strips, ns.videos)):
            save_strip({k: v[i] for k, v in report.videos.items()}, out / f"strip_seed{ns.seed + i}.png")
        print(f"wrote {out / 'report.json'} and {min(ns.strips, ns.videos)} strips")
    return 0


if __name__ == "__main__":
    sys.exit(main())
