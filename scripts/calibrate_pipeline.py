"""``vidfix calibrate --pipeline DIR``: measure a diffusers video checkpoint's SNR-t bias on your own clips.

Thin: the options of the pipeline mode (``add_arguments``) and its run (``run``), called by
:mod:`vidfix.scripts.calibrate`. The library does the work (:mod:`vidfix.pipelines.adapters`): the pipeline's
transformer as a denoiser with your prompt and guidance, your clips through its VAE as reference latents, its
own timesteps, :func:`vidfix.calibration.calibrate`, and the file ``stabilize(pipe, calibration=FILE)`` and
``vidfix generate --pipeline ... --corrector dcw --calibration FILE`` read.

``--rollout N`` (SkyReels-V2 diffusion forcing only, with ``--context K``): instead of the one-step probe,
:func:`vidfix.pipelines.calibrate_rollout.calibrate_rollout` drives the adapter chunk by chunk with vidfix's
sampler, each chunk conditioned on the clean frames before it, as the pipeline's long-video mode does. The other
families generate a clip in one pass with no context frames: there is no chunk-to-chunk drift to probe.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "EXAMPLES",
    "VIDEO_SUFFIXES",
    "add_arguments",
    "pipeline_kind",
    "read_clips",
    "run",
    "vae_temporal_ratio",
]

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov")

EXAMPLES = """
  # a diffusers checkpoint folder (save_pretrained layout) and a few clips of the kind of video you generate
  vidfix calibrate --pipeline ./Wan2.1-T2V-1.3B-Diffusers --videos my_clips/ --prompt "a red fox in snow" \\
      --frames 33 --steps 30 --device cuda --out wan_calibration.json
  vidfix generate --pipeline wan --model ./Wan2.1-T2V-1.3B-Diffusers --prompt "a red fox in snow" \\
      --steps 30 --corrector dcw --calibration wan_calibration.json
  # SkyReels-V2 DF: rollouts of 4 chunks of 20 latent frames after 5 clean ones (--base-frames 97,
  # --overlap-history 17 in generate), on at least 3 clips
  vidfix calibrate --pipeline ./SkyReels-V2-DF-1.3B-540P-Diffusers --videos my_clips/ --prompt "a red fox" \\
      --frames 97 --context 5 --rollout 4 --steps 30 --device cuda --out skyreels_rollout.json"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``--pipeline DIR`` options (the shared ones, --steps --dims --out --plot --device ..., stay put)."""
    p.add_argument(
        "--pipeline", metavar="DIR", help="calibrate a diffusers video checkpoint folder (see below)"
    )
    g = p.add_argument_group(
        "diffusers pipeline (--pipeline DIR)",
        "the pipeline's own scheduler and timesteps, on your --videos; --model\n"
        "--model-class --data --chunk --scheduler --shift --seeds --clips are for\n"
        "chunk models and refused here; --rollout CHUNKS only for SkyReels-V2 DF,\n"
        "with --context K latent frames (each clip: K context, the rest the chunk)",
    )
    g.add_argument("--videos", nargs="+", metavar="VIDEO", help="your clips: video files or folders of them")
    g.add_argument("--prompt", help="text prompt for every clip (what the clips show)")
    g.add_argument("--negative-prompt", default=None)
    g.add_argument("--guidance-scale", type=float, default=None, help="default: the pipeline's")
    g.add_argument(
        "--frames", type=int, default=17, help="pixel frames per clip, k*4+1 (LTX k*8+1); default 17"
    )
    g.add_argument(
        "--height", type=int, default=None, help="clips are resized to this (default: the pipeline's)"
    )
    g.add_argument("--width", type=int, default=None)
    g.add_argument(
        "--max-sequence-length", type=int, default=None, help="text tokens (default: the pipeline's)"
    )
    g.add_argument(
        "--dtype", default=None, choices=["float32", "bfloat16", "float16"], help="default: bf16 on GPU"
    )


def pipeline_kind(folder: Path) -> str:
    """The ``--pipeline`` family name of a checkpoint folder, from its ``model_index.json``."""
    from vidfix.pipelines.diffusers_run import PIPELINE_CLASSES

    index = folder / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    name = json.loads(index.read_text()).get("_class_name")
    kinds = {cls: kind for kind, cls in PIPELINE_CLASSES.items()}
    if name not in kinds:
        raise ValueError(f"{index} holds a {name}; --pipeline calibrates {', '.join(kinds)}")
    return kinds[name]


def vae_temporal_ratio(folder: Path) -> int | None:
    """The VAE's temporal compression read from ``vae/config.json`` (None when the config does not say)."""
    path = folder / "vae" / "config.json"
    if not path.is_file():
        return None
    cfg = json.loads(path.read_text())
    if "temporal_compression_ratio" in cfg:  # CogVideoX, HunyuanVideo
        return int(cfg["temporal_compression_ratio"])
    if "temperal_downsample" in cfg:  # Wan, SkyReels (diffusers' spelling)
        return int(2 ** sum(map(bool, cfg["temperal_downsample"])))
    if "spatio_temporal_scaling" in cfg:  # LTX-Video
        return int(cfg.get("patch_size_t", 1)) * int(2 ** sum(map(bool, cfg["spatio_temporal_scaling"])))
    return None


