"""SkyReels-V2 diffusion forcing: how its chunks and per-frame steps meet the vidfix tap.

Latents are ``(B, C, F, H, W)``. The diffusion-forcing pipelines (text-, image- and video-to-video) denoise a
long video in chunks of ``base_num_frames`` pixel frames that overlap by ``overlap_history``: every chunk
after the first starts from the last overlap latent frames of the video so far (the *prefix*, already
clean) and generates the rest. Inside a chunk, ``generate_timestep_matrix`` gives each latent frame its own
timestep per loop iteration (``ar_step > 0`` staggers blocks of ``causal_block_size`` frames), and the
pipeline steps one deep copy of the scheduler per latent frame on a ``(B, C, H, W)`` slice, only for the
frames that iteration's update mask selects.

Consequences for the correction (all handled by the tap, nothing to configure):

* per-frame timesteps are respected: each frame's scheduler copy knows its own noise level;
* the clean prefix frames are never stepped, so they are never corrected;
* the correction is per frame, 2D (low and spatial bands): a frame is stepped alone, so there is no time
  axis to transform. A DCW temporal coefficient would be ignored here, so :func:`check_corrector` refuses it.

Known upstream bug (diffusers issue 13609): with ``causal_block_size > 1``, a chunk whose latent frame count
is not a multiple of the block size leaves its tail frames out of every block, so they are never denoised
and reach the output as noise. vidfix does not change that; the drift record counts only the frames a
chunk actually denoised (:func:`denoised_frames`), so those frames do not pollute it.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["check_corrector", "denoised_frames", "long_video_chunks"]


def long_video_chunks(
    num_frames: int, *, base_num_frames: int, overlap_history: int, temporal_ratio: int = 4
) -> int:
    """Number of chunks a diffusion-forcing long run makes (the pipeline's ``n_iter``), from pixel frames."""
    latent = (num_frames - 1) // temporal_ratio + 1
    base = (base_num_frames - 1) // temporal_ratio + 1
    overlap = (overlap_history - 1) // temporal_ratio + 1
    if num_frames <= base_num_frames:
        return 1
    if base <= overlap:
        raise ValueError(
            f"base_num_frames ({base_num_frames}) must exceed overlap_history ({overlap_history})"
        )
    return 1 + (latent - base - 1) // (base - overlap) + 1


def denoised_frames(update_mask: Tensor) -> tuple[int, ...]:
    """Latent frames (within the chunk) that a chunk's ``(iterations, frames)`` update mask ever steps."""
    return tuple(int(i) for i in update_mask.any(dim=0).nonzero().flatten())


def check_corrector(corrector: Any) -> None:
    """Refuse a corrector whose temporal band would be silently ignored by per-frame steps."""
    temporal = getattr(corrector, "temporal", 0.0)
    if getattr(corrector, "dims", "2d") == "3d" and temporal:
        raise ValueError(
            f"SkyReels-V2 diffusion forcing steps one latent frame at a time, so the correction is 2D per frame "
            f"(low and spatial bands) and temporal={temporal} would have no effect; set temporal=0 "
            "(or use dims='2d')"
        )
