"""``vidfix generate --pipeline ...``: run a diffusers video checkpoint with a vidfix corrector.

Thin entry point: parses options, builds a :class:`vidfix.pipelines.diffusers_run.GenerateConfig` and calls
the library (``load_pipeline``, ``make_corrector``, ``generate``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, get_args

__all__ = ["SUMMARY", "build_parser", "main", "parse_seeds"]

SUMMARY = "run a diffusers video checkpoint (Wan, LTX, CogVideoX, Hunyuan, SkyReels-V2 DF) with a corrector"

_EPILOG = """examples:
  # Wan 2.1 T2V 1.3B, baseline and a low-band DCW, 4 seeds each (compare the drift JSONs)
  vidfix generate --pipeline wan --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --prompt "a red fox running" \\
      --frames 81 --height 480 --width 832 --steps 30 --seeds 0-3 --out runs/wan_none
  vidfix generate --pipeline wan --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --prompt "a red fox running" \\
      --frames 81 --height 480 --width 832 --steps 30 --seeds 0-3 --corrector dcw --low 0.005 --out runs/wan_dcw

  # SkyReels-V2 diffusion forcing, long video (chunks of 97 frames overlapping by 17), async (ar_step 5)
  vidfix generate --pipeline skyreels-df --model Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers \\
      --prompt "a boat on a calm lake" --frames 257 --base-frames 97 --overlap-history 17 \\
      --ar-step 5 --causal-block-size 5 --addnoise-condition 20 --corrector dcw2d --low 0.005

  # coefficients from a calibration file (a JSON written by DCW.to_dict())
  vidfix generate --pipeline ltx --model ./LTX-Video --prompt "..." --corrector dcw --calibration ltx_dcw.json

outputs in --out: <name>_seed<N>.mp4, <name>_seed<N>.drift.json (per-chunk drift), run.json."""


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0-3,7"`` -> ``(0, 1, 2, 3, 7)``: :func:`vidfix.pipelines.factory.parse_seeds` as an argparse type."""
    from vidfix.pipelines.factory import parse_seeds as parse

    try:
        return tuple(parse(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _pipe_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--pipe-arg takes KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string


def build_parser() -> argparse.ArgumentParser:
    from vidfix.pipelines.diffusers_run import PIPELINE_CLASSES, CorrectorKind, ScheduleName

    p = argparse.ArgumentParser(
        prog="vidfix generate",
        description="Generate videos with a diffusers pipeline, corrected by vidfix inside every scheduler step.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pipeline", required=True, choices=list(PIPELINE_CLASSES), help="pipeline family")
    p.add_argument("--model", required=True, help="local folder (save_pretrained layout) or hub id")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--frames", type=int, default=None, help="pixel frames (default: the pipeline's)")
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--guidance-scale", type=float, default=None)
    p.add_argument("--seeds", type=parse_seeds, default=(0,), help="e.g. 0-3,7 (one video per seed)")
    p.add_argument("--fps", type=int, default=16)
    p.add_argument("--out", default="vidfix_out", help="output folder")
    p.add_argument("--name", default=None, help="file name stem (default: the pipeline name)")

    g = p.add_argument_group("model loading")
    g.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    g.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="default: bf16 on GPU"
    )
    g.add_argument("--vae-dtype", default=None, choices=["float32", "bfloat16", "float16"])
    g.add_argument("--offload", default="none", choices=["none", "model", "sequential"])
    g.add_argument("--vae-tiling", action="store_true")

    c = p.add_argument_group("corrector (coefficients are model-specific: measure them, docs/diffusers.md)")
    c.add_argument("--corrector", default="none", choices=get_args(CorrectorKind))
    c.add_argument("--low", type=float, default=None, help="DCW low-band coefficient")
    c.add_argument("--spatial", type=float, default=None, help="DCW spatial-detail coefficient")
    c.add_argument("--temporal", type=float, default=None, help="DCW temporal-detail coefficient (dcw only)")
    c.add_argument(
        "--schedule", default="paper", choices=get_args(ScheduleName), help="paper: low*s, detail*(1-s)"
    )
    c.add_argument("--eps-scale", type=float, default=None, help="epsilon scaling factor (eps only)")
    c.add_argument("--calibration", default=None, help="DCW JSON (DCW.to_dict()) instead of coefficients")
    c.add_argument(
        "--drift-window", type=int, default=1, help="latent frames per drift entry (one-chunk runs)"
    )

    s = p.add_argument_group("SkyReels-V2 diffusion forcing (long video)")
    s.add_argument("--base-frames", type=int, default=None, help="frames per chunk (base_num_frames)")
    s.add_argument("--overlap-history", type=int, default=None, help="frames shared by consecutive chunks")
    s.add_argument("--ar-step", type=int, default=None, help="0: synchronous; >0: staggered blocks")
    s.add_argument("--causal-block-size", type=int, default=None)
    s.add_argument(
        "--addnoise-condition", type=float, default=None, help="noise on the prefix (20 recommended)"
    )
    p.add_argument("--pipe-arg", type=_pipe_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="any other pipe(...) argument, VALUE parsed as JSON when it can be (repeatable)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)

    import torch
    from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, make_corrector

    try:
        corrector = make_corrector(
            args.corrector,
            low=args.low,
            spatial=args.spatial,
            temporal=args.temporal,
            schedule=args.schedule,
            eps_scale=args.eps_scale,
            calibration=args.calibration,
        )
    except (ValueError, OSError) as err:
        print(f"vidfix generate: {err}", file=sys.stderr)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("bfloat16" if device.startswith("cuda") else "float32")
    skyreels = {
        "base_num_frames": args.base_frames,
        "overlap_history": args.overlap_history,
        "ar_step": args.ar_step,
        "causal_block_size": args.causal_block_size,
        "addnoise_condition": args.addnoise_condition,
    }
    extra = {k: v for k, v in skyreels.items() if v is not None} | dict(args.pipe_arg)
    if args.pipeline != "skyreels-df" and any(v is not None for v in skyreels.values()):
        print("vidfix generate: the SkyReels options need --pipeline skyreels-df", file=sys.stderr)
        return 2
    config = GenerateConfig(
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        num_frames=args.frames,
        height=args.height,
        width=args.width,
        steps=args.steps,
        guidance_scale=args.guidance_scale,
        seeds=args.seeds,
        fps=args.fps,
        drift_window=args.drift_window,
        name=args.name or args.pipeline.replace("-", "_"),
        pipeline_kwargs=extra,
    )
    pipe = load_pipeline(
        args.pipeline,
        args.model,
        dtype=dtype,
        device=device,
        vae_dtype=args.vae_dtype,
        offload=args.offload,
        vae_tiling=args.vae_tiling,
    )
    for r in generate(pipe, config, corrector, args.out):
        corrected = sum(c.corrected for c in r.chunks)
        print(
            f"seed {r.seed}: {r.frames} frames in {r.seconds:.1f} s, {len(r.chunks)} chunk(s), "
            f"{corrected} corrected steps -> {r.video}, {r.drift}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
