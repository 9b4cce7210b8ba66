"""Read and write video files: decord first, PyAV where decord cannot; streamed in batches.

Decoded frames are uint8 ``(T, H, W, 3)`` RGB (``FrameBatch.frames``), with the source frame numbers beside them
(``FrameBatch.index``), so a long 720p video never has to be in memory: :func:`iter_video` yields batches.

Selection, the same for both readers: frame ``i`` has time ``i / fps``; ``start``/``end`` (seconds) keep
``start <= i / fps < end``; then every ``stride``-th frame; then at most ``max_frames``.

Readers: ``backend="auto"`` opens with decord (fast random access) and falls back to PyAV when decord cannot
open or decode the file (AV1, odd containers), also mid-stream. Both decode through FFmpeg's converter to
8-bit RGB, so a file's conversions are the decoder's: grayscale video comes back as R = G = B, alpha is dropped,
and 10/12/16-bit video is reduced to 8 bits (FFmpeg dithers: within ~3 codes of the top byte, and the readers may
differ by 1-2 codes there; on 8-bit video they return identical frames). Arrays and tensors do not go through
here; see :mod:`vidfix.metrics.layout` (which keeps 16-bit precision).

Writing goes through PyAV: h264 (libx264, yuv420p, CRF 18) by default; ``"h264-lossless"`` (libx264rgb, qp 0)
and ``"ffv1"`` (.mkv/.avi) round-trip RGB exactly, for tests and reference clips.

Example:
    >>> for batch in iter_video("clip.mp4", batch_size=32, stride=2):     # doctest: +SKIP
    ...     print(batch.index[0], batch.frames.shape)                       # (B, H, W, 3) uint8
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, TypeAlias, cast, get_args

import numpy as np
from vidfix.metrics.layout import Layout, as_frames, to_uint8

__all__ = [
    "BACKENDS",
    "CODECS",
    "ODD_SIZES",
    "Backend",
    "Codec",
    "FrameBatch",
    "OddSize",
    "VideoInfo",
    "VideoReadError",
    "iter_video",
    "probe",
    "read_video",
    "select_indices",
    "write_video",
]

Backend: TypeAlias = Literal["auto", "decord", "pyav"]
Codec: TypeAlias = Literal["h264", "h264-lossless", "ffv1", "mpeg4", "vp9", "av1"]
OddSize: TypeAlias = Literal["error", "pad"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
ODD_SIZES: tuple[OddSize, ...] = get_args(OddSize)
CODECS: tuple[Codec, ...] = get_args(Codec)

# codec -> (PyAV encoder, pixel format, encoder options)
_ENCODERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "h264": ("libx264", "yuv420p", {"crf": "18", "preset": "medium"}),
    "h264-lossless": ("libx264rgb", "rgb24", {"qp": "0", "preset": "veryfast"}),
    "ffv1": ("ffv1", "bgr0", {}),
    "mpeg4": ("mpeg4", "yuv420p", {"qscale": "2"}),
    "vp9": ("libvpx-vp9", "yuv420p", {"crf": "30", "b": "0"}),
    "av1": ("libsvtav1", "yuv420p", {"crf": "30"}),
}


class VideoReadError(ValueError):
    """A file that exists but cannot be read as a video: empty, corrupt, no video stream, no frames selected."""


@dataclass(frozen=True)
class VideoInfo:
    """What a file says about itself (header only; ``frame_count`` is ``None`` where the container does not say)."""

    path: str
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    codec: str


@dataclass(frozen=True)
class FrameBatch:
    """Consecutive selected frames of one video."""

    frames: np.ndarray  # (B, H, W, 3) uint8 RGB
    index: np.ndarray  # (B,) int64 source frame numbers


def _check_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"video file not found: {str(p)!r}")
    if p.is_dir():
        raise VideoReadError(f"{str(p)!r} is a directory, not a video file")
    if p.stat().st_size == 0:
        raise VideoReadError(f"video file {str(p)!r} is empty (0 bytes)")
    return p


def _check_selection(stride: int, start: float | None, end: float | None, max_frames: int | None) -> None:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    if max_frames is not None and (
        isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 1
    ):
        raise ValueError(f"max_frames must be an integer >= 1 or None, got {max_frames!r}")
    if start is not None and start < 0:
        raise ValueError(f"start must be >= 0 seconds, got {start}")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end} s) must be after start ({start} s)")


def _first_last(
    fps: float | None, start: float | None, end: float | None, path: str
) -> tuple[int, int | None]:
    if (start is not None or end is not None) and not fps:
        raise VideoReadError(f"{path!r} does not state a frame rate, so start/end (seconds) cannot be used")
    first = math.ceil(start * fps - 1e-6) if start is not None and fps else 0
    last = math.ceil(end * fps - 1e-6) if end is not None and fps else None
    return first, last


def select_indices(
    n: int | None,
    *,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
) -> range:
    """Frame numbers kept by a selection over ``n`` frames (``n=None``: unknown length; needs ``end`` or ``max_frames``).

    Args:
        n: number of frames in the video, or ``None`` if unknown.
        fps: frames per second (needed for ``start``/``end``).
        stride: keep every ``stride``-th frame.
        start, end: time range in seconds, ``start <= i / fps < end``.
        max_frames: keep at most this many.
    """
    _check_selection(stride, start, end, max_frames)
    first, last = _first_last(fps, start, end, "video")
    stop = last if n is None else (n if last is None else min(n, last))
    if stop is None:
        if max_frames is None:
            raise ValueError("an unknown-length selection needs end or max_frames")
        stop = first + max_frames * stride
    kept = range(first, max(first, stop), stride)
    return kept[:max_frames] if max_frames is not None else kept


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Read a video file's header: size, frame rate, frame count (if stated) and codec.

    Raises:
        FileNotFoundError: no such file.
        VideoReadError: empty or unreadable file, or no video stream.
    """
    p = _check_path(path)
    import av

    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{str(p)!r} has no video stream")
            s = container.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            return VideoInfo(
                path=str(p),
                width=int(s.codec_context.width),
                height=int(s.codec_context.height),
                fps=float(rate) if rate else None,
                frame_count=int(s.frames) or None,
                codec=str(s.codec_context.name),
            )
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoReadError(
            f"cannot read {str(p)!r} as a video (not a video file, or corrupt): {err}"
        ) from err


