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
from vidfix.bands import Dims, Group, band_group, dwt, group_components
from vidfix.correctors.band_affine import BandAffine
from vidfix.correctors.dcw import DCW
from vidfix.correctors.identity import Identity
from vidfix.protocols import Denoiser, StepInfo
from vidfix.schedules import Schedule
from vidfix.tap import TapEvent, tap

__all__ = [
    "CalibrationResult",
    "RolloutFit",
    "band_affine_from",
    "band_norms",
    "calibrate",
    "calibrate_regression",
    "chunk_features",
    "fit_rollout",
    "init_noise_sigma",
    "pooled_coefficient",
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
    method: str = "one_step"
    affine: dict[str, Any] = field(default_factory=dict)
    rollout: dict[str, Any] = field(default_factory=dict)

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

    def to_corrector(self, *, strength: float = 1.0) -> BandAffine | DCW:
        """The full measured corrector: the band-affine fix of a regression calibration (gain, DCW
        coefficient and colour offset per band and channel), else :meth:`to_dcw`."""
        if self.affine:
            return band_affine_from(self.affine, dims=self.dims, level=self.level, strength=strength)
        return self.to_dcw(strength=strength)

    def to_dict(self) -> dict[str, Any]:
        """Strict JSON data: unmeasured entries (NaN) become None."""
        return _nan_to_none({"type": "vidfix-calibration", "version": 1} | asdict(self))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write JSON; ``"dcw"`` holds the derived corrector so ``DCW.from_dict`` can read it directly."""
        out = Path(path)
        data = self.to_dict() | {"dcw": self.to_dcw().to_dict()}
        if self.affine:  # the full band-affine fix for programs (``to_corrector``); "dcw" stays first
            data["corrector"] = self.to_corrector().to_dict()
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
        basis = torch.as_tensor(Schedule(kind)(xs), dtype=torch.float64)
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


# ----------------------------------------------------------------------------------------------------------
# Regression calibration: the best per-band linear fix of the data prediction (orthogonality principle).


def _probe_event(
    denoiser: Denoiser, scheduler: Any, x: Tensor, i: int, *, num_steps: int, kw: dict[str, Any]
) -> TapEvent:
    """Model call + one solver step at step ``i`` from ``x`` on a fresh tapped scheduler: what the step saw."""
    seen: list[TapEvent] = []
    sched = tap(scheduler, Identity(), observer=seen.append)
    sched.set_timesteps(num_steps, device=x.device)
    timesteps = sched.timesteps
    out = denoiser(scale_input(sched, x, timesteps[i]), timesteps[i], **kw)
    check_finite(out, f"model output at step {i}")
    scheduler_step(sched, out, timesteps[i], x, index=i, timesteps=timesteps)
    return seen[-1]


def _jackknife(
    xtx: Tensor, xty: Tensor, keep: Tensor | None = None, ridge: float = 1e-9
) -> tuple[Tensor, Tensor]:
    """Least squares from per-video sufficient statistics ``xtx`` ``(B, ..., p, p)``, ``xty`` ``(B, ..., p)``:
    the estimate ``(..., p)`` and its leave-one-video-out jackknife standard error (inf where unidentified).
    ``keep`` ``(..., p)`` (bool) drops the other columns from the fit (their coefficient is 0)."""
    if keep is not None:
        k = keep.to(xtx.dtype)
        xtx = xtx * k[..., :, None] * k[..., None, :]
        xty = xty * k

    def solve(a: Tensor, b: Tensor) -> Tensor:
        diag = a.diagonal(dim1=-2, dim2=-1)
        scale = diag.amax(-1, keepdim=True).clamp_min(1e-300)
        live = diag > ridge * scale  # columns with energy: others get 0
        a = a + torch.diag_embed((~live) * scale + ridge * scale)
        return torch.linalg.solve(a, b.unsqueeze(-1)).squeeze(-1) * live

    B = xtx.shape[0]
    total_a, total_b = xtx.sum(0), xty.sum(0)
    theta = solve(total_a, total_b)
    if B < 2:
        return theta, torch.full_like(theta, float("inf"))
    loo = torch.stack([solve(total_a - xtx[b], total_b - xty[b]) for b in range(B)])  # (B, ..., p)
    se = ((B - 1) / B * (loo - loo.mean(0)).pow(2).sum(0)).sqrt()
    dead = total_a.diagonal(dim1=-2, dim2=-1) <= 1e-9 * total_a.diagonal(dim1=-2, dim2=-1).amax(
        -1, keepdim=True
    )
    return theta, torch.where(dead, torch.full_like(se, float("inf")), se)


@torch.no_grad()
def calibrate_regression(
    denoiser: Denoiser,
    scheduler: Any,
    reference: Tensor,
    *,
    num_steps: int,
    context: Tensor | None = None,
    dims: Dims = "3d",
    level: int = 1,
    offset: bool = True,
    repeats: int = 1,
    min_t: float = 3.0,
    target: Callable[[Tensor, StepInfo], Tensor] | None = None,
    generator: torch.Generator | None = None,
    denoiser_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Measure the best per-band, per-channel linear fix of the model's data prediction at every step.

    The posterior mean ``E[x0 | x]`` is the data prediction whose error is orthogonal to every function of
    the sample (the orthogonality principle). So, on forward-noised reference samples ``x = alpha x0 + beta
    eps``, regressing the error ``x0 - x0_hat`` per band group ``g`` and channel on the step's two directions

        x0 - x0_hat ≈ h P_g x0_hat + k P_g (x_next - x0_hat) + o        (o: low band only)

    gives zero for an optimal model and otherwise the fix :class:`vidfix.correctors.BandAffine` applies: a
    data gain ``h``, the DCW coefficient ``k`` (Eq. 17's ``lam = k c0``) and a colour offset ``o``. Standard
    errors come from a leave-one-clip-out jackknife; coefficients with ``|t| < min_t`` are set to 0 (the
    measurement cannot tell them from noise) and said so in ``reliable``. One model call per step and repeat.

    It measures the model against the data on the *forward* process; the solver's own discretization drift
    (which the exact model has too) needs :func:`vidfix.pipelines.calibrate_rollout.calibrate_rollout`.

    Args:
        denoiser, scheduler, reference, num_steps, context, dims, level, generator, denoiser_kwargs,
            progress: as :func:`calibrate` (``reference`` clean chunks ``(B, C, F, H, W)``, ``B >= 2``).
        offset: also fit a per-channel colour offset.
        repeats: noise draws per reference clip and step (more: smaller standard errors).
        min_t: significance a coefficient needs to be used.
        target: ``target(x, step) -> x0*`` regresses on ``x0*`` instead of the clean reference: with the exact
            posterior mean (known in the Gaussian testbed) it gives the population coefficients, free of the
            data's own sampling noise (the oracle the tests compare the plain calibration with).
    """
    check_latents(reference, "reference", ranks=(5,))
    check_finite(reference, "reference")
    if reference.shape[0] < 2:
        raise ValueError(
            f"need at least 2 reference clips (standard errors are per clip), got {reference.shape[0]}"
        )
    if num_steps < 2 or repeats < 1:
        raise ValueError(f"need num_steps >= 2 and repeats >= 1, got {num_steps} and {repeats}")
    kw = dict(denoiser_kwargs or {})
    if context is not None:
        kw["context"] = context
    device = reference.device
    timesteps, infos = step_schedule(scheduler, num_steps, device=device)
    n = len(timesteps)
    groups: tuple[Group, ...] = (
        ("low", "spatial", "temporal") if dims == "3d" and reference.shape[2] > 1 else ("low", "spatial")
    )
    B, C = reference.shape[:2]
    x0 = reference.double()
    p = 3 if offset else 2
    est = {g: torch.zeros(n, C, p, dtype=torch.float64) for g in groups}
    err = {g: torch.full((n, C, p), float("inf"), dtype=torch.float64) for g in groups}
    calls = 0
    for i, info in enumerate(infos):
        xtx = {g: torch.zeros(B, C, p, p, dtype=torch.float64) for g in groups}
        xty = {g: torch.zeros(B, C, p, dtype=torch.float64) for g in groups}
        for _ in range(repeats):
            eps = torch.randn(reference.shape, generator=generator, device=device, dtype=reference.dtype)
            x = reference * info.alpha + eps * info.beta
            ev = _probe_event(denoiser, scheduler, x, i, num_steps=num_steps, kw=kw)
            calls += 1
            if progress is not None:
                progress(calls, n * repeats)
            x0h = ev.x0.double()
            d = ev.step.euler_next(x0h, ev.x.double()) - x0h
            truth = x0 if target is None else target(x, info).double()
            comps = [group_components(t, dims=dims, level=level) for t in (x0h, d, truth - x0h)]
            for g in groups:
                cols = [comps[0][g].flatten(2), comps[1][g].flatten(2)]  # (B, C, N) each
                if offset:
                    cols.append(torch.full_like(cols[0], 1.0 if g == "low" else 0.0))
                feats = torch.stack(cols, -1)  # (B, C, N, p)
                y = comps[2][g].flatten(2)  # (B, C, N)
                xtx[g] += feats.transpose(-1, -2) @ feats
                xty[g] += (feats * y.unsqueeze(-1)).sum(-2)
        for g in groups:
            # Fit all directions, keep the significant ones, refit with those alone (consistent offsets).
            theta, se = _jackknife(xtx[g], xty[g])
            keep = (theta.abs() >= min_t * se) & torch.isfinite(se)
            est[g][i], err[g][i] = _jackknife(xtx[g], xty[g], keep)
            err[g][i] = torch.where(keep, err[g][i], torch.full_like(err[g][i], float("inf")))
    affine = _affine_tables(est, err, infos, groups, offset=offset, min_t=min_t)
    # The DCW part for Eq. 17 users: lam = k c0 (channel mean of the significant k).
    lam: dict[str, list[float]] = {
        g: [float(torch.tensor(affine["shift"][g][i]).mean()) * float(infos[i].c0) for i in range(n)]
        for g in groups
    }
    reliable: dict[str, list[bool]] = {g: [bool(v) for v in affine["reliable"][g]] for g in groups}
    s = [float(info.s) for info in infos]
    return CalibrationResult(
        scheduler=type(copy.copy(scheduler)).__name__, num_steps=num_steps, dims=dims, level=level,
        model_calls=calls, samples=int(B), s=s, timesteps=[float(t) for t in timesteps],
        forward_norm={}, one_step_norm={}, sensitivity={}, gap={}, noise_excess={}, reliable=reliable,
        lam=lam, fit={g: _fit_schedules(s[:-1], lam[g][:-1]) for g in groups}, method="regression",
        affine=affine,
    )  # fmt: skip


def _affine_tables(
    est: dict[Group, Tensor],
    err: dict[Group, Tensor],
    infos: list[StepInfo],
    groups: tuple[Group, ...],
    *,
    offset: bool,
    min_t: float,
) -> dict[str, Any]:
    """Per-step tables (steps in schedule order) of the significant coefficients, plus the raw estimates."""

    def used(i: int, g: Group, j: int) -> list[float]:
        th, se = est[g][i, :, j], err[g][i, :, j]
        keep = (th.abs() >= min_t * se) & torch.isfinite(se)
        return (th * keep).tolist()

    n = len(infos)
    out: dict[str, Any] = {
        "s": [float(info.s) for info in infos],
        "min_t": min_t,
        "gain": {g: [used(i, g, 0) for i in range(n)] for g in groups},
        "shift": {g: [used(i, g, 1) for i in range(n)] for g in groups},
        "estimate": {g: est[g].tolist() for g in groups},
        "stderr": {g: err[g].nan_to_num(posinf=-1.0).tolist() for g in groups},  # -1: not identifiable
        "reliable": {g: [bool(any(used(i, g, 0)) or any(used(i, g, 1))) for i in range(n)] for g in groups},
    }
    out["offset"] = [used(i, "low", 2) for i in range(n)] if offset else []
    return out


def band_affine_from(affine: dict[str, Any], *, dims: Dims, level: int, strength: float = 1.0) -> BandAffine:
    """The :class:`BandAffine` corrector of a regression calibration's tables (``strength`` scales it)."""
    s = affine["s"]
    order = sorted(range(len(s)), key=lambda i: s[i])  # knots increasing
    knots = [s[i] for i in order]

    def rows(table: list[list[float]]) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(strength * v for v in table[i]) for i in order)

    return BandAffine(
        knots=tuple(knots),
        gain={g: rows(t) for g, t in affine["gain"].items()},
        shift={g: rows(t) for g, t in affine["shift"].items()},
        offset=rows(affine["offset"]) if affine.get("offset") else (),
        dims=dims,
        level=level,
    )


