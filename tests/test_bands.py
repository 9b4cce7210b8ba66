"""Band transform: exact round trip, agreement with ptwt and pywt, energy, band filtering, bad input."""

from __future__ import annotations

import itertools
from typing import get_args

import numpy as np
import ptwt
import pytest
import pywt
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vidfix.bands import (
    GROUPS,
    Backend,
    PadMode,
    band_filter,
    band_group,
    band_names,
    dwt,
    group_components,
    idwt,
)

TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
SHAPES = [(1, 2, 4, 8, 8), (2, 1, 5, 7, 9), (1, 3, 3, 6, 5), (1, 1, 1, 3, 2)]


def _x(shape: tuple[int, ...], dtype: torch.dtype = torch.float64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dims", ["3d", "2d"])
@pytest.mark.parametrize("level", [1, 2, 3])
@pytest.mark.parametrize("dtype", list(TOL))
def test_haar_round_trip_exact(shape, dims, level, dtype):
    x = _x(shape, dtype)
    bands = dwt(x, dims=dims, level=level)
    y = idwt(bands)
    assert y.shape == x.shape and y.dtype == dtype
    scale = 1.0 if dtype in (torch.float64, torch.float32) else float(x.abs().max())
    assert (y.double() - x.double()).abs().max() <= TOL[dtype] * scale


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym3"])
@pytest.mark.parametrize("mode", get_args(PadMode))
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_ptwt_round_trip_any_wavelet(wavelet, mode, dims):
    x = _x((1, 2, 9, 11, 10), torch.float32)
    bands = dwt(x, dims=dims, level=2, wavelet=wavelet, backend="ptwt", mode=mode)
    assert torch.allclose(idwt(bands), x, atol=1e-5)


def test_ptwt_path_upcasts_half_precision():
    x = _x((1, 2, 4, 8, 8), torch.bfloat16)
    bands = dwt(x, backend="ptwt")
    assert bands.low.dtype == torch.float32
    y = idwt(bands)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), x.float(), atol=5e-2)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("level", [1, 2])
@pytest.mark.parametrize("mode", get_args(PadMode))
def test_haar_equals_ptwt_3d(shape, level, mode):
    x = _x(shape)
    fast = dwt(x, dims="3d", level=level, mode=mode)
    ref = ptwt.wavedec3(x, "haar", mode=mode, level=level, axes=(-3, -2, -1))
    assert torch.allclose(fast.low, ref[0], atol=1e-12)
    for ours, theirs in zip(fast.details, ref[1:], strict=True):
        assert set(ours) == set(theirs)
        for k in ours:
            assert torch.allclose(ours[k], theirs[k], atol=1e-12), k


@pytest.mark.parametrize("shape", SHAPES[:3])
def test_haar_equals_pywt_3d_and_2d(shape):
    x = _x(shape)
    fast3 = dwt(x, dims="3d", level=2)
    ref3 = pywt.wavedecn(x.numpy(), "haar", mode="symmetric", level=2, axes=(-3, -2, -1))
    np.testing.assert_allclose(fast3.low.numpy(), ref3[0], atol=1e-12)
    for ours, theirs in zip(fast3.details, ref3[1:], strict=True):
        for k in ours:
            np.testing.assert_allclose(ours[k].numpy(), theirs[k], atol=1e-12)
    fast2 = dwt(x, dims="2d", level=1)
    ref2 = pywt.dwtn(x.numpy(), "haar", mode="symmetric", axes=(-2, -1))
    np.testing.assert_allclose(fast2.low.numpy(), ref2["aa"], atol=1e-12)
    for k in ("ad", "da", "dd"):
        np.testing.assert_allclose(fast2.details[0][k].numpy(), ref2[k], atol=1e-12)


def test_ptwt_2d_band_names_match_pywt():
    x = _x((1, 2, 3, 8, 6))
    ours = dwt(x, dims="2d", backend="ptwt")
    ref = pywt.dwtn(x.numpy(), "haar", axes=(-2, -1))
    for k in ("ad", "da", "dd"):
        np.testing.assert_allclose(ours.details[0][k].numpy(), ref[k], atol=1e-12)


