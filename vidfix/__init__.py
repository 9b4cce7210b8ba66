"""vidfix: fix drift in autoregressive video diffusion without retraining.

Core (this package): the wavelet band transform, band correctors (DCW 2D/3D, band-affine, epsilon scaling,
identity; on-path anchoring, closed loop and a TTC baseline for autoregressive rollouts),
coefficient schedules, the scheduler tap and calibration. Latents are ``(B, C, F, H, W)``.

    >>> from vidfix import DCW, tap
    >>> pipe.scheduler = tap(pipe.scheduler, DCW(low=0.01))     # doctest: +SKIP
"""

from vidfix.bands import GROUPS, Bands, band_filter, band_group, band_names, dwt, group_components, idwt
from vidfix.correctors import DCW, TTC, BandAffine, BandAnchor, Chain, ClosedLoop, EpsScaling, Identity
from vidfix.protocols import ChunkAware, Corrector, Denoiser, StepInfo
from vidfix.schedules import Schedule
from vidfix.tap import SUPPORTED_SCHEDULERS, TapEvent, is_tapped, tap, untap
from vidfix.tracker import ChunkStats, DriftTracker

__version__ = "0.1.0"

__all__ = [
    "DCW",
    "GROUPS",
    "SUPPORTED_SCHEDULERS",
    "TTC",
    "BandAffine",
    "BandAnchor",
    "Bands",
    "Chain",
    "ChunkAware",
    "ChunkStats",
    "ClosedLoop",
    "Corrector",
    "Denoiser",
    "DriftTracker",
    "EpsScaling",
    "Identity",
    "Schedule",
    "StepInfo",
    "TapEvent",
    "band_filter",
    "band_group",
    "band_names",
    "dwt",
    "group_components",
    "idwt",
    "is_tapped",
    "tap",
    "untap",
]
