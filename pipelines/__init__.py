"""vidfix.pipelines: chunked long-video sampler, diffusers wrappers, multi-process runs, the reference model.

Diffusers wrappers (latents ``(B, C, F, H, W)`` for correctors and trackers):

    >>> from vidfix import DCW
    >>> from vidfix.pipelines import stabilize
    >>> handle = stabilize(pipe, DCW(low=0.005), track_drift=True)     # doctest: +SKIP
"""

from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, make_corrector
from vidfix.pipelines.ltx import LTXTokens
from vidfix.pipelines.stabilize import (
    SUPPORTED_PIPELINES,
    ChunkRecord,
    PipelineSpec,
    Stabilized,
    pipeline_spec,
    stabilize,
    stabilized,
)

__all__ = [
    "SUPPORTED_PIPELINES",
    "ChunkRecord",
    "GenerateConfig",
    "LTXTokens",
    "PipelineSpec",
    "Stabilized",
    "generate",
    "load_pipeline",
    "make_corrector",
    "pipeline_spec",
    "stabilize",
    "stabilized",
]
