"""Correctors: one file each, all behind :class:`vidfix.protocols.Corrector`.

Stateless: :class:`DCW` (the wavelet SNR-t correction), :class:`BandAffine` (per-band gain, DCW coefficient
and colour offset, as the regression calibration measures them), :class:`EpsScaling`, :class:`Identity`,
:class:`Chain`. Stateful (:class:`vidfix.protocols.ChunkAware`): :class:`BandAnchor` (on-path band anchoring),
:class:`ClosedLoop` (per-chunk feedback), :class:`TTC` (pathwise test-time correction baseline).
"""

from vidfix.correctors.anchor import BandAnchor
from vidfix.correctors.band_affine import BandAffine
from vidfix.correctors.chain import Chain
from vidfix.correctors.closed_loop import ClosedLoop
from vidfix.correctors.dcw import DCW
from vidfix.correctors.eps_scaling import EpsScaling
from vidfix.correctors.identity import Identity
from vidfix.correctors.ttc import TTC

__all__ = ["DCW", "TTC", "BandAffine", "BandAnchor", "Chain", "ClosedLoop", "EpsScaling", "Identity"]
