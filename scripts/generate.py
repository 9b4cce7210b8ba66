"""``vidfix generate``: long videos from a chunk denoiser or a diffusers pipeline, one run folder per seed, resumable.

One front end, one set of defaults, two back ends: the chunked sampler
(:func:`vidfix.pipelines.generate_videos`, any chunk denoiser, the shipped reference model by default) and, with
``--pipeline``, a diffusers video pipeline (:func:`vidfix.pipelines.diffusers_run.generate`). Both write the
same layout (``OUT/seed_000005/`` with ``video.mp4``, ``drift.json``, ``run.json``; ``OUT/manifest.json``), both
resume, both split seeds over the processes of ``torchrun``. Thin: parse and validate arguments, build the
frozen config, call the library.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from vidfix.scripts._common import (
    Parser,
    UsageError,
    check_memory,
    device_name,
    fraction,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    resolve_device,
    seeds,
)
from vidfix.scripts.cli import command

__all__ = ["SUMMARY", "build_parser", "main"]

SUMMARY = "generate long videos (chunk models or diffusers pipelines; corrector, resume, several processes)"

_EXAMPLES = """examples:
  vidfix generate --frames 128 --seeds 0-7 --corrector none --out runs/plain
  vidfix generate --frames 128 --seeds 0-7 --calibration calibration.json --out runs/calibrated
  vidfix generate --frames 128 --seeds 0,3,5-9 --corrector dcw2d --low 0.01 --spatial -0.005 --out runs/dcw2d
  vidfix generate --frames 128 --seeds 0-7 --out runs/plain --resume          # continue a killed run
  vidfix verify runs/plain                                                    # check every file
  torchrun --nproc_per_node 2 -m vidfix.scripts.generate --frames 128 --seeds 0-63 --out runs/many
  accelerate launch --multi_gpu --num_processes 2 -m vidfix.scripts.generate --seeds 0-63 --out runs/many

  # a diffusers checkpoint (Wan, LTX, CogVideoX, HunyuanVideo, SkyReels-V2 DF): a folder or a hub id
  vidfix generate --pipeline wan --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --prompt "a red fox running" \\
      --frames 81 --height 480 --width 832 --steps 30 --seeds 0-3 --corrector dcw --low 0.005 --out runs/wan
  vidfix generate --pipeline skyreels-df --model Skywork/SkyReels-V2-DF-1.3B-540P-Diffusers \\
      --prompt "a boat on a calm lake" --frames 257 --base-frames 97 --overlap-history 17 \\
      --ar-step 5 --causal-block-size 5 --addnoise-condition 20 --corrector dcw2d --low 0.005