def read_clips(paths: list[str], frames: int) -> list[Any]:
    """The first ``frames`` frames of each clip (uint8 ``(T, H, W, 3)``); folders give their video files."""
    from vidfix.metrics.io import read_video

    files: list[Path] = []
    for text in paths:
        path = Path(text)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"--videos: {text!r} does not exist")
    if not files:
        raise ValueError(f"--videos found no video files ({', '.join(VIDEO_SUFFIXES)}) in {' '.join(paths)}")
    clips = []
    for f in files:
        video = read_video(f, max_frames=frames)
        if video.shape[0] < frames:
            raise ValueError(f"{f} has {video.shape[0]} frames; --frames asks for {frames}")
        clips.append(video)
    return clips


def run(ns: argparse.Namespace) -> int:
    """Calibrate the pipeline in ``ns.pipeline``; one line and exit code 2 for any user error."""
    try:
        reference_only = {"--model": ns.model, "--model-class": ns.model_class, "--chunk": ns.chunk}
        given = [k for k, v in reference_only.items() if v is not None] + (
            ["--data"] if ns.data != "procedural" else []
        )
        if given:
            raise ValueError(
                f"{', '.join(given)} belong to the reference-model mode; with --pipeline give --videos"
            )
        _refuse_chunk_options(ns)
        if not ns.videos or not ns.prompt:
            raise ValueError("--pipeline needs --videos VIDEO... and --prompt TEXT")
        folder = Path(ns.pipeline)
        kind = pipeline_kind(folder)
        ratio = vae_temporal_ratio(folder)
        if ratio is not None and (ns.frames - 1) % ratio:
            raise ValueError(
                f"the {kind} VAE compresses time by {ratio}: --frames must be k*{ratio}+1, got {ns.frames}"
            )
        if ns.context and kind != "skyreels-df":
            raise ValueError("--context (clean prefix frames) is for SkyReels-V2 diffusion forcing only")
        if ns.rollout is not None:
            _check_rollout(ns, kind)
        clips = read_clips(ns.videos, ns.frames)
        if ns.rollout and len(clips) < 3:
            raise ValueError(
                f"--rollout needs at least 3 clips (one rollout each; the uncertainty leaves one out), "
                f"--videos gave {len(clips)}"
            )
        out = Path(ns.out)
        from vidfix.pipelines.runs import ensure_writable

        ensure_writable(out.parent)
        result, info = _calibrate(ns, kind, folder, clips)
        from vidfix.pipelines.reports import plot_calibration

        plot = plot_calibration(result, ns.plot or out.with_suffix(".png"))
    except (ValueError, TypeError, OSError) as err:
        print(f"vidfix calibrate: error: {err}", file=sys.stderr)
        return 2
    print(
        f"calibrated {info['class']} ({result.scheduler}, {result.num_steps} steps, {result.dims}) on "
        f"{result.samples} clip(s) of {ns.frames} frames ({result.model_calls} model calls)"
    )
    for g in result.groups:
        if result.method == "rollout":
            ro = result.rollout
            note = ro["refused"][g] or f"stderr {ro['fit']['stderr'][g]:.3g}"
            print(f"  {g:<9} coefficient {ro['coefficients'][g]:+.4f} ({note})")
        else:
            print(f"  {g:<9} coefficient per step: {' '.join(f'{v:+.3f}' for v in result.lam[g])}")
    print(f"wrote {out} and {plot}; use it with stabilize(pipe, calibration={str(out)!r}) or")
    print(
        f"  vidfix generate --pipeline {kind} --model {folder} --steps {ns.steps} --corrector dcw --calibration {out}"
    )
    return 0


# Options of the chunk-model calibration (None unless given, see calibrate.build_parser) and what --pipeline
# does instead.
_CHUNK_ONLY = {
    "scheduler": "--pipeline probes the pipeline's own scheduler, with the shift of its config",
    "shift": "--pipeline probes the pipeline's own scheduler, with the shift of its config",
    "seeds": "--pipeline calibrates on the clips of --videos",
    "clips": "--pipeline calibrates on the clips of --videos",
}


def _refuse_chunk_options(ns: argparse.Namespace) -> None:
    """Raise ValueError naming the chunk-model options given with ``--pipeline`` (they would be ignored)."""
    given = {dest: getattr(ns, dest, None) for dest in _CHUNK_ONLY}
    given = {dest: value for dest, value in given.items() if value is not None}
    if not given:
        return
    shown = [
        f"--{dest} {','.join(map(str, value)) if isinstance(value, list) else value}"
        for dest, value in given.items()
    ]
    instead = list(dict.fromkeys(_CHUNK_ONLY[dest] for dest in given))
    verb = "applies" if len(given) == 1 else "apply"
    raise ValueError(f"{', '.join(shown)} {verb} only to chunk models; {'; '.join(instead)}")


