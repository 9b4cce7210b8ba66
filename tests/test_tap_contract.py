"""diffusers' scheduler contract, as a peer suite, on tapped schedulers (issue 12).

What diffusers' own ``SchedulerCommonTest`` checks of every scheduler, re-written here for the tapped copies
with the identity corrector: ``set_timesteps`` variants, ``step`` with and without ``return_dict`` and by
keyword, ``add_noise``, ``scale_model_input``, ``from_config``/``save_pretrained`` round trips, ``deepcopy``,
``pickle``/``torch.save``, begin index, and full loops, each **bit-identical** to the untapped scheduler (as
the tap's documentation says). Also the failures of issue 12 that concern the tap itself: class-identity
branches (diffusers' Euler tests pass ``float(t)`` only when ``scheduler_class in (EulerDiscreteScheduler,
...)``), pickling, and the correction silently dropped by ``save_pretrained``.
"""

from __future__ import annotations

import copy
import inspect
import io
import json
import pickle

import pytest
import torch
from _scheduler_configs import CHECKPOINTS, SET_TIMESTEPS, build
from diffusers import (
    CogVideoXDPMScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    LMSDiscreteScheduler,
    UniPCMultistepScheduler,
)

from vidfix import DCW, Identity, is_tapped, tap
from vidfix.calibration import init_noise_sigma, scale_input
from vidfix.correctors import TTC, BandAffine, BandAnchor, Chain, ClosedLoop, EpsScaling
from vidfix.protocols import StepInfo
from vidfix.tap import TAP_CONFIG_NAME, corrector_from_dict, disable, load_tapped, save_tapped

SHAPE = (2, 3, 3, 4, 4)  # (B, C, F, H, W)

SCHEDULERS = {
    "flow_euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
    "flow_euler_ltx": lambda: build(CHECKPOINTS["ltx_video"]),
    "unipc_flow_wan": lambda: build(CHECKPOINTS["wan21_1.3b"]),
    "unipc_eps": lambda: UniPCMultistepScheduler(prediction_type="epsilon"),
    "dpm_flow": lambda: DPMSolverMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
    ),
    "dpm_v": lambda: DPMSolverMultistepScheduler(prediction_type="v_prediction"),
    "ddim_eps": lambda: DDIMScheduler(clip_sample=False),
    "euler_eps": lambda: EulerDiscreteScheduler(),
    "euler_v": lambda: EulerDiscreteScheduler(prediction_type="v_prediction"),
    "cogvideox_ddim_2b": lambda: build(CHECKPOINTS["cogvideox_2b"]),
    "cogvideox_dpm_5b": lambda: build(CHECKPOINTS["cogvideox_5b_dpm"]),
}
NAMES = list(SCHEDULERS)
SET_KW = {"flow_euler_ltx": SET_TIMESTEPS["ltx_video"]}


def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return 0.6 * torch.tanh(x) + 0.05 * torch.cos(x.roll(1, dims=-1)) * (float(t) / 1000.0)


def _sample() -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _step(sched, out, t, x, i, *, return_dict=False, noise=None):
    """One step in the class's calling convention (CogVideoX-DPM: its own signature and seeded noise)."""
    if isinstance(sched, CogVideoXDPMScheduler):
        back = sched.timesteps[i - 1] if i > 0 else None
        g = torch.Generator().manual_seed(100 + i)
        return sched.step(out, noise, t, back, x, generator=g, return_dict=return_dict)
    return sched.step(out, t, x, return_dict=return_dict)


def _prev(res):
    return res[0] if isinstance(res, tuple) else res.prev_sample


