"""The reference models vidfix ships and everything that belongs to them: the procedural video process they
learn (``data``), the chunk denoiser (``model``), its training (``train``), loading the shipped weights offline
(``loading``) and its evaluation (``evaluate``).

Latents are pixels, ``(B, 3, F, H, W)`` in [-1, 1].

    >>> from vidfix.pipelines.reference import load_reference_model, reference_videos
    >>> model = load_reference_model()                              # doctest: +SKIP
"""

from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_video, reference_videos
from vidfix.pipelines.reference.loading import (
    REFERENCE_WEIGHTS_DIR,
    load_reference_model,
    reference_scheduler,
)
from vidfix.pipelines.reference.model import ReferenceVideoModel

__all__ = [
    "REFERENCE_WEIGHTS_DIR",
    "ReferenceVideoModel",
    "SpriteVideoConfig",
    "load_reference_model",
    "reference_scheduler",
    "reference_video",
    "reference_videos",
]