_AFFINE_COLUMN = {"gain": 0, "shift": 1, "offset": 2}  # column of a table in ``affine["stderr"]``


def pooled_coefficient(
    affine: dict[str, Any],
    table: Literal["gain", "shift", "offset"],
    group: str | None = None,
    *,
    channel: int | None = None,
) -> tuple[list[float], float]:
    """The kept coefficients of one regression-calibration table and their inverse-variance weighted mean.

    ``table`` is ``gain`` or ``shift`` (per band ``group``) or ``offset`` (per channel, no group); the
    weights are ``1 / stderr^2`` from the calibration's own jackknife errors (``affine["stderr"]``). Only
    measurable (step, channel) pairs count: those the calibration kept (nonzero), of ``channel`` if given.
    Returns ``(kept, pooled)``; ``pooled`` is 0 when nothing was kept.

    Not the plain mean: a pair is kept at ``|t| >= min_t``, so a high-noise pair can be a third off and still
    be kept (the marginal ones are also biased away from 0 by that selection), and a calibration's reference
    clips are the same at every step, so their sampling error is shared by the high-noise steps instead of
    averaging out. A kept pair with a zero standard error (an exact measurement) outweighs all others.

    Example:
        >>> aff = {"gain": {"low": [[0.1, 0.0], [0.2, 0.0]]},
        ...        "stderr": {"low": [[[0.01, 1, 1], [1, 1, 1]], [[0.02, 1, 1], [1, 1, 1]]]}}
        >>> kept, pooled = pooled_coefficient(aff, "gain", "low")
        >>> kept, round(pooled, 4)
        ([0.1, 0.2], 0.12)
    """
    if table not in _AFFINE_COLUMN:
        raise ValueError(f"table must be one of {', '.join(_AFFINE_COLUMN)}, got {table!r}")
    if (table == "offset") != (group is None):
        raise ValueError(f"table {table!r} {'takes no' if table == 'offset' else 'needs a'} band group")
    if "stderr" not in affine:
        raise ValueError("affine has no 'stderr' table (not a regression calibration?)")
    col = _AFFINE_COLUMN[table]
    rows = affine[table] if group is None else affine[table][group]
    se = affine["stderr"][group or "low"]
    pairs = [(v, float(se[i][j][col])) for i, row in enumerate(rows) for j, v in enumerate(row)
             if v != 0.0 and (channel is None or j == channel)]  # fmt: skip
    kept = [v for v, _ in pairs]
    exact = [v for v, e in pairs if e == 0.0]
    if exact:
        return kept, sum(exact) / len(exact)
    weights = [e**-2 for _, e in pairs]
    return kept, (sum(v * w for v, w in zip(kept, weights)) / sum(weights) if pairs else 0.0)


