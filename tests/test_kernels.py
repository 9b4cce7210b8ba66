"""Fused Haar band filter (vidfix.kernels): the C++ and Triton kernels against the eager path and ptwt.

The Triton kernel runs on the CPU under ``TRITON_INTERPRET=1`` (slow: small shapes only). Oracles: the eager
band filter (``backend="haar"``) in float64, and ptwt's transform (``backend="ptwt"``) in float64.
"""

from __future__ import annotations

import math
import warnings
from typing import get_args

import pytest
import torch
from vidfix.scripts import gpu_check
from vidfix.scripts.gpu_check import bf16_excess

import vidfix.kernels as kernels
from vidfix import DCW, StepInfo
from vidfix.bands import PadMode, band_filter
from vidfix.kernels import _cpu, fused_band_filter

GAINS = {"low": 0.3, "spatial": -0.2, "temporal": 0.15}
# Odd and even sizes, batch > 1, a single frame, a single row.
SHAPES = [(2, 3, 5, 7, 9), (1, 2, 4, 6, 8), (1, 1, 1, 3, 2), (2, 2, 3, 1, 5)]


def _x(shape, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def _per_frame(shape, seed, scale=1.0):
    """A (B, 1, F, 1, 1) coefficient with one frame zeroed (a token already clean)."""
    c = _x((shape[0], 1, shape[2], 1, 1), seed) * scale
    c[:, :, -1] = 0.0
    return c


def _d(v):
    return v.double() if isinstance(v, torch.Tensor) else v


def _oracle(x0, x, gains, a1, a2, *, dims="3d", mode="symmetric", backend="haar"):
    """``x0 + W(a1 x0 + a2 x)`` on the eager path (or ptwt) in float64."""
    x0d, xd = x0.double(), x.double()
    g = {k: _d(v) for k, v in gains.items()}
    return band_filter(
        x0d, g, dims=dims, mode=mode, backend=backend, terms=[(_d(a1), x0d), (_d(a2), xd)], base=x0d
    )


def _fused(x0, x, gains, a1, a2, *, dims="3d", mode="symmetric", impl="auto"):
    out = fused_band_filter(x0, gains, [(a1, x0), (a2, x)], dims=dims, mode=mode, base=x0, impl=impl)
    assert out is not None, "the fused kernels should take this call"
    assert out.dtype == x0.dtype and out.shape == x0.shape
    return out


def _assert_reflect_refused(x0, x, dims):
    """Reflect padding of a 1-sample axis: the fused kernel declines it, and the dispatched call raises the
    eager path's error (as ptwt would), instead of returning something."""
    assert fused_band_filter(x0, GAINS, [(-0.4, x0), (0.7, x)], dims=dims, mode="reflect", base=x0) is None
    with pytest.raises(ValueError, match="reflect' needs at least 2 samples"):
        band_filter(x0, GAINS, dims=dims, mode="reflect", terms=[(-0.4, x0), (0.7, x)], base=x0)


def _assert_bf16_rounding(out, ref):
    """Each value within half a bfloat16 ulp of the float64 reference (plus float32 arithmetic slack)."""
    excess = bf16_excess(out, ref)
    assert excess <= 1e-5, f"max excess over half an ulp {excess:.3g}"


@pytest.fixture
def interpret(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")


# --------------------------------------------------------------------------------------------------------
# C++ kernel.


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dims", ["3d", "2d"])
@pytest.mark.parametrize("mode", get_args(PadMode))
def test_cpu_equals_eager_fp32(shape, dims, mode):
    x0, x = _x(shape, 0), _x(shape, 1)
    if mode == "reflect" and min(shape[2:] if dims == "3d" else shape[3:]) < 2:
        _assert_reflect_refused(x0, x, dims)
        return
    out = _fused(x0, x, GAINS, -0.4, 0.7, dims=dims, mode=mode, impl="cpu")
    assert torch.allclose(out.double(), _oracle(x0, x, GAINS, -0.4, 0.7, dims=dims, mode=mode), atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES[:3])
@pytest.mark.parametrize("mode", get_args(PadMode))
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_cpu_equals_ptwt(shape, mode, dims):
    x0, x = _x(shape, 2), _x(shape, 3)
    if mode == "reflect" and min(shape[2:] if dims == "3d" else shape[3:]) < 2:
        _assert_reflect_refused(x0, x, dims)
        return
    ref = _oracle(x0, x, GAINS, -0.4, 0.7, dims=dims, mode=mode, backend="ptwt")
    out = _fused(x0, x, GAINS, -0.4, 0.7, dims=dims, mode=mode, impl="cpu")
    assert torch.allclose(out.double(), ref, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_cpu_bf16_within_rounding_of_fp64(shape, dims):
    x0, x = _x(shape, 4, torch.bfloat16), _x(shape, 5, torch.bfloat16)
    a1, a2 = _per_frame(shape, 6), _per_frame(shape, 7)
    gains = {"low": _per_frame(shape, 8), "spatial": 0.1, "temporal": _per_frame(shape, 9)}
    out = _fused(x0, x, gains, a1, a2, dims=dims, impl="cpu")
    _assert_bf16_rounding(out, _oracle(x0, x, gains, a1, a2, dims=dims))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_cpu_per_frame_coefficients_and_gains(shape, dims):
    """Per-(batch, frame) tensors for the step coefficients and the gains, one frame with all of them 0."""
    x0, x = _x(shape, 10), _x(shape, 11)
    a1, a2 = _per_frame(shape, 12), _per_frame(shape, 13)
    gains = {"low": _per_frame(shape, 14), "spatial": _per_frame(shape, 15), "temporal": -0.1}
    out = _fused(x0, x, gains, a1, a2, dims=dims, impl="cpu")
    ref = _oracle(x0, x, gains, a1, a2, dims=dims)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    if dims == "2d":  # every coefficient 0 in the last frame: it is passed through exactly
        assert torch.equal(out[:, :, -1], x0[:, :, -1])


@pytest.mark.parametrize(
    ("gains", "a1", "a2"),
    [
        ({}, -0.4, 0.7),  # every gain 0: out = base
        ({"low": 0.3}, -0.4, 0.0),  # last step (c1 = 0), low band only
        ({"low": 0.0, "spatial": 0.2, "temporal": 0.0}, 0.0, 0.7),
    ],
)
def test_cpu_zero_coefficients(gains, a1, a2):
    shape = (2, 3, 5, 7, 9)
    x0, x = _x(shape, 16), _x(shape, 17)
    out = _fused(x0, x, gains, a1, a2, impl="cpu")
    assert torch.allclose(out.double(), _oracle(x0, x, gains, a1, a2), atol=1e-5)
    if not gains:
        assert torch.equal(out, x0)


def test_cpu_one_term_and_separate_base():
    """``W(a x)`` with no base, and ``base + W(a x)`` with base a second tensor (the folded tap's form)."""
    x, v = _x((1, 2, 5, 6, 7), 18), _x((1, 2, 5, 6, 7), 19)
    out = fused_band_filter(x, GAINS, [(0.5, x)], impl="cpu")
    ref = band_filter(x.double(), GAINS, backend="haar", terms=[(0.5, x.double())])
    assert out is not None and torch.allclose(out.double(), ref, atol=1e-5)
    out = fused_band_filter(x, GAINS, [(0.5, x)], base=v, impl="cpu")
    ref = band_filter(x.double(), GAINS, backend="haar", terms=[(0.5, x.double())], base=v.double())
    assert out is not None and torch.allclose(out.double(), ref, atol=1e-5)


def test_cpu_frames_and_strided_layouts():
    """(B, C, H, W) frames in 2d; a (B, F, C, H, W) tensor seen as (B, C, F, H, W) (CogVideoX's layout)."""
    f0, f = _x((2, 3, 7, 9), 20), _x((2, 3, 7, 9), 21)
    out = _fused(f0, f, GAINS, -0.4, 0.7, dims="2d", impl="cpu")
    assert torch.allclose(out.double(), _oracle(f0, f, GAINS, -0.4, 0.7, dims="2d"), atol=1e-5)
    x0, x = (
        _x((2, 5, 3, 6, 8), 22).transpose(1, 2),
        _x((2, 5, 3, 6, 8), 23).transpose(1, 2),
    )  # (B, C, F, H, W)
    assert not x0.is_contiguous()
    out = _fused(x0, x, GAINS, -0.4, 0.7, impl="cpu")
    assert torch.allclose(out.double(), _oracle(x0, x, GAINS, -0.4, 0.7), atol=1e-5)


def test_unsupported_calls_return_none():
    x0, x = _x((1, 2, 4, 6, 8), 24), _x((1, 2, 4, 6, 8), 25)
    terms = [(-0.4, x0), (0.7, x)]
    assert fused_band_filter(x0.double(), GAINS, [(1.0, x0.double())]) is None  # float64: the reference
    assert fused_band_filter(x0, GAINS, terms, base=x0 + 1) is None  # three distinct tensors
    per_pixel = torch.rand(1, 1, 4, 6, 8)
    assert fused_band_filter(x0, {"low": per_pixel}, terms, base=x0) is None  # varies over H, W
    assert fused_band_filter(x0[..., ::2], GAINS, [(1.0, x0[..., ::2])]) is None  # strided last axis
    with torch.enable_grad():
        xg = x0.clone().requires_grad_()
        assert fused_band_filter(xg, GAINS, [(1.0, xg)]) is None


# --------------------------------------------------------------------------------------------------------
# Dispatch from the core, DCW, fallback and the build cache.


def test_band_filter_and_dcw_dispatch_to_the_kernel(monkeypatch):
    """band_filter (auto) and DCW with per-frame timesteps take the fused path and match the eager one."""
    taken = []

    def spy(*args, **kwargs):
        out = fused_band_filter(*args, **kwargs)
        taken.append(out is not None)
        return out

    auto, haar = (
        DCW(low=0.05, spatial=0.02, temporal=-0.03),
        DCW(low=0.05, spatial=0.02, temporal=-0.03, backend="haar"),
    )
    monkeypatch.setattr(kernels, "fused_band_filter", spy)
    shape = (2, 3, 5, 7, 9)
    x0, x = _x(shape, 26), _x(shape, 27)
    beta = (
        torch.linspace(0.9, 0.0, shape[2]).reshape(1, 1, -1, 1, 1).expand(2, 1, -1, 1, 1)
    )  # last frame clean
    step = StepInfo(1 - beta, beta, 1 - 0.8 * beta, 0.8 * beta, beta, "flow")
    fused, eager = auto(x0, x, step), haar(x0, x, step)
    assert taken == [True] and torch.allclose(fused, eager, atol=1e-5)
    assert torch.equal(fused[:, :, -1], x0[:, :, -1])  # beta = 0: no correction
    out = band_filter(x, {"low": 1.0})
    assert taken == [True, True]
    assert torch.allclose(out, band_filter(x, {"low": 1.0}, backend="haar"), atol=1e-6)
    band_filter(x, {"low": 1.0}, level=2)  # level 2: eager only
    assert taken == [True, True]


def test_no_compiler_falls_back_to_eager_with_one_warning(monkeypatch):
    monkeypatch.setattr(_cpu, "_state", {})
    monkeypatch.setattr(_cpu, "_compiler", lambda: None)
    x = _x((1, 2, 4, 6, 8), 28)
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = band_filter(x, GAINS)
    assert torch.allclose(out, band_filter(x, GAINS, backend="haar"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        band_filter(x, GAINS)  # no second warning


def test_build_is_cached():
    """One build per cache dir: later calls (and processes) load the same file; no temporary files remain."""
    lib = _cpu.library()  # built (or found) by the first kernel call of the session
    assert lib is not None, "the test machine has a C++ compiler"
    mtime = lib.path.stat().st_mtime_ns
    assert _cpu.build() == lib.path and lib.path.stat().st_mtime_ns == mtime
    assert lib.path.parent == _cpu.cache_dir()
    assert all(p.suffix == ".so" for p in lib.path.parent.iterdir())  # no half-written leftovers
    x0, x = _x((1, 1, 2, 2, 2), 29), _x((1, 1, 2, 2, 2), 30)
    out = torch.empty_like(x0)
    lib(x0, x, out, torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0, 0.0]]]).expand(1, 2, 6), pair_t=2, mode=0)
    assert torch.equal(out, x0 + x)


# --------------------------------------------------------------------------------------------------------
# Triton kernel under the interpreter (slow: a few small cases).


@pytest.mark.parametrize(
    ("shape", "dims", "mode"),
    [
        ((2, 1, 5, 7, 9), "3d", "symmetric"),
        ((1, 2, 3, 5, 3), "3d", "reflect"),
        ((1, 2, 3, 5, 6), "3d", "zero"),
        ((2, 1, 3, 7, 5), "2d", "symmetric"),
        ((1, 1, 1, 3, 2), "3d", "symmetric"),
    ],
)
def test_triton_equals_eager_fp32(interpret, shape, dims, mode):
    x0, x = _x(shape, 31), _x(shape, 32)
    a1, a2 = _per_frame(shape, 33), 0.7
    gains = {"low": _per_frame(shape, 34), "spatial": -0.2, "temporal": 0.15}
    out = _fused(x0, x, gains, a1, a2, dims=dims, mode=mode, impl="triton")
    ref = _oracle(x0, x, gains, a1, a2, dims=dims, mode=mode)
    assert torch.allclose(out.double(), ref, atol=1e-5)


@pytest.mark.parametrize("dims", ["3d", "2d"])
def test_triton_bf16_within_rounding_of_fp64(interpret, dims):
    shape = (2, 1, 3, 7, 9)
    x0, x = _x(shape, 35, torch.bfloat16), _x(shape, 36, torch.bfloat16)
    out = _fused(x0, x, GAINS, -0.4, 0.7, dims=dims, impl="triton")
    _assert_bf16_rounding(out, _oracle(x0, x, GAINS, -0.4, 0.7, dims=dims))
    zero = _fused(x0, x, {}, -0.4, 0.7, dims=dims, impl="triton")  # all gains 0
    assert torch.equal(zero, x0)


def test_triton_equals_ptwt(interpret):
    shape = (1, 2, 5, 6, 7)
    x0, x = _x(shape, 37), _x(shape, 38)
    ref = _oracle(x0, x, GAINS, -0.4, 0.7, backend="ptwt")
    assert torch.allclose(_fused(x0, x, GAINS, -0.4, 0.7, impl="triton").double(), ref, atol=1e-5)


def test_bf16_bound_is_tight():
    """The bf16 check fails a result off by one ulp (the eager bf16 path's error is larger still)."""
    ref = torch.tensor([1.0 + 2.0**-7], dtype=torch.float64)  # exactly one bf16 ulp above 1
    with pytest.raises(AssertionError):
        _assert_bf16_rounding(torch.tensor([1.0], dtype=torch.bfloat16), ref + 2.0**-9)
    _assert_bf16_rounding(torch.tensor([1.0 + 2.0**-7], dtype=torch.bfloat16), ref + 2.0**-9)
    assert math.isclose(float(torch.tensor(1.0 + 2.0**-7, dtype=torch.bfloat16)), 1.0 + 2.0**-7)


# --------------------------------------------------------------------------------------------------------
# The prepared GPU check (scripts/gpu_check.py): its cases through the C++ kernel, and no CUDA.


def test_gpu_check_cases_pass_on_the_cpu_kernel():
    results = gpu_check.check_cases("cpu", impl="cpu")
    assert len(results) == 2 * len(gpu_check.CASES)
    assert all(ok for _, _, ok, _ in results), [r for r in results if not r[2]]


def test_gpu_check_without_cuda_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA device" in out
