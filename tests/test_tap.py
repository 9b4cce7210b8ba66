"""Scheduler tap: identity is exact, the correction equals Eq. 17 on single-step solvers, survives multistep
solvers, per-frame and per-token timesteps pass through, and diffusers plumbing (config, copies) still works."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _synthetic import GaussianBandDenoiser
from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from vidfix import DCW, SUPPORTED_SCHEDULERS, EpsScaling, Identity, is_tapped, tap, untap
from vidfix.calibration import init_noise_sigma, scale_input
from vidfix.tap import FrameGather, TapEvent, original_class

SHAPE = (2, 3, 5, 8, 8)  # (B, C, F, H, W)
STEPS = 6
DCW3 = DCW(low=0.04, spatial=0.02, temporal=-0.02)

SCHEDULERS = {
    "flow_euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "unipc_flow": lambda: UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    ),
    "unipc_eps": lambda: UniPCMultistepScheduler(prediction_type="epsilon"),
    "dpm_flow": lambda: DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    ),
    "dpm_eps": lambda: DPMSolverMultistepScheduler(prediction_type="epsilon"),
    "dpm_eps_noise_pred": lambda: DPMSolverMultistepScheduler(
        prediction_type="epsilon", algorithm_type="dpmsolver", final_sigmas_type="sigma_min"
    ),
    "ddim_eps": lambda: DDIMScheduler(prediction_type="epsilon", clip_sample=False),
    "ddim_v": lambda: DDIMScheduler(prediction_type="v_prediction", clip_sample=False),
    "ddim_eps_clipped": lambda: DDIMScheduler(prediction_type="epsilon"),  # clips x0 after the correction
    "euler_eps": lambda: EulerDiscreteScheduler(prediction_type="epsilon"),
    "euler_v": lambda: EulerDiscreteScheduler(prediction_type="v_prediction"),
    "cogvideox_ddim_v": lambda: CogVideoXDDIMScheduler(prediction_type="v_prediction"),
    "cogvideox_dpm_v": lambda: CogVideoXDPMScheduler(prediction_type="v_prediction"),
}
SINGLE_STEP = {"flow_euler", "ddim_eps", "ddim_v", "euler_eps", "euler_v", "cogvideox_ddim_v"}


def toy_model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A deterministic, nonlinear stand-in for a network (any prediction type)."""
    return 0.6 * torch.tanh(x) + 0.05 * torch.cos(x.roll(1, dims=-1)) * (float(t) / 1000.0)


def run(scheduler, *, post=None, steps: int = STEPS, seed: int = 0, model=toy_model) -> torch.Tensor:
    """Sample like a diffusers pipeline. ``post(x_prev, event)`` edits latents after each step (a callback)."""
    events: list[TapEvent] = []
    if post is not None:  # observe x0_hat and the step through an identity tap (bit-identical to untapped)
        scheduler = tap(scheduler, Identity(), observer=events.append)
    scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64) * init_noise_sigma(scheduler)
    noise_g = torch.Generator().manual_seed(seed + 1)
    old_x0 = None
    for i, t in enumerate(scheduler.timesteps):
        out = model(scale_input(scheduler, x, t), t)
        if type(scheduler).__name__ == "CogVideoXDPMScheduler":
            back = scheduler.timesteps[i - 1] if i > 0 else None
            x, old_x0 = scheduler.step(out, old_x0, t, back, x, generator=noise_g, return_dict=False)
        else:
            x = scheduler.step(out, t, x, return_dict=False)[0]
        if post is not None:
            x = post(x, events[-1])
    return x


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_identity_tap_reproduces_untapped_run(name):
    plain = run(SCHEDULERS[name]())
    tapped = run(tap(SCHEDULERS[name](), Identity()))
    assert torch.equal(tapped, plain)  # bit-identical, as documented
    assert torch.equal(run(tap(SCHEDULERS[name](), DCW(low=0.3, spatial=0.2, strength=0.0))), plain)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_nonzero_correction_changes_the_sample(name):
    plain = run(SCHEDULERS[name]())
    corrected = run(tap(SCHEDULERS[name](), DCW3))
    assert (corrected - plain).abs().max() > 1e-3


