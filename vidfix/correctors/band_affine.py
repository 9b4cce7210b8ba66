"""Band-affine correction: the most general per-band, per-channel linear fix of one step's data prediction.

Per band group ``g`` (``P_g`` the band projection) and channel ``c``, at normalised noise level ``s``:

    x0' = x0 + sum_g P_g[ h_g(s) x0 + k_g(s) (x_next - x0) ] + o(s),      x_next = c0 x0 + c1 x,

* ``k`` is DCW (Yu et al., CVPR 2026, Eq. 17) in x0 form: on a first-order step ``x0 + k (x_next - x0)``
  lands on Eq. 17's ``x_prev + lam (x_prev - x0)`` with ``lam = k c0`` (flow: ``x_next - x0 = r (x - x0)``,
  ``r = s_next / s``); it corrects the step's noise level (the SNR-t bias).
* ``h`` is a gain on the band's data prediction: it corrects a model whose data prediction is too strong or
  too weak in a band (a gain error ``1 + e`` is undone exactly by ``h = -e / (1 + e)``).
* ``o`` is a per-channel offset of the data prediction (a colour cast; it lives in the low band).

The two directions ``x0`` and ``x_next - x0`` span every per-band linear map of the step's two inputs, so a
regression of the true data on them (:func:`vidfix.calibration.calibrate_regression`) finds all three at
once. Coefficients are tables over the calibrated noise levels (``knots``), linear in between and held
constant outside; each entry holds one value per channel or a single value for all channels.

Latents are ``(B, C, F, H, W)`` (``dims="3d"``) or ``(B, C, H, W)`` frames (always 2d).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_finite, check_latents, check_same_shape, scalar_noise_level
from vidfix.bands import GROUPS, Dims, Group, group_components
from vidfix.protocols import StepInfo

__all__ = ["BandAffine"]

Table = tuple[tuple[float, ...], ...]  # (knots, channels or 1)


def _table(values: Sequence[Sequence[float]] | Sequence[float], n: int, name: str) -> Table:
    rows = tuple(tuple(float(v) for v in (row if isinstance(row, Sequence) else (row,))) for row in values)
    if len(rows) != n:
        raise ValueError(f"{name} needs one row per knot ({n}), got {len(rows)}")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or 0 in widths:
        raise ValueError(
            f"{name} rows must all hold the same number (>= 1) of values, got widths {sorted(widths)}"
        )
    return rows


def _interp(knots: tuple[float, ...], table: Table, s: float) -> tuple[float, ...]:
    """Row of ``table`` at ``s``: linear between knots, the end rows outside."""
    if s <= knots[0]:
        return table[0]
    if s >= knots[-1]:
        return table[-1]
    for j in range(len(knots) - 1):
        lo, hi = knots[j], knots[j + 1]
        if lo <= s <= hi:
            w = (s - lo) / (hi - lo)
            return tuple(a + w * (b - a) for a, b in zip(table[j], table[j + 1]))
    raise AssertionError("unreachable")


@dataclass(frozen=True, kw_only=True)
class BandAffine:
    """Per-band gain ``h``, DCW coefficient ``k`` (x0 form) and colour offset ``o``, per channel, over ``s``.

    Attributes:
        knots: increasing normalised noise levels where the tables are given.
        gain: band group -> one row per knot of ``h`` (one value per channel, or one for all).
        shift: band group -> one row per knot of ``k`` (the x0-form DCW coefficient).
        offset: one row per knot of ``o`` (per channel or one for all); empty: none.
        dims, level: the band transform (Haar).
        check_finite: raise on NaN / inf instead of passing them on.

    Example:
        >>> fix = BandAffine(knots=(0.0, 1.0), gain={"low": [[-0.1], [-0.1]]})   # a 10% low-band x0 cut
    """

    knots: tuple[float, ...]
    gain: Mapping[str, Table] = field(default_factory=dict)
    shift: Mapping[str, Table] = field(default_factory=dict)
    offset: Table = ()
    dims: Dims = "3d"
    level: int = 1
    check_finite: bool = True

    def __post_init__(self) -> None:
        knots = tuple(float(k) for k in self.knots)
        if not knots or any(b <= a for a, b in itertools.pairwise(knots)):
            raise ValueError(f"knots must be a non-empty, strictly increasing sequence, got {self.knots}")
        object.__setattr__(self, "knots", knots)
        for name in ("gain", "shift"):
            tables = getattr(self, name)
            for g in tables:
                check_choice("band group", g, GROUPS)
            object.__setattr__(
                self, name, {g: _table(v, len(knots), f"{name}[{g!r}]") for g, v in tables.items()}
            )
        if self.offset:
            object.__setattr__(self, "offset", _table(self.offset, len(knots), "offset"))
        check_choice("dims", self.dims, ("3d", "2d"))

    def _row(self, table: Table, s: float, like: Tensor) -> Tensor | None:
        row = _interp(self.knots, table, s)
        if not any(row):
            return None
        C = like.shape[1]
        if len(row) not in (1, C):
            raise ValueError(f"coefficients hold {len(row)} channels; the latents have {C}")
        shape = (1, len(row)) + (1,) * (like.dim() - 2)
        return torch.tensor(row, dtype=like.dtype, device=like.device).view(shape)

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        """The corrected data prediction (``x0`` itself where every coefficient is 0)."""
        check_latents(x0, "x0")
        check_same_shape(x, x0)
        s = scalar_noise_level(step.s, "BandAffine")
        gains = {g: self._row(t, s, x0) for g, t in self.gain.items()}
        shifts = {g: self._row(t, s, x0) for g, t in self.shift.items()}
        off = self._row(self.offset, s, x0) if self.offset else None
        if all(v is None for v in (*gains.values(), *shifts.values(), off)):
            return x0
        dims: Dims = "2d" if x0.dim() == 4 else self.dims
        out = x0.clone()
        if any(v is not None for v in gains.values()):
            comps = group_components(x0, dims=dims, level=self.level)
            for g, h in gains.items():
                if h is not None and g in comps:
                    out += comps[g] * h
        if any(v is not None for v in shifts.values()):
            d = step.euler_next(x0, x) - x0  # x_next - x0 of the first-order step
            comps = group_components(d, dims=dims, level=self.level)
            for g, k in shifts.items():
                if k is not None and g in comps:
                    out += comps[g] * k
        if off is not None:
            out += off
        if self.check_finite:
            check_finite(out, "band-affine corrected x0 (are x or x0 finite?)")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "band_affine",
            "knots": list(self.knots),
            "gain": {g: [list(r) for r in t] for g, t in self.gain.items()},
            "shift": {g: [list(r) for r in t] for g, t in self.shift.items()},
            "offset": [list(r) for r in self.offset],
            "dims": self.dims,
            "level": self.level,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BandAffine:
        if data.get("type", "band_affine") != "band_affine":
            raise ValueError(f"not a band-affine corrector: type {data.get('type')!r}")
        return cls(
            knots=tuple(data["knots"]),
            gain={g: v for g, v in data.get("gain", {}).items()},
            shift={g: v for g, v in data.get("shift", {}).items()},
            offset=tuple(tuple(r) for r in data.get("offset", ())),
            dims=data.get("dims", "3d"),
            level=int(data.get("level", 1)),
        )

    def groups(self) -> tuple[Group, ...]:
        """Band groups with any nonzero coefficient."""
        used = {g for t in (self.gain, self.shift) for g, v in t.items() if any(any(r) for r in v)}
        return tuple(g for g in GROUPS if g in used)
