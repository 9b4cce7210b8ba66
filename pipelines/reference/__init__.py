"""The reference models vidfix ships and everything that belongs to them: the procedural video process they
learn (``data``), the chunk denoiser (``model``), its training (``train``), loading the shipped weights offline
(``loading``) and its evaluation (``evaluate``); and the exact testbed (``gaussian``), a Gaussian video process
whose optimal chunk denoiser has a closed form, with controlled model errors.

Latents are pixels, ``(B, 3, F, H, W)`` in [-1, 1].

    >>> from vidfix.pipelines.reference import load_reference_model, reference_videos
    >>> model = load_reference_model()                              # doctest: +SKIP
"""

from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_video, reference_videos
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_rollout,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.reference.loading import (
    REFERENCE_WEIGHTS_DIR,
    load_reference_model,
    reference_scheduler,
)
from vidfix.pipelines.reference.model import ReferenceVideoModel

__all__ = [
    "REFERENCE_WEIGHTS_DIR",
    "GaussianVideoConfig",
    "GaussianVideoDenoiser",
    "ModelError",
    "ReferenceVideoModel",
    "SpriteVideoConfig",
    "gaussian_rollout",
    "gaussian_scheduler",
    "gaussian_video",
    "load_reference_model",
    "reference_scheduler",
    "reference_video",
    "reference_videos",
]