# ----------------------------------------------------------------------------------------------------------
# Rollout calibration maths: from the drift response of a few short rollouts to signed coefficients.
# (The rollouts themselves need the chunked sampler: vidfix.pipelines.calibrate_rollout.)


def chunk_features(
    chunk: Tensor, *, dims: Dims = "3d", level: int = 1, center: Tensor | None = None
) -> Tensor:
    """Drift statistics of each video's chunk ``(B, C, F, H, W)``: ``(B, G + C)`` float64.

    The first ``G`` columns are the log mean-square energy of each band group (averaged over channels, around
    ``center`` ``(C,)`` if given, else around each channel's chunk mean), in the order ``low, spatial[,
    temporal]``; the last ``C`` are the channel means (colour).
    """
    check_latents(chunk, "chunk", ranks=(5,))
    x = chunk.detach().double()
    means = x.mean(dim=(2, 3, 4))  # (B, C)
    mu = center.to(x).view(1, -1, 1, 1, 1) if center is not None else means[..., None, None, None]
    if dims == "3d" and x.shape[2] < 2:
        dims = "2d"
    comps = group_components(x - mu, dims=dims, level=level)
    energy = torch.stack([c.pow(2).mean(dim=(2, 3, 4)) for c in comps.values()], -1)  # (B, C, G)
    return torch.cat([energy.clamp_min(1e-30).log().mean(1), means], -1)


