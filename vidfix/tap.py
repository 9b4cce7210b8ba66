"""Scheduler tap: one call turns a diffusers scheduler into one whose steps apply a corrector.

    >>> scheduler = tap(pipe.scheduler, DCW(low=0.01))      # doctest: +SKIP
    >>> pipe.scheduler = scheduler                          # the pipeline call is unchanged

The tapped scheduler is an instance of a subclass of the user's own scheduler class, made on the fly,
with the same config and state: ``isinstance`` checks, ``save_pretrained`` and ``from_config`` work, and
``copy.deepcopy`` (SkyReels copies one scheduler per latent frame) keeps the tap because it lives on the class.

Where the correction acts: at the data prediction the solver consumes. Single-step schedulers
(FlowMatchEuler, DDIM, Euler, CogVideoX DDIM/DPM) get a corrected model output in ``step``; multistep
solvers (UniPC, DPM-Solver++) get a corrected ``convert_model_output``, so their history and corrector stay
consistent (a latent edit after the step is erased by UniPC). A corrector that returns its input unchanged
leaves every step bit-identical.

Layouts: the corrector sees ``(B, C, F, H, W)`` (or ``(B, C, H, W)`` for the per-frame steps of SkyReels).
``layout="BFCHW"`` serves CogVideoX; packed token layouts (LTX) pass a :class:`LatentLayout`.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, TypeAlias

import torch
from torch import Tensor

from vidfix._checks import check_choice
from vidfix.protocols import Corrector, Parameterization, Scalar, StepInfo

__all__ = [
    "SUPPORTED_SCHEDULERS",
    "LatentLayout",
    "Layout",
    "TapEvent",
    "is_tapped",
    "original_class",
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


class LatentLayout(Protocol):
    """Converts a scheduler's latent layout to ``(B, C, F, H, W)`` and back (e.g. LTX's packed tokens)."""

    def to_bcfhw(self, t: Tensor) -> Tensor: ...

    def from_bcfhw(self, t: Tensor) -> Tensor: ...


Layout: TypeAlias = "Literal['BCFHW', 'BFCHW'] | LatentLayout"


class _Permuted:
    """``(B, F, C, H, W)`` latents (CogVideoX)."""

    def to_bcfhw(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if t.dim() == 5 else t  # (B, C, F, H, W)

    def from_bcfhw(self, t: Tensor) -> Tensor:
        return t.transpose(1, 2) if t.dim() == 5 else t  # (B, F, C, H, W)


class _Native:
    def to_bcfhw(self, t: Tensor) -> Tensor:
        return t

    def from_bcfhw(self, t: Tensor) -> Tensor:
        return t


def _as_layout(layout: Layout) -> LatentLayout:
    if isinstance(layout, str):
        check_choice("layout", layout, ("BCFHW", "BFCHW"))
        return _Native() if layout == "BCFHW" else _Permuted()
    if not (hasattr(layout, "to_bcfhw") and hasattr(layout, "from_bcfhw")):
        raise TypeError("layout must be 'BCFHW', 'BFCHW' or an object with to_bcfhw() and from_bcfhw()")
    return layout


@dataclass(frozen=True)
class TapEvent:
    """What an observer sees of one tapped step (in ``(B, C, F, H, W)`` layout)."""

    step: StepInfo
    x: Tensor
    x0: Tensor
    x0_corrected: Tensor
    scheduler: Any


# --------------------------------------------------------------------------------------------------------
# Shared machinery.


def _f(v: Any) -> float:
    return float(v.item()) if isinstance(v, Tensor) else float(v)


class _TapMixin:
    """Methods shared by every tapped scheduler class; the class attributes are set per tap."""

    _vidfix_corrector: Corrector
    _vidfix_layout: LatentLayout
    _vidfix_observer: Callable[[TapEvent], None] | None
    _vidfix_original: type

    def _vidfix_delta(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor | None:
        """Correction of ``x0`` in the scheduler's layout, or None when the corrector left it untouched."""
        layout = self._vidfix_layout
        x0_5, x_5 = layout.to_bcfhw(x0), layout.to_bcfhw(x)
        step5 = _step_to_layout(step, layout, x)
        new = self._vidfix_corrector(x0_5, x_5, step5)
        if self._vidfix_observer is not None:
            self._vidfix_observer(TapEvent(step5, x_5, x0_5, new, self))
        if new is x0_5:
            return None
        return layout.from_bcfhw(new - x0_5)


