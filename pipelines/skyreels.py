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
* a 2D corrector (``dims="2d"``, or one without ``dims``) corrects each frame's slice alone;
* a 3D corrector (``dims="3d"``, temporal band included) is applied across the frames one loop iteration
  steps: the tap holds each frame's step until the iteration's last frame (:class:`vidfix.tap.FrameGather`,
  planned by :func:`iteration_frames`), corrects the stacked ``(B, C, F', H, W)`` data predictions at their
  per-frame noise levels in one call, and hands each frame's step its slice. The result equals the 3D corrector
  applied to the stacked latents of the iteration.

Known upstream bug (diffusers issue 13609): with ``causal_block_size > 1``, a chunk whose latent frame count
is not a multiple of the block size leaves its tail frames out of every block, so they are never denoised
and reach the output as noise. vidfix does not change that; the drift record counts only the frames a
chunk actually denoised (:func:`denoised_frames`), so those frames do not pollute it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from torch import Tensor

__all__ = ["denoised_frames", "iteration_frames", "long_video_chunks", "wants_3d"]


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


def iteration_frames(update_mask: Tensor, valid_interval: Sequence[tuple[int, int]]) -> Iterator[list[int]]:
    """The frames each loop iteration of a chunk steps, in the pipeline's call order.

    Read lazily, one iteration at a time: the image-to-video pipeline edits the mask in place after
    ``generate_timestep_matrix`` returns it. Mirrors the pipeline's loop: frames ``start <= idx < end`` of the
    iteration's valid interval whose mask entry is set.
    """
    for i, (start, end) in enumerate(valid_interval):
        row = update_mask[i]
        yield [idx for idx in range(int(start), int(end)) if bool(row[idx])]


def wants_3d(corrector: Any) -> bool:
    """Whether a corrector transforms over frames (then SkyReels' per-frame steps are corrected together)."""
    return getattr(corrector, "dims", None) == "3d"
