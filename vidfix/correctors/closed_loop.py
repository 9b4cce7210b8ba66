"""Closed loop: each finished chunk's drift measurement sets the next chunk's band coefficients.

No per-model tuning: the loop measures what the model does and corrects it, chunk by chunk.

* **Measure** (after chunk ``k``, with the drift tracker's statistics, :func:`vidfix.tracker.chunk_stats`):
  per video, channel and band group, the log standard deviation of the group's component, and the channel
  mean; the error ``e`` is their difference to the reference (chunk 0, or statistics the caller sets).
* **Decide** (leaky integral control with a dead band): where ``|e|`` is within the real video's natural
  spread the coefficient decays (``u <- decay u``: no correction is held where none is needed, and a
  legitimate change inside the spread is left alone); outside it ``u <- u - gain (e - spread sign e)``, each
  change bounded by ``max_step`` and the total by ``max_total``.
* **Act** (chunk ``k + 1``, steps with ``s <= s_max``): the group's component of the data prediction is
  scaled by ``exp(u)`` around its mean and the channel mean is moved by the colour coefficient, inside the
  tapped step, so the solver carries it. The actuator is a band gain on ``x0_hat`` because its effect has a
  known sign and size for any model (the last step returns ``x0_hat``): a DCW coefficient's effect on drift
  changes sign between models (measure it with :mod:`vidfix.pipelines.calibrate_rollout`), which a loop
  without per-model tuning cannot assume.

``base`` (a calibrated DCW or band-affine fix) runs first in every step; the loop corrects what is left.
Implements :class:`vidfix.protocols.ChunkAware`. Latents ``(B, C, F, H, W)``; batch item ``b`` is one video.

Example:
    >>> loop = ClosedLoop(spread=0.03)                                     # 3% natural spread of the std
    >>> video = sample_video(model, scheduler, config, generators=gens, corrector=loop)  # doctest: +SKIP
    >>> loop.history[-1]["log_gain"]                                          # what it applied last
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_finite, check_latents, check_same_shape, scalar_noise_level
from vidfix.bands import GROUPS, Dims, Group
from vidfix.correctors._bandstats import band_moments, clamp_abs, rescale_bands
from vidfix.protocols import ChunkAware, Corrector, StepInfo
from vidfix.tracker import chunk_stats

__all__ = ["ClosedLoop", "chunk_moments", "natural_spread"]


def chunk_moments(chunk: Tensor, *, dims: Dims = "3d", level: int = 1) -> tuple[Tensor, dict[Group, Tensor]]:
    """The drift tracker's measurement of a chunk as ``(mean (B, C), {group: log std (B, C)})``.

    The tracker stores each group's mean-square energy; the low group's includes the squared mean, which is
    removed so every group's number is a spread around the mean.
    """
    stats = chunk_stats(chunk.detach().float(), 0, dims=dims, level=level)
    mean = torch.tensor(stats.mean, dtype=torch.float64)
    logs: dict[Group, Tensor] = {}
    for g in GROUPS:
        e = torch.tensor(getattr(stats, f"energy_{g}"), dtype=torch.float64)
        if g == "low":
            e = e - mean.pow(2)
        if chunk.shape[2] < 2 and g == "temporal":
            continue
        logs[g] = 0.5 * e.clamp_min(1e-24).log()
    return mean, logs


def natural_spread(video: Tensor, chunk_frames: int, *, dims: Dims = "3d", level: int = 1) -> dict[str, Any]:
    """How much real video's chunk statistics move on their own: the dead band of :class:`ClosedLoop`.

    ``video`` ``(B, C, T, H, W)`` (real frames, ``T >= 2 chunk_frames``) is cut into chunks; the spread is the
    RMS over videos and channels of each statistic's standard deviation over chunks: the log std of each
    band group, and the channel mean in units of the low band's std. Returns ``{"spread": {group: float},
    "colour_spread": float}``, the keyword arguments of :class:`ClosedLoop`.
    """
    check_latents(video, "video", ranks=(5,))
    n = video.shape[2] // chunk_frames
    if n < 2:
        raise ValueError(f"need at least 2 chunks of {chunk_frames} frames, got {video.shape[2]} frames")
    stats = [
        chunk_moments(video[:, :, k * chunk_frames : (k + 1) * chunk_frames], dims=dims, level=level)
        for k in range(n)
    ]
    spread = {
        g: float(torch.stack([s[1][g] for s in stats]).std(0).pow(2).mean().sqrt()) for g in stats[0][1]
    }
    unit = torch.stack([s[1]["low"] for s in stats]).mean(0).exp()  # (B, C)
    colour = float((torch.stack([s[0] for s in stats]) / unit).std(0).pow(2).mean().sqrt())
    return {"spread": spread, "colour_spread": colour}


@dataclass(kw_only=True, eq=False)
class ClosedLoop:
    """Per-chunk feedback on band spread and colour, acting on the data prediction of the late steps.

    Attributes:
        groups: band groups whose spread is controlled.
        colour: also control each channel's mean.
        gain: integral gain (fraction of the error beyond the dead band removed per chunk).
        spread: natural spread of the log std per group (a float for all): the dead band.
        colour_spread: natural spread of the channel mean, in units of the reference low-band std.
        decay: factor on a coefficient after a chunk whose error is within the spread.
        max_step: bound on a coefficient's change per chunk (log units; colour: reference std units).
        max_total: bound on a coefficient.
        s_max: the coefficients act at steps with normalised noise level ``s <= s_max``.
        base: corrector applied before the loop's own action in every step, or None.
        dims, level: the band transform (Haar).
        history: one record per finished chunk (error and coefficients), JSON-able.
    """

    groups: tuple[Group, ...] = ("low", "spatial", "temporal")
    colour: bool = True
    gain: float = 0.5
    spread: float | Mapping[str, float] = 0.02
    colour_spread: float = 0.05
    decay: float = 0.8
    max_step: float = 0.05
    max_total: float = 0.3
    s_max: float = 0.3
    base: Corrector | None = None
    dims: Dims = "3d"
    level: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)
    _ref: tuple[Tensor, dict[Group, Tensor]] | None = field(init=False, repr=False, default=None)
    _u: dict[Group, Tensor] = field(init=False, repr=False, default_factory=dict)
    _o: Tensor | None = field(init=False, repr=False, default=None)
    _given: bool = field(init=False, repr=False, default=False)

    def __post_init__(self) -> None:
        for g in self.groups:
            check_choice("band group", g, GROUPS)
        check_choice("dims", self.dims, ("3d", "2d"))
        if not 0.0 < self.gain <= 1.0:
            raise ValueError(f"gain must be in (0, 1], got {self.gain}")
        if not 0.0 <= self.decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {self.decay}")
        for name in ("max_step", "max_total", "s_max", "colour_spread"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        spreads = self.spread.values() if isinstance(self.spread, Mapping) else [self.spread]
        if any(v < 0 for v in spreads):
            raise ValueError(f"spread must be >= 0, got {self.spread}")

    def _spread(self, g: Group) -> float:
        return float(self.spread.get(g, 0.0)) if isinstance(self.spread, Mapping) else float(self.spread)

    def set_reference(self, frames: Tensor) -> None:
        """Use the statistics of real frames ``(B, C, F, H, W)`` (one clip per video) as the reference,
        instead of each rollout's first chunk."""
        check_latents(frames, "reference frames", ranks=(5,))
        self._ref = chunk_moments(frames, dims=self.dims, level=self.level)
        self._given = True

    # -- chunk hooks -------------------------------------------------------------------------------------

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        if index == 0:
            self._u, self._o = {}, None
            self.history.clear()
            if not self._given:
                self._ref = None
        if isinstance(self.base, ChunkAware):
            self.base.start_chunk(index, context=context)

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        """Measure the finished chunk and set the coefficients of the next one."""
        if isinstance(self.base, ChunkAware):
            self.base.end_chunk(chunk, index=index)
        mean, logs = chunk_moments(chunk, dims=self.dims, level=self.level)
        if self._ref is None:
            self._ref = (mean, logs)
            self.history.append({"chunk": index, "reference": True})
            return
        ref_mean, ref_logs = self._ref
        record: dict[str, Any] = {"chunk": index, "error": {}, "log_gain": {}}
        for g in self.groups:
            if g not in logs or g not in ref_logs:
                continue
            e = logs[g] - ref_logs[g]  # (B, C)
            u = self._u.get(g, torch.zeros_like(e))
            self._u[g] = self._update(u, e, self._spread(g))
            record["error"][g] = e.tolist()
            record["log_gain"][g] = self._u[g].tolist()
        if self.colour:
            unit = ref_logs["low"].exp()  # (B, C) reference low-band std: the colour unit
            e = (mean - ref_mean) / unit
            o = self._o / unit if self._o is not None else torch.zeros_like(e)
            self._o = self._update(o, e, self.colour_spread) * unit
            record["colour_error"] = e.tolist()
            record["colour_offset"] = self._o.tolist()
        self.history.append(record)

    def _update(self, u: Tensor, e: Tensor, spread: float) -> Tensor:
        """Leaky integral step with a dead band, bounded per step and in total."""
        outside = e.abs() > spread
        beyond = e - e.sign() * spread
        step = clamp_abs(-self.gain * beyond, self.max_step)
        u_next = torch.where(outside, u + step, u * self.decay)
        return clamp_abs(u_next, self.max_total)

    # -- the corrector -----------------------------------------------------------------------------------

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        check_latents(x0, "x0")
        check_same_shape(x, x0)
        out = self.base(x0, x, step) if self.base is not None else x0
        if scalar_noise_level(step.s, "ClosedLoop") > self.s_max or (not self._u and self._o is None):
            return out
        _, comps = band_moments(out, dims=self.dims, level=self.level)
        B, C = out.shape[:2]
        log_gain = {g: u.to(out.device) for g, u in self._u.items() if u.shape == (B, C)}
        shift = self._o.to(out.device) if self._o is not None and self._o.shape == (B, C) else None
        out = rescale_bands(out, comps, log_gain, shift)
        check_finite(out, "closed-loop corrected x0 (are x or x0 finite?)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "closed_loop",
            "groups": list(self.groups),
            "colour": self.colour,
            "gain": self.gain,
            "spread": dict(self.spread) if isinstance(self.spread, Mapping) else self.spread,
            "colour_spread": self.colour_spread,
            "decay": self.decay,
            "max_step": self.max_step,
            "max_total": self.max_total,
            "s_max": self.s_max,
            "base": self.base.to_dict() if self.base is not None and hasattr(self.base, "to_dict") else None,
            "dims": self.dims,
            "level": self.level,
        }