def loop(sched, name: str, *, steps: int = 4, start: int = 0, x: torch.Tensor | None = None, **set_kw):
    """A full sampling loop from step ``start``; returns the final sample."""
    if set_kw or steps:
        sched.set_timesteps(
            **(({"num_inference_steps": steps} if steps else {}) | SET_KW.get(name, {}) | set_kw)
        )
    x = _sample() * init_noise_sigma(sched) if x is None else x
    old_x0 = None
    for i, t in enumerate(sched.timesteps):
        if i < start:
            continue
        out = model(scale_input(sched, x, t), t)
        res = _step(sched, out, t, x, i, noise=old_x0)
        x = res[0]
        if isinstance(sched, CogVideoXDPMScheduler):
            old_x0 = res[1]
    return x


def _config(sched) -> dict:
    return {k: v for k, v in sched.config.items() if not k.startswith("_")}


def pair(name: str):
    return SCHEDULERS[name](), tap(SCHEDULERS[name](), Identity())


# ---- set_timesteps variants and full loops -----------------------------------------------------------------


def _outcome(fn):
    """``fn()``'s result, or the type of the error it raised (the tap must fail where diffusers fails)."""
    try:
        return fn()
    except Exception as err:  # compared with the plain scheduler's outcome
        return type(err)


@pytest.mark.parametrize("steps", [1, 2, 5, 12])
@pytest.mark.parametrize("name", NAMES)
def test_full_loop_is_bit_identical(name, steps):
    plain, tapped = pair(name)
    a = _outcome(lambda: loop(tapped, name, steps=steps))
    b = _outcome(lambda: loop(plain, name, steps=steps))
    assert (a is b) if isinstance(b, type) else torch.equal(a, b)


# Custom schedules the classes take: Euler timesteps and sigmas, FlowMatch sigmas (the multistep solvers and
# DDIM take neither in this form).
CUSTOM = [
    ("euler_eps", {"timesteps": [999, 700, 400, 100]}),
    ("euler_v", {"sigmas": [14.0, 5.0, 1.5, 0.3]}),
    ("flow_euler", {"sigmas": [1.0, 0.7, 0.4, 0.1]}),
    ("flow_euler", {"timesteps": [1000.0, 700.0, 400.0, 100.0]}),
]


@pytest.mark.parametrize(("name", "kw"), CUSTOM, ids=[f"{n}-{next(iter(k))}" for n, k in CUSTOM])
def test_custom_timesteps_and_sigmas(name, kw):
    plain, tapped = pair(name)
    assert torch.equal(loop(tapped, name, steps=0, **kw), loop(plain, name, steps=0, **kw))


@pytest.mark.parametrize("name", NAMES)
def test_set_timesteps_gives_the_same_schedule_and_device(name):
    plain, tapped = pair(name)
    for s in (plain, tapped):
        s.set_timesteps(7, device="cpu", **SET_KW.get(name, {}))
    assert torch.equal(tapped.timesteps, plain.timesteps)
    for attr in ("sigmas", "alphas_cumprod"):
        if hasattr(plain, attr):
            assert torch.equal(getattr(tapped, attr), getattr(plain, attr))


# ---- step, add_noise, scale_model_input ------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_step_with_and_without_return_dict_and_by_keyword(name):
    """Same return types and values as the plain scheduler (CogVideoX-DPM returns a tuple at its first step
    whatever ``return_dict`` says; the tap keeps that too)."""
    x = _sample()

    def first_step(sched, **kw):
        sched.set_timesteps(4, **SET_KW.get(name, {}))
        t = sched.timesteps[0]
        out = model(scale_input(sched, x, t), t)
        if kw.pop("by_name", False):
            return sched.step(model_output=out, timestep=t, sample=x, return_dict=False)
        return _step(sched, out, t, x, 0, **kw)

    for kw in ({"return_dict": False}, {"return_dict": True}, {"by_name": True}):
        if "by_name" in kw and name.startswith("cogvideox_dpm"):
            continue  # its step has no (model_output, timestep, sample) prefix to call by name alone
        plain, tapped = pair(name)
        a, b = first_step(tapped, **dict(kw)), first_step(plain, **dict(kw))
        assert type(a) is type(b) and torch.equal(_prev(a), _prev(b))


