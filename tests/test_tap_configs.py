"""The tap on the scheduler configs real checkpoints ship (tests/_scheduler_configs.py), through every step.

Regression tests for issue 12: zero terminal SNR (CogVideoX ships ``rescale_betas_zero_snr=True``: the first
step has alpha-bar = 0) crashed the tap's step info with a ZeroDivisionError, even with the identity corrector;
DCW raised at a last step that does not lower the noise (UniPC/Euler/DPM++ ``final_sigmas_type="sigma_min"``,
DDIM ``set_alpha_to_one=False``) instead of leaving it uncorrected.
"""

from __future__ import annotations

import math

import pytest
import torch
from _scheduler_configs import CHECKPOINTS, SET_TIMESTEPS, VARIANTS, build
from _tiny_pipelines import build as build_pipe
from _tiny_pipelines import call_kwargs
from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DDIMScheduler
from vidfix.pipelines import stabilized

from vidfix import DCW, EpsScaling, Identity, tap
from vidfix.calibration import init_noise_sigma, scale_input
from vidfix.tap import TapEvent

CONFIGS = CHECKPOINTS | VARIANTS
SHAPE = (1, 4, 3, 4, 4)  # (B, C, F, H, W)
STEPS = 5
DCW3 = DCW(low=0.05, spatial=0.02, temporal=0.02, spatial_schedule="constant", temporal_schedule="constant")
# Configs whose last step keeps the noise level (no in-step correction exists there).
FLAT_LAST_STEP = {
    "unipc_flow_sigma_min",
    "ddim_no_alpha_one",
    "euler_sigma_min",
    "dpmpp_karras",
    "dpmpp_lu_lambdas",
}
ZERO_SNR = {"cogvideox_2b", "cogvideox_5b", "cogvideox_5b_dpm", "ddim_zero_snr"}


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.6 * torch.tanh(x) + 0.05 * torch.cos(x.roll(1, dims=-1)) * (float(t) / 1000.0)


def run(scheduler, name: str, *, steps: int = STEPS) -> torch.Tensor:
    """A pipeline-like loop (CogVideoX-DPM's own signature and seeded noise included)."""
    scheduler.set_timesteps(steps, **SET_TIMESTEPS.get(name, {}))
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = x * init_noise_sigma(scheduler)
    g = torch.Generator().manual_seed(1)
    old_x0 = None
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        out = toy_model(scale_input(scheduler, x, t), t)
        if isinstance(scheduler, CogVideoXDPMScheduler):
            back = timesteps[i - 1] if i > 0 else None
            x, old_x0 = scheduler.step(out, old_x0, t, back, x, generator=g, return_dict=False)
        else:
            x = scheduler.step(out, t, x, return_dict=False)[0]
    return x


def _plain(name: str) -> torch.Tensor:
    return run(build(CONFIGS[name]), name)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_identity_is_bit_identical_on_real_configs(name):
    events: list[TapEvent] = []
    out = run(tap(build(CONFIGS[name]), Identity(), observer=events.append), name)
    plain = _plain(name)
    assert torch.equal(out, plain) or torch.equal(out.nan_to_num(), plain.nan_to_num())
    # Steps whose x0 is undefined (epsilon prediction at alpha-bar = 0: test_betas) pass through unobserved.
    assert len(events) >= (1 if name.startswith("ddim_test_betas") else STEPS - 1)
    assert not any(e.corrected for e in events)
    for e in events:  # step info is finite and normalised, zero terminal SNR included
        for v in (e.step.alpha, e.step.beta, e.step.alpha_next, e.step.beta_next, e.step.s):
            assert math.isfinite(float(v))
        assert 0.0 <= float(e.step.s) <= 1.0


@pytest.mark.parametrize("name", [n for n in CONFIGS if not n.startswith("ddim_test_betas")])
def test_dcw_runs_through_every_step_of_real_configs(name):
    events: list[TapEvent] = []
    out = run(tap(build(CONFIGS[name]), DCW3, observer=events.append), name)
    plain = _plain(name)
    assert torch.isfinite(out).all() and (out - plain).abs().max() > 1e-4
    assert events[0].corrected  # the first step (alpha-bar = 0 at zero terminal SNR) is corrected too
    last = events[-1]
    if name in FLAT_LAST_STEP:
        assert float(last.step.c0) <= 1e-6 and not last.corrected
    if name in ZERO_SNR:
        assert float(events[0].step.alpha) == 0.0 and float(events[0].step.s) == 1.0