@pytest.mark.parametrize("dims", ["3d", "2d"])
@pytest.mark.parametrize("backend", ["haar", "ptwt"])
def test_energy_preserved(dims, backend):
    x = _x((2, 3, 8, 8, 16))
    bands = dwt(x, dims=dims, level=3, backend=backend)
    energy = bands.low.pow(2).sum() + sum(c.pow(2).sum() for lvl in bands.details for c in lvl.values())
    assert torch.allclose(energy, x.pow(2).sum(), rtol=1e-12)


def test_band_names_and_groups():
    assert band_names("3d") == ("aad", "ada", "add", "daa", "dad", "dda", "ddd")
    assert band_names("2d") == ("ad", "da", "dd")
    assert band_group("aaa") == "low" and band_group("aa", "2d") == "low"
    assert {band_group(k) for k in ("aad", "ada", "add")} == {"spatial"}
    assert {band_group(k) for k in ("daa", "dad", "dda", "ddd")} == {"temporal"}
    assert {band_group(k, "2d") for k in band_names("2d")} == {"spatial"}


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dims", ["3d", "2d"])
@pytest.mark.parametrize("level", [1, 2, 3])
def test_fast_band_filter_equals_transform_oracle(shape, dims, level):
    """The projection-based Haar filter equals DWT -> scale -> IDWT computed by ptwt."""
    x = _x(shape, seed=level)
    gains = {"low": 0.7, "spatial": -0.3, "temporal": 1.9}
    fast = band_filter(x, gains, dims=dims, level=level)
    bands = dwt(x, dims=dims, level=level, backend="ptwt")
    oracle = idwt(bands.scaled(gains if dims == "3d" else {"low": 0.7, "spatial": -0.3}))
    assert torch.allclose(fast, oracle, atol=1e-12)


@pytest.mark.parametrize(
    "gains", [{"low": 0.5}, {"spatial": 2.0}, {"temporal": -1.0}, {"low": 1.0, "spatial": 1.0}]
)
def test_fast_band_filter_skips_zero_terms_correctly(gains):
    x = _x((1, 2, 5, 6, 7))
    bands = dwt(x, backend="ptwt")
    full = {g: gains.get(g, 0.0) for g in GROUPS}
    assert torch.allclose(band_filter(x, gains), idwt(bands.scaled(full)), atol=1e-12)


def test_band_filter_terms_equal_materialised_sum():
    a, b = _x((1, 2, 5, 6, 7), seed=1), _x((1, 2, 5, 6, 7), seed=2)
    gains = {"low": 0.3, "spatial": 0.2, "temporal": -0.5}
    lazy = band_filter(a, gains, terms=[(0.25, a), (-1.5, b)])
    assert torch.allclose(lazy, band_filter(0.25 * a - 1.5 * b, gains), atol=1e-12)


@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_group_components_sum_to_input(dims):
    x = _x((1, 2, 5, 6, 7))
    comps = group_components(x, dims=dims, level=2)
    assert set(comps) == (set(GROUPS) if dims == "3d" else {"low", "spatial"})
    assert torch.allclose(sum(comps.values()), x, atol=1e-12)


def test_tensor_gains_match_scalar_gains_when_constant():
    x = _x((2, 2, 4, 6, 6))
    scalar = band_filter(x, {"low": 0.4, "spatial": -0.2, "temporal": 0.1})
    per_elem = band_filter(
        x, {"low": torch.full((2, 1, 4, 6, 6), 0.4, dtype=torch.float64), "spatial": -0.2, "temporal": 0.1}
    )
    assert torch.allclose(scalar, per_elem, atol=1e-12)