@pytest.mark.parametrize("name", sorted(SINGLE_STEP))
@pytest.mark.parametrize(
    "dcw", [DCW3, DCW(low=0.05, spatial=0.01, dims="2d"), DCW(low=0.03, low_schedule="constant", level=2)]
)
def test_tapped_single_step_solver_equals_eq17_after_each_step(name, dcw):
    """The in-step correction equals Eq. 17 applied to the latents after every step (1e-5, relative to the
    sample's scale: VE Euler samples reach hundreds, computed in float32 inside diffusers)."""
    tapped = run(tap(SCHEDULERS[name](), dcw))
    oracle = run(SCHEDULERS[name](), post=lambda x, ev: dcw.after_step(x, ev.x0, ev.step))
    scale = max(1.0, float(oracle.abs().max()))
    assert (tapped - oracle).abs().max() <= 1e-5 * scale


def _direction(make, dcw, model) -> torch.Tensor:
    return (run(tap(make(), dcw), model=model, steps=10) - run(make(), model=model, steps=10)).flatten()


@pytest.mark.parametrize(
    ("euler", "multistep", "model"),
    [
        (
            "flow_euler",
            "unipc_flow",
            GaussianBandDenoiser(
                {"low": 1.0, "spatial": 0.5, "temporal": 0.3}, param="flow", prediction="flow_prediction"
            ),
        ),
        (
            "flow_euler",
            "dpm_flow",
            GaussianBandDenoiser(
                {"low": 1.0, "spatial": 0.5, "temporal": 0.3}, param="flow", prediction="flow_prediction"
            ),
        ),
    ],
    ids=["unipc", "dpm"],
)
def test_multistep_solver_keeps_the_correction(euler, multistep, model):
    """A latent edit after the step is erased by UniPC; the in-step correction moves the sample like Euler's."""
    d_euler = _direction(SCHEDULERS[euler], DCW3, model)
    d_multi = _direction(SCHEDULERS[multistep], DCW3, model)
    cos = torch.nn.functional.cosine_similarity(d_euler, d_multi, dim=0)
    assert cos > 0.9
    assert 0.5 < d_multi.norm() / d_euler.norm() < 2.0


def test_unipc_erases_a_post_step_latent_edit_but_not_the_tap():
    """Why the tap exists: the same correction as a callback edit mostly vanishes under UniPC."""
    model = GaussianBandDenoiser(
        {"low": 1.0, "spatial": 0.5, "temporal": 0.3}, param="flow", prediction="flow_prediction"
    )
    make = SCHEDULERS["unipc_flow"]
    plain = run(make(), model=model, steps=10)
    tapped = run(tap(make(), DCW3), model=model, steps=10)
    edited = run(make(), model=model, steps=10, post=lambda x, ev: DCW3.after_step(x, ev.x0, ev.step))
    assert (edited - plain).norm() < 0.5 * (tapped - plain).norm()


def test_per_frame_schedulers_step_4d_slices_like_skyreels():
    """SkyReels deep-copies one scheduler per latent frame and steps (B, C, h, w) slices: the class-level tap
    survives the copies and corrects each frame in 2D."""
    dcw = DCW(low=0.05, spatial=0.02, temporal=0.9)  # temporal cannot apply to single frames
    frames = SHAPE[2]

    def per_frame(base, post=None):
        events: list[TapEvent] = []
        if post is not None:
            base = tap(base, Identity(), observer=events.append)
        base.set_timesteps(STEPS)
        scheds = [copy.deepcopy(base) for _ in range(frames)]
        g = torch.Generator().manual_seed(0)
        x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
        for t in base.timesteps:
            out = toy_model(x, t)
            for f in range(frames):
                x_f = scheds[f].step(out[:, :, f], t, x[:, :, f], return_dict=False)[0]
                x[:, :, f] = x_f if post is None else post(x_f, events[-1])
        return x

    plain = per_frame(FlowMatchEulerDiscreteScheduler(shift=3.0))
    assert torch.equal(per_frame(tap(FlowMatchEulerDiscreteScheduler(shift=3.0), Identity())), plain)
    tapped = per_frame(tap(FlowMatchEulerDiscreteScheduler(shift=3.0), dcw))
    oracle = per_frame(
        FlowMatchEulerDiscreteScheduler(shift=3.0),
        post=lambda x, ev: DCW(low=0.05, spatial=0.02, dims="2d").after_step(x, ev.x0, ev.step),
    )
    assert torch.allclose(tapped, oracle, atol=1e-5)


