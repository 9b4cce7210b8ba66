"""Scheduler tap: one call turns a diffusers scheduler into one whose steps apply a corrector.

    >>> scheduler = tap(pipe.scheduler, DCW(low=0.01))      # doctest: +SKIP
    >>> pipe.scheduler = scheduler                          # the pipeline call is unchanged

The tapped scheduler is a copy of the user's scheduler of the *same class* (``type(tapped) is
type(scheduler)``: ``isinstance`` and class-identity checks, ``save_pretrained`` and ``from_config`` behave as for
the original). The tap lives on the instance: its ``step`` (and ``convert_model_output`` for multistep solvers)
are replaced by vidfix's, which read the arguments by name and call the class's own method. The tap's settings
(corrector, layout, observer) are one shared object: ``copy.deepcopy`` (SkyReels copies one scheduler per latent
frame) keeps the tap and shares it, so :func:`disable` (``Stabilized.undo()``) turns every copy back into a plain
scheduler at once. Tapped schedulers pickle (``torch.save``) with their corrector (the observer, a live callback,
is dropped with a warning); ``save_pretrained`` writes the plain diffusers config and warns that the correction is
not in it: :func:`save_tapped` / :func:`load_tapped` keep it.

Where the correction acts: at the data prediction the solver consumes. Single-step schedulers
(FlowMatchEuler, DDIM, Euler, CogVideoX DDIM/DPM) get a corrected model output in ``step``; multistep
solvers (UniPC, DPM-Solver++) get a corrected ``convert_model_output``, so their history and corrector stay
consistent (a latent edit after the step is erased by UniPC). Every supported scheduler writes the consumed
tensor ``v`` (model output, or converted output) linearly, ``x0 = a x + b v``; a corrector with a
``correct_output`` method (DCW) corrects ``v`` directly (one band filter with ``v`` as base, no ``x0``
materialised); any other corrector gets ``x0`` and ``v' = v + (x0' - x0) / b``. A corrector that returns its
input unchanged leaves every step bit-identical to the untapped scheduler.

Where the maths has no correction, the tap passes the step through: a step at noise level 0, and (zero terminal
SNR: CogVideoX, ``rescale_betas_zero_snr=True``) an epsilon-prediction step at alpha-bar = 0, where ``x0`` is
undefined. Step info is finite at zero terminal SNR: ``s`` is the step's sigma over the largest finite sigma of the
run, clamped to 1 (the first CogVideoX step, alpha-bar = 0, has ``s = 1``). A last step that does not lower the
noise (``final_sigmas_type="sigma_min"``, DDIM ``set_alpha_to_one=False``) is handed to the corrector as it is;
DCW leaves such a step uncorrected (see :class:`vidfix.correctors.DCW`).

Layouts: the corrector sees ``(B, C, F, H, W)`` (or ``(B, C, H, W)`` for the per-frame steps of SkyReels).
``layout="BFCHW"`` serves CogVideoX; packed token layouts (LTX) pass a :class:`LatentLayout`. Per-frame steps
can also be corrected together in 3D (:class:`FrameGather`).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import math
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_finite
from vidfix.protocols import Corrector, Parameterization, Scalar, StepInfo

__all__ = [
    "SUPPORTED_SCHEDULERS",
    "TAP_CONFIG_NAME",
    "FrameGather",
    "LatentLayout",
    "Layout",
    "TapEvent",
    "as_layout",
    "corrector_from_dict",
    "corrector_to_dict",
    "disable",
    "is_tapped",
    "load_tapped",
    "original_class",
    "save_tapped",
    "tap",
    "untap",
]

# Scheduler class name -> prediction types the tap supports.
SUPPORTED_SCHEDULERS: dict[str, tuple[str, ...]] = {
    "FlowMatchEulerDiscreteScheduler": ("flow_prediction",),
    "UniPCMultistepScheduler": ("flow_prediction", "epsilon", "v_prediction", "sample"),
    "DPMSolverMultistepScheduler": ("flow_prediction", "epsilon", "v_prediction", "sample"),
    "DDIMScheduler": ("epsilon", "v_prediction", "sample"),
    "EulerDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "CogVideoXDDIMScheduler": ("epsilon", "v_prediction", "sample"),
    "CogVideoXDPMScheduler": ("epsilon", "v_prediction", "sample"),
}

TAP_CONFIG_NAME = "vidfix_tap.json"


class LatentLayout(Protocol):
    """Converts a scheduler's latent layout to ``(B, C, F, H, W)`` and back (e.g. LTX's packed tokens)."""

    def to_bcfhw(self, t: Tensor) -> Tensor: ...

    def from_bcfhw(self, t: Tensor) -> Tensor: ...


Layout: TypeAlias = "Literal['BCFHW', 'BFCHW'] | LatentLayout"


class _Permuted:
    """``(B, F, C, H, W)`` latents (CogVideoX); 4D frames pass through."""

    def to_bcfhw(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if t.dim() == 5 else t  # (B, C, F, H, W)

    def from_bcfhw(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if t.dim() == 5 else t  # (B, F, C, H, W)


class _Native:
    def to_bcfhw(self, t: Tensor) -> Tensor:
        return t

    def from_bcfhw(self, t: Tensor) -> Tensor:
        return t


def as_layout(layout: Layout) -> LatentLayout:
    """The :class:`LatentLayout` for a layout name (``"BCFHW"``, ``"BFCHW"``) or object."""
    if isinstance(layout, str):
        check_choice("layout", layout, ("BCFHW", "BFCHW"))
        return _Native() if layout == "BCFHW" else _Permuted()
    if not (hasattr(layout, "to_bcfhw") and hasattr(layout, "from_bcfhw")):
        raise TypeError("layout must be 'BCFHW', 'BFCHW' or an object with to_bcfhw() and from_bcfhw()")
    return layout


def _layout_name(layout: LatentLayout) -> str | None:
    return "BCFHW" if isinstance(layout, _Native) else "BFCHW" if isinstance(layout, _Permuted) else None


# --------------------------------------------------------------------------------------------------------
# What a step looks like to the corrector.


@dataclass(frozen=True, eq=False)
class TapEvent:
    """What an observer sees of one tapped step (tensors in ``(B, C, F, H, W)`` layout).

    ``x0`` and ``x0_corrected`` are computed when first read (the folded correction never forms them);
    ``x0_corrected is x0`` when the corrector left the step alone.

    Attributes:
        step: the step's :class:`StepInfo` (per-token coefficients in the latents' layout).
        x: the sample the step starts from.
        scheduler: the scheduler that stepped.
        corrected: whether the corrector changed the step.
    """

    step: StepInfo
    x: Tensor
    scheduler: Any
    corrected: bool
    _site: _Site = field(repr=False)
    _v_new: Tensor = field(repr=False)
    _layout: LatentLayout = field(repr=False)

    @functools.cached_property
    def x0(self) -> Tensor:
        """The data prediction before the correction."""
        site = self._site
        return self._layout.to_bcfhw(site.x0 if site.x0 is not None else site.x0_of(site.v))

    @functools.cached_property
    def x0_corrected(self) -> Tensor:
        """The data prediction the solver used (``x0`` itself when uncorrected)."""
        if not self.corrected:
            return self.x0
        return self._layout.to_bcfhw(self._site.x0_of(self._v_new))

    def change(self) -> Tensor:
        """``x0_corrected - x0``, computed from the model-output change (no ``x0`` needed)."""
        return self._layout.to_bcfhw((self._v_new - self._site.v) * self._site.b)


@dataclass
class _Site:
    """One place where a solver consumes ``v`` with ``x0 = a x + b v`` (scheduler layout)."""

    v: Tensor
    x: Tensor
    a: Scalar
    b: Scalar
    step: StepInfo
    x0: Tensor | None = None  # filled when computed

    def x0_of(self, v: Tensor) -> Tensor:
        a, b = self.a, self.b
        if isinstance(a, float) and a == 0.0:
            return v * b if not (isinstance(b, float) and b == 1.0) else v
        return self.x * a + v * b


def _safe(b: Scalar) -> Scalar:
    """``b`` with zeros replaced by 1 (those elements are never corrected: their noise level is 0)."""
    if isinstance(b, Tensor):
        return torch.where(b == 0, torch.ones_like(b), b)
    return b if b != 0 else 1.0


# --------------------------------------------------------------------------------------------------------
# The shared tap state and the methods installed on each tapped scheduler.


@dataclass(eq=False)
class _Tap:
    """Settings of one tap, shared by every copy of the tapped scheduler (``deepcopy`` returns it as is)."""

    corrector: Corrector
    layout: LatentLayout
    observer: Callable[[TapEvent], None] | None
    family: str
    check_finite: bool
    gather: FrameGather | None = None
    active: bool = True

    def __deepcopy__(self, memo: dict[int, Any]) -> _Tap:
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if state["observer"] is not None:
            warnings.warn(
                "pickling a tapped scheduler drops its observer (a live callback); the corrector is kept",
                stacklevel=2,
            )
        state["observer"], state["gather"] = None, None
        return state

    # -- the correction of one site -----------------------------------------------------------------------

    def correct(self, scheduler: Any, site: _Site, *, observe: bool = True) -> Tensor:
        """``v'`` for one site, observed; ``site.v`` itself when the corrector changed nothing."""
        layout, corrector = self.layout, self.corrector
        v5, x5 = layout.to_bcfhw(site.v), layout.to_bcfhw(site.x)
        step5 = _step_to_layout(site.step, layout)
        fold = getattr(corrector, "correct_output", None)
        exact = isinstance(layout, (_Native, _Permuted))  # from_bcfhw inverts to_bcfhw exactly
        if fold is not None:
            new5 = fold(v5, x5, step5, a=_to_layout(site.a, layout), b=_to_layout(site.b, layout))
        else:
            site.x0 = site.x0_of(site.v)
            x0_5 = layout.to_bcfhw(site.x0)
            out = corrector(x0_5, x5, step5)
            new5 = v5 if out is x0_5 else v5 + (out - x0_5) / _safe(_to_layout(site.b, layout))
        if new5 is v5:
            v_new = site.v
        elif exact:
            v_new = layout.from_bcfhw(new5)
        else:
            v_new = site.v + layout.from_bcfhw(new5 - v5)
        if v_new is not site.v and self.check_finite:
            check_finite(v_new, "corrected model output (are the model output and the sample finite?)")
        if observe:
            self.emit(scheduler, site, v_new, step5=step5, x5=x5)
        return v_new

    def emit(
        self,
        scheduler: Any,
        site: _Site,
        v_new: Tensor,
        *,
        step5: StepInfo | None = None,
        x5: Tensor | None = None,
    ) -> None:
        """Tell the observer about one step (``step5``, ``x5``: the site's step and sample in ``(B, C, F, H, W)``
        where the caller has them already)."""
        if self.observer is not None:
            layout = self.layout
            step5 = _step_to_layout(site.step, layout) if step5 is None else step5
            x5 = layout.to_bcfhw(site.x) if x5 is None else x5
            self.observer(TapEvent(step5, x5, scheduler, v_new is not site.v, site, v_new, layout))


