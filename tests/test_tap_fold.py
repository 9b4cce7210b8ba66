"""The correction folded into the model output (issue 13 item 2).

DCW corrects the tensor the solver consumes directly, ``v' = v + W(q v + p x)`` with one band-filter call whose
base is ``v`` (vidfix/correctors/dcw.py). The oracle is the eager formulation the tap used before: form
``x0 = a x + b v``, call the corrector, ``v' = v + (x0' - x0) / b``; any corrector without ``correct_output``
still takes that path, so wrapping DCW in a plain function gives it.
"""

from __future__ import annotations

import importlib
import inspect

import pytest
import torch
from _scheduler_configs import CHECKPOINTS, build
from diffusers import (
    CogVideoXDDIMScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

import vidfix.correctors.dcw as dcw_module
from vidfix import DCW, StepInfo, tap
from vidfix.calibration import init_noise_sigma, scale_input

SHAPE = (2, 4, 5, 8, 8)  # (B, C, F, H, W)
tap_module = importlib.import_module("vidfix.tap")  # the package's ``vidfix.tap`` attribute is the function

SCHEDULERS = {
    "flow_euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "unipc_flow": lambda: build(CHECKPOINTS["wan21_1.3b"]),
    "euler_eps": lambda: EulerDiscreteScheduler(),
    "euler_v": lambda: EulerDiscreteScheduler(prediction_type="v_prediction"),
    "unipc_eps": lambda: UniPCMultistepScheduler(prediction_type="epsilon"),
    "dpm_eps_noise": lambda: DPMSolverMultistepScheduler(  # converts to eps, not x0
        prediction_type="epsilon", algorithm_type="dpmsolver", final_sigmas_type="sigma_min"
    ),
    "dpm_v": lambda: DPMSolverMultistepScheduler(prediction_type="v_prediction"),
    "ddim_eps": lambda: DDIMScheduler(clip_sample=False),
    "cogvideox_2b": lambda: CogVideoXDDIMScheduler.from_config(CHECKPOINTS["cogvideox_2b"]),
}
CORRECTORS = {
    "3d": DCW(low=0.04, spatial=0.02, temporal=-0.02),
    "2d": DCW(low=0.05, spatial=0.01, dims="2d"),
    "level2_const": DCW(
        low=0.03, spatial=-0.01, low_schedule="constant", spatial_schedule="constant", level=2
    ),
}


def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.6 * torch.tanh(x) + 0.05 * torch.cos(x.roll(1, dims=-1)) * (float(t) / 1000.0)


def eager(dcw: DCW):
    """Today's (pre-fold) formulation: a plain function corrector, so the tap forms x0 and calls DCW."""
    return lambda x0, x, step: dcw(x0, x, step)


def run(sched, *, steps: int = 6, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    sched.set_timesteps(steps)
    x = (torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)) * init_noise_sigma(sched)).to(dtype)
    for t in sched.timesteps:
        out = model(scale_input(sched, x, t).float(), t).to(dtype)
        x = sched.step(out, t, x, return_dict=False)[0]
    return x


@pytest.mark.parametrize("corrector", list(CORRECTORS))
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_folded_tap_equals_the_eager_tap(name, corrector):
    """Issue 13: the folded tap equals today's tap to 1e-6 (relative to the sample's scale) on Euler and UniPC,
    and on every other family."""
    dcw = CORRECTORS[corrector]
    folded = run(tap(SCHEDULERS[name](), dcw))
    reference = run(tap(SCHEDULERS[name](), eager(dcw)))
    plain = run(SCHEDULERS[name]())
    scale = max(1.0, float(reference.abs().max()))
    assert (folded - reference).abs().max() <= 1e-6 * scale
    assert (folded - plain).abs().max() > 1e-4 * scale  # the correction acted