GATHER_SCHEDULERS = {
    "flow_euler": SCHEDULERS["flow_euler"],
    # UniPC's corrector keeps the last sample by reference; a loop that writes each frame's result into the
    # slice it passed (SkyReels does) overwrites it, with or without vidfix (upstream aliasing), so the per-frame
    # loop cannot equal a whole-latent loop there. Its predictor alone can:
    "unipc_flow_predictor": lambda: UniPCMultistepScheduler(
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
        disable_corrector=list(range(STEPS)),
    ),
    "dpm_flow": SCHEDULERS["dpm_flow"],
}


@pytest.mark.parametrize("name", list(GATHER_SCHEDULERS))
def test_frame_gather_equals_the_3d_tap_on_the_whole_latents(name):
    """Issue 14 item 4, at the tap: per-frame scheduler copies stepping (B, C, H, W) slices, gathered per
    iteration, give what one scheduler tapped with the same 3D corrector gives on the (B, C, F, H, W) latents."""
    frames = SHAPE[2]
    dcw = DCW(
        low=0.05, spatial=0.03, temporal=-0.04, spatial_schedule="constant", temporal_schedule="constant"
    )
    gather = FrameGather()
    make = GATHER_SCHEDULERS[name]
    base = tap(make(), dcw, gather=gather)
    base.set_timesteps(STEPS)
    scheds = [copy.deepcopy(base) for _ in range(frames)]
    gather.begin([list(range(frames))] * STEPS)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    x_whole = x.clone()
    for t in base.timesteps:
        out = toy_model(x, t)
        for f in range(frames):  # the SkyReels loop: latents[:, :, f] = scheds[f].step(out[:, :, f], ...)
            x[:, :, f] = scheds[f].step(out[:, :, f], t, x[:, :, f], return_dict=False)[0]
    gather.end()
    whole = tap(make(), dcw)
    whole.set_timesteps(STEPS)
    for t in whole.timesteps:
        x_whole = whole.step(toy_model(x_whole, t), t, x_whole, return_dict=False)[0]
    torch.testing.assert_close(x, x_whole, atol=1e-6, rtol=1e-6)
    assert (x - run(make())).abs().max() > 1e-3  # the correction acted


def test_frame_gather_refuses_samples_it_cannot_write_back():
    gather = FrameGather()
    sched = tap(FlowMatchEulerDiscreteScheduler(), DCW(low=0.1), gather=gather)
    sched.set_timesteps(2)
    copies = [copy.deepcopy(sched) for _ in range(2)]
    gather.begin([[0, 1]])
    x = torch.randn(1, 2, 4, 4)  # a standalone tensor, not a slice of the latents
    with pytest.raises(RuntimeError, match="view of the same latent tensor"):
        copies[0].step(torch.tanh(x), sched.timesteps[0], x)


class PackedLayout:
    """LTX-style packed tokens ``(B, F*H*W, C)`` <-> ``(B, C, F, H, W)``."""

    def __init__(self, f: int, h: int, w: int) -> None:
        self.f, self.h, self.w = f, h, w

    def to_bcfhw(self, t: torch.Tensor) -> torch.Tensor:
        b, _, c = t.shape
        return t.reshape(b, self.f, self.h, self.w, c).permute(0, 4, 1, 2, 3)  # (B, C, F, H, W)

    def from_bcfhw(self, t: torch.Tensor) -> torch.Tensor:
        b, c = t.shape[:2]
        return t.permute(0, 2, 3, 4, 1).reshape(b, self.f * self.h * self.w, c)  # (B, F*H*W, C)


