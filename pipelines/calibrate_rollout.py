"""Rollout calibration: measure what each band group's DCW coefficient does to *drift*, and pick signed
coefficients that cancel it.

The one-step probe (:func:`vidfix.calibration.calibrate`) and the regression calibration
(:func:`vidfix.calibration.calibrate_regression`) measure a model's error at one step; neither sees how an
error feeds back through the context over chunks. This module measures the feedback directly:

1. **Base rollouts**: a few short rollouts (``config.num_chunks`` chunks, a few seeds) with the base
   corrector (none, or a measured fix).
2. **Probes**: the same rollouts (same seeds, same noise) with ``+delta`` and ``-delta`` on one band group's
   DCW coefficient at a time (``2 G`` more rollouts).
3. **Response**: per chunk, the band statistics (log energy of each group, colour mean; see
   :func:`vidfix.calibration.chunk_features`) and any extra per-chunk scorer the caller passes (a judge's
   object score, say), as deviations from their target: the real video's (``reference`` clips) or the
   rollout's own first chunk.
4. **Fit**: :func:`vidfix.calibration.fit_rollout` solves for the coefficients that minimise the drift the
   linear response predicts, with a leave-one-seed-out uncertainty, and refuses groups whose response or
   coefficient is inside the noise (or everything, when the drift is). :func:`fit_rollout_own_band` adds
   one rule: a group whose coefficient would increase its *own* band's deviation (the fit minimises the
   joint drift, so it can pick a group's coefficient for its effect on the other features) is refused and
   the others are refit without it.
5. **Validate**: one more rollout with the fitted coefficients; if it does not reduce the measured drift,
   half of them is tried, then nothing (refused, with the numbers).

It works on any :class:`vidfix.Denoiser` through vidfix's chunked sampler, and writes the same calibration
file as :func:`vidfix.calibration.calibrate` (``method: "rollout"``, details under ``"rollout"``; the
``"dcw"`` entry is what ``vidfix generate --calibration`` applies, on top of the base corrector).
Cost: ``(2 G + 2) x num_chunks x num_steps`` batched model calls (one batch of ``len(seeds)`` videos).

Example:
    >>> result = calibrate_rollout(model, scheduler, config, seeds=range(4), context=real_start,
    ...                            reference=real_chunks)                          # doctest: +SKIP
    >>> result.save("calibration_rollout.json")                                     # doctest: +SKIP
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor
from vidfix.pipelines.sampler import SamplerConfig, sample_video

from vidfix._checks import check_choice, check_latents
from vidfix.bands import Dims, Group
from vidfix.calibration import CalibrationResult, RolloutFit, chunk_features, fit_rollout, step_schedule
from vidfix.correctors.chain import Chain
from vidfix.correctors.dcw import DCW
from vidfix.protocols import Corrector, Denoiser
from vidfix.schedules import Schedule, as_schedule

__all__ = [
    "RolloutCalibrationConfig",
    "Scorer",
    "calibrate_rollout",
    "fit_rollout_own_band",
    "rollout_features",
]

Scorer = Callable[[Tensor], Tensor]  # chunk (B, C, F, H, W) -> one score per video (B,)


@dataclass(frozen=True, kw_only=True)
class RolloutCalibrationConfig:
    """Options of the rollout calibration (the rollout itself is a :class:`SamplerConfig`)."""

    groups: tuple[Group, ...] = ("low", "spatial", "temporal")  # band groups to probe
    delta: float = 0.02  # probe coefficient (Eq. 17 lam), small enough for a linear response
    schedule: str = "constant"  # coefficient schedule over the noise level, for every group
    dims: Dims = "3d"  # DCW bands (2d: no temporal group)
    target: Literal["reference", "first"] = "reference"  # real video's statistics, or the first chunk's
    min_t: float = 2.0  # significance a coefficient (and the drift reduction) needs
    max_coefficient: float = 0.2  # bound on each coefficient
    validate: bool = True  # check the fitted coefficients with one more rollout
    # Band energies around each chunk's own mean ("chunk") or the real video's ("reference": the low band then
    # also holds the colour's wandering over chunks). On the exact testbed "reference" fixes the low band's
    # drift for the exact model, but overshot (2x the true variance after 64 chunks) for a model misreading
    # the noise level: the slow colour loop is not visible in a few probe chunks. Hence "chunk" by default.
    energy_center: Literal["chunk", "reference"] = "chunk"

    def __post_init__(self) -> None:
        check_choice("target", self.target, ("reference", "first"))
        check_choice("energy_center", self.energy_center, ("chunk", "reference"))
        check_choice("dims", self.dims, ("3d", "2d"))
        for g in self.groups:
            check_choice(
                "band group", g, ("low", "spatial", "temporal") if self.dims == "3d" else ("low", "spatial")
            )
        if not self.groups or len(set(self.groups)) != len(self.groups):
            raise ValueError(f"groups must be distinct and non-empty, got {self.groups}")
        if not 0 < self.delta <= self.max_coefficient:
            raise ValueError(
                f"delta must be in (0, max_coefficient={self.max_coefficient}], got {self.delta}"
            )
        as_schedule(self.schedule)


def rollout_features(
    chunk: Tensor, *, dims: Dims, scorers: Mapping[str, Scorer], center: Tensor | None = None
) -> Tensor:
    """Per video: band-group log energies (around ``center`` ``(C,)``, else each chunk's own mean), channel
    means and scorer values, ``(B, Fe)`` float64."""
    feats = [chunk_features(chunk, dims=dims, center=center)]
    for name, fn in scorers.items():
        score = torch.as_tensor(fn(chunk)).double().reshape(-1)
        if score.numel() != chunk.shape[0]:
            raise ValueError(f"scorer {name!r} returned {score.numel()} values for {chunk.shape[0]} videos")
        feats.append(score[:, None])
    return torch.cat(feats, -1)


def fit_rollout_own_band(
    base: Tensor,
    plus: Tensor,
    minus: Tensor,
    *,
    delta: float,
    groups: tuple[str, ...],
    own: Mapping[str, int],
    scale: Tensor | None = None,
    **kwargs: Any,
) -> RolloutFit:
    """:func:`vidfix.calibration.fit_rollout`, plus the rule that no group's coefficient may worsen its own band.

    ``fit_rollout`` minimises the drift of all features together, so a group's coefficient can be chosen for
    its effect on the other features at the expense of the group's own band (on the exact testbed, a model
    misreading the noise level got a low-band coefficient that pushed the low band further from the true
    variance). Here each group ``g`` with a nonzero coefficient is checked with the fitted linear response:
    the predicted deviation of its own band feature ``own[g]`` (seed mean, over the chunks) with all fitted
    coefficients is compared with the same prediction without ``c_g``; if ``c_g`` increases its mean square,
    the group is refused (coefficient 0, reason in ``refused``) and the remaining groups are refit (all of
    ``fit_rollout``'s rules again). One group is refused per round, the worst (in the feature's spread)
    first, until no coefficient worsens its own band.

    Args:
        base, plus, minus, delta, groups, scale: as :func:`vidfix.calibration.fit_rollout`.
        own: group -> index of its own band's feature (last axis of ``base``).
        **kwargs: the other options of :func:`vidfix.calibration.fit_rollout` (``min_t``, ...).

    Returns:
        A :class:`vidfix.calibration.RolloutFit` over all ``groups``: ``coefficients``, ``estimate``,
        ``stderr``, ``drift`` and ``drift_stderr`` of the final fit (a group refused here keeps the estimate
        and standard error of the fit that refused it), ``response`` of the full fit.
    """
    groups = tuple(groups)
    missing = [g for g in groups if g not in own]
    if missing:
        raise ValueError(f"own: no band feature for groups {missing}")
    full = fit_rollout(base, plus, minus, delta=delta, groups=groups, scale=scale, **kwargs)
    e = base.double().mean(0)  # (K, Fe) seed-mean deviations of the base rollouts
    J = ((plus.double() - minus.double()) / (2 * delta)).mean(1)  # (G, K, Fe) response per unit coefficient
    spread = (scale.double() if scale is not None else base.double().std(0).mean(0)).clamp_min(1e-12)
    live = list(range(len(groups)))
    fit = full
    refused_here: dict[str, tuple[str, float, float]] = {}  # group -> (reason, estimate, stderr)
    while True:
        coef = {g: fit.coefficients[g] for g in fit.groups}
        worst: tuple[float, int, str] | None = None
        for j in live:
            g = groups[j]
            if coef[g] == 0.0:
                continue
            f = own[g]
            with_all = e[:, f] + sum(coef[groups[i]] * J[i, :, f] for i in live)
            without = with_all - coef[g] * J[j, :, f]
            after, before = float(with_all.pow(2).mean()), float(without.pow(2).mean())
            excess = (after - before) / float(spread[f]) ** 2
            if after > before and (worst is None or excess > worst[0]):
                reason = (
                    f"worsens its own band: coefficient {coef[g]:+.3g} moves the predicted {g} deviation "
                    f"(RMS over chunks) from {before**0.5:.3g} to {after**0.5:.3g}"
                )
                worst = (excess, j, reason)
        if worst is None:
            break
        _, j, reason = worst
        g = groups[j]
        refused_here[g] = (reason, fit.estimate[g], fit.stderr[g])
        live.remove(j)
        if not live:
            break
        fit = fit_rollout(
            base, plus[live], minus[live], delta=delta, groups=tuple(groups[i] for i in live), scale=scale,
            **kwargs,
        )  # fmt: skip
    if not refused_here:
        return full
    kept = {groups[i] for i in live}
    coefficients = {g: (fit.coefficients[g] if g in kept else 0.0) for g in groups}
    estimate = {g: (fit.estimate[g] if g in kept else refused_here[g][1]) for g in groups}
    stderr = {g: (fit.stderr[g] if g in kept else refused_here[g][2]) for g in groups}
    refused = {g: (fit.refused[g] if g in kept else refused_here[g][0]) for g in groups}
    if kept:
        drift, drift_stderr = fit.drift, fit.drift_stderr
    else:  # nothing left: no correction, the base drift
        drift, drift_stderr = (full.drift[0], full.drift[0]), 0.0
    return RolloutFit(
        groups=groups, coefficients=coefficients, estimate=estimate, stderr=stderr, refused=refused,
        drift=drift, drift_stderr=drift_stderr, response=full.response,
    )  # fmt: skip


def _feature_names(groups: Sequence[str], channels: int, scorers: Mapping[str, Scorer]) -> list[str]:
    return [f"log_energy_{g}" for g in groups] + [f"mean_c{c}" for c in range(channels)] + list(scorers)


@torch.no_grad()
def calibrate_rollout(
    denoiser: Denoiser,
    scheduler: Any,
    config: SamplerConfig,
    *,
    seeds: Sequence[int],
    context: Tensor | None = None,
    reference: Tensor | None = None,
    base: Corrector | None = None,
    options: RolloutCalibrationConfig | None = None,
    scorers: Mapping[str, Scorer] | None = None,
    device: torch.device | str = "cpu",
    denoiser_kwargs: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> CalibrationResult:
    """Measure each band group's effect on drift with short probe rollouts; return signed DCW coefficients.

    Args:
        denoiser, scheduler: as :func:`vidfix.pipelines.sample_video`.
        config: the short rollouts (a handful of chunks; the steps are the ones the coefficients are for).
        seeds: one video (generator seed) each; at least 3 (the uncertainty is leave-one-seed-out).
        context: clean start frames ``(len(seeds), C, K0, H, W)`` (real video), or None.
        reference: real chunks ``(N, C, F, H, W)`` whose statistics are the target (``options.target
            == "reference"``) and whose spread is the natural one; without them the target is the first chunk.
        base: corrector applied in every rollout (the coefficients come on top of it), or None.
        options: see :class:`RolloutCalibrationConfig`.
        scorers: extra per-chunk statistics ``name -> fn(chunk) -> (B,)`` (a judge's scores); their target is
            their value on ``reference`` (or the first chunk).
        device, denoiser_kwargs: as the sampler.
        progress: called as ``progress(done_rollouts, total_rollouts)``.

    Returns:
        A :class:`CalibrationResult` with ``method="rollout"``: ``lam`` holds each step's Eq. 17 coefficient
        (``coefficient x schedule(s)``), ``rollout`` the fit, its uncertainty, refusals and validation.

    Raises:
        ValueError: fewer than 3 seeds, shapes that do not fit, or bad options.
    """
    opts = options or RolloutCalibrationConfig()
    scorers = dict(scorers or {})
    seeds = [int(s) for s in seeds]
    if len(seeds) < 3:
        raise ValueError(f"need at least 3 seeds (the uncertainty leaves one out), got {len(seeds)}")
    groups = tuple(opts.groups)
    use_reference = opts.target == "reference" and reference is not None
    if reference is not None:
        check_latents(reference, "reference", ranks=(5,))
        if reference.shape[1] != config.channels or (reference.shape[2] < 2 and opts.dims == "3d"):
            raise ValueError(
                f"reference has shape {tuple(reference.shape)}; expected (N, {config.channels}, F >= 2, H, W)"
            )
    schedule: Schedule = as_schedule(opts.schedule)
    total = 2 * len(groups) + 1 + (2 if opts.validate else 0)
    done = 0

    def rollout(coefficients: Mapping[str, float]) -> Tensor:
        """Features ``(S, K, Fe)`` of one batch of rollouts with ``coefficients`` on top of ``base``."""
        nonlocal done
        kwargs: dict[str, Any] = {g: float(v) for g, v in coefficients.items()}
        kwargs |= {f"{g}_schedule": schedule for g in ("low", "spatial", "temporal")}
        dcw = DCW(dims=opts.dims, **kwargs)
        corrector: Corrector = dcw if base is None else Chain(copy.deepcopy(base), dcw)
        rows: list[Tensor] = []
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        sample_video(
            denoiser, scheduler, config, generators=gens, corrector=corrector, context=context, device=device,
            denoiser_kwargs=denoiser_kwargs,
            on_chunk=lambda chunk, **_: rows.append(rollout_features(chunk, dims=opts.dims, scorers=scorers, center=center)),
        )  # fmt: skip
        done += 1
        if progress is not None:
            progress(done, total)
        return torch.stack(rows, 1)  # (S, K, Fe)

    center: Tensor | None = None
    target: Tensor | None = None
    spread: Tensor | None = None
    if use_reference:
        assert reference is not None
        if opts.energy_center == "reference":  # the low band then also holds the colour's wandering
            center = reference.double().mean(dim=(0, 2, 3, 4))  # (C,)
        real = rollout_features(
            reference.to(device), dims=opts.dims, scorers=scorers, center=center
        )  # (N, Fe)
        target, spread = real.mean(0), (real.std(0) if real.shape[0] > 1 else None)

    def deviations(f: Tensor) -> Tensor:
        """Each chunk's statistics minus the target: the real video's, or the first chunk's (chunks >= 1)."""
        return f - target if target is not None else f[:, 1:] - f[:, :1]

    zero: dict[str, float] = dict.fromkeys(groups, 0.0)
    f_base = rollout(zero)
    if target is None and f_base.shape[1] < 2:
        raise ValueError(
            "target 'first' needs rollouts of at least 2 chunks (drift is measured against chunk 0)"
        )
    plus = torch.stack([deviations(rollout(zero | {g: opts.delta})) for g in groups])
    minus = torch.stack([deviations(rollout(zero | {g: -opts.delta})) for g in groups])
    e_base = deviations(f_base)
    scale = spread if spread is not None else None
    bands = ("low", "spatial", "temporal")  # the first features, in this order (chunk_features)
    fit = fit_rollout_own_band(
        e_base, plus, minus, delta=opts.delta, groups=groups, own={g: bands.index(g) for g in groups},
        scale=scale, min_t=opts.min_t, max_coefficient=opts.max_coefficient,
    )  # fmt: skip
    used_scale = scale if scale is not None else e_base.double().std(0).mean(0).clamp_min(1e-12)

    def drift(e: Tensor) -> float:
        return float((e.double().mean(0) / used_scale).pow(2).mean())

    coefficients: dict[str, float] = dict(fit.coefficients)
    refused = dict(fit.refused)
    validation: dict[str, Any] = {}
    if opts.validate and any(coefficients.values()):
        tried = []
        for factor in (1.0, 0.5):
            trial = {g: v * factor for g, v in coefficients.items()}
            measured = drift(deviations(rollout(trial)))
            tried.append({"factor": factor, "drift": measured})
            if measured < drift(e_base):
                coefficients = trial
                break
        else:
            coefficients = dict(zero)
            for g in groups:
                if not refused[g]:
                    refused[g] = "validation: the fitted coefficients did not reduce the measured drift"
        validation = {"base_drift": drift(e_base), "trials": tried}
    _, infos = step_schedule(scheduler, config.num_steps)
    s = [float(i.s) for i in infos]
    lam: dict[str, list[float]] = {
        g: [float(coefficients.get(g, 0.0)) * float(schedule(v)) for v in s] for g in groups
    }
    details = {
        "coefficients": coefficients,
        "refused": refused,
        "fit": fit.to_dict(),
        "validation": validation,
        "options": asdict(opts) | {"groups": list(groups)},
        "seeds": seeds,
        "chunks": config.num_chunks,
        "target": "reference" if use_reference else "first",
        "features": _feature_names(
            [g for g in ("low", "spatial", "temporal") if opts.dims == "3d" or g != "temporal"],
            config.channels, scorers,
        ),
        "base": base.to_dict() if base is not None and hasattr(base, "to_dict") else None,
        "deviation_base": e_base.mean(0).tolist(),
    }  # fmt: skip
    return CalibrationResult(
        scheduler=type(scheduler).__name__, num_steps=config.num_steps, dims=opts.dims, level=1,
        model_calls=done * config.num_chunks * config.num_steps, samples=len(seeds), s=s,
        timesteps=[float(t) for t in step_schedule(scheduler, config.num_steps)[0]],
        forward_norm={}, one_step_norm={}, sensitivity={}, gap={}, noise_excess={},
        reliable={g: [not refused[g]] * len(s) for g in groups}, lam=lam,
        fit={g: {"schedule": schedule.kind, "coefficient": coefficients.get(g, 0.0), "residual": 0.0, "r2": 1.0}
             for g in groups},
        method="rollout", rollout=details,
    )  # fmt: skip
