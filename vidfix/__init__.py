"""vidfix: fix drift in autoregressive video diffusion without retraining.

Core (this package): the wavelet band transform, band correctors (DCW 2D/3D, band-affine, epsilon scaling,
identity; on-path anchoring, closed loop and a TTC baseline for autoregressive rollouts), coefficient schedules, the scheduler tap, the loop-level API for hand-written AR loops (:class:`ARLoop`)
and calibration. Latents are ``(B, C, F, H, W)``.

    >>> from vidfix import DCW, tap
    >>> pipe.scheduler = tap(pipe.scheduler, DCW(low=0.01))     # doctest: +SKIP
    >>> loop = ARLoop(DCW(low=0.01))      # a hand-written AR loop calls loop.x0(x0, x, s, s_next)
"""

from typing import TYPE_CHECKING

from vidfix._lazy import attach

if TYPE_CHECKING:  # the exports, imported on first use (vidfix._lazy): `import vidfix` does not load torch
    from vidfix.bands import GROUPS, Bands, band_filter, band_group, band_names, dwt, group_components, idwt
    from vidfix.correctors import DCW, TTC, BandAffine, BandAnchor, Chain, ClosedLoop, EpsScaling, Identity
    from vidfix.loop import ARLoop
    from vidfix.protocols import ChunkAware, Corrector, Denoiser, FoldableCorrector, StepInfo
    from vidfix.schedules import Schedule
    from vidfix.tap import SUPPORTED_SCHEDULERS, TapEvent, is_tapped, tap, untap
    from vidfix.tracker import ChunkStats, DriftTracker

attach(__name__, __file__)

__version__ = "0.1.0"

__all__ = [
    "DCW",
    "GROUPS",
    "SUPPORTED_SCHEDULERS",
    "TTC",
    "ARLoop",
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
    "FoldableCorrector",
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