def test_per_token_timesteps_like_ltx_condition():
    """LTXCondition steps ``step(-noise_pred, t, latents, per_token_timesteps=...)`` on packed tokens; clean
    conditioning tokens (timestep 0) must stay untouched and uniform tokens match the scalar path."""
    b, _, f, h, w = SHAPE
    layout = PackedLayout(f, h, w)
    dcw = DCW(low=0.05, spatial=0.02, temporal=-0.03)
    g = torch.Generator().manual_seed(0)
    x5 = torch.randn(SHAPE, generator=g)
    v5 = torch.tanh(x5) * 0.7
    x, v = layout.from_bcfhw(x5), layout.from_bcfhw(v5)  # (B, N, C)

    def step(sched, *, per_token):
        sched.set_timesteps(STEPS)
        t = sched.timesteps[2]
        sched.step(
            -v, sched.timesteps[0], x, per_token_timesteps=torch.full(x.shape[:2], float(sched.timesteps[0]))
        )  # advance index
        sched._step_index = 2
        if per_token is None:
            return sched.step(v, t, x, return_dict=False)[0]
        return sched.step(-v, t, x, per_token_timesteps=per_token(t), return_dict=False)[0]

    uniform = lambda t: torch.full(x.shape[:2], float(t))  # noqa: E731
    plain = step(FlowMatchEulerDiscreteScheduler(shift=3.0), per_token=uniform)
    assert torch.equal(
        step(tap(FlowMatchEulerDiscreteScheduler(shift=3.0), Identity(), layout=layout), per_token=uniform),
        plain,
    )
    tok = step(tap(FlowMatchEulerDiscreteScheduler(shift=3.0), dcw, layout=layout), per_token=uniform)
    scalar = step(tap(FlowMatchEulerDiscreteScheduler(shift=3.0), dcw, layout=layout), per_token=None)
    assert (tok - plain).abs().max() > 1e-4
    assert torch.allclose(tok, scalar.to(tok.dtype), atol=1e-5)

    def first_frame_clean(t):
        ts = uniform(t)
        ts.view(b, f, h * w)[:, 0] = 0.0  # frame 0 is conditioning
        return ts

    cond = step(
        tap(FlowMatchEulerDiscreteScheduler(shift=3.0), dcw, layout=layout), per_token=first_frame_clean
    )
    cond5 = layout.to_bcfhw(cond)
    assert torch.equal(cond5[:, :, 0], x5[:, :, 0])
    assert (cond5[:, :, 1:] - layout.to_bcfhw(plain)[:, :, 1:]).abs().max() > 1e-4


def test_frame_first_layout_matches_native_layout():
    """CogVideoX latents are (B, F, C, H, W): the tap transposes so the 3D transform runs over frames."""
    x5 = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def one_step(sched, x):
        sched.set_timesteps(STEPS)
        t = sched.timesteps[1]
        return sched.step(torch.tanh(x), t, x, return_dict=False)[0]

    native = one_step(tap(CogVideoXDDIMScheduler(prediction_type="v_prediction"), DCW3), x5)
    frame_first = one_step(
        tap(CogVideoXDDIMScheduler(prediction_type="v_prediction"), DCW3, layout="BFCHW"), x5.transpose(1, 2)
    )
    assert torch.allclose(frame_first.transpose(1, 2), native, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_latents(dtype):
    def run_lp(sched):
        sched.set_timesteps(4)
        x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0)).to(dtype)
        for t in sched.timesteps:
            x = sched.step(toy_model(x.float(), t).to(dtype), t, x, return_dict=False)[0]
        return x

    plain = run_lp(FlowMatchEulerDiscreteScheduler())
    assert torch.equal(run_lp(tap(FlowMatchEulerDiscreteScheduler(), Identity())), plain)
    corrected = run_lp(tap(FlowMatchEulerDiscreteScheduler(), DCW3))
    assert corrected.dtype == dtype and torch.isfinite(corrected).all()
    assert (corrected.float() - plain.float()).abs().max() > 1e-3


