"""One regression test per bad input of issue 15: each gets a clear error, or a warning saying what was read."""

from __future__ import annotations

import warnings
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from _videos import scene, three_scenes, to_u8, with_brightness
from vidfix.metrics import (
    DataRangeWarning,
    MetricsWarning,
    VideoReadWarning,
    compare,
    drift_report,
    format_table,
    iter_video,
    measure,
    probe,
    start_end_drift,
)
from vidfix.scripts import drift as drift_cli


def _encode(
    path, frames, *, rate, pts=None, codec="libx264", pix_fmt="yuv420p", time_base=None, options=None
):
    """A test file written with PyAV directly, for what the library's writer deliberately never makes."""
    with av.open(str(path), "w", options=options or {}) as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if time_base is not None:
            s.codec_context.time_base = time_base
        for i, f in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def test_truncated_mp4_with_its_index_at_the_start_says_what_was_read(tmp_path, capsys):
    frames = to_u8(np.random.default_rng(0).random((250, 64, 64, 3)))  # noise: a big file, cut mid-way
    whole = _encode(tmp_path / "whole.mp4", frames, rate=25, options={"movflags": "faststart"})
    data = whole.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index comes first, so the cut file still opens
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.warns(VideoReadWarning, match=r"read (\d+) of the 250 frames its header states"):
        vm = measure(cut, lags=(), scenes="off")
    assert 50 < vm.frames < 250
    assert drift_cli.main([str(cut), "--quiet", "--no-scene-detection"]) == 0  # measured, and said so
    assert f"read {vm.frames} of the 250 frames its header states" in capsys.readouterr().out


@pytest.fixture(scope="module")
def vfr(tmp_path_factory):
    """30 frames 20 ms apart, then 30 frames 50 ms apart (timestamps in ms): frame i is NOT at i / fps."""
    frames = np.stack([np.full((64, 64, 3), 4 * i, np.uint8) for i in range(60)])
    pts = [20 * i if i < 30 else 600 + 50 * (i - 30) for i in range(60)]
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    return _encode(path, frames, rate=30, pts=pts, time_base=Fraction(1, 1000))


def test_variable_frame_rate_start_end_use_timestamps(vfr):
    reader = iter_video(vfr, start=0.35, end=0.8, warn=False)
    index = np.concatenate([b.index for b in reader])
    # Timestamps: frames 18..29 at 0.36..0.58 s, then 30..33 at 0.60..0.75 s. By i / mean-fps it would be others.
    assert index.tolist() == list(range(18, 34))
    assert any("variable frame rate (frame intervals 20.0-50.0 ms" in n for n in reader.notes)
    with pytest.warns(VideoReadWarning, match="variable frame rate"):
        vm = measure(vfr, start=0.35, end=0.8, lags=(), scenes="off")
    assert vm.index.tolist() == list(range(18, 34))
    assert vm.times == pytest.approx([0.02 * i for i in range(18, 30)] + [0.6 + 0.05 * k for k in range(4)])


def test_gif_frame_rate_comes_from_its_frame_delays(tmp_path):
    rng = np.random.default_rng(1)
    frames = to_u8(np.clip(scene(1, 32, 32)[0] + rng.normal(0, 0.01, (20, 32, 32, 3)), 0, 1))
    delays = [3 if i % 2 == 0 else 4 for i in range(20)]  # centiseconds: about 28.6 fps, as GIFs store 30 fps
    pts = list(np.cumsum([0, *delays[:-1]]))
    path = _encode(
        tmp_path / "clip.gif",
        frames,
        rate=Fraction(100, 3),
        pts=pts,
        codec="gif",
        pix_fmt="rgb8",
        time_base=Fraction(1, 100),
    )
    with av.open(str(path)) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(33.33, abs=0.01)  # the header's claim
    want = 19 / (pts[-1] / 100)  # (n - 1) / span of the timestamps
    assert probe(path).fps == pytest.approx(want)
    with pytest.warns(
        VideoReadWarning, match=r"frame rate from the timestamps is 28\.79 fps, the header says 33\.33"
    ):
        vm = measure(path, grid=None, lags=(), scenes="off")
    assert vm.fps == pytest.approx(want)


def test_two_frame_video_says_which_summaries_it_cannot_have():
    x = to_u8(scene(2, 32, 32))
    report = drift_report(x, reference=to_u8(scene(40, 32, 32, seed=3)), chunk_frames=16, window=16)
    v = report["videos"][0]
    assert v["chunks"] is None and v["frechet"] is None
    notes = " | ".join(report["notes"])
    assert "2 frames make fewer than 2 chunks of 16 frames: no per-chunk curve" in notes
    assert "2 frames are fewer than one Frechet window of 16: no Frechet distance" in notes
    assert "only 2 frames: start-end drift compares 1 frame(s) at each end" in notes
    assert "note: video0: 2 frames make fewer than 2 chunks" in format_table(report)
    with pytest.raises(ValueError, match="window must be at least 8 frames"):
        drift_report(x, window=2)


