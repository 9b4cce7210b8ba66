"""The named options of the generate tools, with no heavy imports (the command line reads them for ``--help``).

Each option is a ``Literal`` type with the tuple of its values; the library functions that take them
(:func:`vidfix.pipelines.factory.make_scheduler`, :func:`vidfix.pipelines.diffusers_run.make_corrector`,
:func:`vidfix.pipelines.diffusers_run.load_pipeline`) re-export them.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

__all__ = [
    "CORRECTORS",
    "DTYPES",
    "OFFLOADS",
    "PIPELINE_CLASSES",
    "PIPELINE_FPS",
    "SCHEDULERS",
    "SCHEDULE_NAMES",
    "CorrectorKind",
    "DtypeName",
    "Offload",
    "PipelineKind",
    "ScheduleName",
    "SchedulerName",
]

SchedulerName: TypeAlias = Literal["euler", "unipc", "fewstep"]
SCHEDULERS: tuple[SchedulerName, ...] = get_args(SchedulerName)

CorrectorKind: TypeAlias = Literal["none", "dcw", "dcw2d", "eps"]
CORRECTORS: tuple[CorrectorKind, ...] = get_args(CorrectorKind)

ScheduleName: TypeAlias = Literal["paper", "constant", "sigma", "inverse_sigma"]
SCHEDULE_NAMES: tuple[ScheduleName, ...] = get_args(ScheduleName)

DtypeName: TypeAlias = Literal["float32", "bfloat16", "float16"]
DTYPES: tuple[DtypeName, ...] = get_args(DtypeName)

Offload: TypeAlias = Literal["none", "model", "sequential"]
OFFLOADS: tuple[Offload, ...] = get_args(Offload)

PipelineKind: TypeAlias = Literal["wan", "ltx", "cogvideox", "hunyuan", "skyreels-df"]

# --pipeline name -> diffusers class.
PIPELINE_CLASSES: dict[str, str] = {
    "wan": "WanPipeline",
    "ltx": "LTXPipeline",
    "cogvideox": "CogVideoXPipeline",
    "hunyuan": "HunyuanVideoPipeline",
    "skyreels-df": "SkyReelsV2DiffusionForcingPipeline",
}

# The frame rate diffusers' documented examples export each family at: the default of the written .mp4.
PIPELINE_FPS: dict[str, float] = {
    "wan": 16.0,
    "ltx": 24.0,
    "cogvideox": 8.0,
    "hunyuan": 15.0,
    "skyreels-df": 24.0,
}
