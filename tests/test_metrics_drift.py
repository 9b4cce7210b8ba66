"""Known drift injected frame by frame moves the right metrics, with the right sign and about the right size;
a static or stationary video scores near zero; drift summaries match their definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _videos import (
    LUMA,
    ramp,
    scene,
    static,
    to_u8,
    with_blur,
    with_brightness,
    with_colour_cast,
    with_contrast_loss,
    with_saturation,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import linalg
from vidfix.metrics import (
    chunk_bounds,
    chunk_curve,
    chunk_means,
    compare,
    frechet_distance,
    frechet_over_time,
    lag_curve,
    measure,
    spread,
    start_end,
    start_end_drift,
    video_drift_error,
    windowed_frechet,
)
from vidfix.metrics.drift import channel_drift

T = 48


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return scene(T, seed=0)


@pytest.fixture(scope="module")
def base_metrics(base):
    return measure(base, lags=())


def drift(vm, name: str) -> float:
    return start_end(vm.series[name]).signed


def expected_ramp_drift(size: float) -> float:
    """Start-end drift of ``size * ramp(T)``: what a perfectly linear metric must report."""
    return start_end(size * ramp(T)).signed


def test_static_video_has_exactly_no_drift():
    vm = measure(to_u8(static(24)))
    for name, s in vm.series.items():
        assert abs(start_end(s).signed) < 1e-6, name
    assert np.allclose(vm.series["delta_e"], 0, atol=1e-4)
    assert np.allclose(vm.series["ssim"], 1, atol=1e-6)
    assert np.allclose(vm.series["flicker"][1:], 1)
    assert all(v == pytest.approx(1.0) for v in vm.lag_ssim.values())


def test_stationary_video_has_near_zero_drift(base_metrics):
    vm = base_metrics
    assert abs(drift(vm, "luma_mean")) < 0.005
    assert abs(drift(vm, "lab_a")) < 0.5 and abs(drift(vm, "lab_b")) < 0.5
    assert abs(drift(vm, "delta_e")) < 1.0
    assert abs(drift(vm, "saturation")) < 0.01
    assert abs(drift(vm, "contrast")) / vm.series["contrast"].mean() < 0.05
    assert abs(drift(vm, "sharpness")) / vm.series["sharpness"].mean() < 0.1  # sprites move over texture


def test_brightness_ramp(base, base_metrics):
    delta = 0.1
    vm = measure(with_brightness(base, delta), lags=())
    want = expected_ramp_drift(delta) + drift(base_metrics, "luma_mean")
    assert drift(vm, "luma_mean") == pytest.approx(want, abs=1e-4)  # luma is linear: exact
    for c in "rgb":
        assert drift(vm, f"mean_{c}") == pytest.approx(
            expected_ramp_drift(delta) + drift(base_metrics, f"mean_{c}"), abs=1e-4
        )
    assert drift(vm, "lab_l") > 5  # about 10 L* per 0.1 around mid-gray
    assert drift(vm, "luma_p99") == pytest.approx(expected_ramp_drift(delta), abs=0.01)
    assert drift(vm, "delta_e") > 5
    for name in ("sharpness", "contrast"):  # an offset changes no structure
        assert abs(drift(vm, name) - drift(base_metrics, name)) / base_metrics.series[name].mean() < 0.05


def test_colour_cast(base, base_metrics):
    vm = measure(with_colour_cast(base, (0.06, 0.0, -0.06)), lags=())
    assert drift(vm, "mean_r") == pytest.approx(
        expected_ramp_drift(0.06) + drift(base_metrics, "mean_r"), abs=1e-4
    )
    assert drift(vm, "mean_b") == pytest.approx(
        expected_ramp_drift(-0.06) + drift(base_metrics, "mean_b"), abs=1e-4
    )
    assert drift(vm, "lab_a") > 3  # redder
    assert drift(vm, "lab_b") > 5  # less blue = yellower
    de = vm.series["delta_e"]
    lab_move = math.dist(
        [vm.series[k][-1] for k in ("lab_l", "lab_a", "lab_b")],
        [vm.series[k][0] for k in ("lab_l", "lab_a", "lab_b")],
    )
    assert de[-1] == pytest.approx(lab_move, rel=1e-6)  # anchor = first frame
    assert de[-1] > 6 and de[0] == 0


def test_saturation_ramp(base, base_metrics):
    gain = 0.5
    x = with_saturation(base, gain)
    assert x.min() >= 0 and x.max() <= 1
    vm = measure(x, lags=())
    rel = drift(vm, "saturation") / base_metrics.series["saturation"][:8].mean()
    want = expected_ramp_drift(gain)
    assert 0.5 * want < rel < 1.5 * want  # HSV saturation is not linear in chroma, but close
    assert drift(vm, "luma_mean") == pytest.approx(drift(base_metrics, "luma_mean"), abs=1e-4)  # luma kept
    assert abs(drift(vm, "lab_l") - drift(base_metrics, "lab_l")) < 1.5


def test_contrast_loss(base, base_metrics):
    loss = 0.4
    x = with_contrast_loss(base, loss)
    vm = measure(x, lags=())
    flat = x.reshape(T, -1, 3)
    for k, c in enumerate("rgb"):  # channel std scales exactly with the injected factor
        np.testing.assert_allclose(vm.series[f"std_{c}"], flat[..., k].std(1), rtol=1e-4)
    rel = drift(vm, "contrast") / base_metrics.series["contrast"][:8].mean()
    assert rel == pytest.approx(-expected_ramp_drift(loss), abs=0.08)
    assert drift(vm, "sharpness") < -0.4 * base_metrics.series["sharpness"].mean()  # Laplacian scales too
    assert abs(drift(vm, "luma_mean")) < 0.005


def test_progressive_blur(base, base_metrics):
    vm = measure(with_blur(base, 2.0), lags=())
    rel = drift(vm, "sharpness") / base_metrics.series["sharpness"][:8].mean()
    assert rel < -0.8  # a 2-pixel blur removes most Laplacian energy
    assert drift(vm, "wavelet_l1") < -0.5 * base_metrics.series["wavelet_l1"].mean()
    assert abs(drift(vm, "luma_mean")) < 0.005  # blur keeps the mean
    assert vm.series["ssim"][-1] < base_metrics.series["ssim"][-1]


def test_flicker_and_ssim_see_frame_changes(base):
    jumpy = base.copy()
    jumpy[1::2] += 0.08  # every other frame brighter: flicker
    vm = measure(jumpy, lags=())
    still = measure(base, lags=())
    assert np.nanmean(vm.series["flicker"]) < np.nanmean(still.series["flicker"]) - 0.05
    assert vm.series["flicker"][0] != vm.series["flicker"][0]  # NaN: frame 0 has no predecessor


def test_lag_ssim_brute_force(base):
    import torch
    from vidfix.metrics import luma, ssim

    vm = measure(base, lags=(1, 3, 7), lag_every=1)
    frames = torch.from_numpy(base.transpose(0, 3, 1, 2)).float()
    y = luma(frames)
    for k in (1, 3, 7):
        brute = ssim(y[k:], y[:-k]).double().mean().item()
        assert vm.lag_ssim[k] == pytest.approx(brute, abs=1e-5)
    sparse = measure(base, lags=(3,), lag_every=4, batch_size=5)  # pairs ending on frames 4, 8, ...
    ends = np.arange(4, T, 4)
    brute = ssim(y[ends], y[ends - 3]).double().mean().item()
    assert sparse.lag_ssim[3] == pytest.approx(brute, abs=1e-5)


def test_start_end_definition():
    s = np.arange(100, dtype=float)
    se = start_end(s)
    assert (se.start, se.end, se.signed, se.abs, se.frames) == (7.0, 92.0, 85.0, 85.0, 15)
    assert start_end(s[::-1]).signed == -85.0
    with pytest.raises(ValueError, match="fraction"):
        start_end(s, fraction=0.7)
    with pytest.raises(ValueError, match="non-empty 1-D"):
        start_end([])


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=80),
    st.floats(-10, 10),
    st.floats(-100, 100),
)
def test_start_end_is_affine_equivariant(values, a, b):
    s = np.array(values)
    got = start_end(a * s + b).signed
    assert got == pytest.approx(a * start_end(s).signed, abs=1e-6 * (1 + abs(a)) * (1 + np.abs(s).max()))


def test_chunks_and_vde():
    s = np.repeat([1.0, 2.0, 4.0], 10)
    assert chunk_bounds(30, chunk_frames=10) == [(0, 10), (10, 20), (20, 30)]
    assert chunk_bounds(25, chunk_frames=10)[-1] == (20, 25)
    assert chunk_bounds(30, chunks=3) == [(0, 10), (10, 20), (20, 30)]
    np.testing.assert_allclose(chunk_means(s, chunks=3), [1, 2, 4])
    np.testing.assert_allclose(chunk_curve(s, chunk_frames=10), [0, 1, 3])
    # LV-Bench VDE: sum over chunks i = 2..N of (N - i + 1) |M_i - M_1| / M_1 = 2 * 1 + 1 * 3.
    assert video_drift_error([1.0, 2.0, 4.0]) == pytest.approx(5.0)
    assert video_drift_error([1.0, 2.0, 4.0], weight="log") == pytest.approx(
        math.log(2) * 1 + math.log(1) * 3
    )
    assert math.isnan(video_drift_error([0.0, 1.0]))
    with pytest.raises(ValueError, match="exactly one"):
        chunk_bounds(10, chunk_frames=2, chunks=2)


def test_lag_curve_of_a_ramp():
    s = 0.5 * np.arange(60)
    assert lag_curve(s, (2, 5, 10, 20, 50)) == pytest.approx({2: 1.0, 5: 2.5, 10: 5.0, 20: 10.0, 50: 25.0})
    assert lag_curve(np.ones(30)) == {2: 0.0, 5: 0.0, 10: 0.0, 20: 0.0}  # lag 50 > length: left out


def _frechet_scipy(a: np.ndarray, b: np.ndarray) -> float:
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(sa @ sb).real
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(sa + sb - 2 * covmean))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.floats(0.0, 3.0))
def test_frechet_matches_scipy_and_is_symmetric(seed, dim, shift):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(200, dim))
    b = rng.normal(size=(150, dim)) * rng.uniform(0.5, 2, dim) + shift
    d = frechet_distance(a, b)
    assert d == pytest.approx(_frechet_scipy(a, b), rel=1e-5, abs=1e-8)
    assert d == pytest.approx(frechet_distance(b, a), rel=1e-9, abs=1e-12)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_windowed_frechet_rises_with_drift(base_metrics):
    reference = measure(scene(96, seed=11), lags=())  # fresh real frames of the same process
    fresh = windowed_frechet(base_metrics.features, reference.features, window=16)
    drifted = windowed_frechet(
        measure(with_brightness(scene(T, seed=0), 0.15), lags=()).features, reference.features, window=16
    )
    assert len(drifted.distance) == T // 16
    assert drifted.distance[-1] > 5 * drifted.distance[0]
    assert drifted.distance[-1] > 5 * fresh.distance.max()
    assert fresh.distance.max() < 3 * fresh.distance.min() + 1  # stationary: flat
    # one call from videos:
    curve = frechet_over_time(base_metrics, [reference], window=16)
    np.testing.assert_allclose(curve.distance, fresh.distance)


def test_identical_videos_compare_equal(base_metrics):
    twin = measure(scene(T, seed=0), name="twin", lags=())
    assert frechet_distance(base_metrics.features, twin.features) == pytest.approx(0.0, abs=1e-9)
    for name in base_metrics.series:
        np.testing.assert_array_equal(base_metrics.series[name], twin.series[name])
    out = compare([base_metrics, twin])
    assert all(out[m]["difference"]["twin"] == 0.0 for m in out)
    assert all(out[m]["in_spread"]["twin"] in (0.0, None) for m in out)


def test_compare_with_and_without_stabilizer(base):
    plain = measure(with_brightness(base, 0.12), name="plain", lags=())
    fixed = measure(with_brightness(base, 0.03), name="stabilized", lags=())
    out = compare([plain, fixed])
    luma = out["luma_mean"]
    assert luma["difference"]["stabilized"] == pytest.approx(
        -0.09 * (1 - 0.15), abs=0.01
    )  # 0.03 - 0.12 of ramp
    # In spreads of the baseline's own frame-to-frame scatter: far below noise, a large negative number.
    assert luma["spread"] == pytest.approx(spread(plain.series["luma_mean"]))
    assert luma["in_spread"]["stabilized"] == pytest.approx(luma["difference"]["stabilized"] / luma["spread"])
    assert luma["in_spread"]["stabilized"] < -10
    assert luma["signed"]["plain"] > 0
    with pytest.raises(ValueError, match="unique"):
        compare([plain, plain])


def test_one_call_summaries(base, base_metrics):
    vm = measure(with_colour_cast(base, (0.05, 0.0, 0.0)), lags=())
    se = start_end_drift(vm, metrics=("lab_a", "contrast", "saturation", "sharpness", "flicker"))
    assert set(se) == {"lab_a", "contrast", "saturation", "sharpness", "flicker"} and se["lab_a"].signed > 2
    per_frame = channel_drift(vm)
    own = base_metrics.series["mean_r"] - base_metrics.series["mean_r"][0]
    np.testing.assert_allclose(per_frame["mean_r"], 0.05 * ramp(T) + own, atol=1e-5)
    np.testing.assert_allclose(
        per_frame["std_r"], base_metrics.series["std_r"] - base_metrics.series["std_r"][0], atol=1e-5
    )
    per_chunk = channel_drift(vm, chunks=4)
    assert per_chunk["mean_r"].shape == (4,) and per_chunk["mean_r"][-1] > 0.03
    with pytest.raises(KeyError, match="no metric"):
        start_end_drift(vm, metrics=("nope",))


def test_luma_weights_match_helper():
    assert np.allclose(LUMA, [0.2126, 0.7152, 0.0722])
