"""``vidfix generate``: long videos chunk by chunk from a chunk denoiser, one folder per seed, resumable.

Thin: parse arguments, build the frozen :class:`vidfix.pipelines.SamplerConfig`, call
:func:`vidfix.pipelines.generate_videos` on this process's share of the seeds, gather one manifest.
With ``--pipeline`` the diffusers-pipeline front end (``vidfix.scripts.generate_pipeline``) takes over.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, get_args

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "generate long videos chunk by chunk (corrector, anchoring, resume, several processes)"

_EXAMPLES = """examples:
  vidfix generate --frames 128 --seeds 0-7 --corrector none --out runs/plain
  vidfix generate --frames 128 --seeds 0-7 --calibration calibration.json --out runs/calibrated
  vidfix generate --frames 128 --seeds 0,3,5-9 --corrector dcw2d --low 0.01 --spatial -0.005 --out runs/dcw2d
  vidfix generate --frames 128 --seeds 0-7 --out runs/plain --resume          # continue a killed run
  torchrun --nproc_per_node 2 -m vidfix.scripts.generate --frames 128 --seeds 0-63 --out runs/many
  accelerate launch --multi_gpu --num_processes 2 -m vidfix.scripts.generate --seeds 0-63 --out runs/many

Each seed gets OUT/seed_XXXXXX/ with video.safetensors ("video": (C, F, H, W)), video.mp4, drift.json and
per-chunk checkpoints; OUT/manifest.json lists every video. The video of seed k does not depend on the
number of processes (seeds are batched before they are shared out), nor, at --batch-size 1, on the other seeds."""


def build_parser() -> argparse.ArgumentParser:
    from vidfix.pipelines.diffusers_run import CorrectorKind, ScheduleName
    from vidfix.pipelines.factory import SCHEDULERS

    p = argparse.ArgumentParser(
        prog="vidfix generate",
        description="Generate long videos chunk by chunk, with the vidfix corrector inside every solver step.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("model and sizes")
    g.add_argument(
        "--model",
        metavar="DIR",
        help="model folder (config.json + safetensors); default: the shipped reference model",
    )
    g.add_argument(
        "--model-class",
        metavar="MODULE:CLASS",
        help="model class, when config.json's _class_name is not in vidfix or diffusers",
    )
    g.add_argument("--frames", type=int, default=128, help="frames per video (default 128)")
    g.add_argument("--chunk", type=int, help="frames per chunk (default: the model's chunk_frames)")
    g.add_argument(
        "--context", type=int, help="clean context frames per chunk (default: the model's max_context_frames)"
    )
    g.add_argument(
        "--overlap",
        type=int,
        default=0,
        help="frames each chunk re-generates from the previous one, crossfaded (default 0)",
    )
    g.add_argument("--size", type=int, help="frame height and width (default: the model's sample_size)")
    g.add_argument("--channels", type=int, help="latent channels (default: the model's in_channels)")
    g = p.add_argument_group("solver and corrector")
    g.add_argument("--steps", type=int, default=16, help="solver steps per chunk (default 16)")
    g.add_argument("--scheduler", default="euler", help=f"one of {', '.join(SCHEDULERS)} (default euler)")
    g.add_argument(
        "--shift",
        type=float,
        help="timestep shift (default: the model folder's scheduler_config.json, else 1)",
    )
    g.add_argument(
        "--corrector", default="none", help=f"one of {', '.join(get_args(CorrectorKind))} (default none)"
    )
    g.add_argument("--low", type=float, help="DCW coefficient of the low band")
    g.add_argument("--spatial", type=float, help="DCW coefficient of the spatial detail bands")
    g.add_argument("--temporal", type=float, help="DCW coefficient of the temporal detail bands (3D)")
    g.add_argument(
        "--schedule",
        default="paper",
        help=f"DCW coefficient schedule: {', '.join(get_args(ScheduleName))} (default paper: s for low, 1-s for detail)",
    )
    g.add_argument(
        "--eps-scale",
        type=float,
        help="epsilon-scaling factor for --corrector eps (published: 1.0006 to 1.017)",
    )
    g.add_argument(
        "--calibration",
        metavar="FILE",
        help="DCW coefficients measured by `vidfix calibrate` (implies --corrector dcw)",
    )
    g = p.add_argument_group("baselines")
    g.add_argument(
        "--context-noise",
        type=float,
        default=0.0,
        help="SkyReels context noise a: c(1-0.001a)+0.001a eps (20 typical; default 0)",
    )
    g.add_argument(
        "--anchor",
        type=float,
        default=0.0,
        help="strength of low-band statistics anchoring to chunk 0, in [0, 1] (default 0)",
    )
    g.add_argument(
        "--color-match",
        type=float,
        default=0.0,
        help="strength of full-frame colour matching to chunk 0, in [0, 1] (default 0)",
    )
    g = p.add_argument_group("seeds and output")
    g.add_argument("--seeds", default="0", help="seeds as ranges and lists, e.g. 0-7 or 0,3,5-9 (default 0)")
    g.add_argument("--batch-size", type=int, default=1, help="videos per model call (default 1)")
    g.add_argument("--out", default="outputs/generate", help="output folder (default outputs/generate)")
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the runs in --out (bit-identical to an uninterrupted run)",
    )
    g.add_argument("--fps", type=float, default=8.0, help="frame rate of the .mp4 files (default 8)")
    g.add_argument("--no-mp4", action="store_true", help="skip the .mp4 files")
    g = p.add_argument_group("machine")
    g.add_argument("--device", help="cpu or cuda (default: this process's accelerator, else cpu)")
    g.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "bfloat16", "float16"),
        help="model and latent dtype",
    )
    g.add_argument("--threads", type=int, help="torch CPU threads per process")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--pipeline", help="generate with a diffusers pipeline instead (vidfix.scripts.generate_pipeline)"
    )
    return p


def _delegate_pipeline(argv: list[str]) -> int:
    import importlib

    try:
        module = importlib.import_module("vidfix.scripts.generate_pipeline")
    except ModuleNotFoundError as err:
        if err.name and err.name.startswith("vidfix.scripts"):
            print(
                "vidfix generate: error: --pipeline needs vidfix.scripts.generate_pipeline (the diffusers "
                "pipeline front end), which this build does not have",
                file=sys.stderr,
            )
            return 2
        raise
    return int(module.main(argv) or 0)


def _model_size(model: Any, key: str, given: int | None, flag: str) -> int:
    if given is not None:
        return given
    value = getattr(getattr(model, "config", None), key, None)
    if value is None:
        raise ValueError(f"the model's config has no {key}; pass {flag}")
    return int(value)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a == "--pipeline" or a.startswith("--pipeline=") for a in args):
        return _delegate_pipeline(args)
    ns = build_parser().parse_args(args)

    import torch
    from accelerate import PartialState
    from tqdm.auto import tqdm
    from vidfix.pipelines import SamplerConfig, ensure_writable, generate_videos, load_video, run_spec
    from vidfix.pipelines.diffusers_run import make_corrector
    from vidfix.pipelines.factory import describe_model, load_denoiser, make_scheduler, parse_seeds
    from vidfix.pipelines.multiprocess import ProcessError, batches_of, run_split
    from vidfix.pipelines.runs import RunFolderError
    from vidfix.pipelines.sampler import NonFiniteChunkError
    from vidfix.pipelines.video import write_mp4

    if ns.threads:
        torch.set_num_threads(ns.threads)
    try:
        seeds = parse_seeds(ns.seeds)
        state = PartialState(cpu=ns.device == "cpu" or not torch.cuda.is_available())
        device = torch.device(ns.device) if ns.device and ns.device != "cuda" else state.device
        dtype = getattr(torch, ns.dtype)
        model, folder = load_denoiser(ns.model, model_class=ns.model_class, device=device, dtype=dtype)
        config = SamplerConfig(
            num_frames=ns.frames,
            chunk_frames=_model_size(model, "chunk_frames", ns.chunk, "--chunk"),
            context_frames=_model_size(model, "max_context_frames", ns.context, "--context"),
            channels=_model_size(model, "in_channels", ns.channels, "--channels"),
            height=_model_size(model, "sample_size", ns.size, "--size"),
            width=_model_size(model, "sample_size", ns.size, "--size"),
            overlap=ns.overlap,
            num_steps=ns.steps,
            context_noise=ns.context_noise,
            anchor=ns.anchor,
            color_match=ns.color_match,
        )
        scheduler = make_scheduler(ns.scheduler, shift=ns.shift, model_folder=folder)
        name = "dcw" if ns.calibration and ns.corrector == "none" else ns.corrector
        corrector = make_corrector(
            name, low=ns.low, spatial=ns.spatial, temporal=ns.temporal, schedule=ns.schedule,
            eps_scale=ns.eps_scale, calibration=ns.calibration,
        )  # fmt: skip
        model_info = describe_model(model, folder)
        spec = run_spec(config, scheduler, corrector, model=model_info, dtype=dtype)
        out = ensure_writable(ns.out)
        manifest_path = out / "manifest.json"
        old: dict[str, Any] = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
        if old and old.get("spec") != spec:
            raise RunFolderError(
                f"{manifest_path} describes a run with a different config; use another --out folder "
                "(or the same options to resume/extend it); nothing was changed"
            )
        batches = batches_of(seeds, ns.batch_size)

        def work(my_batches: list[list[int]]) -> list[dict[str, Any]]:
            records: list[dict[str, Any]] = []
            done = 0
            steps = sum(len(b) for b in my_batches) * config.num_chunks * config.num_steps
            bar = tqdm(
                total=steps, unit="step", desc=f"generate [{state.process_index}]", position=state.process_index,
                disable=ns.no_progress, dynamic_ncols=True,
            )  # fmt: skip
            for batch in my_batches:
                t0 = time.perf_counter()
                base = done
                recs = generate_videos(
                    model, scheduler, config, batch, out_dir=out, corrector=corrector, resume=ns.resume,
                    batch_size=len(batch), model=model_info, device=device, dtype=dtype,
                    progress=lambda d, _t, base=base: bar.update(base + d - bar.n),
                )  # fmt: skip
                done += len(batch) * config.num_chunks * config.num_steps
                bar.update(done - bar.n)
                for r in recs:
                    r["process"] = state.process_index
                    r["wall_seconds"] = round(time.perf_counter() - t0, 3)
                    if not ns.no_mp4 and config.channels in (1, 3):
                        mp4 = Path(r["folder"]) / "video.mp4"
                        if not mp4.exists():
                            write_mp4(mp4, load_video(r["folder"]), fps=ns.fps)
                        r["mp4"] = str(mp4)
                records.extend(recs)
            bar.close()
            return records

        records = run_split(state, batches, work)
    except NonFiniteChunkError as err:
        print(f"vidfix generate: error: {err}", file=sys.stderr)
        return 1
    except (ValueError, TypeError, OSError, ProcessError) as err:
        print(f"vidfix generate: error: {err}", file=sys.stderr)
        return 1 if isinstance(err, ProcessError) else 2

    if state.is_main_process:
        by_seed = {int(v["seed"]): v for v in old.get("videos", [])} | {int(r["seed"]): r for r in records}
        manifest = {
            "type": "vidfix-manifest",
            "version": 1,
            "spec": spec,
            "processes": state.num_processes,
            "videos": [by_seed[s] for s in sorted(by_seed)],
        }
        tmp = manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        tmp.replace(manifest_path)
        print(
            f"wrote {len(records)} video(s) with {state.num_processes} process(es) to {out}; manifest: {manifest_path}"
        )
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
