"""Chunked rollouts of the exact Gaussian testbed (``vidfix.pipelines.reference.gaussian``) for corrector tests.

Latents are ``(B, C, F, H, W)``. A rollout is DESIGN.md section 5's set-up: 4-frame chunks, each conditioned on
the last generated frame, all videos starting from one batch of real one-frame testbed clips, video ``b``
sampled with generator seed ``b``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor
from vidfix.pipelines.reference.gaussian import GaussianVideoConfig, gaussian_video
from vidfix.pipelines.sampler import SamplerConfig, sample_video

T = TypeVar("T")


def roll_out_testbed(
    model: Any,
    sched: Any,
    cfg: GaussianVideoConfig,
    corrector: Any = None,
    *,
    stat: Callable[[Tensor], T],
    chunks: int,
    videos: int,
    steps: int,
    start_seed: int,
) -> tuple[list[T], Tensor]:
    """``stat(chunk)`` of every finished chunk, and the video ``(videos, C, 4 * chunks, H, W)``.

    The start clips are ``gaussian_video(cfg, 1, batch=videos)`` drawn with seed ``start_seed``.
    """
    start = gaussian_video(cfg, 1, generator=torch.Generator().manual_seed(start_seed), batch=videos)
    conf = SamplerConfig(
        num_frames=4 * chunks,
        chunk_frames=4,
        context_frames=1,
        channels=cfg.channels,
        height=cfg.height,
        width=cfg.width,
        num_steps=steps,
    )
    out: list[T] = []
    gens = [torch.Generator().manual_seed(b) for b in range(videos)]
    video = sample_video(model, sched, conf, generators=gens, corrector=corrector, context=start,
                         on_chunk=lambda chunk, **_: out.append(stat(chunk)))  # fmt: skip
    return out, video