def test_tapped_scheduler_keeps_diffusers_plumbing(tmp_path):
    base = FlowMatchEulerDiscreteScheduler(shift=5.0)
    tapped = tap(base, DCW3)
    # Same class: isinstance and class-identity checks (diffusers' own tests branch on them) see the original.
    assert type(tapped) is FlowMatchEulerDiscreteScheduler and is_tapped(tapped) and not is_tapped(base)
    assert "step" not in base.__dict__  # the user's scheduler is untouched
    assert dict(tapped.config) == dict(base.config)
    with pytest.warns(UserWarning, match="not part of the diffusers scheduler config"):
        tapped.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "FlowMatchEulerDiscreteScheduler" and saved["shift"] == 5.0
    reloaded = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path)
    assert type(reloaded) is FlowMatchEulerDiscreteScheduler and not is_tapped(reloaded)
    assert not is_tapped(type(tapped).from_config(tapped.config))  # from_config builds a plain scheduler
    assert is_tapped(copy.deepcopy(tapped))
    plain = untap(tapped)
    assert type(plain) is FlowMatchEulerDiscreteScheduler and not is_tapped(plain)
    assert original_class(tapped) is FlowMatchEulerDiscreteScheduler
    retapped = tap(tapped, EpsScaling(scale=1.01))
    assert isinstance(retapped._vidfix_tap.corrector, EpsScaling) and tapped._vidfix_tap.corrector is DCW3


def test_observer_sees_every_step():
    events: list[TapEvent] = []
    run(tap(SCHEDULERS["unipc_flow"](), DCW3, observer=events.append))
    assert [e.step.index for e in events] == list(range(STEPS))
    assert all(e.x0_corrected is not e.x0 for e in events[:-1])


def test_plain_function_corrector():
    def halve_noise(x0, x, step):
        return x0 + 0.01 * (x - x0)

    assert (
        run(tap(SCHEDULERS["flow_euler"](), halve_noise)) - run(SCHEDULERS["flow_euler"]())
    ).abs().max() > 1e-4


def test_unsupported_scheduler_and_prediction_type():
    with pytest.raises(
        TypeError, match=r"LCMScheduler is not supported.*supported: FlowMatchEulerDiscreteScheduler"
    ):
        tap(LCMScheduler(), DCW3)
    with pytest.raises(ValueError, match=r"DDIMScheduler with prediction_type='banana' is not supported"):
        tap(DDIMScheduler(prediction_type="banana"), DCW3)
    with pytest.raises(ValueError, match="algorithm_type"):
        tap(
            DPMSolverMultistepScheduler(
                prediction_type="flow_prediction",
                use_flow_sigmas=True,
                algorithm_type="dpmsolver",
                final_sigmas_type="sigma_min",
            ),
            DCW3,
        )
    with pytest.raises(ValueError, match="s_churn=0"):
        sched = tap(EulerDiscreteScheduler(), DCW3)
        sched.set_timesteps(4)
        x = torch.randn(SHAPE)
        sched.step(x, sched.timesteps[0], x, s_churn=1.0)
    with pytest.raises(TypeError, match="corrector must be callable"):
        tap(FlowMatchEulerDiscreteScheduler(), "dcw")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed: 'BCFHW', 'BFCHW'"):
        tap(FlowMatchEulerDiscreteScheduler(), DCW3, layout="BHWC")  # type: ignore[arg-type]
    assert set(SUPPORTED_SCHEDULERS) >= {
        "FlowMatchEulerDiscreteScheduler",
        "UniPCMultistepScheduler",
        "DPMSolverMultistepScheduler",
        "DDIMScheduler",
        "EulerDiscreteScheduler",
        "CogVideoXDDIMScheduler",
        "CogVideoXDPMScheduler",
    }


def test_nan_model_output_raises_instead_of_propagating():
    sched = tap(FlowMatchEulerDiscreteScheduler(), DCW3)
    sched.set_timesteps(4)
    x = torch.randn(SHAPE)
    with pytest.raises(FloatingPointError, match="non-finite"):
        sched.step(torch.full(SHAPE, float("nan")), sched.timesteps[0], x)