def _to_layout(v: Scalar, layout: LatentLayout) -> Scalar:
    return layout.to_bcfhw(v) if isinstance(v, Tensor) and v.numel() > 1 else v


def _step_to_layout(step: StepInfo, layout: LatentLayout) -> StepInfo:
    """Per-token coefficient tensors ``(B, N, 1)`` follow the latents into ``(B, 1, F, H, W)``."""
    values = (step.alpha, step.beta, step.alpha_next, step.beta_next, step.s)
    if not any(isinstance(v, Tensor) and v.numel() > 1 for v in values):
        return step
    alpha, beta, alpha_next, beta_next, s = (_to_layout(v, layout) for v in values)
    return replace(step, alpha=alpha, beta=beta, alpha_next=alpha_next, beta_next=beta_next, s=s)


@functools.lru_cache(maxsize=256)
def _param_names(func: Callable[..., Any]) -> dict[str, int]:
    """Position of each positional parameter of a method (self excluded), read once per function."""
    params = list(inspect.signature(func).parameters.values())[1:]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {p.name: i for i, p in enumerate(p for p in params if p.kind in kinds)}


class _Args:
    """A call's arguments by name, without ``inspect.Signature.bind`` (about 50 us a step)."""

    __slots__ = ("args", "index", "kwargs")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.index = _param_names(func)
        self.args, self.kwargs = args, kwargs

    def get(self, name: str, default: Any = None) -> Any:
        i = self.index.get(name)
        if i is not None and i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, default)

    def has(self, name: str) -> bool:
        i = self.index.get(name)
        return (i is not None and i < len(self.args)) or name in self.kwargs

    def with_value(self, name: str, value: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        i = self.index.get(name)
        if i is not None and i < len(self.args):
            args = list(self.args)
            args[i] = value
            return tuple(args), self.kwargs
        return self.args, {**self.kwargs, name: value}


def _f(v: Any) -> float:
    return float(v.item()) if isinstance(v, Tensor) else float(v)


# --------------------------------------------------------------------------------------------------------
# One site builder per scheduler family: where the solver consumes v, and x0 = a x + b v there.
# Samples are written x = alpha x0 + beta eps throughout (flow: 1 - s, s; VP: sqrt(abar), sqrt(1 - abar);
# VE: 1, sigma).


def _flow_euler_site(sched: Any, a: _Args) -> tuple[_Site, str] | None:
    """FlowMatchEulerDiscreteScheduler: ``x_prev = x + (s_next - s) v``; per-token mode steps ``x + (s - s_next) out``."""
    out, timestep, x = a.get("model_output"), a.get("timestep"), a.get("sample")
    if sched.step_index is None:
        sched._init_step_index(timestep)
    sigmas = sched.sigmas
    per_token = a.get("per_token_timesteps")
    n = len(sigmas) - 1
    if per_token is not None:
        # Same per-token sigmas as the scheduler; its update is x + (s - s_next) * out, i.e. x0 = x + s out.
        s = per_token / sched.config.num_train_timesteps
        grid = sigmas.to(s.device)[:, None, None]
        s_next = ((grid < s[None] - 1e-6) * grid).max(dim=0).values
        s, s_next = s[..., None].to(out.dtype), s_next[..., None].to(out.dtype)  # (B, N, 1)
        step = StepInfo(1 - s, s, 1 - s_next, s_next, s, "flow", sched.step_index, n)
        return _Site(out, x, 1.0, s, step), "model_output"
    i = sched.step_index
    s, s_next = _f(sigmas[i]), _f(sigmas[i + 1])
    if s <= 0.0:
        return None
    return _Site(out, x, 1.0, -s, StepInfo(1 - s, s, 1 - s_next, s_next, s, "flow", i, n)), "model_output"


def _abar(v: Any) -> float:
    """alpha-bar as a float in [0, 1] (diffusers' own ``test_betas`` configs drive it to 0 or below)."""
    a = _f(v)
    return min(max(a, 0.0), 1.0) if math.isfinite(a) else 0.0


def _vp_step_info(sched: Any, timestep: Any, prev_timestep: int) -> StepInfo:
    """VP step info, finite at zero terminal SNR (alpha-bar = 0 at t = 999 with ``rescale_betas_zero_snr``).

    ``s = sigma / sigma_max`` with ``sigma = sqrt((1 - abar) / abar)`` and ``sigma_max`` the largest finite sigma
    of the run's timesteps, clamped to 1 (so the alpha-bar = 0 step has s = 1).
    """
    acp = sched.alphas_cumprod
    t = int(timestep)
    a_t = _abar(acp[t])
    a_prev = _abar(acp[prev_timestep]) if prev_timestep >= 0 else _abar(sched.final_alpha_cumprod)
    sigma_max = _vp_sigma_max(sched)
    if a_t <= 0.0:
        s = 1.0
    else:
        sigma = ((1 - a_t) / a_t) ** 0.5
        s = min(sigma / sigma_max, 1.0) if sigma_max > 0 else 0.0
    matches = (sched.timesteps == t).nonzero()
    index = int(matches[0]) if len(matches) else -1
    return StepInfo(
        a_t**0.5, (1 - a_t) ** 0.5, a_prev**0.5, (1 - a_prev) ** 0.5, s, "vp", index, len(sched.timesteps)
    )


def _vp_sigma_max(sched: Any) -> float:
    """The largest finite sigma of the run's timesteps, computed once per ``set_timesteps`` (it depends on the
    timesteps and alpha-bars only; a new ``timesteps`` tensor, as ``set_timesteps`` makes, recomputes it)."""
    timesteps, acp = sched.timesteps, sched.alphas_cumprod
    cached = sched.__dict__.get("_vidfix_sigma_max")
    if cached is not None and cached[0] is timesteps and cached[1] is acp:
        return cached[2]
    index = timesteps.to(acp.device).long().clamp(0, len(acp) - 1)  # timesteps may be on CUDA, alpha-bars on CPU
    run = acp[index].double().clamp(0.0, 1.0)
    finite = run[run > 0]
    a_min = float(finite.min()) if finite.numel() else 1.0
    sigma_max = ((1 - a_min) / a_min) ** 0.5
    sched.__dict__["_vidfix_sigma_max"] = (timesteps, acp, sigma_max)
    return sigma_max


def _vp_coefficients(pred: str, alpha: float, beta: float) -> tuple[float, float] | None:
    """``(a, b)`` with ``x0 = a x + b out`` for a VP model output, or None where ``x0`` is undefined."""
    if pred == "epsilon":
        return None if alpha <= 0.0 else (1.0 / alpha, -beta / alpha)
    if pred == "v_prediction":
        return None if beta <= 0.0 else (alpha, -beta)
    return (0.0, 1.0)  # sample


def _ddim_site(sched: Any, a: _Args) -> tuple[_Site, str] | None:
    """DDIMScheduler and the CogVideoX DDIM/DPM schedulers (CogVideoXDPM's corrected x0 is the
    ``pred_original_sample`` it returns and the pipeline feeds back as history)."""
    if sched.num_inference_steps is None:
        return None  # let diffusers raise its error
    out, timestep, x = a.get("model_output"), a.get("timestep"), a.get("sample")
    prev = int(timestep) - sched.config.num_train_timesteps // sched.num_inference_steps
    step = _vp_step_info(sched, timestep, prev)
    if _f(step.beta) <= 0.0:
        return None
    ab = _vp_coefficients(sched.config.prediction_type, _f(step.alpha), _f(step.beta))
    if ab is None:
        return None
    return _Site(out, x, ab[0], ab[1], step), "model_output"


def _euler_site(sched: Any, a: _Args) -> tuple[_Site, str] | None:
    """EulerDiscreteScheduler (VE sample ``x = x0 + sigma eps``), deterministic steps only."""
    out, timestep, x = a.get("model_output"), a.get("timestep"), a.get("sample")
    if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)):
        return None  # diffusers raises its error
    if sched.step_index is None:
        sched._init_step_index(timestep)
    i = sched.step_index
    sigmas = sched.sigmas
    sigma, sigma_next = _f(sigmas[i]), _f(sigmas[i + 1])
    s_churn, s_tmin, s_tmax = a.get("s_churn", 0.0), a.get("s_tmin", 0.0), a.get("s_tmax", float("inf"))
    if s_churn > 0 and s_tmin <= sigma <= s_tmax:
        raise ValueError("the vidfix tap supports deterministic Euler steps only (s_churn=0)")
    if sigma <= 0.0:
        return None
    step = StepInfo(1.0, sigma, 1.0, sigma_next, sigma / _f(sigmas.max()), "ve", i, len(sigmas) - 1)
    pred = sched.config.prediction_type
    if pred == "v_prediction":  # denoised = out * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)
        ab = (1.0 / (sigma**2 + 1), -sigma / (sigma**2 + 1) ** 0.5)
    else:
        ab = (0.0, 1.0) if pred == "sample" else (1.0, -sigma)
    return _Site(out, x, ab[0], ab[1], step), "model_output"