def _step_to_layout(step: StepInfo, layout: LatentLayout, x: Tensor) -> StepInfo:
    """Per-token coefficient tensors ``(B, N, 1)`` follow the latents into ``(B, 1, F, H, W)``."""
    fields = {}
    for name in ("alpha", "beta", "alpha_next", "beta_next", "s"):
        v = getattr(step, name)
        if isinstance(v, Tensor) and v.numel() > 1:
            fields[name] = layout.to_bcfhw(v)
    return replace(step, **fields) if fields else step  # type: ignore[arg-type]


@functools.lru_cache(maxsize=64)
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(func)


def _call(method: Callable[..., Any], bound: inspect.BoundArguments) -> Any:
    """Call ``method`` with ``bound``'s arguments (minus the self placeholder)."""
    args = bound.args[1:]
    return method(*args, **bound.kwargs)


def _bind(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> inspect.BoundArguments:
    """Arguments of a bound ``method`` call by name (the signature is read once per function)."""
    sig = _signature(getattr(method, "__func__", method))
    return sig.bind(None, *args, **kwargs)  # None stands in for self


# x0 from a model output, and the model-output change that moves x0 by delta, per prediction type, for
# samples written x = alpha x0 + beta eps (v = alpha eps - beta x0).


def _x0_from(pred: str, out: Tensor, x: Tensor, alpha: Scalar, beta: Scalar) -> Tensor:
    if pred == "epsilon":
        return (x - out * beta) / alpha
    if pred == "v_prediction":
        return x * alpha - out * beta
    if pred == "sample":
        return out
    raise AssertionError(pred)


def _out_delta(pred: str, delta: Tensor, alpha: Scalar, beta: Scalar) -> Tensor:
    if pred == "epsilon":
        return delta * (-alpha / beta)
    if pred == "v_prediction":
        return delta * (-1.0 / beta)
    if pred == "sample":
        return delta
    raise AssertionError(pred)


# --------------------------------------------------------------------------------------------------------
# One mixin per scheduler family.


class _FlowEulerTap(_TapMixin):
    """FlowMatchEulerDiscreteScheduler: ``x_prev = x + (s_next - s) v``; per-token mode steps ``x + (s - s_next) out``."""

    def step(self, *args: Any, **kwargs: Any) -> Any:
        sup: Any = super()
        me: Any = self
        bound = _bind(sup.step, args, kwargs)
        a = bound.arguments
        out, timestep, x = a["model_output"], a["timestep"], a["sample"]
        if me.step_index is None:
            me._init_step_index(timestep)
        sigmas = me.sigmas
        per_token = a.get("per_token_timesteps")
        s: Any
        s_next: Any
        safe_s: Any
        if per_token is not None:
            # Same per-token sigmas as the scheduler; its update is x + (s - s_next) * out, i.e. v = -out.
            s = per_token / me.config.num_train_timesteps
            grid = sigmas.to(s.device)[:, None, None]
            s_next = ((grid < s[None] - 1e-6) * grid).max(dim=0).values
            s, s_next = s[..., None].to(out.dtype), s_next[..., None].to(out.dtype)  # (B, N, 1)
            sign = -1.0
            safe_s = torch.where(s > 0, s, torch.ones_like(s))
        else:
            i = me.step_index
            s, s_next = _f(sigmas[i]), _f(sigmas[i + 1])
            sign, safe_s = 1.0, s
        if isinstance(s, float) and s <= 0.0:
            return _call(sup.step, bound)
        x = x.to(out.dtype)
        x0 = torch.add(x, out, alpha=-s) if sign == 1.0 else x + out * s  # x0 = x - s v, v = sign * out
        step = StepInfo(1 - s, s, 1 - s_next, s_next, s, "flow", me.step_index, len(sigmas) - 1)
        delta = self._vidfix_delta(x0, x, step)
        if delta is not None:
            # v' = (x - x0') / s = v - delta / s
            a["model_output"] = torch.add(out, delta, alpha=-1.0 / s) if sign == 1.0 else out + delta / safe_s
        return _call(sup.step, bound)


def _vp_step_info(self: Any, timestep: Any, prev_timestep: int) -> StepInfo:
    acp = self.alphas_cumprod
    t = int(timestep)
    a_t = _f(acp[t])
    a_prev = _f(acp[prev_timestep]) if prev_timestep >= 0 else _f(self.final_alpha_cumprod)
    t_max = int(self.timesteps.max())
    a_max = _f(acp[t_max])
    sigma, sigma_max = ((1 - a_t) / a_t) ** 0.5, ((1 - a_max) / a_max) ** 0.5
    index = int((self.timesteps == t).nonzero()[0]) if (self.timesteps == t).any() else -1
    return StepInfo(
        a_t**0.5,
        (1 - a_t) ** 0.5,
        a_prev**0.5,
        (1 - a_prev) ** 0.5,
        min(sigma / sigma_max, 1.0),
        "vp",
        index,
        len(self.timesteps),
    )


class _DDIMTap(_TapMixin):
    """DDIMScheduler and the CogVideoX DDIM/DPM schedulers: x0 from the output, corrected, output rebuilt.

    Arguments are bound by name, so CogVideoXDPM's ``step(model_output, old_pred_original_sample, timestep,
    timestep_back, sample)`` works too; its corrected x0 is the ``pred_original_sample`` it returns and the
    pipeline feeds back as history."""

    def step(self, *args: Any, **kwargs: Any) -> Any:
        sup: Any = super()
        me: Any = self
        bound = _bind(sup.step, args, kwargs)
        a = bound.arguments
        out, timestep, x = a["model_output"], a["timestep"], a["sample"]
        if me.num_inference_steps is None:
            return _call(sup.step, bound)  # let diffusers raise its error
        prev = int(timestep) - me.config.num_train_timesteps // me.num_inference_steps
        step = _vp_step_info(self, timestep, prev)
        pred = me.config.prediction_type
        x0 = _x0_from(pred, out, x, step.alpha, step.beta)
        delta = self._vidfix_delta(x0, x, step)
        if delta is not None:
            a["model_output"] = out + _out_delta(pred, delta, step.alpha, step.beta)
        return _call(sup.step, bound)


class _EulerTap(_TapMixin):
    """EulerDiscreteScheduler (VE sample ``x = x0 + sigma eps``), deterministic steps only."""

    def step(self, *args: Any, **kwargs: Any) -> Any:
        sup: Any = super()
        me: Any = self
        bound = _bind(sup.step, args, kwargs)
        a = bound.arguments
        out, timestep, x = a["model_output"], a["timestep"], a["sample"]
        if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)):
            return _call(sup.step, bound)  # diffusers raises its error
        if me.step_index is None:
            me._init_step_index(timestep)
        i = me.step_index
        sigmas = me.sigmas
        sigma, sigma_next = _f(sigmas[i]), _f(sigmas[i + 1])
        s_churn, s_tmin, s_tmax = a.get("s_churn", 0.0), a.get("s_tmin", 0.0), a.get("s_tmax", float("inf"))
        if s_churn > 0 and s_tmin <= sigma <= s_tmax:
            raise ValueError("the vidfix tap supports deterministic Euler steps only (s_churn=0)")
        step = StepInfo(1.0, sigma, 1.0, sigma_next, sigma / _f(sigmas.max()), "ve", i, len(sigmas) - 1)
        pred = me.config.prediction_type
        if pred == "v_prediction":  # denoised = out * (-sigma / sqrt(sigma^2 + 1)) + x / (sigma^2 + 1)
            c_out = -sigma / (sigma**2 + 1) ** 0.5
            x0 = out * c_out + x / (sigma**2 + 1)
        else:
            c_out = -sigma if pred == "epsilon" else 1.0
            x0 = out if pred == "sample" else x - out * sigma
        delta = self._vidfix_delta(x0, x, step)
        if delta is not None:
            a["model_output"] = out + delta / c_out
        return _call(sup.step, bound)