def test_a_list_of_frames_is_one_video():
    x = to_u8(scene(6, 32, 48))
    want = measure(x, lags=(2,), scenes="off")
    as_list = measure(list(x), lags=(2,), scenes="off")
    chw = measure([torch.from_numpy(f).permute(2, 0, 1) for f in x], layout="TCHW", lags=(2,), scenes="off")
    for name in want.series:
        np.testing.assert_array_equal(as_list.series[name], want.series[name])
        np.testing.assert_allclose(chw.series[name], want.series[name], rtol=1e-5, atol=1e-6)  # float path
    report = drift_report(list(x))
    assert len(report["videos"]) == 1 and report["videos"][0]["frames"] == 6


def test_data_in_0_1_declared_as_minus_1_1_is_flagged():
    x = scene(6, 32, 32).astype(np.float32)  # values in [0.2, 0.75]
    with pytest.warns(DataRangeWarning, match=r"all in \[0, 1\], but value_range is \(-1, 1\)"):
        measure(x, value_range=(-1, 1), scenes="off")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRangeWarning)
        measure(x * 2 - 1, value_range=(-1, 1), scenes="off")  # real [-1, 1] data: no warning


def test_8bit_values_in_uint16_are_refused():
    u8 = to_u8(scene(6, 32, 32))
    with pytest.raises(ValueError, match=r"uint16 video holds values .* only: 8-bit data in a 16-bit array"):
        measure(u8.astype(np.uint16))
    declared = measure(u8.astype(np.uint16), value_range=(0, 255), scenes="off")
    np.testing.assert_allclose(
        declared.series["luma_mean"], measure(u8, scenes="off").series["luma_mean"], atol=1e-6
    )
    fade_in = (scene(8, 32, 32) * 65535).astype(np.uint16)
    fade_in[:4] = 0  # black frames first: the check looks at the whole video, not at a batch
    measure(fade_in, batch_size=2, scenes="off")


def test_wrong_layout_message_shows_the_input_shape():
    x = torch.rand(1, 12, 3, 32, 32)  # (B, T, C, H, W) declared as (B, C, T, H, W)
    with pytest.raises(
        ValueError, match=r"shape \(1, 12, 3, 32, 32\) has 12 channels .* fits layout 'BTCHW'"
    ):
        measure(x, layout="BCTHW")
    with pytest.raises(ValueError, match=r"shape \(2, 3, 5, 32, 32\)"):
        measure(torch.rand(2, 3, 5, 32, 32), layout="BCTHW")


def test_no_ratios_to_near_zero_drift():
    """The old ratio column read 1.67e4x when the clean drift was 1e-5: differences in spreads cannot blow up."""
    base = scene(48, 48, 64, seed=2)
    clean = measure(to_u8(base), name="clean", lags=(), scenes="off")
    fixed = measure(to_u8(with_brightness(base, 0.01)), name="fixed", lags=(), scenes="off")
    out = compare([clean, fixed])["luma_mean"]
    assert "ratio" not in out and abs(out["signed"]["clean"]) < 1e-3
    assert out["difference"]["fixed"] == pytest.approx(out["abs"]["fixed"] - out["abs"]["clean"])
    assert 0 < out["in_spread"]["fixed"] < 50  # a small drift is a few spreads, not ten thousand times
    table = format_table(drift_report([clean, fixed]))
    assert "x " not in table.split("\n", 2)[2] and " sd)" in table


def test_a_cut_no_longer_cancels_a_ramp():
    """The old ratio read 0.19x when a cut cancelled a ramp; measured within scenes the ramp is there."""
    shots = three_scenes(30)
    ramp_then_cut = to_u8(with_brightness(shots, 0.15))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MetricsWarning)
        whole = start_end_drift(measure(ramp_then_cut, lags=()), metrics=["luma_mean"])["luma_mean"].signed
    split = start_end_drift(measure(ramp_then_cut, scenes="split", lags=()), metrics=["luma_mean"])[
        "luma_mean"
    ]
    assert whole < 0  # the darker last shot outweighs the brightening: the cut reads as the opposite drift
    assert split.signed == pytest.approx(0.15 * 0.85, abs=0.02)


def test_vde_only_for_positive_scores():
    x = to_u8(with_brightness(scene(40, 32, 32), 0.1))
    report = drift_report(x, chunks=4)
    vde = report["videos"][0]["chunks"]["vde"]
    scores = {m for m, i in report["metrics"].items() if i["score"]}
    assert set(vde) == scores and {"sharpness", "ssim", "flicker"} <= scores
    assert not {"lab_a", "lab_b", "delta_e", "clip_high", "luma_mean"} & set(vde)
    assert "positive quality scores only" in format_table(report)
