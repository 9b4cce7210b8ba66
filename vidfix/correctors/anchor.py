"""On-path band anchoring: in the later steps, move chosen bands of the data prediction toward an anchor.

Post-hoc anchoring (matching each finished chunk's statistics to chunk 0's) overwrites the sample; TTC
(arXiv 2602.05871) showed that a correction made on the sampling path, late, and carried by the solver is
smoother. This corrector does the statistics version of that inside the tapped step:

1. **Anchor**: after the anchor chunk (chunk 0, or a running reference updated after every chunk) finishes,
   its per-video, per-channel statistics of each band group (mean of the low band, standard deviation of
   each group) are the target. They are read from finished chunks only, so a resumed rollout (whose
   finished chunks are replayed to the hooks) anchors exactly as an uninterrupted one.
2. **Correct** (steps with ``s <= s_max`` only): for each chosen group and channel, the log std gap
   ``log(std_anchor / std)`` and the mean gap are closed by ``strength * schedule(s)``, each bounded per
   step (``max_log_scale``, ``max_shift`` in anchor std units); the rest of ``x0_hat`` is left untouched.
3. **Carry**: the solver consumes the corrected ``x0_hat`` (``x`` is not edited), so multistep solvers keep
   the correction in their history and the next steps build on it.

With ``strength = 1`` and no bounds at the last step this reaches the post-hoc match; the point is the
smaller, late, bounded moves. Stateful: implements :class:`vidfix.protocols.ChunkAware` (the chunked sampler
and the AR-loop API call its hooks). Latents ``(B, C, F, H, W)``; batch item ``b`` is one video throughout.

Example:
    >>> anchor = BandAnchor(groups=("low",), strength=0.5, s_max=0.4)      # colour and contrast only
    >>> video = sample_video(model, scheduler, config, generators=gens, corrector=anchor)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from vidfix._checks import check_choice, check_finite, check_latents, check_same_shape, scalar_noise_level
from vidfix.bands import GROUPS, Dims, Group
from vidfix.correctors._bandstats import BandMoments, band_moments, clamp_abs, rescale_bands
from vidfix.protocols import StepInfo
from vidfix.schedules import Schedule, as_schedule

__all__ = ["BandAnchor"]


@dataclass(kw_only=True, eq=False)
class BandAnchor:
    """Move chosen band groups of ``x0_hat`` toward the anchor's statistics in the later steps.

    Attributes:
        groups: band groups whose std is anchored (``low``, ``spatial``, ``temporal``).
        mean: also anchor each channel's mean (colour; it lives in the low band).
        strength: fraction of the gap closed per corrected step, times ``schedule(s)``.
        s_max: only steps with normalised noise level ``s <= s_max`` are corrected.
        schedule: factor over ``s`` (default ``constant``; ``inverse_sigma`` ramps up toward the end).
        max_log_scale: bound on the log std change per step and group.
        max_shift: bound on the mean change per step, in units of the anchor's low-band std.
        reference: ``first`` (chunk 0) or ``running`` (blended with every finished chunk by ``momentum``).
        momentum: weight of each new chunk in a running reference.
        dims, level: the band transform (Haar).
    """

    groups: tuple[Group, ...] = ("low",)
    mean: bool = True
    strength: float = 0.5
    s_max: float = 0.4
    schedule: str | Schedule = "constant"
    max_log_scale: float = 0.05
    max_shift: float = 0.05
    reference: Literal["first", "running"] = "first"
    momentum: float = 0.1
    dims: Dims = "3d"
    level: int = 1
    _sched: Schedule = field(init=False, repr=False)
    _anchor: BandMoments | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        for g in self.groups:
            check_choice("band group", g, GROUPS)
        check_choice("reference", self.reference, ("first", "running"))
        check_choice("dims", self.dims, ("3d", "2d"))
        for name in ("strength", "momentum"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("s_max", "max_log_scale", "max_shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        self._sched = as_schedule(self.schedule)

    # -- chunk hooks -------------------------------------------------------------------------------------

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        if index == 0:
            self._anchor = None

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        """The finished chunk's statistics become (or update) the anchor."""
        moments, _ = band_moments(chunk, dims=self.dims, level=self.level)
        if self._anchor is None:
            self._anchor = moments.detach()
        elif self.reference == "running":
            self._anchor = self._anchor.blend(moments.detach(), self.momentum)

    @property
    def anchored(self) -> bool:
        """Whether an anchor is set (after the first finished chunk)."""
        return self._anchor is not None

    # -- the corrector -----------------------------------------------------------------------------------

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        check_latents(x0, "x0")
        check_same_shape(x, x0)
        s = scalar_noise_level(step.s, "BandAnchor")
        target = self._anchor
        if target is None or s > self.s_max or target.mean.shape != x0.shape[:2]:
            return x0
        moments, comps = band_moments(x0, dims=self.dims, level=self.level)
        w = self.strength * float(self._sched(s))
        if w == 0.0:
            return x0
        log_gain = {
            g: clamp_abs((target.std[g] / moments.std[g]).log() * w, self.max_log_scale)
            for g in self.groups
            if g in comps
        }
        shift = None
        if self.mean:
            bound = self.max_shift * target.std["low"]
            shift = clamp_abs((target.mean - moments.mean) * w, bound)
        out = rescale_bands(x0, comps, log_gain, shift)
        check_finite(out, "band-anchored x0 (are x or x0 finite?)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "band_anchor",
            "groups": list(self.groups),
            "mean": self.mean,
            "strength": self.strength,
            "s_max": self.s_max,
            "schedule": self._sched.to_dict(),
            "max_log_scale": self.max_log_scale,
            "max_shift": self.max_shift,
            "reference": self.reference,
            "momentum": self.momentum,
            "dims": self.dims,
            "level": self.level,
        }
