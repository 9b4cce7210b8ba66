"""Motion from optical flow: a frozen video has no motion and perfect smoothness, jitter lowers smoothness,
magnitudes are resolution-normalised, interpolation along a known flow is exact, RAFT's plumbing runs."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from _videos import moving_square, to_u8
from scipy import ndimage
from vidfix.metrics import FlowWeightsError, MetricsWarning, MotionScorer, drift_report, measure
from vidfix.metrics.motion import DYNAMIC_THRESHOLD, dis_flow, interpolate_middle, load_raft, top_magnitude
from vidfix.scripts import drift as drift_cli


def _motion(frames: np.ndarray, **kwargs) -> dict[str, np.ndarray]:
    return measure(to_u8(frames), scorers=[MotionScorer(**kwargs)], lags=(), scenes="off").series


def test_a_frozen_video_does_not_move():
    s = _motion(moving_square(16, speed=0))
    assert np.nanmax(s["motion_magnitude"]) < 0.05 and np.nansum(s["dynamic"]) == 0
    assert np.nanmin(s["motion_smoothness"]) > 0.9999
    assert np.isnan(s["motion_magnitude"][0]) and np.isnan(s["motion_smoothness"][:2]).all()


def test_jitter_is_less_smooth_than_steady_motion():
    steady = _motion(moving_square(24, speed=2))
    jittered = _motion(moving_square(24, speed=2, jitter=3))
    assert np.nanmean(steady["motion_smoothness"]) > 0.998
    assert np.nanmean(jittered["motion_smoothness"]) < np.nanmean(steady["motion_smoothness"]) - 0.01
    # Both move; VBench's threshold is 6 px at a 256-pixel short side (2 px/frame at 64 rows is 8 px there).
    assert np.nanmedian(steady["motion_magnitude"]) == pytest.approx(8.0, rel=0.25)
    assert np.nanmean(steady["dynamic"]) == 1.0


def test_magnitude_does_not_depend_on_resolution():
    small = _motion(moving_square(12, 64, 96, speed=2))
    big_frames = np.stack([ndimage.zoom(f, (2, 2, 1), order=1) for f in moving_square(12, 64, 96, speed=2)])
    big = _motion(np.clip(big_frames, 0, 1))  # 128 rows, 4 px/frame: the same motion at twice the size
    assert np.nanmedian(big["motion_magnitude"]) == pytest.approx(
        np.nanmedian(small["motion_magnitude"]), rel=0.2
    )
    assert DYNAMIC_THRESHOLD == 6.0


def test_interpolation_along_a_known_flow_is_exact():
    rng = np.random.default_rng(0)
    texture = ndimage.gaussian_filter(rng.random((48, 64, 3)), (2, 2, 0)).astype(np.float32)
    a = texture
    b = ndimage.shift(texture, (0, 4, 0), mode="nearest").astype(np.float32)  # moved 4 px right
    middle = ndimage.shift(texture, (0, 2, 0), mode="nearest").astype(np.float32)
    flow = np.zeros((48, 64, 2), np.float32)
    flow[..., 0] = 4.0
    guess = interpolate_middle(a, b, flow)
    assert np.abs(guess - middle)[:, 6:-6].max() < 1e-5  # exact away from the borders
    estimated = dis_flow(a, b)
    assert np.median(estimated[8:-8, 8:-8, 0]) == pytest.approx(4.0, abs=0.3)
    assert top_magnitude(flow) == pytest.approx(4.0)


def test_raft_plumbing_with_random_weights():
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    model = functools.partial(raft_small(weights=None).eval(), num_flow_updates=2)  # few refinements: fast
    model.reportable = False  # type: ignore[attr-defined]  # random weights: numbers not reportable
    with pytest.warns(MetricsWarning, match="RAFT with random weights"):
        s = _motion(moving_square(3, 64, 96, speed=2), flow="raft", raft=model)
    assert np.isfinite(s["motion_magnitude"][1:]).all() and np.isfinite(s["motion_smoothness"][2:]).all()


def test_missing_raft_weights_say_how_to_fetch_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(
        FlowWeightsError, match=r"RAFT weights raft_small.*not in the torch hub cache.*flow='dis'"
    ):
        load_raft(download=False)


def test_motion_in_reports_and_cli(tmp_path, capsys):
    from vidfix.metrics import write_video

    clip = write_video(tmp_path / "m.mkv", to_u8(moving_square(16, speed=2, jitter=2)), codec="ffv1", fps=24)
    report = drift_report(clip, scorers=[MotionScorer()], chunks=2)
    assert {"motion_magnitude", "dynamic", "motion_smoothness"} <= set(report["videos"][0]["series"])
    assert set(report["videos"][0]["chunks"]["vde"]) >= {"motion_smoothness"}
    assert "dynamic" not in report["videos"][0]["chunks"]["vde"]  # a 0/1 share, not a quality score
    assert drift_cli.main([str(clip), "--motion", "--quiet"]) == 0
    assert "motion_smoothness" in capsys.readouterr().out
