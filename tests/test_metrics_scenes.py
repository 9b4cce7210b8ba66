"""Scene cuts: found where PySceneDetect finds them, said when not split, and with scenes split no drift is
reported across a cut while drift inside scenes still adds up."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _videos import ramp, scene, three_scenes, to_u8, with_brightness
from vidfix.metrics import (
    CutDetector,
    MetricsWarning,
    drift_report,
    load_report,
    measure,
    start_end,
    start_end_drift,
    stitch,
    write_video,
)
from vidfix.metrics.grid import block_ssim, grid_stats
from vidfix.scripts import drift as drift_cli

T_EACH = 30


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory):
    """A clean clip of three shots cut together (no drift at all), as an h264 file."""
    return write_video(tmp_path_factory.mktemp("cuts") / "cuts.mp4", to_u8(three_scenes(T_EACH)), fps=24)


def test_cuts_are_where_pyscenedetect_finds_them(cut_clip):
    from scenedetect import ContentDetector, detect

    scenes = detect(str(cut_clip), ContentDetector())
    expected = [start.frame_num for start, _ in scenes][1:]
    with pytest.warns(MetricsWarning, match=r"2 scene cut\(s\) at frame 30, 60"):
        vm = measure(cut_clip, lags=())
    assert expected == [30, 60] and vm.cuts == expected
    assert vm.scene_bounds == [(0, 90)]  # found, not split


def test_content_scores_equal_pyscenedetects(cut_clip):
    """The detector's per-frame score is PySceneDetect's ContentDetector score on the same (half-size) frames."""
    from scenedetect import FrameTimecode
    from scenedetect.detectors import ContentDetector
    from vidfix.metrics.scenes import _half8

    x = to_u8(three_scenes(T_EACH))
    ours = CutDetector()
    cuts = ours(x)
    oracle = ContentDetector()
    theirs = [
        oracle._calculate_frame_score(FrameTimecode(i, fps=24.0), _half8(f)[..., ::-1].copy())  # BGR
        for i, f in enumerate(x)
    ]
    np.testing.assert_allclose(ours.scores, theirs, rtol=1e-9, atol=1e-9)
    assert np.flatnonzero(cuts).tolist() == [30, 60] and min(theirs[30], theirs[60]) > 27 > max(theirs[1:30])


def test_a_clean_clip_with_two_cuts_shows_no_drift_within_scenes(cut_clip):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricsWarning)
        whole = measure(cut_clip, lags=())
    split = measure(cut_clip, scenes="split", lags=(2, 5))
    # Read as one shot, the cuts look like large drift (the clip: luma -0.175, dE +17.6).
    assert abs(start_end(whole.series["luma_mean"]).signed) > 0.1
    assert start_end(whole.series["delta_e"]).signed > 10
    # Within scenes nothing drifts.
    drift = start_end_drift(split, metrics=["luma_mean", "lab_l", "lab_a", "lab_b", "delta_e", "saturation"])
    assert abs(drift["luma_mean"].signed) < 0.01 and abs(drift["lab_l"].signed) < 1.0
    assert abs(drift["lab_a"].signed) < 1.0 and abs(drift["lab_b"].signed) < 1.0
    assert drift["delta_e"].signed < 1.5 and abs(drift["saturation"].signed) < 0.02
    # Anchors restart at each cut; nothing compares frames across one.
    assert split.scene_bounds == [(0, 30), (30, 60), (60, 90)]
    assert split.series["ssim"][[0, 30, 60]] == pytest.approx(1.0)
    assert np.isnan(split.series["flicker"][[0, 30, 60]]).all() and not np.isnan(split.series["flicker"][31])
    assert split.series["delta_e"][[0, 30, 60]] == pytest.approx(0.0, abs=1e-9)
    assert split.notes == ["cuts.mp4: measured within 3 scenes (cuts at frame 30, 60)"]


def test_lag_pairs_never_cross_a_cut():
    x = to_u8(three_scenes(T_EACH))
    vm = measure(x, scenes="split", lags=(5, 20), lag_every=1)
    gs = grid_stats(x)
    moments = list(zip(gs.luma, gs.block_mean, gs.block_sq, strict=True))
    for k in (5, 20):
        pairs = [(t - k, t) for t in range(len(x)) if (t - k) // T_EACH == t // T_EACH and t >= k]
        want = np.mean([block_ssim(moments[b], moments[a]) for a, b in pairs])
        assert vm.lag_ssim[k] == pytest.approx(want, abs=1e-9)


def test_drift_inside_scenes_adds_up_across_cuts():
    ramped = to_u8(with_brightness(three_scenes(T_EACH), 0.15))  # one brightness ramp over all three shots
    single = to_u8(with_brightness(scene(3 * T_EACH), 0.15))  # the same ramp on one shot
    got = start_end_drift(measure(ramped, scenes="split", lags=()), metrics=["luma_mean"])["luma_mean"].signed
    want = start_end(measure(single, scenes="off", lags=()).series["luma_mean"]).signed
    assert got == pytest.approx(want, abs=0.01) and got > 0.1


def test_stitch_removes_jumps_and_keeps_trends():
    t = np.arange(60, dtype=float)
    trend = 0.01 * t
    jumps = np.where(t >= 20, 0.5, 0.0) + np.where(t >= 40, -0.8, 0.0)
    np.testing.assert_allclose(stitch(trend + jumps, [20, 40]), trend, atol=1e-9)
    flat = np.where(t >= 30, 2.0, 1.0)
    np.testing.assert_allclose(stitch(flat, [30]), np.ones(60), atol=1e-12)
    with_nan = flat.copy()
    with_nan[30] = np.nan  # an adjacent metric: undefined on the cut frame
    assert np.nanmax(np.abs(stitch(with_nan, [30]) - 1.0)) < 1e-12
    np.testing.assert_array_equal(stitch(ramp(10), []), ramp(10))


def test_report_and_cli_measure_within_scenes(cut_clip, tmp_path, capsys):
    report = drift_report(cut_clip, scenes="split", chunks=6)
    v = report["videos"][0]
    assert v["cuts"] == [30, 60] and v["scenes"] == [[0, 30], [30, 60], [60, 90]]
    assert abs(v["start_end"]["luma_mean"]["signed"]) < 0.01
    assert max(abs(c) for c in v["chunks"]["curve"]["luma_mean"]) < 0.01  # chunks see no jump either
    out = tmp_path / "s.json"
    assert drift_cli.main([str(cut_clip), "--scenes", "--json", str(out), "--quiet"]) == 0
    shown = capsys.readouterr().out
    assert "within scenes, cuts removed" in shown and "measured within 3 scenes" in shown
    assert load_report(out)["settings"]["scenes"] == "split"
    assert drift_cli.main([str(cut_clip), "--quiet"]) == 0
    assert "a cut reads as drift" in capsys.readouterr().out
