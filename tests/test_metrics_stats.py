"""Per-frame statistics against independent oracles: published Lab values, numpy/scipy/pywt/colorsys."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
import pywt
import torch
from _videos import scene, to_u8
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import ndimage
from vidfix.metrics import (
    color_stats,
    flicker,
    frame_stats,
    lab_to_rgb,
    laplacian_variance,
    luma,
    rgb_to_lab,
    ssim,
    wavelet_energy_shares,
)


def _frames(x: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) numpy in [0, 1] -> (T, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).float()


# Published CIELAB (D65) of sRGB primaries and gray (e.g. Bruce Lindbloom's calculator, brucelindbloom.com).
REFERENCE_LAB = [
    ((255, 255, 255), (100.0, 0.0, 0.0)),
    ((0, 0, 0), (0.0, 0.0, 0.0)),
    ((255, 0, 0), (53.24, 80.09, 67.20)),
    ((0, 255, 0), (87.73, -86.18, 83.18)),
    ((0, 0, 255), (32.30, 79.19, -107.86)),
    ((128, 128, 128), (53.59, 0.0, 0.0)),
]


@pytest.mark.parametrize(("rgb", "lab"), REFERENCE_LAB)
def test_lab_matches_published_values(rgb, lab):
    frame = torch.tensor(rgb, dtype=torch.float64).div(255).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    got = rgb_to_lab(frame)[0, :, 0, 0]
    assert torch.allclose(got, torch.tensor(lab, dtype=torch.float64), atol=0.02)
    stats = color_stats(frame.float())
    assert stats["lab_l"].item() == pytest.approx(lab[0], abs=0.02)
    assert stats["lab_a"].item() == pytest.approx(lab[1], abs=0.02)
    assert stats["lab_b"].item() == pytest.approx(lab[2], abs=0.02)


def test_lab_round_trip():
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64)
    lab = rgb_to_lab(x).permute(0, 2, 3, 1)  # (T, H, W, 3)
    back = lab_to_rgb(lab).permute(0, 3, 1, 2)
    assert torch.allclose(back, x, atol=1e-6)


def _oracle_lab(rgb: np.ndarray) -> np.ndarray:
    """Textbook sRGB -> Lab with np.where, float64: (..., 3) -> (..., 3)."""
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    m = np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    xyz = lin @ m.T / np.array([0.95047, 1.0, 1.08883])
    d = 6 / 29
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def test_color_stats_match_numpy_oracle():
    x = scene(4, 24, 32, seed=3)
    x[0, :3, :3] = 1.0  # some clipped highlights
    x[1, :2, :5] = 0.0  # some crushed shadows
    x = to_u8(x) / 255.0
    stats = {k: v.double().numpy() for k, v in color_stats(_frames(x)).items()}
    flat = x.reshape(4, -1, 3)
    lab = _oracle_lab(flat)
    y = flat @ np.array([0.2126, 0.7152, 0.0722])
    for i in range(4):
        np.testing.assert_allclose([stats[f"mean_{c}"][i] for c in "rgb"], flat[i].mean(0), atol=1e-6)
        np.testing.assert_allclose([stats[f"std_{c}"][i] for c in "rgb"], flat[i].std(0), atol=1e-5)
        np.testing.assert_allclose(
            [stats["lab_l"][i], stats["lab_a"][i], stats["lab_b"][i]], lab[i].mean(0), atol=1e-3
        )
        assert stats["contrast"][i] == pytest.approx(lab[i, :, 0].std(), abs=1e-3)
        assert stats["luma_mean"][i] == pytest.approx(y[i].mean(), abs=1e-6)
        assert stats["luma_p99"][i] == pytest.approx(np.quantile(y[i], 0.99, method="inverted_cdf"), abs=1e-6)
        assert stats["clip_high"][i] == pytest.approx((flat[i] >= 1.0).any(-1).mean())
        assert stats["clip_low"][i] == pytest.approx((flat[i] <= 0.0).any(-1).mean())
        hsv_s = np.array([colorsys.rgb_to_hsv(*p)[1] for p in flat[i]])
        assert stats["saturation"][i] == pytest.approx(hsv_s.mean(), abs=1e-6)
    assert stats["clip_high"][0] > 0 and stats["clip_low"][1] > 0 and stats["clip_high"][2] == 0


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 1.0), st.integers(1, 4))
def test_gray_frames_have_no_colour(level, t):
    x = torch.full((t, 3, 8, 8), level)
    stats = color_stats(x)
    assert torch.allclose(stats["saturation"], torch.zeros(t), atol=1e-6)
    assert torch.allclose(stats["lab_a"], torch.zeros(t), atol=1e-3)
    assert torch.allclose(stats["lab_b"], torch.zeros(t), atol=1e-3)
    assert torch.allclose(stats["contrast"], torch.zeros(t), atol=1e-3)


def test_laplacian_variance_matches_scipy():
    y = torch.from_numpy(scene(3, 40, 50, seed=1) @ np.array([0.2126, 0.7152, 0.0722])).float()
    got = laplacian_variance(y).double().numpy()
    for i in range(3):
        lap = ndimage.laplace(y[i].double().numpy() * 255.0)[1:-1, 1:-1]  # 4-neighbour kernel, interior only
        assert got[i] == pytest.approx(lap.var(), rel=1e-4)


@pytest.mark.parametrize(("h", "w"), [(64, 96), (67, 93)])
def test_wavelet_shares_match_pywt(h, w):
    y = torch.from_numpy(scene(2, h, w, seed=2) @ np.array([0.2126, 0.7152, 0.0722]))
    got = wavelet_energy_shares(y, levels=3).numpy()
    for i in range(2):
        a = y[i].numpy()[: h // 8 * 8, : w // 8 * 8]
        a = a - a.mean()
        coeffs = pywt.wavedec2(a, "haar", level=3)  # [cA3, (level 3 details), (level 2), (level 1)]
        total = float((a * a).sum())
        shares = [sum(float((d * d).sum()) for d in coeffs[-k]) / total for k in (1, 2, 3)]
        np.testing.assert_allclose(got[i], shares, rtol=1e-6)
    assert torch.all(wavelet_energy_shares(torch.ones(1, 16, 16)) == 0)


def _ssim_blocks_oracle(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(0, x.shape[0] // 8 * 8, 8):
        for j in range(0, x.shape[1] // 8 * 8, 8):
            a, b = x[i : i + 8, j : j + 8], y[i : i + 8, j : j + 8]
            ma, mb = a.mean(), b.mean()
            cov = ((a - ma) * (b - mb)).mean()
            vals.append(
                (2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (a.var() + b.var() + c2))
            )
    return float(np.mean(vals))


def _ssim_gauss_oracle(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = 0.01**2, 0.03**2

    def blur(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, 1.5, truncate=3.5)[5:-5, 5:-5]  # 11x11 window, valid region

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    return float(np.mean((2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


@pytest.mark.parametrize("window", ["block", "gaussian"])
def test_ssim_matches_oracle(window):
    rng = np.random.default_rng(0)
    x = scene(1, 37, 45, seed=4)[0] @ np.array([0.2126, 0.7152, 0.0722])
    y = np.clip(x + rng.normal(0, 0.05, x.shape), 0, 1)
    got = ssim(torch.from_numpy(y)[None], torch.from_numpy(x)[None], window=window).item()
    oracle = _ssim_blocks_oracle(y, x) if window == "block" else _ssim_gauss_oracle(y, x)
    assert got == pytest.approx(oracle, abs=1e-9)
    assert ssim(torch.from_numpy(x)[None], torch.from_numpy(x)[None], window=window).item() == pytest.approx(
        1.0
    )
    assert got < 0.95


def test_flicker_is_vbench_formula():
    u8 = to_u8(scene(5, 16, 16, seed=5))
    got = flicker(_frames(u8 / 255.0)).double().numpy()
    a = u8.astype(np.int64)
    vbench = (255 - np.abs(a[1:] - a[:-1]).mean(axis=(1, 2, 3))) / 255
    assert np.isnan(got[0])
    np.testing.assert_allclose(got[1:], vbench, atol=1e-6)
    prev = _frames(u8[:1] / 255.0)
    np.testing.assert_allclose(flicker(_frames(u8[1:] / 255.0), previous=prev).numpy(), vbench, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(arrays(np.float32, (2, 16, 16, 3), elements=st.floats(0, 1, width=32)))
def test_frame_stats_are_finite_and_bounded(x):
    stats = frame_stats(_frames(x))
    for name, value in stats.items():
        assert torch.isfinite(value).all(), name
    for name in ("saturation", "clip_high", "clip_low", "luma_mean", "luma_p99", "wavelet_l1"):
        assert ((stats[name] >= -1e-6) & (stats[name] <= 1 + 1e-6)).all(), name
    shares = sum(stats[f"wavelet_l{k}"] for k in (1, 2, 3))
    assert (shares <= 1 + 1e-5).all()


def test_luma_is_rec709():
    x = torch.rand(2, 3, 4, 4)
    expected = 0.2126 * x[:, 0] + 0.7152 * x[:, 1] + 0.0722 * x[:, 2]
    assert torch.allclose(luma(x), expected, atol=1e-6)
