"""DCW: differential correction in the wavelet domain (Yu et al., CVPR 2026, arXiv 2604.16044).

After each solver step the paper corrects (Eq. 17)

    x_prev <- x_prev + lam_t * (x_prev - x0_hat)

band by band (Eqs. 18-19: DWT both terms, a coefficient per band, inverse DWT), with ``lam`` following a
schedule over the normalised noise level ``s`` (Eqs. 20-21: low band ``lam_l * s``, detail ``lam_h * (1 - s)``).

vidfix applies the same correction *inside* the step, on the data prediction the solver consumes, so
multistep solvers (UniPC, DPM++) keep it in their history instead of erasing it. With the first-order step
``x_next = c0 x0 + c1 x`` (``c1 = beta_next / beta``, ``c0 = alpha_next - c1 alpha``), per band

    x0' = x0 + (lam / c0) * (x_next - x0)

gives exactly Eq. 17's ``x_prev`` on a DDIM / flow-matching Euler step (for flow: ``c0 = 1 - r``, ``r = s_next/s``,
so ``x0' = x0 + lam r / (1 - r) (x - x0)``). Coefficients may be negative: the sign depends on the model and
is measured (:mod:`vidfix.calibration`), never assumed.

A step that does not lower the noise (``c0 <= 1e-6``: the last step of UniPC/DPM++/Euler with
``final_sigmas_type="sigma_min"``, of DDIM with ``set_alpha_to_one=False``) gets no correction: its result does
not depend on ``x0``, so no in-step correction exists. Steps at noise level 0 are skipped too.

Folded into the model output (:meth:`DCW.correct_output`, what the scheduler tap calls): where the solver
consumes ``v`` with ``x0 = a x + b v``, the correction ``x0' - x0 = W(d)`` (``W`` the band filter with gains
``lam / c0``, ``d = (c0 - 1) x0 + c1 x``) becomes

    v' = v + W(d) / b = v + W(q v + p x),   q = c0 - 1,   p = ((c0 - 1) a + c1) / b

one band-filter call with ``v`` as base; ``x0`` is never formed. For flow matching (``a = 1, b = -s``) and VE
epsilon (``a = 1, b = -sigma``) ``p = 0``: the correction is a band filter of ``v`` alone.

Latents are ``(B, C, F, H, W)`` (3d over F, H, W or 2d per frame) or ``(B, C, H, W)`` frames (always 2d).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vidfix._checks import check_finite, check_latents, check_same_shape
from vidfix.bands import GROUPS, Backend, Dims, Group, PadMode, band_filter
from vidfix.protocols import Scalar, StepInfo
from vidfix.schedules import Schedule, as_schedule

__all__ = ["DCW"]


_MIN_C0 = 1e-6  # steps with c0 at or below this do not lower the noise: no in-step correction


def _is_scalar(v: Scalar) -> bool:
    return not isinstance(v, Tensor) or v.numel() == 1


def _is_zero(v: Scalar) -> bool:
    return (not isinstance(v, Tensor) and v == 0.0) or (
        isinstance(v, Tensor) and v.numel() == 1 and float(v) == 0.0
    )


@dataclass(frozen=True, kw_only=True)
class DCW:
    """Wavelet-band SNR-t correction with a coefficient and a schedule per band group.

    Attributes:
        low, spatial, temporal: coefficient of each band group (``temporal`` is used by 3d only).
        low_schedule, spatial_schedule, temporal_schedule: schedule name or :class:`Schedule` per group
            (paper: ``sigma`` for low, ``inverse_sigma`` for detail).
        dims: ``"3d"`` (F, H, W) or ``"2d"`` per frame (the paper's form).
        level, wavelet, backend, mode: the band transform (see :func:`vidfix.bands.dwt`).
        strength: global multiplier; 0 turns the corrector into the identity.
        check_finite: raise on NaN / inf instead of passing them on (direct calls; inside the scheduler tap,
            the folded path leaves the check to the tap's own ``check_finite``).

    Example:
        >>> dcw = DCW(low=0.005, dims="2d")                           # the released EDM setting
        >>> dcw3 = DCW(low=0.02, spatial=0.01, temporal=-0.01)        # 3d, signed per group
    """

    low: float = 0.0
    spatial: float = 0.0
    temporal: float = 0.0
    low_schedule: str | Schedule = "sigma"
    spatial_schedule: str | Schedule = "inverse_sigma"
    temporal_schedule: str | Schedule = "inverse_sigma"
    dims: Dims = "3d"
    level: int = 1
    wavelet: str = "haar"
    backend: Backend = "auto"
    mode: PadMode = "symmetric"
    strength: float = 1.0
    check_finite: bool = True
    _schedules: dict[Group, Schedule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schedules = {
            "low": as_schedule(self.low_schedule),
            "spatial": as_schedule(self.spatial_schedule),
            "temporal": as_schedule(self.temporal_schedule),
        }
        object.__setattr__(self, "_schedules", schedules)
        # Validate the transform options once, on a tiny tensor, so bad names fail at construction.
        band_filter(
            torch.zeros(1, 1, 2, 2, 2),
            {},
            dims=self.dims,
            level=1,
            wavelet=self.wavelet,
            backend=self.backend,
            mode=self.mode,
        )

    # -- coefficients ------------------------------------------------------------------------------------

    def lambdas(self, s: Scalar) -> dict[Group, Scalar]:
        """Coefficient of each group at normalised noise level ``s`` (Eq. 20-21), strength included."""
        coef = {"low": self.low, "spatial": self.spatial, "temporal": self.temporal}
        out: dict[Group, Scalar] = {}
        for g in GROUPS:
            c = self.strength * coef[g]
            out[g] = 0.0 if c == 0.0 else self._schedules[g](s) * c
        return out

    def _dims_for(self, x: Tensor) -> Dims:
        return "2d" if x.dim() == 4 else self.dims

    def _filter(
        self, gains: dict[Group, Scalar], x: Tensor, terms: list[tuple[Any, Tensor]], base: Tensor
    ) -> Tensor:
        """``base + IDWT(gains ⊙ DWT(sum a_i t_i))`` in as few passes as the transform allows (one fused
        kernel where :func:`vidfix.bands.band_filter` has one for the call)."""
        dims = self._dims_for(x)
        return band_filter(
            x,
            gains,
            dims=dims,
            level=self.level,
            wavelet=self.wavelet,
            backend=self.backend,
            mode=self.mode,
            terms=terms,
            base=base,
        )

    # -- the corrector -----------------------------------------------------------------------------------

    def _step_gains(self, step: StepInfo) -> tuple[dict[Group, Scalar], Scalar, Scalar] | None:
        """Band gains ``lam / c0`` and the step's ``(c0, c1)``, or None where the step gets no correction
        (all coefficients 0, noise level 0, or a step that does not lower the noise)."""
        lam = self.lambdas(step.s)
        if all(_is_zero(v) for v in lam.values()):
            return None
        c0, c1 = step.c0, step.c1
        if isinstance(step.beta, Tensor) and step.beta.numel() > 1:
            # Per-frame / per-token noise levels: tokens already clean (beta = 0) or whose step does not lower
            # the noise get no correction.
            valid = step.beta > 0
            safe_beta = torch.where(valid, step.beta, torch.ones_like(step.beta))
            c1 = torch.where(valid, step.beta_next / safe_beta, torch.zeros_like(safe_beta))
            c0 = step.alpha_next - c1 * step.alpha
            valid = valid & (c0 > _MIN_C0) & ~((c0 == 1.0) & (c1 == 0.0))  # steps to noise 0 need none
            if not bool(valid.any()):
                return None
            c0 = torch.where(valid, c0, torch.ones_like(safe_beta))
            lam = {g: v * valid for g, v in lam.items()}
        elif float(step.beta) <= 0.0 or not float(c0) > _MIN_C0:
            return None
        elif float(c0) == 1.0 and float(c1) == 0.0:
            return None  # a step to noise level 0 lands on x0: x_next - x0 = 0, nothing to correct
        return {g: v / c0 for g, v in lam.items()}, c0, c1

    def _correct_x0(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        """``x0'`` (or ``x0`` itself when the step gets no correction), without the finiteness check."""
        found = self._step_gains(step)
        if found is None:
            return x0
        gains, c0, c1 = found
        # x_next - x0 = (c0 - 1) x0 + c1 x, filtered band-wise without materialising it.
        return self._filter(gains, x0, [(c0 - 1.0, x0), (c1, x)], base=x0)

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        """Corrected data prediction ``x0'`` whose first-order step equals Eq. 17 applied to its result."""
        check_latents(x0, "x0")
        check_same_shape(x, x0)
        out = self._correct_x0(x0, x, step)
        if out is not x0 and self.check_finite:
            check_finite(out, "DCW-corrected x0 (are x or x0 finite?)")
        return out

    def correct_output(self, v: Tensor, x: Tensor, step: StepInfo, *, a: Scalar, b: Scalar) -> Tensor:
        """The same correction folded into the tensor ``v`` a solver consumes, with ``x0 = a x + b v``.

        Returns ``v' = v + W(q v + p x)`` (module docstring), one band filter with ``v`` as base, or ``v`` itself
        when the step gets no correction. Per-element coefficients (per-frame / per-token noise levels) fall
        back to forming ``x0``. No finiteness check here: the caller (the tap) decides.
        """
        check_latents(v, "v")
        check_same_shape(x, v, ("x", "v"))
        if not (_is_scalar(a) and _is_scalar(b) and _is_scalar(step.beta) and _is_scalar(step.s)):
            safe_b = torch.where(b == 0, torch.ones_like(b), b) if isinstance(b, Tensor) else b
            x0 = x * a + v * b
            new = self._correct_x0(x0, x, step)  # no finiteness check (a host sync per step): the tap decides
            return v if new is x0 else v + (new - x0) / safe_b
        found = self._step_gains(step)
        if found is None:
            return v
        gains, c0, c1 = found
        a_f, b_f, c0_f, c1_f = float(a), float(b), float(c0), float(c1)
        # (c0 - 1) a + c1 = a (alpha_next - 1) + c1 (1 - a alpha): exactly 0 for flow and VE epsilon, where the
        # two parts cancel; a remainder at rounding level is dropped instead of costing a pass over x.
        alpha_n, alpha = float(step.alpha_next), float(step.alpha)
        part1, part2 = a_f * (alpha_n - 1.0), c1_f * (1.0 - a_f * alpha)
        num = part1 + part2
        terms: list[tuple[Any, Tensor]] = [(c0_f - 1.0, v)]
        if abs(num) > 1e-12 * (abs(part1) + abs(part2)):
            terms.append((num / b_f, x))
        return self._filter(gains, v, terms, base=v)

    def after_step(self, x_prev: Tensor, x0: Tensor, step: StepInfo) -> Tensor:
        """Eq. 17-19 as written: correct a finished step's ``x_prev`` with the step's ``x0_hat``.

        Use it where only post-step latents can be edited (a pipeline callback); note that UniPC erases
        such edits, which is why the tap corrects inside the step instead.
        """
        check_latents(x_prev, "x_prev")
        check_same_shape(x_prev, x0, ("x_prev", "x0"))
        lam = self.lambdas(step.s)
        if all(_is_zero(v) for v in lam.values()):
            return x_prev
        out = self._filter(lam, x_prev, [(1.0, x_prev), (-1.0, x0)], base=x_prev)
        if self.check_finite:
            check_finite(out, "DCW-corrected sample (are x_prev or x0 finite?)")
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (schedules included) that :meth:`from_dict` reads back."""
        return {
            "type": "dcw",
            "low": self.low,
            "spatial": self.spatial,
            "temporal": self.temporal,
            "schedules": {g: s.to_dict() for g, s in self._schedules.items()},
            "dims": self.dims,
            "level": self.level,
            "wavelet": self.wavelet,
            "mode": self.mode,
            "strength": self.strength,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> DCW:
        sched = {g: Schedule.from_dict(v) for g, v in data.get("schedules", {}).items()}
        kwargs: dict[str, Any] = {
            k: data[k]
            for k in ("low", "spatial", "temporal", "dims", "level", "wavelet", "mode", "strength")
            if k in data
        }
        kwargs |= {f"{g}_schedule": s for g, s in sched.items()}
        return cls(**(kwargs | overrides))
