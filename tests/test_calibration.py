"""Calibration recovers a bias injected into an analytic denoiser, per band group, and its corrector helps."""

from __future__ import annotations

import json

import pytest
import torch
from _synthetic import GaussianBandDenoiser
from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from vidfix import DCW, tap
from vidfix.calibration import (
    CalibrationResult,
    band_norms,
    calibrate,
    init_noise_sigma,
    scale_input,
    step_schedule,
)

DATA_STD = {"low": 1.0, "spatial": 0.5, "temporal": 0.3}
BIAS = {"low": 0.2, "spatial": -0.15, "temporal": 0.1}
SHAPE = (12, 2, 8, 16, 16)
STEPS = 12


class VEModel:
    """EulerDiscreteScheduler feeds ``x / sqrt(sigma^2 + 1)``; the analytic model wants the raw VE sample."""

    def __init__(self, denoiser: GaussianBandDenoiser, steps: int = STEPS) -> None:
        self.d = denoiser
        self.sched = EulerDiscreteScheduler()
        self.sched.set_timesteps(steps)

    def __call__(self, x, t, *, context=None):
        sigma = float(self.sched.sigmas[(self.sched.timesteps == t).nonzero()[0]])
        return self.d(x * (sigma**2 + 1) ** 0.5, t, alpha_beta=(1.0, sigma))


def _true_lam(scheduler, bias: float) -> list[float]:
    """Eq. 17 coefficient that undoes an output bias (1 + b) exactly: lam = k (1 - r) / r, k = b / (1 + b)."""
    _, infos = step_schedule(scheduler, STEPS)
    k = bias / (1 + bias)
    return [
        k * (1 - i.beta_next / i.beta) / (i.beta_next / i.beta) if i.beta_next > 0 else 0.0 for i in infos
    ]


def _reference(denoiser, seed=0):
    return denoiser.sample_data(SHAPE, torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def ve_biased():
    d = GaussianBandDenoiser(DATA_STD, param="ve", prediction="epsilon", bias=BIAS)
    res = calibrate(
        VEModel(d),
        EulerDiscreteScheduler(),
        _reference(d),
        num_steps=STEPS,
        generator=torch.Generator().manual_seed(1),
    )
    return d, res


def test_recovers_sign_and_size_per_group(ve_biased):
    _, res = ve_biased
    for g, b in BIAS.items():
        true = _true_lam(EulerDiscreteScheduler(), b)
        steps = [i for i in range(STEPS - 1) if res.reliable[g][i + 1]]
        assert len(steps) >= STEPS // 2, f"{g}: too few measurable steps"
        est = torch.tensor([res.lam[g][i] for i in steps])
        ref = torch.tensor([true[i] for i in steps])
        assert (torch.sign(est) == torch.sign(ref)).float().mean() >= 0.9, g
        ratio = float(est.mean() / ref.mean())
        assert 0.5 <= ratio <= 2.0, f"{g}: size off by {ratio:.2f}"


def test_unbiased_model_gets_much_smaller_coefficients(ve_biased):
    _, biased = ve_biased
    d = GaussianBandDenoiser(DATA_STD, param="ve", prediction="epsilon")
    res = calibrate(
        VEModel(d),
        EulerDiscreteScheduler(),
        _reference(d),
        num_steps=STEPS,
        generator=torch.Generator().manual_seed(1),
    )
    for g in BIAS:
        early = slice(
            0, STEPS // 2
        )  # the discretisation bias of an exact model shows up only in the last steps
        assert (
            torch.tensor(res.lam[g][early]).abs().mean()
            < 0.25 * torch.tensor(biased.lam[g][early]).abs().mean()
        ), g


def _sample_band_norms(model, make_scheduler, corrector=None, seed=5):
    sched = make_scheduler() if corrector is None else tap(make_scheduler(), corrector)
    sched.set_timesteps(STEPS)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed)) * init_noise_sigma(sched)
    for t in sched.timesteps:
        x = sched.step(model(scale_input(sched, x, t), t), t, x, return_dict=False)[0]
    return band_norms(x)


def test_calibrated_corrector_moves_samples_toward_the_data(ve_biased):
    d, res = ve_biased
    target = band_norms(_reference(d, seed=9))
    before = _sample_band_norms(VEModel(d), EulerDiscreteScheduler)
    for form in ("piecewise", "fit"):
        after = _sample_band_norms(VEModel(d), EulerDiscreteScheduler, res.to_dcw(form=form))
        for g in BIAS:
            assert abs(after[g] - target[g]) < 0.6 * abs(before[g] - target[g]), (
                form,
                g,
                before[g],
                after[g],
                target[g],
            )


