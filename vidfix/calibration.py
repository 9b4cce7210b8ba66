"""Calibration: measure a model's SNR-t bias per step and per band group, and turn it into DCW coefficients.

The paper (Fig. 1c) reads the bias off the model output: on the model's own reverse-process samples the
predicted noise has a different norm than on forward-noised real samples at the same timestep. vidfix
measures this per band group of ``eps_hat = (x - alpha x0_hat) / beta`` (latents ``(B, C, F, H, W)``):

1. **forward**: ``x_i = alpha_i x0 + beta_i eps`` from clean reference samples ``x0``;
2. **one-step reverse**: the solver's step from ``x_i`` to ``x_{i+1}``, where the model runs again; the ratio
   of its noise-norm to the forward one at ``i+1``, minus 1, is the gap the step introduced;
3. **sensitivity**: the same forward sample with ``(1 + eps_probe)`` times the noise tells how much the
   model's noise-norm moves per unit of relative noise excess, so a gap converts to a noise excess
   ``delta = gap / sensitivity`` (the model-output norm barely moves at low noise, the sample does);
   steps where the sensitivity is below ``min_sensitivity`` cannot be measured this way and get no
   correction (``reliable`` says which);
4. Eq. 17 adds ``lam * beta_next * eps_hat`` to the step's result, so the coefficient that removes the
   excess is ``lam_i = -delta_{i+1} * sqrt(frac_g) / |eps_hat_g|_i`` per group (``sqrt(frac_g)`` is unit
   noise's RMS in the group): the sign is measured, never assumed.

Optionally (``chain=True``) the full reverse chain from pure noise is measured too (the paper's Fig. 1c,
cumulative gap). Cost: about ``3 * num_steps`` model calls on the reference batch, ``4 * num_steps`` with
the chain (``CalibrationResult.model_calls`` states the exact number).

Example:
    >>> result = calibrate(model, scheduler, reference, num_steps=20)           # doctest: +SKIP
    >>> dcw = result.to_dcw()                                                   # piecewise, signed per group
    >>> result.save("calibration.json")
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from vidfix._checks import check_finite, check_latents
from vidfix.bands import Dims, band_group, dwt
from vidfix.correctors.dcw import DCW
from vidfix.correctors.identity import Identity
from vidfix.protocols import Denoiser, StepInfo
from vidfix.schedules import Schedule
from vidfix.tap import TapEvent, tap

__all__ = [
    "CalibrationResult",
    "band_norms",
    "calibrate",
    "init_noise_sigma",
    "scale_input",
    "scheduler_step",
    "step_schedule",
]

_GROUPS_3D = ("low", "spatial", "temporal")


def band_norms(x: Tensor, *, dims: Dims = "3d", level: int = 1) -> dict[str, float]:
    """RMS of ``x`` per band group (over batch, channels and the group's coefficients, per input element)."""
    if dims == "3d" and (x.dim() == 4 or x.shape[2] < 2):
        dims = "2d"
    bands = dwt(x.detach().double(), dims=dims, level=level)
    n = x.numel()
    energy = {"low": float(bands.low.pow(2).sum()) / n, "spatial": 0.0, "temporal": 0.0}
    for lvl in bands.details:
        for key, coef in lvl.items():
            energy[band_group(key, dims)] += float(coef.pow(2).sum()) / n
    return {g: e**0.5 for g, e in energy.items()}


def _group_fractions(shape: tuple[int, ...] | torch.Size, dims: Dims, level: int) -> dict[str, float]:
    """Share of the wavelet coefficients in each group: the energy share of white noise."""
    if dims == "3d" and shape[2] < 2:
        dims = "2d"
    bands = dwt(torch.zeros(1, 1, *shape[2:]), dims=dims, level=level)
    counts = {"low": bands.low.numel(), "spatial": 0, "temporal": 0}
    for lvl in bands.details:
        for key, coef in lvl.items():
            counts[band_group(key, dims)] += coef.numel()
    total = sum(counts.values())
    return {g: c / total for g, c in counts.items()}


def scale_input(scheduler: Any, x: Tensor, t: Tensor) -> Tensor:
    """``scheduler.scale_model_input`` where the scheduler has one (flow-matching Euler has none)."""
    fn = getattr(type(scheduler), "scale_model_input", None)
    return fn(scheduler, x, t) if fn is not None else x


def init_noise_sigma(scheduler: Any) -> float:
    """Scale of the initial noise (1 where the scheduler does not define it, as for flow matching)."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0))


def scheduler_step(
    scheduler: Any, out: Tensor, t: Tensor, x: Tensor, *, index: int, timesteps: Tensor
) -> Tensor:
    """One ``scheduler.step`` returning the previous sample, for the standard and CogVideoX-DPM signatures."""
    if type(scheduler).__name__ == "CogVideoXDPMScheduler":
        back = timesteps[index - 1] if index > 0 else None
        prev, _ = scheduler.step(out, None, t, back, x, return_dict=False)
        return prev
    return scheduler.step(out, t, x, return_dict=False)[0]


def step_schedule(
    scheduler: Any, num_steps: int, *, device: torch.device | str = "cpu"
) -> tuple[Tensor, list[StepInfo]]:
    """Timesteps and the :class:`StepInfo` of each step, read by a dry run (no model call)."""
    infos: list[StepInfo] = []
    probe = tap(scheduler, Identity(), observer=lambda ev: infos.append(ev.step))
    probe.set_timesteps(num_steps, device=device)
    timesteps = probe.timesteps
    x = torch.zeros(1, 1, 2, 2, 2, device=device)
    for i, t in enumerate(timesteps):
        scale_input(probe, x, t)
        scheduler_step(probe, torch.zeros_like(x), t, x, index=i, timesteps=timesteps)
    if len(infos) != len(timesteps):
        raise RuntimeError(f"dry run saw {len(infos)} steps for {len(timesteps)} timesteps")
    return timesteps, infos


@dataclass
class CalibrationResult:
    """Per-step, per-group measurements and the coefficients derived from them (JSON-able).

    Lists are indexed by step; group dicts hold ``low``, ``spatial`` and (3d) ``temporal``.
    ``lam[g][i]`` is the Eq. 17 coefficient for step ``i`` (0 for the last step, which lands on x0).
    """

    scheduler: str
    num_steps: int
    dims: Dims
    level: int
    model_calls: int
    samples: int
    s: list[float]
    timesteps: list[float]
    forward_norm: dict[str, list[float]]
    one_step_norm: dict[str, list[float]]
    sensitivity: dict[str, list[float]]
    gap: dict[str, list[float]]
    noise_excess: dict[str, list[float]]
    reliable: dict[str, list[bool]]
    lam: dict[str, list[float]]
    chain_norm: dict[str, list[float]] = field(default_factory=dict)
    chain_gap: dict[str, list[float]] = field(default_factory=dict)
    fit: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.lam)

    def to_dcw(
        self, *, form: Literal["piecewise", "fit"] = "piecewise", strength: float = 1.0, **dcw_options: Any
    ) -> DCW:
        """A :class:`DCW` with the measured signed coefficients.

        ``piecewise`` follows the per-step curve exactly (schedule knots at the measured ``s``; coefficient 1
        scales it); ``fit`` uses the best of the paper's parametric schedules per group (see ``self.fit``).
        """
        kwargs: dict[str, Any] = {"dims": self.dims, "level": self.level, "strength": strength} | dcw_options
        for g in _GROUPS_3D:
            if g not in self.lam:
                continue
            if form == "fit":
                kwargs[g] = self.fit[g]["coefficient"]
                kwargs[f"{g}_schedule"] = self.fit[g]["schedule"]
            else:
                pts = [(s, v) for s, v in zip(self.s, self.lam[g]) if s > 0]
                kwargs[g] = 1.0
                kwargs[f"{g}_schedule"] = Schedule.piecewise([p[0] for p in pts], [p[1] for p in pts])
        return DCW(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON data: unmeasured entries (NaN) become None."""
        return _nan_to_none({"type": "vidfix-calibration", "version": 1} | asdict(self))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON; ``"dcw"`` holds the derived corrector so ``DCW.from_dict`` can read it directly."""
        out = Path(path)
        data = self.to_dict() | {"dcw": self.to_dcw().to_dict()}
        out.write_text(json.dumps(data, indent=1, allow_nan=False))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CalibrationResult:
        data = json.loads(Path(path).read_text())
        if data.get("type") != "vidfix-calibration":
            raise ValueError(f"{path} is not a vidfix calibration file (missing type 'vidfix-calibration')")
        names = set(cls.__dataclass_fields__)
        return cls(**{k: _none_to_nan(v) for k, v in data.items() if k in names})


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def _none_to_nan(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _none_to_nan(x) for k, x in v.items()}
    if isinstance(v, list):
        return [float("nan") if x is None else _none_to_nan(x) for x in v]
    return v


def _fit_schedules(s: list[float], lam: list[float]) -> dict[str, Any]:
    """Least-squares coefficient for each parametric schedule; pick the best by residual."""
    best: dict[str, Any] = {}
    ys = torch.tensor(lam, dtype=torch.float64)
    xs = torch.tensor(s, dtype=torch.float64)
    for kind in ("constant", "sigma", "inverse_sigma"):
        basis = torch.as_tensor(Schedule(kind)(xs), dtype=torch.float64)  # type: ignore[arg-type]
        denom = float(basis.pow(2).sum())
        c = float((basis * ys).sum()) / denom if denom > 0 else 0.0
        resid = float((ys - c * basis).pow(2).sum())
        total = float((ys - ys.mean()).pow(2).sum()) or 1e-30
        if not best or resid < best["residual"]:
            best = {"schedule": kind, "coefficient": c, "residual": resid, "r2": 1.0 - resid / total}
    return best


@torch.no_grad()
def calibrate(
    denoiser: Denoiser,
    scheduler: Any,
    reference: Tensor,
    *,
    num_steps: int,
    context: Tensor | None = None,
    dims: Dims = "3d",
    level: int = 1,
    noise_probe: float = 0.05,
    min_sensitivity: float = 0.25,
    chain: bool = False,
    generator: torch.Generator | None = None,
    denoiser_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Measure the SNR-t bias of ``denoiser`` under ``scheduler`` on clean ``reference`` samples.

    Args:
        denoiser: the model, ``denoiser(x, t, context=...) -> model output`` of the scheduler's prediction type.
        scheduler: a supported diffusers scheduler (see ``vidfix.tap.SUPPORTED_SCHEDULERS``); not modified.
        reference: clean latents ``(B, C, F, H, W)`` from the data the model should produce (in
            autoregressive video: real chunks; their preceding frames go in ``context``).
        num_steps: sampling steps to calibrate for (the coefficients are per step of this schedule).
        context: clean context frames ``(B, C, K, H, W)`` passed to every call, or None.
        dims, level: band transform of the measurement (match the DCW you will use).
        noise_probe: relative noise increase used to measure the model's sensitivity.
        min_sensitivity: below this sensitivity a step's gap is not converted (no correction there): the
            model output no longer reflects the noise level (typically the last, low-noise steps).
        chain: also run the full reverse chain from noise (the paper's Fig. 1c), ``num_steps`` more calls.
        generator: one ``torch.Generator`` for all noise draws (results depend only on its seed).
        denoiser_kwargs: extra keyword arguments for every model call.
        progress: called as ``progress(done_calls, total_calls)``.
    """
    check_latents(reference, "reference", ranks=(5,))
    check_finite(reference, "reference")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2 to calibrate, got {num_steps}")
    kw = dict(denoiser_kwargs or {})
    if context is not None:
        kw["context"] = context
    device = reference.device
    timesteps, infos = step_schedule(scheduler, num_steps, device=device)
    n = len(timesteps)
    groups = _GROUPS_3D if dims == "3d" else ("low", "spatial")
    total = 3 * n - 1 + (n if chain else 0)
    calls = 0

    def noise_like(x: Tensor) -> Tensor:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)

    def model(x: Tensor, i: int) -> Tensor:
        nonlocal calls
        t = timesteps[i]
        out = denoiser(x, t, **kw)
        calls += 1
        if progress is not None:
            progress(calls, total)
        check_finite(out, f"model output at step {i}")
        return out

    def probe_step(x: Tensor, i: int) -> tuple[dict[str, float], Tensor]:
        """Model + one solver step from ``x`` at step ``i`` on a fresh scheduler: eps norms and the next sample."""
        seen: list[TapEvent] = []
        sched = tap(scheduler, Identity(), observer=seen.append)
        sched.set_timesteps(num_steps, device=device)
        x_in = scale_input(sched, x, timesteps[i])
        out = model(x_in, i)
        nxt = scheduler_step(sched, out, timesteps[i], x, index=i, timesteps=timesteps)
        ev = seen[-1]
        eps = (ev.x - ev.x0 * ev.step.alpha) / ev.step.beta
        return band_norms(eps, dims=dims, level=level), nxt

    fwd: dict[str, list[float]] = {g: [float("nan")] * n for g in groups}
    one: dict[str, list[float]] = {g: [float("nan")] * n for g in groups}
    sens: dict[str, list[float]] = {g: [float("nan")] * n for g in groups}
    for i, info in enumerate(infos):
        eps = noise_like(reference)
        x_f = reference * info.alpha + eps * info.beta
        nf, x_next = probe_step(x_f, i)
        nf_plus, _ = probe_step(reference * info.alpha + eps * (info.beta * (1 + noise_probe)), i)
        for g in groups:
            fwd[g][i] = nf[g]
            sens[g][i] = (nf_plus[g] / nf[g] - 1.0) / noise_probe
        if i + 1 < n:
            nr, _ = probe_step(x_next, i + 1)
            for g in groups:
                one[g][i + 1] = nr[g]

    gap = {g: [float("nan")] + [one[g][i] / fwd[g][i] - 1.0 for i in range(1, n)] for g in groups}
    reliable = {g: [False] + [sens[g][i] >= min_sensitivity for i in range(1, n)] for g in groups}
    excess = {
        g: [float("nan")] + [gap[g][i] / sens[g][i] if reliable[g][i] else 0.0 for i in range(1, n)]
        for g in groups
    }
    # Coefficient of step i corrects the sample it produces (step i + 1's input); the last step lands on x0.
    # Eq. 17 adds lam * beta_next * eps_hat to the step's result; removing a noise excess delta (relative
    # to unit noise, whose RMS in group g is sqrt(frac_g)) needs lam * |eps_hat_g| = -delta * sqrt(frac_g).
    # delta is kept in [-0.5, 1] and lam in [-1, 1] so one bad estimate cannot wreck a step.
    frac = _group_fractions(reference.shape, dims, level)
    lam = {
        g: [
            max(-1.0, min(1.0, -min(max(excess[g][i + 1], -0.5), 1.0) * frac[g] ** 0.5 / fwd[g][i]))
            if fwd[g][i] > 0
            else 0.0
            for i in range(n - 1)
        ]
        + [0.0]
        for g in groups
    }

    chain_norm: dict[str, list[float]] = {}
    chain_gap: dict[str, list[float]] = {}
    if chain:
        seen: list[TapEvent] = []
        sched = tap(scheduler, Identity(), observer=seen.append)
        sched.set_timesteps(num_steps, device=device)
        x = noise_like(reference) * init_noise_sigma(sched)
        chain_norm = {g: [] for g in groups}
        for i, t in enumerate(timesteps):
            out = model(scale_input(sched, x, t), i)
            x = scheduler_step(sched, out, t, x, index=i, timesteps=timesteps)
            ev = seen[-1]
            norms = band_norms((ev.x - ev.x0 * ev.step.alpha) / ev.step.beta, dims=dims, level=level)
            for g in groups:
                chain_norm[g].append(norms[g])
        chain_gap = {g: [chain_norm[g][i] / fwd[g][i] - 1.0 for i in range(n)] for g in groups}

    s = [float(info.s) for info in infos]
    fit = {g: _fit_schedules(s[:-1], lam[g][:-1]) for g in groups}
    return CalibrationResult(
        scheduler=type(copy.copy(scheduler)).__name__,
        num_steps=num_steps,
        dims=dims,
        level=level,
        model_calls=calls,
        samples=int(reference.shape[0]),
        s=s,
        timesteps=[float(t) for t in timesteps],
        forward_norm=fwd,
        one_step_norm=one,
        sensitivity=sens,
        gap=gap,
        noise_excess=excess,
        reliable=reliable,
        lam=lam,
        chain_norm=chain_norm,
        chain_gap=chain_gap,
        fit=fit,
    )