@pytest.mark.parametrize("name", NAMES)
def test_add_noise_and_scale_model_input(name):
    plain, tapped = pair(name)
    for s in (plain, tapped):
        s.set_timesteps(4, **SET_KW.get(name, {}))
    x, noise = _sample(), _sample().flip(0)
    t = plain.timesteps[1:2]
    if hasattr(plain, "add_noise"):
        assert torch.equal(tapped.add_noise(x, noise, t), plain.add_noise(x, noise, t))
    else:
        assert torch.equal(tapped.scale_noise(x, t, noise), plain.scale_noise(x, t, noise))
    if hasattr(plain, "scale_model_input"):
        assert torch.equal(tapped.scale_model_input(x, t[0]), plain.scale_model_input(x, t[0]))
    assert init_noise_sigma(tapped) == init_noise_sigma(plain) and tapped.order == plain.order


# ---- begin index ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in NAMES if hasattr(SCHEDULERS[n](), "set_begin_index")])
def test_begin_index(name):
    """img2img-style starts: ``set_begin_index(k)`` then stepping from the k-th timestep."""
    results = []
    for s in pair(name):
        s.set_timesteps(6, **SET_KW.get(name, {}))
        s.set_begin_index(2)
        assert s.begin_index == 2
        results.append(loop(s, name, steps=0, start=2))
    assert torch.equal(results[1], results[0])


# ---- config round trips, copies, pickles ---------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_from_config_and_save_pretrained_round_trip(name, tmp_path):
    plain, tapped = pair(name)
    cls = type(plain)
    assert _config(tapped) == _config(plain)
    with pytest.warns(UserWarning, match="not part of the diffusers scheduler config"):
        tapped.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == cls.__name__
    reloaded = cls.from_pretrained(tmp_path)
    again = type(tapped).from_config(tapped.config)
    for s in (reloaded, again):
        assert type(s) is cls and not is_tapped(s) and _config(s) == _config(plain)
        assert torch.equal(loop(s, name), loop(SCHEDULERS[name](), name))


@pytest.mark.parametrize("name", ["flow_euler", "unipc_flow_wan", "cogvideox_ddim_2b"])
def test_save_tapped_keeps_the_correction(name, tmp_path):
    """Issue 12: the correction's settings were silently dropped; asked for, they survive the round trip."""
    dcw = DCW(low=0.05, spatial=-0.02, temporal=0.01, low_schedule="constant")
    tapped = tap(SCHEDULERS[name](), dcw, layout="BFCHW" if name.startswith("cog") else "BCFHW")
    path = save_tapped(tapped, tmp_path)
    assert path.name == TAP_CONFIG_NAME and (tmp_path / "scheduler_config.json").is_file()
    loaded = load_tapped(tmp_path)
    assert type(loaded) is type(tapped) and is_tapped(loaded)
    assert loaded._vidfix_tap.corrector.to_dict() == dcw.to_dict()
    assert torch.equal(loop(loaded, name), loop(tapped, name))
    plain_again = type(tapped).from_pretrained(tmp_path)  # diffusers alone reads the plain scheduler
    assert not is_tapped(plain_again)
    with pytest.raises(FileNotFoundError, match=r"vidfix_tap\.json"):
        load_tapped(tmp_path / "missing")


LOADABLE = {
    "dcw": lambda: DCW(low=0.05, spatial=-0.02, temporal=0.01, low_schedule="constant"),
    "band_affine": lambda: BandAffine(
        knots=(0.0, 0.5, 1.0),
        gain={"low": [[-0.1], [-0.05], [0.0]], "spatial": [[0.02, 0.0, -0.02]] * 3},
        shift={"temporal": [[0.01], [0.02], [0.03]]},
        offset=[[0.01, -0.01, 0.0]] * 3,
    ),
    "eps_scaling": lambda: EpsScaling(scale=1.01),
    "identity": lambda: Identity(),
    "chain": lambda: Chain(DCW(low=0.03), EpsScaling(scale=1.02), BandAffine(knots=(0.0, 1.0))),
}


