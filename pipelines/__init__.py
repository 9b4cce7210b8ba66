"""vidfix.pipelines: chunked long-video sampler, diffusers wrappers, multi-process runs, the reference model.

Latents are ``(B, C, F, H, W)``. The chunked sampler (any chunk denoiser; any supported scheduler, or the
few-step x0 / re-noise mode of distilled causal models with ``FewStepScheduler``):

    >>> from vidfix.pipelines import SamplerConfig, sample_video
    >>> video = sample_video(model, scheduler, config, generators=gens, corrector=dcw)   # doctest: +SKIP

Diffusers wrappers (latents ``(B, C, F, H, W)`` for correctors and trackers):

    >>> from vidfix import DCW
    >>> from vidfix.pipelines import stabilize
    >>> handle = stabilize(pipe, DCW(low=0.005), track_drift=True)     # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from vidfix._lazy import attach

if TYPE_CHECKING:  # the exports, imported on first use (vidfix._lazy): importing a submodule stays light
    from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
    from vidfix.pipelines.diffusers_run import GenerateConfig, generate, load_pipeline, make_corrector
    from vidfix.pipelines.fewstep import FewStepScheduler
    from vidfix.pipelines.ltx import LTXTokens
    from vidfix.pipelines.reference import (
        REFERENCE_WEIGHTS_DIR,
        ReferenceVideoModel,
        SpriteVideoConfig,
        load_reference_model,
        reference_scheduler,
        reference_video,
        reference_videos,
    )
    from vidfix.pipelines.rolling_wan import RollingKVUnavailable, RollingWan, stabilize_rolling
    from vidfix.pipelines.runs import (
        RunFolder,
        RunFolderError,
        ensure_writable,
        generate_videos,
        load_video,
        run_spec,
        seed_folder,
    )
    from vidfix.pipelines.sampler import (
        ChunkCallback,
        NonFiniteChunkError,
        SamplerConfig,
        SamplerState,
        StepCallback,
        Teacher,
        channel_stats,
        check_denoiser,
        chunk_starts,
        context_before,
        match_statistics,
        merge_chunk,
        renoise_context,
        sample_video,
        video_teacher,
    )
    from vidfix.pipelines.stabilize import (
        SUPPORTED_PIPELINES,
        ChunkRecord,
        PipelineSpec,
        Stabilized,
        pipeline_spec,
        stabilize,
        stabilize_from_pretrained,
        stabilized,
        stabilizer,
    )

attach(__name__, __file__)

__all__ = [
    "REFERENCE_WEIGHTS_DIR",
    "SUPPORTED_PIPELINES",
    "ChunkCallback",
    "ChunkRecord",
    "FewStepScheduler",
    "GenerateConfig",
    "LTXTokens",
    "NonFiniteChunkError",
    "PipelineSpec",
    "ReferenceVideoModel",
    "RollingKVUnavailable",
    "RollingWan",
    "RolloutCalibrationConfig",
    "RunFolder",
    "RunFolderError",
    "SamplerConfig",
    "SamplerState",
    "SpriteVideoConfig",
    "Stabilized",
    "StepCallback",
    "Teacher",
    "calibrate_rollout",
    "channel_stats",
    "check_denoiser",
    "chunk_starts",
    "context_before",
    "ensure_writable",
    "generate",
    "generate_videos",
    "load_pipeline",
    "load_reference_model",
    "load_video",
    "make_corrector",
    "match_statistics",
    "merge_chunk",
    "pipeline_spec",
    "reference_scheduler",
    "reference_video",
    "reference_videos",
    "renoise_context",
    "run_spec",
    "sample_video",
    "seed_folder",
    "stabilize",
    "stabilize_from_pretrained",
    "stabilize_rolling",
    "stabilized",
    "stabilizer",
    "video_teacher",
]