def _batched(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(indices), size):
        yield list(indices[i : i + size])


def _iter_decord(
    path: str,
    batch_size: int,
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    threads: int,
) -> Iterator[FrameBatch]:
    import decord

    reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=threads)
    n = len(reader)
    fps = float(reader.get_avg_fps()) or None
    indices = select_indices(n, fps=fps, stride=stride, start=start, end=end, max_frames=max_frames)
    for chunk in _batched(indices, batch_size):
        frames = reader.get_batch(chunk).asnumpy()  # (B, H, W, 3) uint8
        yield FrameBatch(frames=frames, index=np.asarray(chunk, dtype=np.int64))


def _iter_pyav(
    path: str,
    batch_size: int,
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    threads: int,
    after: int = -1,
) -> Iterator[FrameBatch]:
    import av

    with av.open(path) as container:
        if not container.streams.video:
            raise VideoReadError(f"{path!r} has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        rate = stream.average_rate or stream.guessed_rate
        first, last = _first_last(float(rate) if rate else None, start, end, path)
        kept = 0
        frames: list[np.ndarray] = []
        index: list[int] = []
        for i, frame in enumerate(container.decode(stream)):
            if (last is not None and i >= last) or (max_frames is not None and kept >= max_frames):
                break
            if i < first or (i - first) % stride:
                continue
            kept += 1
            if i <= after:  # already delivered by another reader
                continue
            frames.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3) uint8
            index.append(i)
            if len(frames) == batch_size:
                yield FrameBatch(frames=np.stack(frames), index=np.asarray(index, dtype=np.int64))
                frames, index = [], []
        if frames:
            yield FrameBatch(frames=np.stack(frames), index=np.asarray(index, dtype=np.int64))