@pytest.mark.parametrize("name", ["flow_euler", "unipc_flow"])
def test_folded_step_is_one_band_filter_on_the_model_output(name, monkeypatch):
    """No x0 materialised: DCW.__call__ is never reached, each corrected step is one band_filter call with the
    solver's tensor as base; flow matching filters v alone (no pass over x), x0-predicting UniPC adds x."""
    calls = []
    real = dcw_module.band_filter

    def counting(x, gains, **kw):
        calls.append(kw)
        return real(x, gains, **kw)

    def no_call(self, *args, **kwargs):
        raise AssertionError("DCW.__call__ (x0 materialised) on the folded path")

    dcw = DCW(low=0.05, spatial=0.02, low_schedule="constant")
    monkeypatch.setattr(dcw_module, "band_filter", counting)
    monkeypatch.setattr(DCW, "__call__", no_call)
    sched = tap(SCHEDULERS[name](), dcw)
    run(sched, steps=4)
    assert len(calls) == 3  # the last step (to sigma 0) needs no correction: x_next = x0
    for kw in calls:
        assert kw["base"] is kw["terms"][0][1]
        assert len(kw["terms"]) == (1 if name == "flow_euler" else 2)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_folded_low_precision_keeps_the_dtype(dtype):
    dcw = DCW(low=0.05, spatial=0.02, temporal=0.01)
    folded = run(tap(FlowMatchEulerDiscreteScheduler(), dcw), dtype=dtype)
    reference = run(tap(FlowMatchEulerDiscreteScheduler(), eager(dcw)), dtype=dtype)
    assert folded.dtype == dtype
    torch.testing.assert_close(folded.float(), reference.float(), atol=0.05, rtol=0.02)


def test_finiteness_check_is_an_option():
    """On by default (one check per corrected step); vidfix's sampler turns it off and checks each chunk."""
    x = torch.randn(SHAPE)
    nan = torch.full(SHAPE, float("nan"))
    for check in (True, False):
        sched = tap(FlowMatchEulerDiscreteScheduler(), DCW(low=0.05), check_finite=check)
        sched.set_timesteps(4)
        if check:
            with pytest.raises(FloatingPointError, match="non-finite"):
                sched.step(nan, sched.timesteps[0], x)
        else:
            assert torch.isnan(sched.step(nan, sched.timesteps[0], x, return_dict=False)[0]).all()


def test_step_signature_is_read_once_per_class(monkeypatch):
    """No ``inspect.Signature.bind`` per step (50-60 us each); parameter names are cached per method."""
    tap_module._param_names.cache_clear()

    def no_bind(*args, **kwargs):
        raise AssertionError("Signature.bind called during a step")

    monkeypatch.setattr(inspect.Signature, "bind", no_bind)
    for name in ("flow_euler", "ddim_eps", "euler_eps"):
        run(tap(SCHEDULERS[name](), DCW(low=0.05)), steps=8)
    info = tap_module._param_names.cache_info()
    assert info.misses == 3 and info.hits >= 3 * 7


def test_per_frame_fallback_skips_the_finiteness_check_and_equals_the_unfolded_path(monkeypatch):
    """Per-frame timesteps fall back to forming x0; that fallback must not run DCW's per-step finiteness check
    (a host sync per step; inside the tap the caller decides) and must equal the unfolded formulation."""
    g = torch.Generator().manual_seed(3)
    v, x = torch.randn(SHAPE, generator=g), torch.randn(SHAPE, generator=g)
    # Per-frame noise levels, shape (B, 1, F, 1, 1); the last frame is already clean.
    s = torch.linspace(0.8, 0.0, SHAPE[2]).view(1, 1, -1, 1, 1).expand(SHAPE[0], 1, -1, 1, 1)
    s_next = (s - 0.15).clamp(min=0.0)
    step = StepInfo(1 - s, s, 1 - s_next, s_next, s, "flow")
    dcw = DCW(low=0.05, spatial=0.02, temporal=-0.01)
    assert dcw.check_finite  # on by default, yet the folded fallback must not use it

    # The unfolded path: x0 = a x + b v, correct x0, v' = v + (x0' - x0) / b (b = 0 on the clean frame).
    a, b = torch.ones_like(s), -s
    x0 = x * a + v * b
    x0c = dcw(x0, x, step)
    reference = v + (x0c - x0) / torch.where(b == 0, torch.ones_like(b), b)

    checks = []
    monkeypatch.setattr(dcw_module, "check_finite", lambda t, name="": checks.append(name) or t)
    folded = dcw.correct_output(v, x, step, a=a, b=b)
    assert checks == []
    torch.testing.assert_close(folded, reference, rtol=0, atol=1e-6)
    assert not torch.allclose(folded, v)  # the correction acted
    assert torch.equal(folded[:, :, -1], v[:, :, -1])  # the clean frame is left alone
    dcw(x0, x, step)
    assert len(checks) == 1  # the direct call still checks (the spy is live)