def _check_rollout(ns: argparse.Namespace, kind: str) -> None:
    """Refuse ``--rollout`` where a chunk-by-chunk rollout of the pipeline does not exist or measures nothing."""
    from vidfix.pipelines.diffusers_run import PIPELINE_CLASSES

    if kind != "skyreels-df":
        raise ValueError(
            f"--rollout {ns.rollout} applies to chunk models and SkyReels-V2 diffusion forcing only: "
            f"{PIPELINE_CLASSES[kind]} denoises the whole clip in one pass and takes no context frames, so no "
            "chunk's error reaches the next and there is no drift to probe; --pipeline runs the one-step probe"
        )
    if ns.rollout and not ns.context:
        raise ValueError(
            "--rollout needs --context K (clean latent frames before each chunk): without them the chunks are "
            "independent and there is no drift to probe"
        )
    if ns.rollout and ns.chain:
        raise ValueError("--chain belongs to the one-step probe; --rollout measures whole rollouts")


def _calibrate(
    ns: argparse.Namespace, kind: str, folder: Path, clips: list[Any]
) -> tuple[Any, dict[str, Any]]:
    import torch
    from vidfix.pipelines.adapters import (
        PipelineDenoiser,
        encode_video,
        pipeline_scheduler,
        save_pipeline_calibration,
    )
    from vidfix.pipelines.diffusers_run import load_pipeline
    from vidfix.scripts._common import progress_bar

    from vidfix.calibration import calibrate

    if ns.threads:
        torch.set_num_threads(ns.threads)
    dtype = ns.dtype or ("bfloat16" if str(ns.device).startswith("cuda") else "float32")
    pipe = load_pipeline(kind, folder, dtype=dtype, device=ns.device)  # type: ignore[arg-type]  # a PIPELINE_CLASSES key; load_pipeline checks it
    pipe.set_progress_bar_config(disable=True)
    height, width = ns.height or _default(pipe, "height"), ns.width or _default(pipe, "width")
    denoiser = PipelineDenoiser.from_pipe(
        pipe, ns.prompt, negative_prompt=ns.negative_prompt, guidance_scale=ns.guidance_scale,
        max_sequence_length=ns.max_sequence_length,
    )  # fmt: skip
    latents = encode_video(pipe, clips, height=height, width=width)  # (B, C, F, H, W)
    K = ns.context or 0
    if K >= latents.shape[2]:
        raise ValueError(
            f"--context {K} leaves no latent frames to calibrate on ({latents.shape[2]} per clip)"
        )
    context, reference = (latents[:, :, :K], latents[:, :, K:]) if K else (None, latents)
    if ns.rollout:  # chunk by chunk from each clip's first K latent frames, as the long-video mode runs
        from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
        from vidfix.pipelines.sampler import SamplerConfig

        B, C, F, H, W = reference.shape
        sconf = SamplerConfig(num_frames=ns.rollout * F, chunk_frames=F, context_frames=K, channels=C,
                              height=H, width=W, num_steps=ns.steps)  # fmt: skip
        bar, progress = progress_bar("calibrate (rollouts)", unit="rollout", disable=ns.no_progress)
        result = calibrate_rollout(
            denoiser, pipeline_scheduler(pipe, reference.shape), sconf, seeds=range(ns.seed, ns.seed + B),
            context=context, reference=reference, options=RolloutCalibrationConfig(dims=ns.dims),
            device=reference.device, progress=progress,
        )  # fmt: skip
    else:
        bar, progress = progress_bar("calibrate", unit="call", disable=ns.no_progress)
        result = calibrate(
            denoiser, pipeline_scheduler(pipe, reference.shape), reference, num_steps=ns.steps, context=context,
            dims=ns.dims, chain=ns.chain, generator=torch.Generator(device=reference.device).manual_seed(ns.seed),
            progress=progress,
        )  # fmt: skip
    bar.close()
    info = {
        "class": type(pipe).__name__, "model": str(folder), "prompt": ns.prompt, "negative_prompt": ns.negative_prompt,
        "guidance_scale": denoiser.guidance_scale, "clips": len(clips), "frames": ns.frames, "height": height,
        "width": width, "context_frames": K, "dtype": dtype, "rollout_chunks": ns.rollout or 0,
    }  # fmt: skip
    save_pipeline_calibration(result, ns.out, pipe=pipe, info=info)
    return result, info


def _default(pipe: Any, name: str) -> int:
    """The pipeline's default pixel height or width (CogVideoX: its transformer's sample size)."""
    from vidfix.pipelines.adapters import pipeline_default

    value = pipeline_default(pipe, name, None)
    if value is None:  # CogVideoX: sample_height/width (latent) times the VAE's spatial compression
        sample = getattr(pipe.transformer.config, f"sample_{name}", None)
        value = None if sample is None else sample * pipe.vae_scale_factor_spatial
    if not isinstance(value, int):
        raise ValueError(f"{type(pipe).__name__} has no default {name}; pass --{name}")
    return value
