"""Run a diffusers video checkpoint with a vidfix corrector: load, stabilize, generate per seed, write outputs.

The library side of ``vidfix generate --pipeline ...`` (``scripts/generate.py`` parses arguments).

    >>> pipe = load_pipeline("wan", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", dtype="bfloat16", device="cuda")  # doctest: +SKIP
    >>> corrector = make_corrector("dcw", low=0.005)                                                   # doctest: +SKIP
    >>> generate(pipe, GenerateConfig(prompt="a red fox", num_frames=81), corrector, "out/")           # doctest: +SKIP

Each seed gets its own ``torch.Generator`` (on the CPU, so a seed gives the same noise on any device) and its
own run folder, the same layout as the chunked sampler's (:mod:`vidfix.pipelines.runs`): ``OUT/seed_000003/``
with ``video.mp4``, ``drift.json`` (a :class:`vidfix.DriftTracker` JSON: one entry per chunk for SkyReels long
runs, else per ``drift_window`` latent frames) and ``run.json`` (the spec, what the corrector did per chunk,
the files' checksums). A resume keeps the seeds whose files are intact and generates the others again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

import torch
from vidfix.pipelines.choices import (
    PIPELINE_CLASSES,
    CorrectorKind,
    DtypeName,
    Offload,
    PipelineKind,
    ScheduleName,
)
from vidfix.pipelines.runs import RunFolder, check_manifest, file_sha256, read_json, seed_folder
from vidfix.pipelines.stabilize import ChunkRecord, stabilize

from vidfix._checks import check_choice
from vidfix.correctors import DCW, EpsScaling, Identity
from vidfix.protocols import Corrector

__all__ = [
    "PIPELINE_CLASSES",
    "CorrectorKind",
    "GenerateConfig",
    "GenerateResult",
    "PipelineKind",
    "ScheduleName",
    "generate",
    "load_pipeline",
    "make_corrector",
    "pipeline_run_spec",
]

# Wan's own recipe keeps its VAE in float32 (decoding in bf16 visibly degrades colours).
_FLOAT32_VAE = ("wan", "skyreels-df")


def _dtype(value: torch.dtype | DtypeName | str) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    check_choice("dtype", value, names)
    return names[value]


def load_pipeline(
    kind: PipelineKind,
    model: str | os.PathLike[str],
    *,
    dtype: torch.dtype | DtypeName | str = "bfloat16",
    device: str | torch.device = "cpu",
    vae_dtype: torch.dtype | DtypeName | str | None = None,
    offload: Offload = "none",
    vae_tiling: bool = False,
) -> Any:
    """Load a diffusers video pipeline from a local folder or a hub id (``from_pretrained``).

    Args:
        kind: which pipeline class (see ``PIPELINE_CLASSES``).
        model: a folder written by ``save_pretrained`` or a hub id (needs the hub, or a filled cache).
        dtype: weights dtype of the pipeline.
        device: where to run (ignored with ``offload``, which manages devices itself).
        vae_dtype: VAE dtype; default float32 for Wan and SkyReels (their recipe), else ``dtype``.
        offload: ``model`` / ``sequential`` CPU offload for GPUs too small for the whole pipeline.
        vae_tiling: decode in tiles (less memory for long or large videos).
    """
    import diffusers

    check_choice("pipeline", kind, get_args(PipelineKind))
    check_choice("offload", offload, get_args(Offload))
    cls = getattr(diffusers, PIPELINE_CLASSES[kind])
    wanted = vae_dtype if vae_dtype is not None else ("float32" if kind in _FLOAT32_VAE else None)
    dtypes: torch.dtype | dict[str, torch.dtype] = _dtype(dtype)
    if wanted is not None:
        dtypes = {"default": _dtype(dtype), "vae": _dtype(wanted)}  # per-component dtypes (diffusers >= 0.33)
    pipe = cls.from_pretrained(os.fspath(model), torch_dtype=dtypes)
    vae = getattr(pipe, "vae", None)
    if vae is not None and vae_tiling:
        vae.enable_tiling()
    if offload == "model":
        pipe.enable_model_cpu_offload()
    elif offload == "sequential":
        pipe.enable_sequential_cpu_offload()
    else:
        pipe.to(device)
    return pipe


def _schedules(schedule: ScheduleName) -> dict[str, str]:
    check_choice("schedule", schedule, get_args(ScheduleName))
    if schedule == "paper":  # Eqs. 20-21: low band strong early, detail bands strong late
        return {}
    return {f"{g}_schedule": schedule for g in ("low", "spatial", "temporal")}


def _read_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"calibration file {str(path)!r} does not exist")
    data = read_json(path, "calibration file")
    for key in ("dcw", "corrector"):  # CalibrationResult.save() embeds the derived DCW under "dcw"
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or data.get("type", "dcw") != "dcw":
        raise ValueError(f"{path} does not hold a DCW corrector (a JSON written by DCW.to_dict())")
    return data


def make_corrector(
    kind: CorrectorKind = "none",
    *,
    low: float | None = None,
    spatial: float | None = None,
    temporal: float | None = None,
    schedule: ScheduleName = "paper",
    eps_scale: float | None = None,
    calibration: str | os.PathLike[str] | None = None,
) -> Corrector:
    """The corrector the CLI options describe.

    ``dcw`` is the 3D wavelet correction (over F, H, W), ``dcw2d`` the paper's per-frame form (no temporal
    band), ``eps`` epsilon scaling, ``none`` the identity (output bit-identical to the plain pipeline, drift
    still recorded). DCW coefficients come either from ``low``/``spatial``/``temporal`` or from a
    ``calibration`` JSON (``DCW.to_dict()``, or a ``CalibrationResult.save()`` file), not both. There are no default coefficients: their sign
    and size depend on the model and must be measured (docs/diffusers.md).
    """
    check_choice("corrector", kind, get_args(CorrectorKind))
    coefficients = {
        k: v for k, v in (("low", low), ("spatial", spatial), ("temporal", temporal)) if v is not None
    }
    if kind in ("none", "eps") and (coefficients or calibration is not None):
        raise ValueError(
            f"--low/--spatial/--temporal/--calibration need --corrector dcw or dcw2d, not {kind!r}"
        )
    if kind != "eps" and eps_scale is not None:
        raise ValueError("--eps-scale needs --corrector eps")
    if kind == "none":
        return Identity()
    if kind == "eps":
        if eps_scale is None:
            raise ValueError("--corrector eps needs --eps-scale (published values: 1.0006 to 1.017)")
        return EpsScaling(scale=eps_scale)
    dims = "2d" if kind == "dcw2d" else "3d"
    if kind == "dcw2d" and coefficients.get("temporal"):
        raise ValueError("dcw2d corrects each frame alone: it has no temporal band (use --corrector dcw)")
    if calibration is not None:
        if coefficients:
            raise ValueError("give either --calibration or --low/--spatial/--temporal, not both")
        overrides: dict[str, Any] = {"dims": "2d"} if kind == "dcw2d" else {}
        return DCW.from_dict(_read_calibration(calibration), **overrides)
    if not any(coefficients.values()):
        raise ValueError(
            f"--corrector {kind} needs nonzero --low, --spatial or --temporal (or --calibration): coefficients "
            "are model-specific, see docs/diffusers.md for starting values and how to measure them"
        )
    kwargs: dict[str, Any] = {**coefficients, "dims": dims, **_schedules(schedule)}
    return DCW(**kwargs)


@dataclass(frozen=True, kw_only=True)
class GenerateConfig:
    """One generation job (the same for every seed).

    Attributes:
        prompt, negative_prompt: text prompts.
        num_frames, height, width: video size in pixels and frames (None: the pipeline's default).
        steps: denoising steps (16, the default of ``vidfix generate`` for every model).
        guidance_scale: classifier-free guidance (None: the pipeline's default).
        seeds: one video per seed, each with its own generator.
        fps: frame rate of the written video.
        drift_window: latent frames per drift entry for single-chunk runs.
        pipeline_kwargs: any other ``pipe(...)`` arguments (SkyReels: ``base_num_frames``,
            ``overlap_history``, ``ar_step``, ``causal_block_size``, ``addnoise_condition``).
    """

    prompt: str
    negative_prompt: str | None = None
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    steps: int = 16
    guidance_scale: float | None = None
    seeds: tuple[int, ...] = (0,)
    fps: float = 16.0
    drift_window: int = 1
    pipeline_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def call_kwargs(self) -> dict[str, Any]:
        """``pipe(...)`` arguments, without the generator and output type."""
        optional = {
            "negative_prompt": self.negative_prompt,
            "num_frames": self.num_frames,
            "height": self.height,
            "width": self.width,
            "guidance_scale": self.guidance_scale,
        }
        kwargs = {"prompt": self.prompt, "num_inference_steps": self.steps}
        return kwargs | {k: v for k, v in optional.items() if v is not None} | dict(self.pipeline_kwargs)


@dataclass(frozen=True)
class GenerateResult:
    """What one seed produced (``resumed``: kept from an earlier run, not generated now)."""

    seed: int
    folder: Path
    video: Path
    drift: Path
    frames: int
    seconds: float
    chunks: tuple[ChunkRecord, ...]
    resumed: bool = False


def _describe(corrector: Corrector) -> Any:
    to_dict = getattr(corrector, "to_dict", None)
    return to_dict() if callable(to_dict) else repr(corrector)


def pipeline_run_spec(
    pipe: Any, config: GenerateConfig, corrector: Corrector, *, model: Any = None
) -> dict[str, Any]:
    """The JSON identity of a pipeline run (everything but the seeds): a resume must match it exactly."""
    scheduler = getattr(pipe, "scheduler", None)
    sched = None
    if scheduler is not None and hasattr(scheduler, "to_json_string"):
        cfg = {k: v for k, v in json.loads(scheduler.to_json_string()).items() if not k.startswith("_")}
        sched = {"class": type(scheduler).__name__, "config": cfg}
    job = asdict(config) | {"pipeline_kwargs": dict(config.pipeline_kwargs)}
    job.pop("seeds")
    spec = {"pipeline": type(pipe).__name__, "model": model, "scheduler": sched, "job": job,
            "corrector": _describe(corrector)}  # fmt: skip
    return json.loads(json.dumps(spec, default=str))


def generate(
    pipe: Any,
    config: GenerateConfig,
    corrector: Corrector,
    out_dir: str | os.PathLike[str],
    *,
    resume: bool = False,
    model: Any = None,
) -> list[GenerateResult]:
    """Generate one video per seed with ``corrector`` applied, each into its run folder ``out_dir/seed_XXXXXX``.

    Args:
        pipe: a diffusers video pipeline (``stabilize`` supports it).
        config: the job.
        corrector: applied inside every scheduler step.
        out_dir: output folder; ``OUT/seed_000003/`` holds ``video.mp4``, ``drift.json`` and ``run.json``.
        resume: keep the seeds already finished there (their files intact) and generate the rest; without
            it a folder holding a run is refused.
        model: JSON-able description of the model (part of the spec a resume must match).

    Raises:
        RunFolderError: as :func:`vidfix.pipelines.generate_videos` (another run, other spec, locked, unreadable).
    """
    from vidfix.metrics.io import write_video

    out = Path(out_dir)
    spec = pipeline_run_spec(pipe, config, corrector, model=model)
    check_manifest(out, spec)
    results = []
    for seed in config.seeds:
        with RunFolder(seed_folder(out, seed), seed, spec, num_chunks=0) as folder:
            report = folder.open(resume=resume)
            if report is not None and report.complete:
                info = folder.read().get("info", {})
                chunks = tuple(ChunkRecord(**{**c, "denoised_frames": tuple(c["denoised_frames"])})
                               for c in info.get("chunks", []))  # fmt: skip
                results.append(GenerateResult(seed, folder.path, folder.mp4_path, folder.drift_path,
                                              int(info.get("frames", 0)), 0.0, chunks, resumed=True))  # fmt: skip
                continue
            generator = torch.Generator().manual_seed(int(seed))
            start = time.perf_counter()
            with stabilize(pipe, corrector, track_drift=True, drift_window=config.drift_window) as handle:
                frames = pipe(**config.call_kwargs(), generator=generator, output_type="np").frames[0]
            seconds = time.perf_counter() - start
            if handle.tracker is None:
                raise RuntimeError("stabilize(track_drift=True) gave no drift tracker")
            # (F, H, W, 3) in [0, 1] -> H.264, odd sizes padded (the one video writer).
            write_video(folder.mp4_path, frames, fps=config.fps, value_range=(0.0, 1.0), odd_size="pad")
            info = {
                "frames": len(frames),
                "seconds": round(seconds, 3),
                "chunks": [asdict(c) for c in handle.chunks],
            }
            folder.finish_files({"video.mp4": file_sha256(folder.mp4_path)}, handle.tracker, info=info)
            results.append(GenerateResult(seed, folder.path, folder.mp4_path, folder.drift_path, len(frames),
                                          seconds, tuple(handle.chunks)))  # fmt: skip
    return results
