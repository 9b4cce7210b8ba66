"""The analysis grid: the fast OpenCV statistics equal the torch definitions, the grid is antialiased and
resolution-normalised, and a sharpness change keeps its sign whatever the grid."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _videos import LUMA, scene, to_u8, with_blur
from scipy import ndimage
from vidfix.metrics import frame_stats, grid_shape, luma, measure, ssim, start_end
from vidfix.metrics.grid import _kth, block_ssim, flicker_pair, grid_stats, to_grid


def _tchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


@pytest.mark.parametrize(("h", "w"), [(48, 64), (37, 53), (16, 16)])
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_grid_statistics_equal_the_torch_definitions(h, w, dtype):
    x = to_u8(scene(4, h, w, seed=2))
    x[0, :3, :3] = 255  # clipped highlights
    x[1, :2, :5] = 0  # crushed shadows
    x[2] = 128  # a flat gray frame: no saturation, no detail
    g = x if dtype == "uint8" else (x / 255.0).astype(np.float32)
    got = grid_stats(g)
    want = {k: v.double().numpy() for k, v in frame_stats(_tchw(x / 255.0)).items()}
    assert set(got.stats) == set(want)
    for name, value in want.items():
        np.testing.assert_allclose(
            got.stats[name], value, rtol=2e-5, atol=5e-5, err_msg=name
        )  # float32 oracle
    y = luma(_tchw(x / 255.0))
    for i in (1, 3):
        a = (got.luma[i], got.block_mean[i], got.block_sq[i])
        b = (got.luma[0], got.block_mean[0], got.block_sq[0])
        assert block_ssim(a, b) == pytest.approx(ssim(y[i : i + 1], y[:1]).item(), abs=1e-5)
    vbench = 1 - np.abs(x[1].astype(int) - x[0]).mean() / 255
    assert flicker_pair(g[0], g[1]) == pytest.approx(vbench, abs=1e-6)


def test_percentile_is_exact():
    rng = np.random.default_rng(0)
    for n, k in [(5000, 4950), (100_000, 99_000), (300, 297), (10_000, 1)]:
        y = rng.random(n).astype(np.float32).reshape(-1, 100)
        assert _kth(y, k) == np.partition(y.ravel(), k - 1)[k - 1]
    skewed = np.concatenate([np.zeros(9900), np.linspace(0.5, 1, 100)]).astype(np.float32).reshape(100, 100)
    assert _kth(skewed, 9901) == np.sort(skewed.ravel())[9900]


def test_grid_shape_keeps_aspect_and_never_upscales():
    assert grid_shape(2160, 3840) == (160, 284) and grid_shape(3840, 2160) == (284, 160)
    assert grid_shape(272, 640) == (160, 376)
    assert grid_shape(120, 200) == (120, 200) and grid_shape(2160, 3840, None) == (2160, 3840)


def test_grid_is_antialiased():
    """Stripes finer than the grid average out to flat gray; a grid of point samples would alias them."""
    h, w = 480, 640
    stripes = np.zeros((2, h, w, 3), np.uint8)
    stripes[:, :, ::2] = 255  # 2-pixel period, far above the 160-row grid's Nyquist limit
    g = to_grid(stripes, grid_shape(h, w))
    assert g.shape == (2, 160, 213, 3) and np.abs(g.astype(int) - 128).max() <= 15  # a faint beat is left
    point = np.ascontiguousarray(
        stripes[:, ::3, ::3]
    )  # what a step-3 point grid sees: stripes, full contrast
    assert np.abs(point.astype(int) - 128).min() == 127
    smooth, aliased = measure(stripes, scenes="off"), measure(point, grid=None, scenes="off")
    assert smooth.series["sharpness"][0] < aliased.series["sharpness"][0] / 200
    assert smooth.series["contrast"][0] < aliased.series["contrast"][0] / 10


def _textured(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """A stationary scene with detail at every scale (so detail above a small grid exists), in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = scene(t, h, w, seed=seed, noise=0.0)
    fine = ndimage.gaussian_filter(rng.normal(0, 0.08, (h, w, 3)), (0.7, 0.7, 0))
    return np.clip(base + fine[None], 0, 1)


def test_sharpness_sign_does_not_depend_on_the_grid():
    """A blur that grows over time lowers sharpness on every grid, and the default grid gives about the same
    number at two resolutions of the same clip (resolution-normalised)."""
    big = with_blur(_textured(8, 480, 640), 2.0)  # blur to sigma 2 px at 480 rows
    small = torch.nn.functional.interpolate(
        torch.from_numpy(big).permute(0, 3, 1, 2), size=(240, 320), mode="bilinear", antialias=True
    )
    small_u8 = to_u8(small.permute(0, 2, 3, 1).numpy())
    drifts = {}
    for label, clip, grid in [
        ("480 default", to_u8(big), 160),
        ("240 default", small_u8, 160),
        ("480 full", to_u8(big), None),
        ("480 grid 96", to_u8(big), 96),
    ]:
        vm = measure(clip, grid=grid, lags=(), scenes="off")
        drifts[label] = start_end(vm.series["sharpness"]).signed / vm.series["sharpness"][0]
    assert all(d < -0.1 for d in drifts.values()), drifts
    assert drifts["480 default"] == pytest.approx(drifts["240 default"], rel=0.15), drifts


def test_float_and_8bit_grids_agree():
    x = to_u8(scene(6, 320, 400, seed=8))
    a = measure(x, lags=(2,), scenes="off")
    b = measure(x / 255.0, lags=(2,), scenes="off")  # float path: resized in float, no rounding
    assert a.grid == b.grid == (160, 200)
    for name in a.series:
        scale = np.nanmax(np.abs(b.series[name])) or 1.0
        err = np.nanmax(np.abs(a.series[name] - b.series[name])) / scale
        assert err < (0.03 if name in ("sharpness", "wavelet_l1") else 5e-3), (name, err)


def test_luma_weights():
    assert np.allclose(LUMA, [0.2126, 0.7152, 0.0722]) and math.isclose(LUMA.sum(), 1.0)