@pytest.mark.parametrize("name", ["ddim_test_betas_0.2", "ddim_test_betas_2"])
def test_diffusers_test_betas_configs(name):
    """diffusers' DDIM ``test_betas`` drives alpha-bar to 0: no ZeroDivisionError; where the plain run itself goes
    non-finite (beta_end=2), DCW says so instead of passing NaN on."""
    plain = _plain(name)
    if torch.isfinite(plain).all():
        assert torch.isfinite(run(tap(build(CONFIGS[name]), DCW3), name)).all()
    else:
        with pytest.raises(FloatingPointError, match="non-finite"):
            run(tap(build(CONFIGS[name]), DCW3), name)


@pytest.mark.parametrize(
    "make",
    [
        lambda: CogVideoXDDIMScheduler.from_config(CHECKPOINTS["cogvideox_2b"]),
        lambda: CogVideoXDPMScheduler.from_config(CHECKPOINTS["cogvideox_5b_dpm"]),
        lambda: DDIMScheduler(
            prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing"
        ),
    ],
    ids=["cogvideox_ddim", "cogvideox_dpm", "ddim"],
)
@pytest.mark.parametrize(
    "corrector", [Identity(), DCW3, EpsScaling(scale=1.01)], ids=["identity", "dcw", "eps"]
)
def test_zero_terminal_snr_first_step(make, corrector):
    """The crash of issue 12: alpha-bar = 0 at t = 999 divided by zero in the step info (any corrector)."""
    sched = tap(make(), corrector)
    sched.set_timesteps(4)
    assert int(sched.timesteps[0]) == 999 and float(sched.alphas_cumprod[999]) == 0.0
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = torch.tanh(x)
    if isinstance(sched, CogVideoXDPMScheduler):
        prev, _ = sched.step(
            out, None, sched.timesteps[0], None, x, generator=torch.Generator(), return_dict=False
        )
    else:
        prev = sched.step(out, sched.timesteps[0], x, return_dict=False)[0]
    assert torch.isfinite(prev).all()


def test_epsilon_prediction_at_zero_snr_passes_the_step_through():
    """With epsilon prediction x0 is undefined where alpha-bar = 0: that step is left to the scheduler."""
    make = lambda: DDIMScheduler(rescale_betas_zero_snr=True, timestep_spacing="trailing", clip_sample=False)  # noqa: E731
    events: list[TapEvent] = []
    sched = tap(make(), DCW3, observer=events.append)
    plain = make()
    for s in (sched, plain):
        s.set_timesteps(4)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = torch.tanh(x)
    a = sched.step(out, sched.timesteps[0], x, return_dict=False)[0]
    b = plain.step(out, plain.timesteps[0], x, return_dict=False)[0]
    assert torch.equal(a, b) and not events


PIPELINE_CONFIGS = {
    "cogvideox": ["cogvideox_2b", "cogvideox_5b_dpm"],
    "wan": ["wan21_1.3b", "wan22_a14b", "unipc_flow_sigma_min"],
    "hunyuan": ["hunyuan_video"],
    "ltx": ["ltx_video"],
    "skyreels_df": ["skyreels_v2_df_t2v"],
}


@pytest.mark.parametrize(("pipe_name", "config"), [(p, c) for p, cs in PIPELINE_CONFIGS.items() for c in cs])
def test_stabilize_with_real_scheduler_configs(pipe_name, config):
    """stabilize() on tiny pipelines carrying the scheduler their checkpoint ships: identity bit-identical,
    DCW corrects every chunk without error."""
    pipe = build_pipe(pipe_name)
    original = pipe.scheduler
    pipe.scheduler = build(CONFIGS[config])
    try:
        plain = pipe(**call_kwargs(pipe_name)).frames
        with stabilized(pipe, Identity()):
            assert torch.equal(pipe(**call_kwargs(pipe_name)).frames, plain)
        with stabilized(pipe, DCW3) as handle:
            out = pipe(**call_kwargs(pipe_name)).frames
        assert torch.isfinite(out).all() and all(c.corrected > 0 for c in handle.chunks)
        assert (out - plain).abs().max() > 1e-5
    finally:
        pipe.scheduler = original