class _MultistepTap(_TapMixin):
    """UniPC and DPM-Solver: correct the converted output (x0, or eps for the noise-prediction variants)."""

    def convert_model_output(
        self, model_output: Tensor, *args: Any, sample: Tensor | None = None, **kwargs: Any
    ) -> Tensor:
        me: Any = self
        sup: Any = super()
        converted = sup.convert_model_output(model_output, *args, sample=sample, **kwargs)
        x = sample if sample is not None else args[1]
        i = me.step_index
        sigmas = me.sigmas
        sig, sig_next = sigmas[i], sigmas[i + 1]
        alpha_t, sigma_t = (_f(v) for v in me._sigma_to_alpha_sigma_t(sig))
        alpha_n, sigma_n = (_f(v) for v in me._sigma_to_alpha_sigma_t(sig_next))
        if sigma_t <= 0.0:
            return converted
        flow = (
            bool(getattr(me.config, "use_flow_sigmas", False))
            or me.config.prediction_type == "flow_prediction"
        )
        param: Parameterization = "flow" if flow else "vp"
        s = _f(sig) if flow else _f(sig) / _f(sigmas.max())
        step = StepInfo(alpha_t, sigma_t, alpha_n, sigma_n, min(s, 1.0), param, i, len(sigmas) - 1)
        gives_x0 = self._vidfix_gives_x0()
        x0 = converted if gives_x0 else (x - converted * sigma_t) / alpha_t
        delta = self._vidfix_delta(x0, x, step)
        if delta is None:
            return converted
        return converted + delta if gives_x0 else converted - delta * (alpha_t / sigma_t)

    def _vidfix_gives_x0(self) -> bool:
        me: Any = self
        if hasattr(me, "predict_x0"):
            return bool(me.predict_x0)
        return me.config.algorithm_type in ("dpmsolver++", "sde-dpmsolver++")