def test_identity_and_zero_gains():
    x = _x((1, 2, 5, 6, 7))
    assert torch.allclose(band_filter(x, dict.fromkeys(GROUPS, 1.0)), x, atol=1e-12)
    assert torch.count_nonzero(band_filter(x, {})) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_fast_filter_runs_in_low_precision(dtype):
    x = _x((1, 2, 4, 8, 8), dtype)
    y = band_filter(x, {"low": 0.5, "spatial": 0.25, "temporal": 0.125})
    assert y.dtype == dtype
    ref = band_filter(x.double(), {"low": 0.5, "spatial": 0.25, "temporal": 0.125})
    assert (y.double() - ref).abs().max() <= TOL[dtype] * 4


# ---- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: dwt(torch.randn(2, 3, 4, 4)), ValueError, r"rank 4.*expected rank 5"),
        (lambda: dwt(torch.randn(3, 4, 4), dims="2d"), ValueError, "rank 3"),
        (lambda: dwt(torch.zeros(1, 0, 2, 2, 2)), ValueError, "empty"),
        (lambda: dwt(torch.zeros(1, 1, 2, 2, 2, dtype=torch.int64)), TypeError, "floating"),
        (lambda: dwt([1, 2, 3]), TypeError, "torch.Tensor"),  # type: ignore[arg-type]
        (lambda: dwt(torch.randn(1, 1, 2, 2, 2), dims="4d"), ValueError, "allowed: '3d', '2d'"),  # type: ignore[arg-type]
        (
            lambda: dwt(torch.randn(1, 1, 2, 2, 2), backend="fft"),
            ValueError,
            "allowed: 'auto', 'haar', 'ptwt'",
        ),  # type: ignore[arg-type]
        (lambda: dwt(torch.randn(1, 1, 2, 2, 2), mode="wrap"), ValueError, "allowed: 'symmetric'"),  # type: ignore[arg-type]
        (lambda: dwt(torch.randn(1, 1, 2, 2, 2), level=0), ValueError, "level must be an int >= 1"),
        (lambda: dwt(torch.randn(1, 1, 2, 2, 2), wavelet="nope"), ValueError, "unknown wavelet 'nope'"),
        (
            lambda: dwt(torch.randn(1, 1, 2, 2, 2), wavelet="db2", backend="haar"),
            ValueError,
            "only computes the Haar",
        ),
        (
            lambda: band_filter(torch.randn(1, 1, 2, 2, 2), {"mid": 1.0}),
            ValueError,
            "allowed: 'low', 'spatial', 'temporal'",
        ),
        (lambda: band_group("abc"), ValueError, "unknown band 'abc'"),
        (lambda: band_group("aad", "2d"), ValueError, "allowed: aa, ad, da, dd"),
    ],
)
def test_bad_input_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_every_literal_option_runs():
    x = _x((1, 1, 3, 4, 5))
    for backend, mode in itertools.product(get_args(Backend), get_args(PadMode)):
        assert torch.allclose(idwt(dwt(x, backend=backend, mode=mode)), x, atol=1e-10)


# ---- properties -------------------------------------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=7)
coef = st.floats(min_value=-3, max_value=3, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    f=sizes,
    h=sizes,
    w=sizes,
    level=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    dims=st.sampled_from(["3d", "2d"]),
)
def test_property_round_trip(f, h, w, level, seed, dims):
    x = _x((1, 2, f, h, w), seed=seed)
    assert torch.allclose(idwt(dwt(x, dims=dims, level=level)), x, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(f=sizes, h=sizes, w=sizes, a=coef, b=coef, g0=coef, g1=coef, g2=coef, seed=st.integers(0, 2**16))
def test_property_filter_linear_and_zero_in_zero_out(f, h, w, a, b, g0, g1, g2, seed):
    x, y = _x((1, 2, f, h, w), seed=seed), _x((1, 2, f, h, w), seed=seed + 1)
    gains = {"low": g0, "spatial": g1, "temporal": g2}
    lhs = band_filter(a * x + b * y, gains)
    rhs = a * band_filter(x, gains) + b * band_filter(y, gains)
    assert torch.allclose(lhs, rhs, atol=1e-9)
    assert torch.count_nonzero(band_filter(torch.zeros_like(x), gains)) == 0