@dataclass(frozen=True)
class RolloutFit:
    """Signed per-group coefficients that minimise the measured drift, with their uncertainty.

    Attributes:
        groups: the probed band groups.
        coefficients: group -> coefficient to use (0 where refused).
        estimate: group -> the unrefused least-squares estimate.
        stderr: group -> jackknife (leave one seed out) standard error of the estimate.
        refused: group -> reason it gets no correction ("" where it does).
        drift: normalised drift ``mean((e / scale)^2)`` of the base rollouts and the one the linear response
            predicts with ``coefficients``.
        drift_stderr: jackknife standard error of the predicted drift reduction.
        response: group -> per-feature response ``d e / d c`` (seed mean), for plots and programs.
    """

    groups: tuple[str, ...]
    coefficients: dict[str, float]
    estimate: dict[str, float]
    stderr: dict[str, float]
    refused: dict[str, str]
    drift: tuple[float, float]
    drift_stderr: float
    response: dict[str, list[float]]

    def to_dict(self) -> dict[str, Any]:
        return _nan_to_none(asdict(self) | {"groups": list(self.groups), "drift": list(self.drift)})


def fit_rollout(
    base: Tensor,
    plus: Tensor,
    minus: Tensor,
    *,
    delta: float,
    groups: tuple[str, ...],
    scale: Tensor | None = None,
    min_t: float = 2.0,
    max_coefficient: float = 0.2,
    ridge: float = 1e-6,
) -> RolloutFit:
    """Coefficients that cancel the drift the rollouts measured, from their central-difference response.

    Args:
        base: drift deviations of the base rollouts, ``(S, K, Fe)`` (seed, chunk, feature): each chunk's
            statistic minus its target (the real video's, or the rollout's own first chunk).
        plus, minus: the same with ``+delta`` / ``-delta`` on one group at a time, ``(G, S, K, Fe)``; seeds
            and noise shared with ``base`` (common random numbers keep the differences clean).
        delta: probe size.
        groups: names of the ``G`` probed groups.
        scale: natural spread of each feature ``(Fe,)`` (deviations are measured in it); default the base
            rollouts' seed spread.
        min_t: a coefficient below ``min_t`` standard errors is refused; so is all of it when the drift
            reduction it predicts is below ``min_t`` of its standard error (the drift is inside the noise).
        max_coefficient: bound on each coefficient (the linear response is only trusted near 0).
        ridge: relative Tikhonov term of the least squares.

    The linear model ``e(c) = e_base + sum_g J_g c_g`` (``J_g = (e_plus - e_minus) / (2 delta)``) is fitted to
    the seed means; minimising ``sum (e(c) / scale)^2`` is a small least-squares problem. Standard errors
    come from leaving one seed out (``S >= 3``).
    """
    S, K, Fe = base.shape
    G = len(groups)
    if plus.shape != (G, S, K, Fe) or minus.shape != plus.shape:
        raise ValueError(
            f"plus and minus must have shape {(G, S, K, Fe)}, got {tuple(plus.shape)} and {tuple(minus.shape)}"
        )
    if S < 3:
        raise ValueError(f"need at least 3 seeds for an uncertainty (leave-one-out), got {S}")
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")
    base, plus, minus = base.double(), plus.double(), minus.double()
    if scale is None:
        scale = base.std(0).mean(0)  # (Fe,) seed spread, averaged over chunks
    scale = scale.double().clamp_min(1e-12)
    e = base / scale  # (S, K, Fe)
    J = (plus - minus) / (2 * delta) / scale  # (G, S, K, Fe)

    def solve(idx: Tensor, live: list[int]) -> tuple[Tensor, float, float]:
        """Coefficients (G,), drift before and after, on the seeds ``idx``, with only ``live`` groups."""
        eb = e[idx].mean(0).flatten()  # (K*Fe,)
        Jb = J[:, idx].mean(1).flatten(1)  # (G, K*Fe)
        c = torch.zeros(G, dtype=torch.float64)
        if live:
            Jl = Jb[live]  # (L, K*Fe)
            A = Jl @ Jl.T
            A = A + ridge * (A.diagonal().mean().clamp_min(1e-30)) * torch.eye(len(live), dtype=torch.float64)
            c[live] = torch.linalg.solve(A, -(Jl @ eb)).clamp(-max_coefficient, max_coefficient)
        before = float(eb.pow(2).mean())
        after = float((eb + c @ Jb).pow(2).mean())
        return c, before, after

    everyone = torch.arange(S)
    loo = [torch.cat([everyone[:s], everyone[s + 1 :]]) for s in range(S)]

    def jack(values: Tensor) -> Tensor:
        return ((S - 1) / S * (values - values.mean(0)).pow(2).sum(0)).sqrt()

    live = list(range(G))
    refused = {g: "" for g in groups}
    # Response inside the noise: a group whose effect on the drift statistics is not measurable.
    resp = J.mean(1).flatten(1).norm(dim=1)  # (G,)
    resp_se = jack(torch.stack([J[:, i].mean(1).flatten(1).norm(dim=1) for i in loo]))
    for j, g in enumerate(groups):
        if not resp[j] > min_t * resp_se[j]:
            refused[g] = (
                f"no measurable response (|J| {float(resp[j]):.3g} vs stderr {float(resp_se[j]):.3g})"
            )
            live.remove(j)
    estimate, _, _ = solve(everyone, live)
    stderr = jack(torch.stack([solve(i, live)[0] for i in loo]))
    # Coefficients inside their own noise: refuse them and refit the others.
    for j, g in enumerate(groups):
        if j in live and not abs(float(estimate[j])) > min_t * float(stderr[j]):
            refused[g] = f"coefficient inside the noise ({float(estimate[j]):+.3g} ± {float(stderr[j]):.3g})"
            live.remove(j)
    coef, before, after = solve(everyone, live)
    gains = torch.tensor([solve(i, live)[1] - solve(i, live)[2] for i in loo], dtype=torch.float64)
    gain_se = float(jack(gains[:, None])[0])
    if live and not (before - after) > min_t * gain_se:
        for j in live:
            refused[groups[j]] = (
                f"drift inside the noise (predicted reduction {before - after:.3g} ± {gain_se:.3g})"
            )
        coef, after = torch.zeros(G, dtype=torch.float64), before
    return RolloutFit(
        groups=tuple(groups),
        coefficients={g: float(coef[j]) for j, g in enumerate(groups)},
        estimate={g: float(estimate[j]) for j, g in enumerate(groups)},
        stderr={g: float(stderr[j]) for j, g in enumerate(groups)},
        refused=refused,
        drift=(before, after),
        drift_stderr=gain_se,
        response={g: (J[j].mean(0) * 1.0).flatten().tolist() for j, g in enumerate(groups)},
    )