Each seed gets OUT/seed_XXXXXX/ with video.mp4, drift.json and run.json (the SHA-256 of every file); chunk
models also keep video.safetensors ("video": (C, F, H, W)) and one checkpoint per chunk. OUT/manifest.json lists
every video. A killed run continues with --resume, bit-identical; damaged files are named and generated again.
The video of seed k does not depend on the number of processes (seeds are batched before they are shared out),
nor, at --batch-size 1, on the other seeds."""

# Options of one back end only (argparse default None = not given).
_CHUNK_ONLY = ("model_class", "chunk", "context", "overlap", "channels", "scheduler", "shift", "context_noise",
               "anchor", "color_match", "batch_size", "no_mp4")  # fmt: skip
_PIPELINE_ONLY = ("prompt", "negative_prompt", "guidance_scale", "drift_window", "vae_dtype", "offload",
                  "vae_tiling", "base_frames", "overlap_history", "ar_step", "causal_block_size",
                  "addnoise_condition", "pipe_arg")  # fmt: skip
_SKYREELS = ("base_frames", "overlap_history", "ar_step", "causal_block_size", "addnoise_condition")
_STEPS = 16  # solver steps per chunk, for every model (real checkpoints often use 30-50: pass --steps)
_CHUNK_FPS = 8.0  # .mp4 frame rate of chunk models whose config states none


def _pipe_arg(text: str) -> tuple[str, Any]:
    import json

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a bare string


def build_parser() -> Parser:
    from vidfix.pipelines.choices import (
        CORRECTORS,
        DTYPES,
        OFFLOADS,
        PIPELINE_CLASSES,
        SCHEDULE_NAMES,
        SCHEDULERS,
    )

    p = Parser(
        prog="vidfix generate",
        description="Generate long videos with the vidfix corrector inside every solver step: a chunk denoiser "
        "(default: the shipped reference model) or, with --pipeline, a diffusers video pipeline.",
        epilog=_EXAMPLES,
    )
    g = p.add_argument_group("model and sizes")
    g.add_argument(
        "--pipeline", choices=list(PIPELINE_CLASSES), help="run a diffusers pipeline of this family"
    )
    g.add_argument(
        "--model",
        metavar="DIR|HUB_ID",
        help="chunk model folder (config.json + safetensors; default: the shipped reference model), or with "
        "--pipeline a pipeline folder (save_pretrained layout) or hub id (required)",
    )
    g.add_argument("--model-class", metavar="MODULE:CLASS", help="chunk model class, when config.json's "
                   "_class_name is not in vidfix or diffusers")  # fmt: skip
    g.add_argument("--frames", type=positive_int, help="frames per video (default 128; pipelines: their own)")
    g.add_argument("--height", type=positive_int, help="frame height (default: the model's)")
    g.add_argument("--width", type=positive_int, help="frame width (default: the model's)")
    g.add_argument("--size", type=positive_int, help="frame height and width at once")
    g.add_argument("--chunk", type=positive_int, help="frames per chunk (default: the model's chunk_frames)")
    g.add_argument("--context", type=nonnegative_int,
                   help="clean context frames per chunk (default: the model's max_context_frames)")  # fmt: skip
    g.add_argument("--overlap", type=nonnegative_int,
                   help="frames each chunk re-generates from the previous one, crossfaded (default 0)")  # fmt: skip
    g.add_argument("--channels", type=positive_int, help="latent channels (default: the model's in_channels)")

    g = p.add_argument_group("solver and corrector")
    g.add_argument(
        "--steps", type=positive_int, default=_STEPS, help=f"solver steps per chunk (default {_STEPS})"
    )
    g.add_argument("--scheduler", choices=SCHEDULERS, help="chunk models: the solver (default euler); "
                   "pipelines use their own scheduler")  # fmt: skip
    g.add_argument("--shift", type=positive_float,
                   help="timestep shift (default: the model folder's scheduler_config.json, else 1)")  # fmt: skip
    g.add_argument("--corrector", choices=CORRECTORS, default="none", help="default none")
    g.add_argument("--low", type=float, help="DCW coefficient of the low band")
    g.add_argument("--spatial", type=float, help="DCW coefficient of the spatial detail bands")
    g.add_argument("--temporal", type=float, help="DCW coefficient of the temporal detail bands (3D)")
    g.add_argument("--schedule", choices=SCHEDULE_NAMES, default="paper",
                   help="DCW coefficient schedule (default paper: s for low, 1-s for detail)")  # fmt: skip
    g.add_argument("--eps-scale", type=positive_float,
                   help="epsilon-scaling factor for --corrector eps (published: 1.0006 to 1.017)")  # fmt: skip
    g.add_argument("--calibration", metavar="FILE", help="DCW coefficients measured by `vidfix calibrate` "
                   "(implies --corrector dcw; checked against the model, scheduler and steps)")  # fmt: skip
    g.add_argument("--drift-window", type=positive_int,
                   help="pipelines: latent frames per drift entry of one-chunk runs (default 1)")  # fmt: skip

    g = p.add_argument_group("baselines (chunk models)")
    g.add_argument("--context-noise", type=nonnegative_float,
                   help="SkyReels context noise a: c(1-0.001a)+0.001a eps (20 typical; default 0)")  # fmt: skip
    g.add_argument(
        "--anchor", type=fraction, help="low-band statistics anchoring to chunk 0, in [0, 1] (default 0)"
    )
    g.add_argument(
        "--color-match", type=fraction, help="full-frame colour matching to chunk 0, in [0, 1] (default 0)"
    )

    g = p.add_argument_group("prompt and pipeline options (--pipeline)")
    g.add_argument("--prompt", help="text prompt (required with --pipeline)")
    g.add_argument("--negative-prompt")
    g.add_argument("--guidance-scale", type=float, help="classifier-free guidance (default: the pipeline's)")
    g.add_argument("--vae-dtype", choices=DTYPES, help="default float32 for Wan and SkyReels, else --dtype")
    g.add_argument("--offload", choices=OFFLOADS, help="CPU offload for GPUs too small for the pipeline")
    g.add_argument("--vae-tiling", action="store_true", default=None, help="decode in tiles")
    g.add_argument("--base-frames", type=positive_int, help="SkyReels DF: frames per chunk (base_num_frames)")
    g.add_argument(
        "--overlap-history", type=positive_int, help="SkyReels DF: frames shared by consecutive chunks"
    )
    g.add_argument("--ar-step", type=nonnegative_int, help="SkyReels DF: 0 synchronous; >0 staggered blocks")
    g.add_argument("--causal-block-size", type=positive_int, help="SkyReels DF: frames per causal block")
    g.add_argument(
        "--addnoise-condition", type=nonnegative_float, help="SkyReels DF: noise on the prefix (20)"
    )
    g.add_argument("--pipe-arg", type=_pipe_arg, action="append", metavar="KEY=VALUE",
                   help="any other pipe(...) argument, VALUE parsed as JSON when it can be (repeatable)")  # fmt: skip

    g = p.add_argument_group("seeds and output")
    g.add_argument(
        "--seeds", type=seeds, default="0", help="seeds as ranges and lists, e.g. 0-7 or 0,3,5-9 (default 0)"
    )
    g.add_argument("--batch-size", type=positive_int, help="chunk models: videos per model call (default 1)")
    g.add_argument("--out", default="outputs/generate", help="output folder (default outputs/generate)")
    g.add_argument("--resume", action="store_true",
                   help="continue the runs in --out (bit-identical to an uninterrupted run)")  # fmt: skip
    g.add_argument("--fps", type=positive_float, help="frame rate of the .mp4 files (default: the model family's; "
                   "chunk models: their config's fps, else 8)")  # fmt: skip
    g.add_argument("--no-mp4", action="store_true", default=None, help="chunk models: skip the .mp4 files")

    g = p.add_argument_group("machine")
    g.add_argument("--device", type=device_name, help="cpu, cuda, cuda:N or mps (default: this process's "
                   "accelerator, else cpu; an absent GPU is a warning and the CPU)")  # fmt: skip
    g.add_argument("--dtype", choices=DTYPES, help="model dtype (default: bfloat16 on CUDA, else float32)")
    g.add_argument("--threads", type=positive_int, help="torch CPU threads per process")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _check_options(ns: argparse.Namespace) -> None:
    """Options of the other back end, and missing required ones: one :class:`UsageError`, before any work."""
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    wrong = _CHUNK_ONLY if ns.pipeline else _PIPELINE_ONLY
    given = [flag(n) for n in wrong if getattr(ns, n) is not None]
    if given:
        kind = "chunk models" if ns.pipeline else "--pipeline runs"
        verb = "applies" if len(given) == 1 else "apply"
        raise UsageError(f"{', '.join(given)} {verb} only to {kind}" + (
            "; a --pipeline run uses the pipeline's own scheduler and sizes" if ns.pipeline else "; add --pipeline KIND"
        ))  # fmt: skip
    if ns.size is not None and (ns.height is not None or ns.width is not None):
        raise UsageError("give either --size or --height/--width, not both")
    if ns.pipeline:
        missing = [f for f, v in (("--model", ns.model), ("--prompt", ns.prompt)) if not v]
        if missing:
            raise UsageError(f"--pipeline {ns.pipeline} needs {' and '.join(missing)}")
        if ns.pipeline != "skyreels-df" and any(getattr(ns, n) is not None for n in _SKYREELS):
            raise UsageError("the SkyReels options (--base-frames ...) need --pipeline skyreels-df")


@command("vidfix generate")
def main(argv: list[str]) -> int:
    ns = build_parser().parse_args(argv)
    _check_options(ns)
    import torch

    if ns.threads:
        torch.set_num_threads(ns.threads)
    return _run_pipeline(ns) if ns.pipeline else _run_chunked(ns)


def _corrector(ns: argparse.Namespace) -> Any:
    from vidfix.pipelines.choices import CorrectorKind
    from vidfix.pipelines.diffusers_run import make_corrector

    name: CorrectorKind = "dcw" if ns.calibration and ns.corrector == "none" else ns.corrector
    return make_corrector(
        name, low=ns.low, spatial=ns.spatial, temporal=ns.temporal, schedule=ns.schedule,
        eps_scale=ns.eps_scale, calibration=ns.calibration,
    )  # fmt: skip


def _check_calibration(ns: argparse.Namespace, scheduler: Any, **kwargs: Any) -> None:
    import warnings

    from vidfix.pipelines.factory import check_calibration

    if ns.calibration:
        for note in check_calibration(ns.calibration, scheduler=scheduler, num_steps=ns.steps, **kwargs):
            warnings.warn(note, stacklevel=2)


def _model_size(model: Any, key: str, given: int | None, flag: str) -> int:
    if given is not None:
        return given
    value = getattr(getattr(model, "config", None), key, None)
    if value is None:
        raise UsageError(f"the model's config has no {key}; pass {flag}")
    return int(value)


def _split_state(ns: argparse.Namespace) -> tuple[Any, Any]:
    """This process's ``accelerate.PartialState`` and device (an absent GPU: a warning and the CPU)."""
    from accelerate import PartialState

    device = resolve_device(ns.device)
    state = PartialState(cpu=device.type != "cuda")
    if device.type == "cuda" and ns.device in (None, "cuda"):
        device = state.device  # one GPU per process
    return state, device


