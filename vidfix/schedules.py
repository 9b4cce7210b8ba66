"""Coefficient schedules over the normalised noise level ``s`` in (0, 1] (1 = pure noise).

DCW (Yu et al., CVPR 2026, Eqs. 20-21) weights the low band by ``s`` (strong early, coarse structure)
and the detail bands by ``1 - s`` (strong late, fine detail); constant and piecewise-linear schedules
also work. A schedule maps ``s`` (a float, or a tensor for per-frame/per-token noise levels) to a factor
that multiplies the group's coefficient.

Example:
    >>> Schedule("inverse_sigma")(0.25)
    0.75
    >>> Schedule.piecewise([0.0, 0.5, 1.0], [0.0, 2.0, 1.0])(0.75)
    1.5
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from vidfix._checks import check_choice

__all__ = ["Schedule", "ScheduleKind", "as_schedule"]

ScheduleKind: TypeAlias = Literal["constant", "sigma", "inverse_sigma", "piecewise"]


@dataclass(frozen=True)
class Schedule:
    """A factor over the normalised noise level ``s``.

    Attributes:
        kind: ``constant`` (1), ``sigma`` (s), ``inverse_sigma`` (1 - s) or ``piecewise`` (linear between
            ``knots``, held constant outside them).
        knots: increasing ``s`` values (piecewise only).
        values: factor at each knot (piecewise only).
    """

    kind: ScheduleKind = "constant"
    knots: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        check_choice("schedule", self.kind, get_args(ScheduleKind))
        if self.kind == "piecewise":
            if len(self.knots) < 1 or len(self.knots) != len(self.values):
                raise ValueError("a piecewise schedule needs knots and values of the same, non-zero length")
            if any(b <= a for a, b in zip(self.knots, self.knots[1:])):
                raise ValueError(f"piecewise knots must be strictly increasing, got {self.knots}")
        elif self.knots or self.values:
            raise ValueError(f"knots and values are only for kind='piecewise', not {self.kind!r}")

    @classmethod
    def piecewise(cls, knots: Sequence[float], values: Sequence[float]) -> Schedule:
        """Piecewise-linear schedule; knots are sorted for you."""
        pairs = sorted(zip((float(k) for k in knots), (float(v) for v in values)))
        return cls("piecewise", tuple(k for k, _ in pairs), tuple(v for _, v in pairs))

    def __call__(self, s: float | Tensor) -> float | Tensor:
        if self.kind == "constant":
            return 1.0 if not isinstance(s, Tensor) else torch.ones_like(s)
        if self.kind == "sigma":
            return s
        if self.kind == "inverse_sigma":
            return 1.0 - s
        return self._interp(s)

    def _interp(self, s: float | Tensor) -> float | Tensor:
        xs, ys = self.knots, self.values
        if not isinstance(s, Tensor):
            if s <= xs[0]:
                return ys[0]
            if s >= xs[-1]:
                return ys[-1]
            for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
                if x0 <= s <= x1:
                    return y0 + (y1 - y0) * (s - x0) / (x1 - x0)
            raise AssertionError("unreachable")
        kx = torch.tensor(xs, dtype=s.dtype, device=s.device)
        ky = torch.tensor(ys, dtype=s.dtype, device=s.device)
        sc = s.clamp(kx[0], kx[-1])
        if len(xs) == 1:
            return torch.full_like(s, ys[0])
        idx = torch.searchsorted(kx, sc.contiguous(), right=True).clamp(1, len(xs) - 1)
        lo_x, hi_x, lo_y, hi_y = kx[idx - 1], kx[idx], ky[idx - 1], ky[idx]
        return lo_y + (hi_y - lo_y) * (sc - lo_x) / (hi_x - lo_x)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "piecewise":
            out |= {"knots": list(self.knots), "values": list(self.values)}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        return cls(data["kind"], tuple(data.get("knots", ())), tuple(data.get("values", ())))


def as_schedule(value: str | Schedule) -> Schedule:
    """Accept a schedule name or a :class:`Schedule`."""
    if isinstance(value, Schedule):
        return value
    if value == "piecewise":
        raise ValueError("a piecewise schedule needs knots: use Schedule.piecewise(knots, values)")
    return Schedule(value)  # type: ignore[arg-type]  # a str: Schedule checks the kind