def _multistep_site(sched: Any, converted: Tensor, x: Tensor) -> _Site | None:
    """UniPC and DPM-Solver: the converted output (x0, or eps for the noise-prediction variants)."""
    i = sched.step_index
    sigmas = sched.sigmas
    sig, sig_next = sigmas[i], sigmas[i + 1]
    alpha_t, sigma_t = (_f(v) for v in sched._sigma_to_alpha_sigma_t(sig))
    alpha_n, sigma_n = (_f(v) for v in sched._sigma_to_alpha_sigma_t(sig_next))
    if sigma_t <= 0.0:
        return None
    flow = (
        bool(getattr(sched.config, "use_flow_sigmas", False))
        or sched.config.prediction_type == "flow_prediction"
    )
    param: Parameterization = "flow" if flow else "vp"
    s = _f(sig) if flow else _f(sig) / _f(sigmas.max())
    step = StepInfo(alpha_t, sigma_t, alpha_n, sigma_n, min(s, 1.0), param, i, len(sigmas) - 1)
    if _gives_x0(sched):
        return _Site(converted, x, 0.0, 1.0, step)
    if alpha_t <= 0.0:
        return None
    return _Site(converted, x, 1.0 / alpha_t, -sigma_t / alpha_t, step)


def _gives_x0(sched: Any) -> bool:
    if hasattr(sched, "predict_x0"):
        return bool(sched.predict_x0)
    return sched.config.algorithm_type in ("dpmsolver++", "sde-dpmsolver++")


