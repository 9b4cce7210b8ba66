"""Video files: lossless round trips, decord and PyAV agree, selection, streaming, fallback, and clear errors."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
from _videos import scene, to_u8
from vidfix.metrics import (
    VideoReadError,
    iter_video,
    measure,
    probe,
    read_video,
    select_indices,
    write_video,
)

T, H, W = 12, 48, 64


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return to_u8(scene(T, H, W, seed=7))


@pytest.fixture(scope="module")
def files(tmp_path_factory, frames) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    return {
        "ffv1": write_video(d / "lossless.mkv", frames, fps=24, codec="ffv1"),
        "h264-lossless": write_video(d / "lossless.mp4", frames, fps=24, codec="h264-lossless"),
        "h264": write_video(d / "lossy.mp4", frames, fps=24),
        "vp9": write_video(d / "lossy.webm", frames, fps=24, codec="vp9"),
    }


@pytest.mark.parametrize("codec", ["ffv1", "h264-lossless"])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_lossless_round_trip(files, frames, codec, backend):
    assert np.array_equal(read_video(files[codec], backend=backend), frames)


@pytest.mark.parametrize("codec", ["ffv1", "h264", "vp9"])
def test_decord_and_pyav_agree(files, frames, codec):
    a = read_video(files[codec], backend="decord")
    b = read_video(files[codec], backend="pyav")
    assert a.shape == (T, H, W, 3) and np.array_equal(a, b)
    if codec == "h264":
        assert np.abs(a.astype(int) - frames).mean() < 8  # lossy 4:2:0 on a noisy texture, but the same video


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize(
    "selection",
    [dict(stride=3), dict(start=0.1, end=0.35), dict(max_frames=5), dict(stride=2, start=0.05, max_frames=3)],
)
def test_selection_is_the_same_for_both_readers(files, frames, backend, selection):
    want = list(select_indices(T, fps=24, **selection))
    batches = list(iter_video(files["ffv1"], batch_size=2, backend=backend, **selection))
    assert all(len(b.index) <= 2 for b in batches)
    got_index = np.concatenate([b.index for b in batches]).tolist()
    assert got_index == want
    assert np.array_equal(np.concatenate([b.frames for b in batches]), frames[want])


def test_selection_arithmetic():
    assert list(select_indices(10, fps=10, start=0.25, end=0.65)) == [3, 4, 5, 6]  # 0.3 s .. 0.6 s
    assert list(select_indices(100, stride=10, max_frames=3)) == [0, 10, 20]
    with pytest.raises(ValueError, match="stride"):
        select_indices(10, stride=0)
    with pytest.raises(ValueError, match="after start"):
        select_indices(10, fps=10, start=0.5, end=0.2)


def test_av1_falls_back_to_pyav(tmp_path, frames):
    path = write_video(tmp_path / "clip.mkv", frames, fps=24, codec="av1")
    with pytest.raises(VideoReadError, match="decord cannot read"):
        read_video(path, backend="decord")
    auto = read_video(path)
    assert np.array_equal(auto, read_video(path, backend="pyav"))
    assert auto.shape == (T, H, W, 3) and np.abs(auto.astype(int) - frames).mean() < 10


def test_probe(files):
    info = probe(files["h264"])
    assert (info.width, info.height, info.fps, info.codec) == (W, H, 24.0, "h264")


def test_write_streams_batches_and_tensors(tmp_path, frames):
    batches = (frames[i : i + 5] for i in range(0, T, 5))
    path = write_video(tmp_path / "streamed.mkv", batches, codec="ffv1")
    assert np.array_equal(read_video(path), frames)
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1  # (1, C, F, H, W) in [-1, 1]
    path = write_video(tmp_path / "tensor.mkv", x, codec="ffv1", layout="BCTHW", value_range=(-1, 1))
    assert np.array_equal(read_video(path), frames)


def test_file_and_array_measure_the_same(files, frames):
    a = measure(files["ffv1"])
    b = measure(frames)
    for name in a.series:
        np.testing.assert_allclose(a.series[name], b.series[name], atol=1e-6, err_msg=name)
    assert a.fps == 24.0 and a.source.endswith("lossless.mkv") and a.name == "lossless.mkv"


def test_converted_pixel_formats(tmp_path):
    """Grayscale files come back R = G = B, alpha is dropped, 16-bit video is reduced to 8 bits (documented)."""
    rng = np.random.default_rng(0)
    cases = {
        "gray": ("gray", "gray", rng.integers(0, 256, (3, H, W), dtype=np.uint8)),
        "rgba": ("bgra", "rgba", rng.integers(0, 256, (3, H, W, 4), dtype=np.uint8)),
        "rgb48": ("gbrp16le", "rgb48le", rng.integers(0, 65536, (3, H, W, 3), dtype=np.uint16)),
    }
    for name, (pix_fmt, fmt, data) in cases.items():
        path = tmp_path / f"{name}.mkv"
        with av.open(str(path), "w") as c:
            s = c.add_stream("ffv1", rate=24)
            s.width, s.height, s.pix_fmt = W, H, pix_fmt
            for f in data:
                for p in s.encode(av.VideoFrame.from_ndarray(f, format=fmt)):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        for backend in ("decord", "pyav"):
            got = read_video(path, backend=backend)
            if name == "gray":
                assert all(np.array_equal(got[..., k], data) for k in range(3))
            elif name == "rgba":
                assert np.array_equal(got, data[..., :3])
            else:
                assert np.abs(got.astype(int) - (data >> 8)).max() <= 3  # FFmpeg dithers to 8 bits


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="video file not found"):
        read_video("/nonexistent/clip.mp4")


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(VideoReadError, match=r"empty \(0 bytes\)"):
        read_video(tmp_path / "empty.mp4")


@pytest.mark.parametrize("content", [b"not a video " * 500, b"hello"])
def test_corrupt_file(tmp_path, content):
    path = tmp_path / "junk.mp4"
    path.write_bytes(content)
    with pytest.raises(VideoReadError, match="not a video file, or corrupt"):
        read_video(path)
    with pytest.raises(VideoReadError, match="not a video file, or corrupt"):
        probe(path)


def test_truncated_mp4(tmp_path, files):
    data = files["h264"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])  # the index (moov) is at the end: unreadable
    with pytest.raises(VideoReadError, match="corrupt"):
        read_video(path)


def test_directory_and_audio_only(tmp_path):
    with pytest.raises(VideoReadError, match="is a directory"):
        read_video(tmp_path)
    path = tmp_path / "audio.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode():
            c.mux(p)
    with pytest.raises(VideoReadError, match="no video stream"):
        read_video(path)


def test_selection_past_the_end(files):
    with pytest.raises(VideoReadError, match="no frames to read"):
        read_video(files["ffv1"], start=100.0)


def test_one_frame_video_cannot_drift(tmp_path, frames):
    path = write_video(tmp_path / "one.mkv", frames[:1], codec="ffv1")
    assert read_video(path).shape == (1, H, W, 3)
    with pytest.raises(ValueError, match="at least 2 frames, got 1"):
        measure(path)


def test_write_errors(tmp_path, frames):
    with pytest.raises(ValueError, match="even width and height"):
        write_video(tmp_path / "odd.mp4", frames[:, :47])
    with pytest.raises(ValueError, match="unknown codec"):
        write_video(tmp_path / "x.mp4", frames, codec="h265")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "none.mkv", iter([]), codec="ffv1")
    odd = write_video(tmp_path / "odd.mkv", frames[:, :47], codec="ffv1")  # lossless codecs take odd sizes
    assert read_video(odd).shape == (T, 47, W, 3)


def test_video_file_with_zero_frames(tmp_path):
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        c.start_encoding()  # header and trailer, no frame
    with pytest.raises(VideoReadError, match=r"no video stream|no frames"):
        read_video(path)
    with pytest.raises(VideoReadError, match=r"no video stream|no frames"):
        measure(path)