@pytest.mark.parametrize("kind", list(LOADABLE))
def test_save_tapped_round_trips_every_loadable_corrector(kind, tmp_path):
    """Issue 12: save_tapped took any corrector with to_dict(), but load_tapped read only dcw, eps_scaling and
    identity, so BandAffine and Chain saved and then failed to load ("unknown corrector type")."""
    corrector = LOADABLE[kind]()
    assert corrector.to_dict()["type"] == kind
    tapped = tap(SCHEDULERS["flow_euler"](), corrector)
    save_tapped(tapped, tmp_path)
    loaded = load_tapped(tmp_path)._vidfix_tap.corrector
    assert type(loaded) is type(corrector) and loaded.to_dict() == corrector.to_dict()
    x0, x = _sample(), _sample().flip(-1)
    step = StepInfo(0.6, 0.4, 0.7, 0.3, 0.4)
    assert torch.equal(loaded(x0, x, step), corrector(x0, x, step))
    assert torch.equal(loop(load_tapped(tmp_path), "flow_euler"), loop(tapped, "flow_euler"))


class _NoDict:
    def __call__(self, x0, x, step):
        return x0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: BandAnchor(), r"corrector BandAnchor: it is stateful"),
        (lambda: ClosedLoop(), r"corrector ClosedLoop: it is stateful"),
        (lambda: TTC(denoiser=lambda x, t, **kw: x), r"corrector TTC: it is stateful"),
        (lambda: Chain(DCW(low=0.1), BandAnchor()), r"corrector Chain: its member BandAnchor is stateful"),
        (lambda: Chain(_NoDict()), r"corrector Chain: its member type '_NoDict' cannot be loaded"),
        (lambda: _NoDict(), r"corrector _NoDict: it has no to_dict\(\)"),
    ],
)
def test_save_tapped_refuses_correctors_it_cannot_load_before_writing(make, message, tmp_path):
    """Stateful correctors (a reference chunk, feedback, a model) cannot be rebuilt from a file: refused in one
    line naming the type and what can be saved, and nothing is written (no half-saved folder)."""
    tapped = tap(SCHEDULERS["flow_euler"](), make())
    with pytest.raises(ValueError, match=message) as err:
        save_tapped(tapped, tmp_path / "out")
    assert "\n" not in str(err.value) and "savable: DCW, BandAffine" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_corrector_from_dict_names_stateful_and_unknown_types():
    with pytest.raises(ValueError, match=r"'band_anchor' \(BandAnchor\) is stateful"):
        corrector_from_dict(BandAnchor().to_dict())
    with pytest.raises(ValueError, match=r"unknown corrector type 'magic'; allowed: 'dcw', 'band_affine'"):
        corrector_from_dict({"type": "magic"})


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_pickle_and_torch_save_mid_run(name):
    """A copy made mid-run (deepcopy, pickle, torch.save) continues exactly like the original."""
    dcw = DCW(low=0.05, spatial=0.02)
    tapped = tap(SCHEDULERS[name](), dcw)
    tapped.set_timesteps(5, **SET_KW.get(name, {}))
    x = _sample() * init_noise_sigma(tapped)
    old_x0 = None
    for i, t in enumerate(tapped.timesteps[:2]):  # two steps: multistep history is non-empty
        res = _step(tapped, model(scale_input(tapped, x, t), t), t, x, i, noise=old_x0)
        x, old_x0 = res[0], res[1] if isinstance(tapped, CogVideoXDPMScheduler) else None
    buf = io.BytesIO()
    torch.save(tapped, buf)
    copies = [
        copy.deepcopy(tapped),
        pickle.loads(pickle.dumps(tapped)),
        torch.load(io.BytesIO(buf.getvalue()), weights_only=False),
    ]

    def finish(s):
        y, o = x.clone(), old_x0
        for i, t in enumerate(s.timesteps):
            if i < 2:
                continue
            res = _step(s, model(scale_input(s, y, t), t), t, y, i, noise=o)
            y, o = res[0], res[1] if isinstance(s, CogVideoXDPMScheduler) else None
        return y

    for c in copies:
        assert type(c) is type(tapped) and is_tapped(c) and c._vidfix_tap.corrector == dcw
    results = [finish(c) for c in copies]
    reference = finish(tapped)
    for r in results:
        assert torch.equal(r, reference)