def _run_chunked(ns: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm
    from vidfix.pipelines.factory import describe_model, load_denoiser, make_scheduler
    from vidfix.pipelines.multiprocess import batches_of, run_split
    from vidfix.pipelines.runs import (
        check_manifest,
        ensure_writable,
        generate_videos,
        run_spec,
    )
    from vidfix.pipelines.sampler import SamplerConfig

    state, device = _split_state(ns)
    dtype_name = ns.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    dtype = getattr(torch, dtype_name)
    corrector = _corrector(ns)
    out = ensure_writable(ns.out)
    model, folder = load_denoiser(ns.model, model_class=ns.model_class, device=device, dtype=dtype)
    frames = ns.frames if ns.frames is not None else 128
    height = _model_size(model, "sample_size", ns.height or ns.size, "--height")
    width = _model_size(model, "sample_size", ns.width or ns.size, "--width")
    config = SamplerConfig(
        num_frames=frames,
        chunk_frames=_model_size(model, "chunk_frames", ns.chunk, "--chunk"),
        context_frames=_model_size(model, "max_context_frames", ns.context, "--context"),
        channels=_model_size(model, "in_channels", ns.channels, "--channels"),
        height=height, width=width, overlap=ns.overlap or 0, num_steps=ns.steps,
        context_noise=ns.context_noise or 0.0, anchor=ns.anchor or 0.0, color_match=ns.color_match or 0.0,
    )  # fmt: skip
    batch_size = ns.batch_size or 1
    # The sampler holds each batch's video about 4 times over (frames so far, chunks, merge, saved copy).
    per_frame = config.channels * height * width * dtype.itemsize * min(batch_size, len(ns.seeds))
    check_memory(4 * frames * per_frame, f"--frames {frames} ({config.channels}x{height}x{width}, {dtype_name})",
                 limit_hint="use fewer --frames or a smaller --batch-size")  # fmt: skip
    scheduler = make_scheduler(ns.scheduler or "euler", shift=ns.shift, model_folder=folder)
    model_info = describe_model(model, folder)
    _check_calibration(ns, scheduler, model=model_info)
    spec = run_spec(config, scheduler, corrector, model=model_info, dtype=dtype)
    check_manifest(out, spec)
    fps = None if ns.no_mp4 else ns.fps or float(getattr(model.config, "fps", None) or _CHUNK_FPS)
    batches = batches_of(ns.seeds, batch_size)

    def work(my_batches: list[list[int]]) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        steps = sum(len(b) for b in my_batches) * config.num_chunks * config.num_steps
        bar = tqdm(total=steps, unit="step", desc=f"generate [{state.process_index}]",
                   position=state.process_index, disable=ns.no_progress, dynamic_ncols=True)  # fmt: skip
        done = 0
        for batch in my_batches:
            t0 = time.perf_counter()

            def progress(steps: int, _total: int, base: int = done) -> None:
                bar.update(base + steps - bar.n)

            recs = generate_videos(
                model, scheduler, config, batch, out_dir=out, corrector=corrector, resume=ns.resume,
                batch_size=len(batch), model=model_info, device=device, dtype=dtype, fps=fps, progress=progress,
            )  # fmt: skip
            done += len(batch) * config.num_chunks * config.num_steps
            bar.update(done - bar.n)
            wall = round(time.perf_counter() - t0, 3)
            records += [r | {"process": state.process_index, "wall_seconds": wall} for r in recs]
        bar.close()
        return records

    records = run_split(state, batches, work)
    return _finish(state, out, spec, records)


def _pipeline_source(model: str, kind: str) -> str:
    """``--model`` of a pipeline run: a pipeline folder of the right class, or a hub id; else a UsageError."""
    import re

    from vidfix.pipelines.choices import PIPELINE_CLASSES
    from vidfix.pipelines.runs import read_json

    expected = PIPELINE_CLASSES[kind]
    path = Path(model)
    if path.exists():
        index = path / "model_index.json"
        if not path.is_dir() or not index.is_file():
            raise UsageError(
                f"--model {model!r} is not a diffusers pipeline folder (no model_index.json); --pipeline {kind} "
                f"needs a {expected} folder written by save_pretrained, or a hub id"
            )
        found = read_json(index, "pipeline index").get("_class_name")
        if found != expected:
            other = [k for k, c in PIPELINE_CLASSES.items() if c == found]
            hint = f"; use --pipeline {other[0]}" if other else f"; --pipeline {kind} takes a {expected}"
            raise UsageError(f"--model {model!r} holds a {found}, not a {expected}{hint}")
        return model
    if re.fullmatch(r"[\w.-]+/[\w.-]+", model) and not model.startswith("."):
        return model  # a hub id: from_pretrained finds it in the cache or downloads it
    raise UsageError(
        f"--model {model!r}: no such folder; pass a pipeline folder written by save_pretrained or a hub id "
        "such as Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    )


def _run_pipeline(ns: argparse.Namespace) -> int:
    import inspect

    from vidfix.pipelines.choices import PIPELINE_CLASSES, PIPELINE_FPS, DtypeName
    from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, pipeline_run_spec
    from vidfix.pipelines.multiprocess import batches_of, run_split
    from vidfix.pipelines.runs import ensure_writable

    source = _pipeline_source(ns.model, ns.pipeline)
    state, device = _split_state(ns)
    dtype: DtypeName = ns.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    corrector = _corrector(ns)
    out = ensure_writable(ns.out)
    skyreels = {"base_num_frames": ns.base_frames, "overlap_history": ns.overlap_history, "ar_step": ns.ar_step,
                "causal_block_size": ns.causal_block_size, "addnoise_condition": ns.addnoise_condition}  # fmt: skip
    config = GenerateConfig(
        prompt=ns.prompt, negative_prompt=ns.negative_prompt, num_frames=ns.frames,
        height=ns.height or ns.size, width=ns.width or ns.size, steps=ns.steps, guidance_scale=ns.guidance_scale,
        seeds=tuple(ns.seeds), fps=ns.fps or PIPELINE_FPS[ns.pipeline], drift_window=ns.drift_window or 1,
        pipeline_kwargs={k: v for k, v in skyreels.items() if v is not None} | dict(ns.pipe_arg or []),
    )  # fmt: skip
    try:
        pipe = load_pipeline(ns.pipeline, source, dtype=dtype, device=device, vae_dtype=ns.vae_dtype,
                             offload=ns.offload or "none", vae_tiling=bool(ns.vae_tiling))  # fmt: skip
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(
            f"cannot load --model {ns.model!r} as a {PIPELINE_CLASSES[ns.pipeline]}: {first}"
        ) from err
    pipe.set_progress_bar_config(disable=ns.no_progress)
    # Decoded frames come back as float32 (F, H, W, 3), about twice over with the .mp4 conversion.
    defaults = inspect.signature(type(pipe).__call__).parameters
    n, h, w = (given if given is not None else getattr(defaults.get(key), "default", None)
               for key, given in (("num_frames", config.num_frames), ("height", config.height), ("width", config.width)))  # fmt: skip
    if isinstance(n, int) and isinstance(h, int) and isinstance(w, int):
        check_memory(2 * 4 * 3 * n * h * w, f"{n} frames of {h}x{w}", limit_hint="use fewer --frames")
    _check_calibration(ns, pipe.scheduler, compare_timesteps=False)
    model_info = {"pipeline": ns.pipeline, "model": ns.model}
    spec = pipeline_run_spec(pipe, config, corrector, model=model_info)

    def work(my_batches: list[list[int]]) -> list[dict[str, Any]]:
        from dataclasses import replace

        from vidfix.pipelines.runs import RunFolder, seed_folder

        records = []
        for batch in my_batches:
            for r in generate(pipe, replace(config, seeds=tuple(batch)), corrector, out, resume=ns.resume,
                              model=model_info):  # fmt: skip
                folder = RunFolder(seed_folder(out, r.seed), r.seed, spec, num_chunks=0)
                rec = folder.record(seconds=r.seconds, resumed=0, kept=r.resumed)
                records.append(rec | {"frames": r.frames, "process": state.process_index})
        return records

    records = run_split(state, batches_of(ns.seeds, 1), work)
    return _finish(state, out, spec, records)


def _finish(state: Any, out: Path, spec: dict[str, Any], records: list[dict[str, Any]]) -> int:
    """Write the manifest (main process) and say what was made, a few lines."""
    from vidfix.pipelines.runs import write_manifest

    if state.is_main_process:
        manifest = write_manifest(out, spec, records, processes=state.num_processes)
        for r in records:
            shown = r.get("mp4") or r["video"]
            kept = " (kept: already complete)" if r.get("kept") else ""
            print(f"seed {r['seed']}: {r['frames']} frames -> {shown}{kept}")
        print(f"wrote {len(records)} video(s) with {state.num_processes} process(es) to {out}; "
              f"manifest: {manifest}; check them with `vidfix verify {out}`")  # fmt: skip
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