_FAMILIES: dict[str, type[_TapMixin]] = {
    "FlowMatchEulerDiscreteScheduler": _FlowEulerTap,
    "UniPCMultistepScheduler": _MultistepTap,
    "DPMSolverMultistepScheduler": _MultistepTap,
    "DDIMScheduler": _DDIMTap,
    "EulerDiscreteScheduler": _EulerTap,
    "CogVideoXDDIMScheduler": _DDIMTap,
    "CogVideoXDPMScheduler": _DDIMTap,  # same names: step(model_output, ..., timestep, ..., sample)
}


def _signed(impl: Callable[..., Any], original: Callable[..., Any]) -> Callable[..., Any]:
    """``impl`` under ``original``'s name and signature.

    Pipelines inspect ``scheduler.step`` to decide which arguments to pass (CogVideoX passes ``eta`` and
    ``generator`` only when the signature names them); a bare ``(*args, **kwargs)`` would silently drop them.
    """

    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return impl(self, *args, **kwargs)

    return method


def _supported_base(cls: type) -> str | None:
    for base in cls.__mro__:
        if base.__name__ in SUPPORTED_SCHEDULERS and base.__module__.startswith("diffusers"):
            return base.__name__
    return None


def _supported_text() -> str:
    return "; ".join(f"{k} ({', '.join(v)})" for k, v in SUPPORTED_SCHEDULERS.items())


# --------------------------------------------------------------------------------------------------------
# Public API.


def is_tapped(scheduler: Any) -> bool:
    """Whether ``scheduler`` is a tapped scheduler."""
    return isinstance(scheduler, _TapMixin)


def original_class(scheduler: Any) -> type:
    """The user's scheduler class behind a tapped scheduler (or its own class)."""
    return getattr(type(scheduler), "_vidfix_original", type(scheduler))


def tap(
    scheduler: Any,
    corrector: Corrector,
    *,
    layout: Layout = "BCFHW",
    observer: Callable[[TapEvent], None] | None = None,
) -> Any:
    """A copy of ``scheduler`` whose steps apply ``corrector`` where the solver consumes the data prediction.

    Args:
        scheduler: a diffusers scheduler of a supported class (see ``SUPPORTED_SCHEDULERS``); untouched.
        corrector: any :class:`vidfix.protocols.Corrector` (DCW, EpsScaling, Identity, ...).
        layout: the latents' layout as the scheduler sees them: ``"BCFHW"`` (Wan, Hunyuan, SkyReels, and
            4D per-frame slices), ``"BFCHW"`` (CogVideoX), or a :class:`LatentLayout` (packed tokens).
        observer: called with a :class:`TapEvent` at every step (drift tracking, debugging).

    Returns:
        A scheduler of a subclass of ``type(scheduler)`` with the same config and state. Tapping a tapped
        scheduler replaces its corrector.

    Raises:
        TypeError: the scheduler class is not supported (the message lists the supported ones).
        ValueError: the prediction type is not supported for that class.
    """
    if not callable(corrector):
        raise TypeError(
            f"corrector must be callable as corrector(x0, x, step), got {type(corrector).__name__}"
        )
    base_cls = original_class(scheduler)
    name = _supported_base(base_cls)
    if name is None:
        raise TypeError(
            f"scheduler {base_cls.__name__} is not supported by the vidfix tap; supported: {_supported_text()}"
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
    attrs = {
        "__module__": base_cls.__module__,
        "__qualname__": base_cls.__qualname__,
        "__doc__": f"{base_cls.__name__} tapped by vidfix with {corrector!r}.\n\n{base_cls.__doc__ or ''}",
        # staticmethod: plain functions stored on a class would otherwise bind to the scheduler.
        "_vidfix_corrector": staticmethod(corrector),
        "_vidfix_layout": _as_layout(layout),
        "_vidfix_observer": staticmethod(observer) if observer is not None else None,
        "_vidfix_original": base_cls,
    }
    family = _FAMILIES[name]
    for method in ("step", "convert_model_output"):
        if method in family.__dict__:
            attrs[method] = _signed(family.__dict__[method], getattr(base_cls, method))
    tapped_cls = type(base_cls.__name__, (family, base_cls), attrs)
    new = copy.deepcopy(scheduler)
    new.__class__ = tapped_cls
    return new


def untap(scheduler: Any) -> Any:
    """A copy of a tapped scheduler with the user's original class (state kept)."""
    new = copy.deepcopy(scheduler)
    new.__class__ = original_class(scheduler)
    return new