@pytest.mark.parametrize("name", ["flow_euler", "unipc_flow_wan", "euler_eps"])
def test_shallow_copy_steps_itself(name):
    """``copy.copy`` (benchmarks use it for a fresh step index) gives a tapped scheduler whose methods act on the
    copy, not on the original."""
    dcw = DCW(low=0.05, spatial=0.02)
    tapped = tap(SCHEDULERS[name](), dcw)
    tapped.set_timesteps(4)
    shallow = copy.copy(tapped)
    assert is_tapped(shallow) and shallow.step.scheduler is shallow
    result = loop(shallow, name, steps=0)
    assert tapped.step_index is None and shallow.step_index is not None
    assert torch.equal(result, loop(tap(SCHEDULERS[name](), dcw), name))


def test_pickling_drops_the_observer_with_a_warning():
    tapped = tap(FlowMatchEulerDiscreteScheduler(), Identity(), observer=print)
    with pytest.warns(UserWarning, match="drops its observer"):
        restored = pickle.loads(pickle.dumps(tapped))
    assert is_tapped(restored) and restored._vidfix_tap.observer is None


def test_deep_copies_share_the_tap_and_disable_reaches_them_all():
    """SkyReels copies the scheduler once per frame: the copies share one tap, so turning it off (undo) turns
    every copy back into the plain scheduler."""
    tapped = tap(FlowMatchEulerDiscreteScheduler(shift=3.0), DCW(low=0.3))
    copies = [copy.deepcopy(tapped) for _ in range(3)]
    assert all(c._vidfix_tap is tapped._vidfix_tap for c in copies)
    disable(tapped)
    assert not any(is_tapped(c) for c in (tapped, *copies))
    assert torch.equal(
        loop(copies[1], "flow_euler"), loop(FlowMatchEulerDiscreteScheduler(shift=3.0), "flow_euler")
    )


# ---- class identity -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["euler_eps", "euler_v"])
def test_class_identity_branches_like_diffusers_own_euler_tests(name):
    """diffusers' SchedulerCommonTest converts the timestep to float only when ``scheduler_class in
    (EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, LMSDiscreteScheduler)``; with the tap's old
    on-the-fly subclass the branch was missed and Euler raised on an int timestep (9 tests). The tapped
    scheduler now has the user's class."""
    plain, tapped = pair(name)
    results = []
    for sched in (plain, tapped):
        scheduler_class = type(sched)
        sched.set_timesteps(5)
        x = _sample() * sched.init_noise_sigma
        for t in sched.timesteps:
            time_step = int(t)
            if scheduler_class in (
                EulerAncestralDiscreteScheduler,
                EulerDiscreteScheduler,
                LMSDiscreteScheduler,
            ):
                time_step = float(t)
            x = sched.step(model(scale_input(sched, x, time_step), time_step), time_step, x).prev_sample
        results.append(x)
    assert type(tapped) is EulerDiscreteScheduler and torch.equal(results[1], results[0])


@pytest.mark.parametrize("name", NAMES)
def test_tapped_scheduler_has_the_users_class(name):
    plain, tapped = pair(name)
    assert type(tapped) is type(plain) and type(tapped).__module__.startswith("diffusers")
    assert inspect.signature(tapped.step) == inspect.signature(plain.step)