_SINGLE_STEP: dict[str, Callable[[Any, _Args], tuple[_Site, str] | None]] = {
    "flow_euler": _flow_euler_site,
    "ddim": _ddim_site,
    "euler": _euler_site,
}

_FAMILIES: dict[str, str] = {
    "FlowMatchEulerDiscreteScheduler": "flow_euler",
    "UniPCMultistepScheduler": "multistep",
    "DPMSolverMultistepScheduler": "multistep",
    "DDIMScheduler": "ddim",
    "EulerDiscreteScheduler": "euler",
    "CogVideoXDDIMScheduler": "ddim",
    "CogVideoXDPMScheduler": "ddim",  # same names: step(model_output, ..., timestep, ..., sample)
}


def _site_of_step(sched: Any, a: _Args) -> tuple[_Site, str] | None:
    """The site of a ``step`` call of a single-step family (None: pass the step through)."""
    tap_ = sched._vidfix_tap
    return _SINGLE_STEP[tap_.family](sched, a) if tap_.family in _SINGLE_STEP else None


def _tapped_step(sched: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    cls_step = type(sched).step
    tap_: _Tap = sched._vidfix_tap
    if not tap_.active:
        return cls_step(sched, *args, **kwargs)
    if tap_.gather is not None and tap_.gather.active:
        return tap_.gather.step(sched, args, kwargs)
    if tap_.family == "multistep":
        return cls_step(sched, *args, **kwargs)  # corrected in convert_model_output
    a = _Args(cls_step, args, kwargs)
    found = _site_of_step(sched, a)
    if found is None:
        return cls_step(sched, *args, **kwargs)
    site, name = found
    v_new = tap_.correct(sched, site)
    if v_new is not site.v:
        args, kwargs = a.with_value(name, v_new)
    return cls_step(sched, *args, **kwargs)


def _tapped_convert(sched: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ready = sched.__dict__.pop("_vidfix_converted", None)
    if ready is not None:  # corrected ahead of the step by a FrameGather
        return ready
    converted = type(sched).convert_model_output(sched, *args, **kwargs)
    tap_: _Tap = sched._vidfix_tap
    if not tap_.active:
        return converted
    x = kwargs.get("sample", args[2] if len(args) > 2 else None)
    site = None if x is None else _multistep_site(sched, converted, x)
    return converted if site is None else tap_.correct(sched, site)


def _tapped_save_config(sched: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    tap_: _Tap = sched._vidfix_tap
    if tap_.active and not sched.__dict__.get("_vidfix_saving", False):
        warnings.warn(
            f"the vidfix correction ({tap_.corrector!r}) is not part of the diffusers scheduler config and is not "
            "saved with it; use vidfix.tap.save_tapped(scheduler, dir) (or Stabilized.save_pretrained) to keep it",
            stacklevel=4,
        )
    return type(sched).save_config(sched, *args, **kwargs)


def _tapped_reduce_ex(sched: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """``copy.copy``, ``copy.deepcopy`` and ``pickle`` look ``__reduce_ex__`` up on the instance: rebuild the
    copy through :func:`_rebuild`, so its tapped methods belong to the copy (not to the original)."""
    state = {k: v for k, v in sched.__dict__.items() if k not in _METHODS}
    return (_rebuild, (type(sched), state))


def _rebuild(cls: type[Any], state: dict[str, Any]) -> Any:
    """A tapped scheduler from its class and state (the copy's own tapped methods installed)."""
    new = object.__new__(cls)
    new.__dict__.update(state)
    _install(new)
    return new


_METHODS: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]] = {
    "step": _tapped_step,
    "convert_model_output": _tapped_convert,
    "save_config": _tapped_save_config,
    "__reduce_ex__": _tapped_reduce_ex,
}


def _install(sched: Any) -> None:
    """Put the tapped methods on one scheduler instance (its ``_vidfix_tap`` is set)."""
    names = ["step", "save_config", "__reduce_ex__"]
    if sched.__dict__["_vidfix_tap"].family == "multistep":
        names.append("convert_model_output")
    for name in names:
        sched.__dict__[name] = _Method(sched, name)


class _Method:
    """A tapped method on one scheduler instance: ``scheduler.step(...)`` finds it before the class's.

    It keeps the class method's name and signature (pipelines inspect ``scheduler.step`` to choose arguments:
    CogVideoX passes ``eta`` and ``generator`` only when the signature names them). Copies and pickles of the
    scheduler get their own (see ``_tapped_reduce_ex``).
    """

    __slots__ = ("name", "scheduler")

    def __init__(self, scheduler: Any, name: str) -> None:
        self.scheduler, self.name = scheduler, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _METHODS[self.name](self.scheduler, args, kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(getattr(type(self.scheduler), self.name).__get__(self.scheduler))

    @property
    def __name__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<vidfix-tapped {type(self.scheduler).__name__}.{self.name}>"


# --------------------------------------------------------------------------------------------------------
# Per-frame steps corrected together (SkyReels-V2 diffusion forcing in 3D).


@dataclass
class _Pending:
    scheduler: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    sample: Tensor


class FrameGather:
    """Corrects the per-frame steps of one loop iteration together, over the frames they form.

    SkyReels-V2 diffusion forcing steps one deep copy of the scheduler per latent frame on a ``(B, C, H, W)``
    slice, frame after frame, after one model call for the whole window. A 2D corrector can act on each slice
    alone; a 3D one needs the frames together. With a gather installed (``tap(..., gather=g)``) and a plan
    (:meth:`begin`: the frames each coming loop iteration steps, in call order), the tap holds each frame's
    step until the iteration's last frame arrives, stacks the frames' data predictions and samples into
    ``(B, C, F', H, W)`` (per-frame noise levels as ``(1, 1, F', 1, 1)`` coefficients), corrects them in one
    corrector call, and runs every frame's own step with its share. Earlier frames' results are written into
    the sample slices they were given (views of the pipeline's latents, checked); their calls return the
    unchanged sample meanwhile. The result equals the corrector applied to the stacked latents.
    """

    def __init__(self) -> None:
        self._plan: Iterator[Sequence[int]] | None = None
        self._expected: Sequence[int] = ()
        self._pending: list[_Pending] = []

    @property
    def active(self) -> bool:
        """Whether a plan is set (steps are gathered)."""
        return self._plan is not None

    def begin(self, plan: Iterable[Sequence[int]]) -> None:
        """Start a chunk: ``plan`` yields, per loop iteration, the frame indices stepped in call order
        (read lazily, at the iteration's first step; iterations that step nothing are skipped)."""
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} gathered frame steps were never completed")
        self._plan, self._expected = iter(plan), ()

    def end(self) -> None:
        """Stop gathering (steps go through one at a time again)."""
        self._plan, self._expected, self._pending = None, (), []

    def step(self, sched: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """One frame's ``step`` call: held until its iteration is complete."""
        cls_step = type(sched).step
        a = _Args(cls_step, args, kwargs)
        if not self._expected:
            self._expected = self._next_frames()
        x = a.get("sample")
        self._pending.append(_Pending(sched, args, kwargs, x))
        if len(self._pending) < len(self._expected):
            self._check_views()
            held = x.clone()
            return (held,) if not a.get("return_dict", True) else _output(held)
        pending, self._pending, self._expected = self._pending, [], ()
        self._check_views(pending)
        results = _gathered_steps(pending)
        for p, result in zip(pending[:-1], results[:-1]):
            p.sample.copy_(_prev_sample(result))  # the pipeline already stored the held sample there
        return results[-1]

    def _next_frames(self) -> Sequence[int]:
        assert self._plan is not None
        for frames in self._plan:
            if len(frames):
                return frames
        raise RuntimeError(
            "a frame step arrived after the gather plan ran out (the loop and the plan disagree)"
        )

    def _check_views(self, pending: list[_Pending] | None = None) -> None:
        """Held frames are written back later: their samples must be views of one latent tensor."""
        pending = self._pending if pending is None else pending
        if len(pending) < 2 and len(self._expected) < 2:
            return
        base = pending[0].sample
        for p in pending:
            s = p.sample
            if s._base is None or s.untyped_storage().data_ptr() != base.untyped_storage().data_ptr():
                raise RuntimeError(
                    "gathered per-frame steps need each frame's sample to be a view of the same latent tensor "
                    "(as SkyReels passes latents[:, :, i]); use a 2D corrector (dims='2d') for this loop"
                )


def _output(prev: Tensor) -> Any:
    from diffusers.schedulers.scheduling_utils import SchedulerOutput

    return SchedulerOutput(prev_sample=prev)


def _prev_sample(result: Any) -> Tensor:
    return result[0] if isinstance(result, tuple) else result.prev_sample


def _stack(values: list[Scalar], like: Tensor) -> Scalar:
    """Per-frame scalars as one scalar (all equal) or a ``(1, 1, F, 1, 1)`` tensor."""
    floats = [_f(v) for v in values]
    if all(v == floats[0] for v in floats):
        return floats[0]
    return torch.tensor(floats, dtype=like.dtype, device=like.device).view(1, 1, -1, 1, 1)


def _gathered_steps(pending: list[_Pending]) -> list[Any]:
    """Correct the frames' sites together (3D), then run each frame's own step with its share."""
    first = pending[0].scheduler
    tap_: _Tap = first._vidfix_tap
    sites: list[_Site | None] = []
    names: list[str] = []
    for p in pending:
        sched = p.scheduler
        cls_step = type(sched).step
        a = _Args(cls_step, p.args, p.kwargs)
        if tap_.family == "multistep":
            if sched.step_index is None:
                sched._init_step_index(a.get("timestep"))
            converted = type(sched).convert_model_output(sched, a.get("model_output"), sample=a.get("sample"))
            sites.append(_multistep_site(sched, converted, a.get("sample")))
            names.append("converted")
        else:
            found = _site_of_step(sched, a)
            sites.append(None if found is None else found[0])
            names.append("model_output" if found is None else found[1])
    live = [i for i, s in enumerate(sites) if s is not None]
    new: dict[int, Tensor] = {}
    if live:
        group = [sites[i] for i in live]
        assert all(s is not None for s in group)
        stacked = _stack_sites([s for s in group if s is not None])
        v_new = tap_.correct(first, stacked, observe=False)
        for j, i in enumerate(live):
            site_i = sites[i]
            assert site_i is not None
            new[i] = site_i.v if v_new is stacked.v else v_new.select(2, j)
            if tap_.observer is not None:  # one event per frame, as without gathering; the sample slice is
                # overwritten with the frame's result once the iteration completes, so the event keeps a copy
                tap_.emit(pending[i].scheduler, replace(site_i, x=site_i.x.clone()), new[i])
    results = []
    for i, p in enumerate(pending):
        sched, site = p.scheduler, sites[i]
        cls_step = type(sched).step
        args, kwargs = p.args, p.kwargs
        if site is not None and tap_.family == "multistep":
            sched.__dict__["_vidfix_converted"] = new[i]
        elif site is not None:
            args, kwargs = _Args(cls_step, args, kwargs).with_value(names[i], new[i])
        results.append(cls_step(sched, *args, **kwargs))
        sched.__dict__.pop("_vidfix_converted", None)
    return results


def _stack_sites(sites: list[_Site]) -> _Site:
    """Frames' sites ``(B, C, H, W)`` as one ``(B, C, F', H, W)`` site with per-frame coefficients."""
    v = torch.stack([s.v for s in sites], dim=2)  # (B, C, F', H, W)
    x = torch.stack([s.x.to(v.dtype) for s in sites], dim=2)  # (B, C, F', H, W)
    steps = [s.step for s in sites]
    first = steps[0]
    step = StepInfo(
        _stack([st.alpha for st in steps], v),
        _stack([st.beta for st in steps], v),
        _stack([st.alpha_next for st in steps], v),
        _stack([st.beta_next for st in steps], v),
        _stack([st.s for st in steps], v),
        first.param,
        first.index if all(st.index == first.index for st in steps) else -1,
        first.num_steps,
    )
    return _Site(v, x, _stack([s.a for s in sites], v), _stack([s.b for s in sites], v), step)


# --------------------------------------------------------------------------------------------------------
# Public API.


def _supported_base(cls: type) -> str | None:
    for base in cls.__mro__:
        if base.__name__ in SUPPORTED_SCHEDULERS and base.__module__.startswith("diffusers"):
            return base.__name__
    return None


def _supported_text() -> str:
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in SUPPORTED_SCHEDULERS.items())


def _state(scheduler: Any) -> _Tap | None:
    return getattr(scheduler, "__dict__", {}).get("_vidfix_tap")


def is_tapped(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a tapped scheduler whose tap is active (not undone by :func:`disable`)."""
    state = _state(scheduler)
    return state is not None and state.active


def original_class(scheduler: Any) -> type:
    """The user's scheduler class behind a tapped scheduler (a tapped scheduler keeps its class)."""
    return type(scheduler)


def disable(scheduler: Any) -> None:
    """Turn off the tap of ``scheduler`` and of every copy sharing it: they step as the plain scheduler again."""
    state = _state(scheduler)
    if state is not None:
        state.active = False
        if state.gather is not None:
            state.gather.end()


def tap(
    scheduler: Any,
    corrector: Corrector,
    *,
    layout: Layout = "BCFHW",
    observer: Callable[[TapEvent], None] | None = None,
    check_finite: bool = True,
    gather: FrameGather | None = None,
) -> Any:
    """A copy of ``scheduler`` whose steps apply ``corrector`` where the solver consumes the data prediction.

    Args:
        scheduler: a diffusers scheduler of a supported class (see ``SUPPORTED_SCHEDULERS``); untouched.
        corrector: any :class:`vidfix.protocols.Corrector` (DCW, EpsScaling, Identity, ...).
        layout: the latents' layout as the scheduler sees them: ``"BCFHW"`` (Wan, Hunyuan, SkyReels, and
            4D per-frame slices), ``"BFCHW"`` (CogVideoX), or a :class:`LatentLayout` (packed tokens).
        observer: called with a :class:`TapEvent` at every step (drift tracking, debugging).
        check_finite: raise ``FloatingPointError`` when a corrected step holds NaN or inf (one device sync per
            corrected step). Loops that check each chunk themselves (vidfix's sampler) turn it off.
        gather: correct per-frame steps of one iteration together (see :class:`FrameGather`).

    Returns:
        A scheduler of the same class as ``scheduler`` with the same config and state. Tapping a tapped
        scheduler replaces its tap.

    Raises:
        TypeError: the scheduler class is not supported (the message lists the supported ones).
        ValueError: the prediction type is not supported for that class.
    """
    if not callable(corrector):
        raise TypeError(
            f"corrector must be callable as corrector(x0, x, step), got {type(corrector).__name__}"
        )
    cls = type(scheduler)
    name = _supported_base(cls)
    if name is None:
        raise TypeError(
            f"scheduler {cls.__name__} is not supported by the vidfix tap; supported: {_supported_text()}"
        )
    pred = getattr(scheduler.config, "prediction_type", "flow_prediction")
    if name == "FlowMatchEulerDiscreteScheduler":
        pred = "flow_prediction"
    if pred not in SUPPORTED_SCHEDULERS[name]:
        raise ValueError(
            f"{name} with prediction_type={pred!r} is not supported; supported: {_supported_text()}"
        )
    if name == "DPMSolverMultistepScheduler" and pred == "flow_prediction":
        if scheduler.config.algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
            raise ValueError(
                "DPMSolverMultistepScheduler with flow_prediction needs algorithm_type 'dpmsolver++' or 'sde-dpmsolver++'"
            )
    family = _FAMILIES[name]
    state = _Tap(corrector, as_layout(layout), observer, family, check_finite, gather)
    new = untap(scheduler)
    new.__dict__["_vidfix_tap"] = state
    _install(new)
    return new


def untap(scheduler: Any) -> Any:
    """A plain copy of a (tapped) scheduler: same class and state, no tap."""
    new = copy.deepcopy(scheduler)
    for key in ("_vidfix_tap", "_vidfix_converted", "_vidfix_sigma_max", *_METHODS):
        new.__dict__.pop(key, None)
    return new


# --------------------------------------------------------------------------------------------------------
# Saving the correction with the scheduler.


# Corrector types a file can rebuild (``to_dict()["type"]``), and stateful ones it cannot: their state (a
# reference chunk, feedback coefficients, a model) lives in the run, not in their settings.
_LOADABLE = ("dcw", "band_affine", "eps_scaling", "identity", "chain")
_STATEFUL = {"band_anchor": "BandAnchor", "closed_loop": "ClosedLoop", "ttc": "TTC"}
_SAVABLE_TEXT = "DCW, BandAffine, EpsScaling, Identity, and a Chain of these"


def corrector_from_dict(data: dict[str, Any]) -> Corrector:
    """A corrector from its ``to_dict()`` (DCW, BandAffine, EpsScaling, Identity, a Chain of these)."""
    from vidfix.correctors import DCW, BandAffine, Chain, EpsScaling, Identity

    kind = data.get("type")
    if kind == "dcw":
        return DCW.from_dict(data)
    if kind == "band_affine":
        return BandAffine.from_dict(data)
    if kind == "eps_scaling":
        return EpsScaling(scale=float(data["scale"]))
    if kind == "identity":
        return Identity()
    if kind == "chain":
        return Chain(*(corrector_from_dict(member) for member in data["correctors"]))
    if kind in _STATEFUL:
        raise ValueError(
            f"corrector type {kind!r} ({_STATEFUL[kind]}) is stateful and cannot be loaded; "
            f"loadable: {', '.join(map(repr, _LOADABLE))}"
        )
    raise ValueError(f"unknown corrector type {kind!r}; allowed: {', '.join(map(repr, _LOADABLE))}")


def _unloadable(data: dict[str, Any]) -> str | None:
    """The first corrector type in ``data`` (a ``to_dict()``, chains looked into) that cannot be loaded."""
    kind = data.get("type")
    if kind == "chain":
        return next((bad for m in data.get("correctors", ()) if (bad := _unloadable(m)) is not None), None)
    return None if kind in _LOADABLE else str(kind)


def corrector_to_dict(corrector: Corrector) -> dict[str, Any]:
    """The corrector's ``to_dict()``, checked to be one :func:`corrector_from_dict` reads back.

    Raises:
        ValueError: (one line) the corrector, or a member of a Chain, has no ``to_dict()`` or is stateful
            (BandAnchor, ClosedLoop, TTC); the message names its type and the types that can be saved.
    """
    to_dict = getattr(corrector, "to_dict", None)
    if to_dict is None:
        raise ValueError(
            f"cannot save corrector {type(corrector).__name__}: it has no to_dict(); savable: {_SAVABLE_TEXT}"
        )
    data = to_dict()
    bad = _unloadable(data)
    if bad is not None:
        if data.get("type") == bad:
            what = "it is stateful" if bad in _STATEFUL else f"its type {bad!r} cannot be loaded"
        else:
            what = (
                f"its member {_STATEFUL[bad]} is stateful"
                if bad in _STATEFUL
                else f"its member type {bad!r} cannot be loaded"
            )
        raise ValueError(
            f"cannot save corrector {type(corrector).__name__}: {what}; savable: {_SAVABLE_TEXT}"
        )
    return data


def save_tapped(scheduler: Any, directory: str | os.PathLike[str]) -> Path:
    """Save a tapped scheduler: the diffusers config (``scheduler_config.json``, loadable without vidfix) and
    the correction (``vidfix_tap.json``). The corrector must be one :func:`corrector_from_dict` rebuilds
    (DCW, BandAffine, EpsScaling, Identity, a Chain of these; stateful correctors are refused before anything
    is written) and the layout must be a name (``"BCFHW"``/``"BFCHW"``). Returns the tap file's path."""
    state = _state(scheduler)
    if state is None:
        raise ValueError(f"{type(scheduler).__name__} is not tapped; save it with save_pretrained")
    corrector = corrector_to_dict(state.corrector)
    layout = _layout_name(state.layout)
    if layout is None:
        raise ValueError("cannot save the tap: the layout must be 'BCFHW' or 'BFCHW'")
    directory = Path(directory)
    scheduler.__dict__["_vidfix_saving"] = True
    try:
        scheduler.save_pretrained(directory)
    finally:
        scheduler.__dict__.pop("_vidfix_saving", None)
    path = directory / TAP_CONFIG_NAME
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = {"corrector": corrector, "layout": layout, "check_finite": state.check_finite}
    tmp.write_text(json.dumps(text, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def load_tapped(directory: str | os.PathLike[str], **overrides: Any) -> Any:
    """Load what :func:`save_tapped` wrote: the diffusers scheduler, tapped with the saved corrector.

    ``overrides`` go to :func:`tap` (e.g. ``observer=``). Raises ``FileNotFoundError`` naming the missing file.
    """
    import diffusers

    directory = Path(directory)
    path = directory / TAP_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the folder holds no saved vidfix tap (see save_tapped)")
    try:
        data = json.loads(path.read_text())
        corrector = corrector_from_dict(data["corrector"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a vidfix tap file ({err})") from err
    config = json.loads((directory / "scheduler_config.json").read_text())
    cls = getattr(diffusers, config["_class_name"])
    scheduler = cls.from_pretrained(directory)
    options = {"layout": data.get("layout", "BCFHW"), "check_finite": data.get("check_finite", True)}
    return tap(scheduler, corrector, **(options | overrides))
