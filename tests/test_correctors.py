"""Correctors and schedules: Eq. 17 equivalence, identity at zero strength, epsilon scaling, bad input."""

from __future__ import annotations

import json
from typing import get_args

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidfix import DCW, EpsScaling, Identity, Schedule, StepInfo
from vidfix.bands import band_filter
from vidfix.schedules import ScheduleKind


def _x(shape=(2, 3, 5, 6, 7), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


FLOW = StepInfo(alpha=1 - 0.6, beta=0.6, alpha_next=1 - 0.45, beta_next=0.45, s=0.6, param="flow")
VP = StepInfo(alpha=0.5**0.5, beta=0.5**0.5, alpha_next=0.7**0.5, beta_next=0.3**0.5, s=0.4, param="vp")
VE = StepInfo(alpha=1.0, beta=3.0, alpha_next=1.0, beta_next=2.0, s=0.2, param="ve")


# ---- schedules --------------------------------------------------------------------------------------------


def test_schedule_values():
    assert Schedule("constant")(0.3) == 1.0
    assert Schedule("sigma")(0.3) == 0.3
    assert Schedule("inverse_sigma")(0.25) == 0.75
    pw = Schedule.piecewise([1.0, 0.0, 0.5], [1.0, 0.0, 2.0])  # unsorted input is sorted
    assert pw.knots == (0.0, 0.5, 1.0)
    assert pw(0.25) == pytest.approx(1.0) and pw(0.75) == pytest.approx(1.5)
    assert pw(-1.0) == 0.0 and pw(2.0) == 1.0  # held constant outside the knots


@pytest.mark.parametrize("kind", [k for k in get_args(ScheduleKind) if k != "piecewise"])
def test_schedule_tensor_matches_float(kind):
    s = torch.linspace(0, 1, 11, dtype=torch.float64)
    sched = Schedule(kind)
    assert torch.allclose(
        torch.as_tensor(sched(s), dtype=torch.float64),
        torch.tensor([float(sched(float(v))) for v in s], dtype=torch.float64),
    )


def test_piecewise_tensor_matches_float():
    sched = Schedule.piecewise([0.1, 0.4, 0.9], [0.3, -0.2, 0.5])
    s = torch.linspace(0, 1, 23, dtype=torch.float64)
    assert torch.allclose(sched(s), torch.tensor([sched(float(v)) for v in s], dtype=torch.float64))


def test_schedule_errors_and_round_trip():
    with pytest.raises(ValueError, match="allowed: 'constant', 'sigma', 'inverse_sigma', 'piecewise'"):
        Schedule("cosine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strictly increasing"):
        Schedule("piecewise", (0.5, 0.5), (1.0, 2.0))
    with pytest.raises(ValueError, match="needs knots"):
        DCW(low=0.1, low_schedule="piecewise")
    pw = Schedule.piecewise([0.0, 1.0], [0.1, 0.2])
    assert Schedule.from_dict(json.loads(json.dumps(pw.to_dict()))) == pw


# ---- DCW --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [FLOW, VP, VE], ids=["flow", "vp", "ve"])
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_dcw_x0_form_equals_eq17_after_a_first_order_step(step, dims):
    """x0' fed to the first-order step gives exactly Eq. 17 applied to that step's result."""
    x0, x = _x(seed=1), _x(seed=2) * 2
    dcw = DCW(low=0.05, spatial=-0.03, temporal=0.02, dims=dims)
    x0c = dcw(x0, x, step)
    x_next_tapped = step.euler_next(x0c, x)
    x_next_eq17 = dcw.after_step(step.euler_next(x0, x), x0, step)
    assert torch.allclose(x_next_tapped, x_next_eq17, atol=1e-12)


def test_dcw_on_flow_is_a_band_wise_velocity_scaling():
    """On flow matching, DCW scales each band of v by (1 - lam r / (1 - r)) (DESIGN.md identity)."""
    x0, x = _x(seed=1), _x(seed=2)
    dcw = DCW(
        low=0.05,
        spatial=0.02,
        temporal=-0.01,
        low_schedule="constant",
        spatial_schedule="constant",
        temporal_schedule="constant",
    )
    r = FLOW.beta_next / FLOW.beta
    k = {g: v * r / (1 - r) for g, v in dcw.lambdas(FLOW.s).items()}
    v = (x - x0) / FLOW.beta
    v_corr = (x - dcw(x0, x, FLOW)) / FLOW.beta
    assert torch.allclose(v_corr, v - band_filter(v, k), atol=1e-12)


def test_dcw_zero_strength_and_zero_coefficients_are_identity():
    x0, x = _x(seed=1), _x(seed=2)
    assert DCW(low=0.1, spatial=0.2, strength=0.0)(x0, x, FLOW) is x0
    assert DCW()(x0, x, FLOW) is x0
    assert (
        DCW(low=0.3)(x0, x, StepInfo(1.0, 0.0, 1.0, 0.0, 0.0, "flow")) is x0
    )  # clean input: nothing to correct
    assert Identity()(x0, x, FLOW) is x0


def test_dcw_is_linear_in_strength_and_schedules_apply():
    x0, x = _x(seed=1), _x(seed=2)
    d1 = DCW(low=0.05, spatial=0.01, temporal=0.02)(x0, x, FLOW) - x0
    d2 = DCW(low=0.05, spatial=0.01, temporal=0.02, strength=2.0)(x0, x, FLOW) - x0
    assert torch.allclose(d2, 2 * d1, atol=1e-12)
    lam = DCW(low=0.1, spatial=0.2, temporal=0.3).lambdas(0.25)
    assert lam == pytest.approx({"low": 0.1 * 0.25, "spatial": 0.2 * 0.75, "temporal": 0.3 * 0.75})


def test_dcw_on_frames_uses_2d():
    x0, x = _x((2, 3, 6, 8), seed=1), _x((2, 3, 6, 8), seed=2)
    d3 = DCW(low=0.05, spatial=0.02, temporal=0.5)(x0, x, FLOW)
    d2 = DCW(low=0.05, spatial=0.02, dims="2d")(x0, x, FLOW)
    assert torch.allclose(d3, d2, atol=1e-12)


def test_dcw_per_token_coefficients_match_scalar_and_skip_clean_tokens():
    x0, x = _x(seed=1), _x(seed=2)
    dcw = DCW(low=0.05, spatial=0.03, temporal=-0.02, dims="2d")
    shape = (2, 1, 5, 6, 7)

    def full(v):
        return torch.full(shape, v, dtype=torch.float64)

    tensor_step = StepInfo(full(0.4), full(0.6), full(0.55), full(0.45), full(0.6), "flow")
    assert torch.allclose(dcw(x0, x, tensor_step), dcw(x0, x, FLOW), atol=1e-12)
    # Frame 2 is already clean (beta = 0): its data prediction is left alone.
    beta = full(0.6)
    beta[:, :, 2] = 0.0
    mixed = StepInfo(
        1 - beta,
        beta,
        full(0.55).masked_fill(beta == 0, 1.0),
        full(0.45).masked_fill(beta == 0, 0.0),
        beta,
        "flow",
    )
    out = dcw(x0, x, mixed)
    assert torch.equal(out[:, :, 2], x0[:, :, 2])
    assert not torch.allclose(out[:, :, 0], x0[:, :, 0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dcw_low_precision(dtype):
    x0, x = _x(seed=1, dtype=dtype), _x(seed=2, dtype=dtype)
    out = DCW(low=0.05, spatial=0.02, temporal=0.01)(x0, x, FLOW)
    assert out.dtype == dtype
    ref = DCW(low=0.05, spatial=0.02, temporal=0.01)(x0.double(), x.double(), FLOW)
    assert (out.double() - ref).abs().max() < (1e-5 if dtype == torch.float32 else 5e-2)


def test_dcw_dict_round_trip():
    dcw = DCW(
        low=0.02,
        spatial=-0.01,
        temporal=0.005,
        spatial_schedule=Schedule.piecewise([0, 1], [1, 0]),
        dims="2d",
        level=2,
    )
    back = DCW.from_dict(json.loads(json.dumps(dcw.to_dict())))
    x0, x = _x(seed=1), _x(seed=2)
    assert torch.equal(back(x0, x, FLOW), dcw(x0, x, FLOW))


@pytest.mark.parametrize(
    ("make", "exc", "match"),
    [
        (
            lambda x0, x: (x0.clone().index_fill_(0, torch.tensor([0]), float("nan")), x),
            FloatingPointError,
            "non-finite",
        ),
        (
            lambda x0, x: (x0, x.clone().index_fill_(0, torch.tensor([1]), float("inf"))),
            FloatingPointError,
            "inf",
        ),
        (lambda x0, x: (x0, x[:, :, :4]), ValueError, "same shape"),
        (lambda x0, x: (x0[0, 0], x[0, 0]), ValueError, r"rank 3.*expected rank 4"),
        (lambda x0, x: (x0[:, :, :0], x[:, :, :0]), ValueError, "empty"),
    ],
)
def test_dcw_bad_input(make, exc, match):
    x0, x = make(_x(seed=1), _x(seed=2))
    dcw = DCW(low=0.05, spatial=0.01)
    with pytest.raises(exc, match=match):
        dcw(x0, x, FLOW)


def test_dcw_bad_options():
    with pytest.raises(ValueError, match="allowed: '3d', '2d'"):
        DCW(low=0.1, dims="1d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown wavelet"):
        DCW(low=0.1, wavelet="db99")
    with pytest.raises(ValueError, match="allowed: 'constant'"):
        DCW(low=0.1, low_schedule="linear")


def test_dcw_leaves_steps_that_do_not_lower_the_noise_alone():
    """Issue 12: valid configs end on a step that keeps the noise (final_sigmas_type="sigma_min", DDIM
    set_alpha_to_one=False); no in-step correction exists there (c0 = 0), so DCW returns x0, not an error."""
    x0, x = _x(seed=1), _x(seed=2)
    dcw = DCW(low=0.1, spatial=0.05, temporal=0.05)
    for step in (StepInfo(0.4, 0.6, 0.4, 0.6, 0.6, "flow"), StepInfo(0.4, 0.6, 0.3, 0.7, 0.6, "flow")):
        assert dcw(x0, x, step) is x0
        assert dcw.correct_output(x, x0, step, a=1.0, b=-0.6) is x


@settings(max_examples=30, deadline=None)
@given(lam=st.floats(-0.2, 0.2), seed=st.integers(0, 1000))
def test_property_dcw_zero_in_zero_out_and_additive(lam, seed):
    x0, x = _x(seed=seed), _x(seed=seed + 1)
    dcw = DCW(low=lam, spatial=lam / 2, temporal=-lam)
    z = torch.zeros_like(x0)
    assert torch.count_nonzero(dcw(z, z, FLOW)) == 0
    # The correction is linear in (x0, x): corr(a) + corr(b) = corr(a + b).
    corr = lambda a0, a: dcw(a0, a, FLOW) - a0  # noqa: E731
    assert torch.allclose(corr(x0, x) + corr(x, x0), corr(x0 + x, x + x0), atol=1e-9)


# ---- epsilon scaling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [VP, VE], ids=["vp", "ve"])
def test_eps_scaling_divides_predicted_noise(step):
    x0, x = _x(seed=1), _x(seed=2)
    eps = (x - step.alpha * x0) / step.beta
    x0c = EpsScaling(scale=1.01)(x0, x, step)
    assert torch.allclose((x - step.alpha * x0c) / step.beta, eps / 1.01, atol=1e-12)


def test_eps_scaling_flow_scales_noise_part_of_velocity():
    x0, x = _x(seed=1), _x(seed=2)
    s = FLOW.beta
    eps = (x - (1 - s) * x0) / s
    x0c = EpsScaling(scale=1.02)(x0, x, FLOW)
    v_corr = (x - x0c) / s
    assert torch.allclose(v_corr, eps / 1.02 - x0, atol=1e-12)


def test_eps_scaling_identity_and_errors():
    x0, x = _x(seed=1), _x(seed=2)
    assert EpsScaling(scale=1.0)(x0, x, VP) is x0
    with pytest.raises(ValueError, match="scale must be > 0"):
        EpsScaling(scale=0.0)
    with pytest.raises(FloatingPointError):
        EpsScaling(scale=1.01)(x0, x.clone().fill_(float("nan")), VP)


@pytest.mark.parametrize("step", [FLOW, VP, VE], ids=["flow", "vp", "ve"])
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_dcw_matches_the_paper_formula_through_ptwt(step, dims):
    """Independent oracle: x0' = x0 + IDWT(lam/c0 ⊙ DWT(x_next - x0)) with the transform done by ptwt."""
    from vidfix.bands import dwt, idwt

    x0, x = _x(seed=3), _x(seed=4)
    dcw = DCW(low=0.05, spatial=-0.03, temporal=0.02, dims=dims, level=2)
    lam = dcw.lambdas(step.s)
    if dims == "2d":
        lam = {"low": lam["low"], "spatial": lam["spatial"]}
    x_next = step.alpha_next * x0 + step.beta_next * (x - step.alpha * x0) / step.beta
    bands = dwt(x_next - x0, dims=dims, level=2, backend="ptwt")
    oracle = x0 + idwt(bands.scaled({g: v / step.c0 for g, v in lam.items()}))
    assert torch.allclose(dcw(x0, x, step), oracle, atol=1e-12)
