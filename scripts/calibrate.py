"""``vidfix calibrate``: measure a model's SNR-t bias on its own real context frames; write DCW coefficients.

Thin: parse arguments, cut real clips into (context, chunk) pairs, call :func:`vidfix.calibration.calibrate`,
write the coefficient file ``vidfix generate --calibration`` reads and a PNG of the per-step curves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from vidfix.scripts._common import (
    Parser,
    UsageError,
    device_name,
    nonnegative_int,
    positive_float,
    positive_int,
    seeds,
)
from vidfix.scripts.cli import command

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "measure a model's SNR-t bias on real context frames and write DCW coefficients"

_EXAMPLES = """examples:
  vidfix calibrate --steps 16 --out calibration.json              # shipped reference model, its procedural video
  vidfix calibrate --scheduler unipc --steps 16 --dims 2d --out calibration_unipc_2d.json
  vidfix calibrate --model my_model --data clips.safetensors --steps 20 --out my_calibration.json
  vidfix calibrate --rollout 6 --steps 8 --out calibration_rollout.json   # coefficients that cut drift
  vidfix generate --frames 128 --seeds 0-7 --calibration calibration.json --out runs/calibrated
{pipeline_examples}

Real frames: by default clips of the reference model's procedural video process (seeds --seeds, which
should not be the seeds you evaluate on); or --data FILE.safetensors holding "video" (B, C, T, H, W) or
(C, T, H, W). Each clip gives K context frames and the F-frame chunk after them."""


def build_parser() -> Parser:
    from vidfix.pipelines.choices import SCHEDULERS
    from vidfix.scripts import calibrate_pipeline

    p = Parser(
        prog="vidfix calibrate",
        description="Measure the SNR-t bias of a chunk denoiser per step and band group; write signed DCW coefficients.",
        epilog=_EXAMPLES.format(pipeline_examples=calibrate_pipeline.EXAMPLES),
    )
    p.add_argument("--model", metavar="DIR", help="model folder (default: the shipped reference model)")
    p.add_argument(
        "--model-class",
        metavar="MODULE:CLASS",
        help="model class, when config.json's is not in vidfix or diffusers",
    )
    # --scheduler --shift --seeds --clips --rollout default to None (filled in by main) so that --pipeline,
    # which has no use for them, can tell what the user gave.
    p.add_argument("--scheduler", choices=SCHEDULERS, help="solver (default euler)")
    p.add_argument(
        "--shift", type=positive_float, help="timestep shift (default: the model folder's, else 1)"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=16,
        help="solver steps to calibrate for (default 16; use the same in generate)",
    )
    p.add_argument(
        "--dims", default="3d", choices=("3d", "2d"), help="3d (F, H, W) or 2d per-frame bands (default 3d)"
    )
    p.add_argument(
        "--data", default="procedural", metavar="procedural|FILE", help="real frames (default procedural)"
    )
    p.add_argument(
        "--seeds",
        type=seeds,
        help="procedural video seeds, one clip each (default 1000-1007)",
    )
    p.add_argument("--clips", type=positive_int, help="clips cut from --data FILE (default 8)")
    p.add_argument("--chunk", type=positive_int, help="frames per chunk (default: the model's chunk_frames)")
    p.add_argument("--context", type=int, help="context frames (default: the model's max_context_frames)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the clip positions and calibration noise (default 0)"
    )
    p.add_argument(
        "--chain", action="store_true", help="also measure the full reverse chain (the paper's Fig. 1c)"
    )
    p.add_argument(
        "--rollout", type=nonnegative_int, metavar="CHUNKS",
        help="instead of the one-step probe, probe drift with short rollouts of CHUNKS chunks (one per clip, "
        "from its context; its chunk is the target); e.g. --rollout 6",
    )  # fmt: skip
    p.add_argument("--out", default="calibration.json", help="coefficient file (default calibration.json)")
    p.add_argument("--plot", help="PNG of the per-step curves (default: --out with .png)")
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    calibrate_pipeline.add_arguments(p)  # --pipeline DIR: a diffusers checkpoint instead of a chunk denoiser
    return p


def _clips(ns: argparse.Namespace, folder: Path, frames: int, size: int, generator: Any) -> Any:
    """Real clips ``(B, C, frames, H, W)``, checked: finite, floating point, in a plausible range."""
    import torch

    if ns.data == "procedural":
        try:
            from vidfix.pipelines.factory import sprite_process_config
            from vidfix.pipelines.reference.data import reference_videos

            process = sprite_process_config(folder, size)
        except ImportError as err:
            raise UsageError(
                f"the procedural video process is not in this build ({err}); pass --data FILE"
            ) from err
        starts = torch.randint(0, 10_000, (len(ns.seeds),), generator=generator).tolist()
        return reference_videos(ns.seeds, frames, start=starts, config=process)
    from vidfix.pipelines.runs import UnreadableFileError, load_tensors

    path = Path(ns.data)
    if not path.is_file():
        raise FileNotFoundError(
            f"--data file {str(path)!r} does not exist (pass a .safetensors file or 'procedural')"
        )
    try:
        tensors = load_tensors(path)
    except UnreadableFileError as err:
        raise UsageError(
            f"--data: {err}; expected a safetensors file holding 'video' (B, C, T, H, W)"
        ) from err
    if "video" not in tensors:
        raise UsageError(f"{path} holds {sorted(tensors)}; expected a tensor named 'video' (B, C, T, H, W)")
    video = tensors["video"]
    if not video.is_floating_point():
        raise UsageError(f"'video' in {path} is {video.dtype}; expected floating point frames in [-1, 1]")
    video = video.float()
    video = video[None] if video.dim() == 4 else video  # (B, C, T, H, W)
    if video.dim() != 5 or video.shape[2] < frames:
        raise UsageError(
            f"'video' in {path} has shape {tuple(video.shape)}; need (B, C, T >= {frames}, H, W)"
        )
    finite = torch.isfinite(video)
    if not bool(finite.all()):
        raise UsageError(
            f"'video' in {path} holds {int((~finite).sum())} NaN or inf values; clean frames are needed"
        )
    lo, hi = float(video.min()), float(video.max())
    if hi - lo == 0:
        raise UsageError(f"'video' in {path} is constant ({lo:.3g}): calibration needs real frames")
    items = torch.randint(0, video.shape[0], (ns.clips,), generator=generator).tolist()
    starts = torch.randint(0, video.shape[2] - frames + 1, (ns.clips,), generator=generator).tolist()
    return torch.stack(
        [video[b, :, s : s + frames] for b, s in zip(items, starts)]
    )  # (clips, C, frames, H, W)


@command("vidfix calibrate")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    if ns.pipeline is not None:
        from vidfix.scripts.calibrate_pipeline import run

        return run(ns)
    if ns.scheduler == "fewstep":
        raise UsageError(
            "--scheduler fewstep: the few-step mode (predict x0, re-noise) has no solver step to probe; calibrate "
            "with --scheduler euler at the same --steps and --shift and give generate its fitted coefficients "
            "(--low --spatial --temporal)"
        )
    ns.scheduler = ns.scheduler or "euler"
    ns.seeds = seeds("1000-1007") if ns.seeds is None else ns.seeds
    ns.clips = 8 if ns.clips is None else ns.clips
    ns.rollout = ns.rollout or 0

    import torch
    from vidfix.pipelines.factory import describe_model, load_denoiser, make_scheduler
    from vidfix.pipelines.reports import plot_calibration
    from vidfix.pipelines.runs import ensure_writable, write_json_atomic
    from vidfix.scripts._common import progress_bar, resolve_device

    from vidfix.calibration import calibrate

    if ns.threads:
        torch.set_num_threads(ns.threads)
    out = Path(ns.out)
    ensure_writable(out.parent)
    device = resolve_device(ns.device)
    model, folder = load_denoiser(ns.model, model_class=ns.model_class, device=device)
    cfg = model.config
    F = ns.chunk if ns.chunk is not None else int(cfg.chunk_frames)
    K = ns.context if ns.context is not None else int(cfg.max_context_frames)
    scheduler = make_scheduler(ns.scheduler, shift=ns.shift, model_folder=folder)
    generator = torch.Generator().manual_seed(ns.seed)
    clips = _clips(ns, folder, K + F, int(getattr(cfg, "sample_size", 0) or 0), generator).to(device)
    context, reference = clips[:, :, :K], clips[:, :, K:]  # (B, C, K, H, W), (B, C, F, H, W)
    if ns.rollout:
        from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
        from vidfix.pipelines.sampler import SamplerConfig

        B, C, _, H, W = reference.shape
        sconf = SamplerConfig(num_frames=ns.rollout * F, chunk_frames=F, context_frames=K, channels=C,
                              height=H, width=W, num_steps=ns.steps)  # fmt: skip
        bar, progress = progress_bar("calibrate (rollouts)", unit="rollout", disable=ns.no_progress)
        result = calibrate_rollout(
            model, scheduler, sconf, seeds=range(B), context=context if K else None, reference=reference,
            options=RolloutCalibrationConfig(dims=ns.dims), device=device, progress=progress,
        )  # fmt: skip
    else:
        bar, progress = progress_bar("calibrate", unit="call", disable=ns.no_progress)
        result = calibrate(
            model, scheduler, reference, num_steps=ns.steps, context=context if K else None, dims=ns.dims,
            chain=ns.chain, generator=generator, progress=progress,
        )  # fmt: skip
    bar.close()
    # The file records the model it was measured on: `vidfix generate --calibration` checks it.
    data = result.to_dict() | {"dcw": result.to_dcw().to_dict(), "model": describe_model(model, folder)}
    if result.affine:  # the full band-affine fix for programs (``to_corrector``); "dcw" stays first
        data["corrector"] = result.to_corrector().to_dict()
    try:
        write_json_atomic(data, out)
    except ValueError as err:  # NaN/inf coefficients: the clips are not data the model knows
        raise ValueError(
            f"the calibration gave non-finite coefficients ({err}); check that the clips are the model's kind of "
            "data (value range, channels, size); nothing was written"
        ) from err
    plot = plot_calibration(result, ns.plot or out.with_suffix(".png"))
    print(f"calibrated {result.scheduler}, {result.num_steps} steps, {result.dims}, on {result.samples} clips "
          f"({result.model_calls} model calls)")  # fmt: skip
    if result.method == "rollout":
        ro = result.rollout
        for g in result.groups:
            note = ro["refused"][g] or f"stderr {ro['fit']['stderr'][g]:.3g}"
            print(f"  {g:<9} coefficient {ro['coefficients'][g]:+.4f} ({note})")
    for g in result.groups if result.method != "rollout" else ():
        fit = result.fit[g]
        print(f"  {g:<9} coefficient per step: {' '.join(f'{v:+.3f}' for v in result.lam[g])}")
        print(
            f"  {'':<9} best parametric fit: {fit['schedule']} x {fit['coefficient']:+.4f} (r2 {fit['r2']:.2f})"
        )
    print(
        f"wrote {out} (use: vidfix generate --calibration {out} --steps {ns.steps} --scheduler {ns.scheduler}) and {plot}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