def iter_video(
    path: str | os.PathLike[str],
    *,
    batch_size: int = 16,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    backend: Backend = "auto",
    threads: int = 0,
) -> Iterator[FrameBatch]:
    """Decode the selected frames of a video file in batches of at most ``batch_size``.

    Args:
        path: video file (any container/codec FFmpeg reads).
        batch_size: frames per yielded batch (memory is about ``batch_size * H * W * 3`` bytes).
        stride, start, end, max_frames: the selection (module docstring).
        backend: ``"auto"`` (decord, PyAV fallback), ``"decord"`` or ``"pyav"``.
        threads: decoder threads (0: FFmpeg's choice, about one per core).

    Raises:
        FileNotFoundError: no such file.
        VideoReadError: empty, corrupt or non-video file, no video stream, or the selection keeps no frame.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; allowed: {', '.join(repr(b) for b in BACKENDS)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    _check_selection(stride, start, end, max_frames)
    p = str(_check_path(path))
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    return _iter_checked(p, batch_size, stride, start, end, max_frames, backend, threads)


def _iter_checked(
    p: str,
    batch_size: int,
    stride: int,
    start: float | None,
    end: float | None,
    max_frames: int | None,
    backend: Backend,
    threads: int,
) -> Iterator[FrameBatch]:
    import av

    delivered = -1
    count = 0
    errors: list[str] = []
    if backend in ("auto", "decord"):
        try:
            for batch in _iter_decord(p, batch_size, stride, start, end, max_frames, threads):
                delivered = int(batch.index[-1])
                count += len(batch.index)
                yield batch
            if count or backend == "decord":
                if not count:
                    raise VideoReadError(_no_frames(p, stride, start, end))
                return
        except VideoReadError:
            raise
        except Exception as err:  # decord raises RuntimeError/DECORDError with FFmpeg text
            if backend == "decord":
                raise VideoReadError(f"decord cannot read {p!r}: {_first_line(err)}") from err
            errors.append(f"decord: {_first_line(err)}")
    try:
        for batch in _iter_pyav(p, batch_size, stride, start, end, max_frames, threads, after=delivered):
            count += len(batch.index)
            yield batch
    except VideoReadError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        errors.append(f"PyAV: {_first_line(err)}")
        where = f" after {count} frames" if count else ""
        raise VideoReadError(
            f"cannot read {p!r} as a video{where} (not a video file, or corrupt): " + "; ".join(errors)
        ) from err
    if not count:
        raise VideoReadError(_no_frames(p, stride, start, end))


def _no_frames(path: str, stride: int, start: float | None, end: float | None) -> str:
    sel = ", ".join(f"{k}={v}" for k, v in (("start", start), ("end", end)) if v is not None)
    return f"no frames to read from {path!r}" + (
        f" with {sel}" if sel else " (the video holds no decodable frames)"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


def read_video(
    path: str | os.PathLike[str],
    *,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    backend: Backend = "auto",
) -> np.ndarray:
    """Decode the selected frames of a video file into one uint8 array ``(T, H, W, 3)``; see :func:`iter_video`."""
    batches = [
        b.frames
        for b in iter_video(
            path, batch_size=64, stride=stride, start=start, end=end, max_frames=max_frames, backend=backend
        )
    ]
    return np.concatenate(batches)  # (T, H, W, 3)


def _uint8_batches(
    frames: Any, layout: Layout, value_range: tuple[float, float] | None
) -> Iterator[np.ndarray]:
    if isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and layout == "THWC" and frames.ndim == 4:
        if frames.shape[-1] == 3 and value_range in (None, (0, 255)):
            yield frames  # already what the encoder takes
            return
    if isinstance(frames, np.ndarray) or hasattr(frames, "dim"):
        yield to_uint8(as_frames(frames, layout=layout, value_range=value_range))
        return
    for batch in frames:  # an iterable of batches in the same layout
        yield from _uint8_batches(batch, layout, value_range)


def write_video(
    path: str | os.PathLike[str],
    frames: Any | Iterable[Any],
    *,
    fps: float = 24.0,
    codec: Codec = "h264",
    layout: Layout = "THWC",
    value_range: tuple[float, float] | None = None,
    options: dict[str, str] | None = None,
    odd_size: OddSize = "error",
) -> Path:
    """Encode frames to a video file with PyAV, atomically (a temporary file, renamed when complete).

    The one video writer of vidfix: the generate tools and the demo write their .mp4 files through it.

    Args:
        path: output file; its extension picks the container (.mp4, .mkv, .webm, .avi ...).
        frames: one array/tensor in ``layout``, or an iterable of such batches (streamed: never all in memory).
        fps: frame rate.
        codec: ``"h264"`` (default, lossy), ``"h264-lossless"`` or ``"ffv1"`` (exact RGB), ``"mpeg4"``, ``"vp9"``, ``"av1"``.
        layout, value_range: as :func:`vidfix.metrics.as_frames`.
        options: extra encoder options (FFmpeg names), overriding the codec's defaults.
        odd_size: what a 4:2:0 codec (h264, mpeg4, vp9, av1) does with an odd width or height: ``"error"``,
            or ``"pad"``, repeating the last row/column (every pixel kept; one extra row/column shown).

    Raises:
        ValueError: unknown codec, odd width/height with a 4:2:0 codec and ``odd_size="error"``, a codec the
            container cannot hold, no frames. Nothing is left at ``path`` then (nor a temporary file).
    """
    import av

    if codec not in _ENCODERS:
        raise ValueError(f"unknown codec {codec!r}; allowed: {', '.join(repr(c) for c in CODECS)}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    encoder, pix_fmt, defaults = _ENCODERS[codec]
    if odd_size not in ODD_SIZES:
        raise ValueError(f"unknown odd_size {odd_size!r}; allowed: {', '.join(repr(o) for o in ODD_SIZES)}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A unique temporary name in the same folder, with the same extension (it picks the container).
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{out.suffix}")
    container = None
    stream = None
    written = 0
    try:
        for batch in _uint8_batches(frames, layout, value_range):
            if pix_fmt == "yuv420p" and odd_size == "pad" and (batch.shape[1] % 2 or batch.shape[2] % 2):
                pad = ((0, 0), (0, batch.shape[1] % 2), (0, batch.shape[2] % 2), (0, 0))
                batch = np.pad(batch, pad, mode="edge")  # (T, H + 1?, W + 1?, 3)
            if container is None or stream is None:
                h, w = batch.shape[1:3]
                if pix_fmt == "yuv420p" and (h % 2 or w % 2):
                    raise ValueError(
                        f"codec {codec!r} stores 4:2:0 colour and needs an even width and height, got {w}x{h}; "
                        "pass odd_size='pad', crop the frames, or use codec='ffv1' or 'h264-lossless'"
                    )
                container = av.open(str(tmp), mode="w")
                try:
                    added = container.add_stream(
                        encoder,
                        rate=Fraction(fps).limit_denominator(1001),
                        options={**defaults, **(options or {})},
                    )
                    stream = cast(
                        "av.video.stream.VideoStream", added
                    )  # a video encoder gives a video stream
                except (av.error.FFmpegError, ValueError) as err:
                    raise ValueError(
                        f"cannot write codec {codec!r} into {out.suffix or 'this'} files: {err}"
                    ) from err
                stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
            for image in batch:
                for packet in stream.encode(
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                ):
                    container.mux(packet)
                written += 1
        if container is None or stream is None or written == 0:
            raise ValueError("no frames to write")
        for packet in stream.encode():
            container.mux(packet)
        container.close()
        container = None
        os.replace(tmp, out)
    except av.error.FFmpegError as err:
        raise ValueError(f"cannot write {str(out)!r} with codec {codec!r}: {err}") from err
    finally:
        if container is not None:
            container.close()
        tmp.unlink(missing_ok=True)
    return out