@pytest.mark.parametrize(
    "make",
    [
        lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
        lambda: UniPCMultistepScheduler(
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0
        ),
    ],
)
def test_flow_models_recover_the_sign_of_a_velocity_bias(make):
    d = GaussianBandDenoiser(DATA_STD, param="flow", prediction="flow_prediction", bias=BIAS)
    res = calibrate(
        lambda x, t, context=None: d(x, t),
        make(),
        _reference(d),
        num_steps=STEPS,
        generator=torch.Generator().manual_seed(2),
    )
    for g, b in BIAS.items():
        mid = [res.lam[g][i] for i in range(1, STEPS - 2) if res.reliable[g][i + 1]]
        assert torch.sign(torch.tensor(mid).median()) == torch.sign(torch.tensor(b)), g


def test_result_json_round_trip_and_cost(tmp_path, ve_biased):
    _, res = ve_biased
    assert res.model_calls == 3 * STEPS - 1
    path = res.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())  # strict JSON: NaN stored as null
    assert data["type"] == "vidfix-calibration" and data["gap"]["low"][0] is None
    back = CalibrationResult.load(path)
    x0, x = torch.randn(1, 2, 4, 8, 8), torch.randn(1, 2, 4, 8, 8)
    _, infos = step_schedule(EulerDiscreteScheduler(), STEPS)
    for info in infos[:-1]:
        assert torch.equal(back.to_dcw()(x0, x, info), res.to_dcw()(x0, x, info))
        assert torch.equal(DCW.from_dict(data["dcw"])(x0, x, info), res.to_dcw()(x0, x, info))
    with pytest.raises(ValueError, match="not a vidfix calibration file"):
        (tmp_path / "other.json").write_text("{}")
        CalibrationResult.load(tmp_path / "other.json")


def test_chain_mode_measures_the_paper_curve():
    d = GaussianBandDenoiser(DATA_STD, param="ve", prediction="epsilon", bias=BIAS)
    res = calibrate(
        VEModel(d),
        EulerDiscreteScheduler(),
        _reference(d),
        num_steps=STEPS,
        chain=True,
        generator=torch.Generator().manual_seed(1),
    )
    assert res.model_calls == 4 * STEPS - 1
    assert set(res.chain_gap) == set(BIAS) and len(res.chain_gap["low"]) == STEPS
    # Over-predicted noise (b > 0) removes too much noise: the chain's noise-norm falls below the forward one.
    assert res.chain_gap["low"][STEPS // 2] < -0.05 and res.chain_gap["spatial"][STEPS // 2] > 0.05


def test_step_schedule_matches_the_scheduler():
    timesteps, infos = step_schedule(FlowMatchEulerDiscreteScheduler(shift=2.0), 8)
    ref = FlowMatchEulerDiscreteScheduler(shift=2.0)
    ref.set_timesteps(8)
    assert torch.equal(timesteps, ref.timesteps)
    assert [i.beta for i in infos] == pytest.approx(ref.sigmas[:-1].tolist())
    assert [i.beta_next for i in infos] == pytest.approx(ref.sigmas[1:].tolist())
    assert [i.index for i in infos] == list(range(8))


def test_bad_input():
    d = GaussianBandDenoiser(DATA_STD, param="flow", prediction="flow_prediction")
    model = lambda x, t, context=None: d(x, t)  # noqa: E731
    ref = torch.randn(2, 2, 4, 8, 8)
    with pytest.raises(ValueError, match="num_steps must be >= 2"):
        calibrate(model, FlowMatchEulerDiscreteScheduler(), ref, num_steps=1)
    with pytest.raises(FloatingPointError, match="reference"):
        calibrate(model, FlowMatchEulerDiscreteScheduler(), ref.clone().fill_(float("nan")), num_steps=4)
    with pytest.raises(ValueError, match="rank 4"):
        calibrate(model, FlowMatchEulerDiscreteScheduler(), ref[:, :, 0], num_steps=4)
    with pytest.raises(FloatingPointError, match="model output at step 0"):
        calibrate(
            lambda x, t, context=None: x * float("nan"), FlowMatchEulerDiscreteScheduler(), ref, num_steps=4
        )
