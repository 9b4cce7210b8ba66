"""Read and write video files: PyAV (decord on request), streamed frame by frame, timestamps kept.

Decoded frames are uint8 ``(T, H, W, 3)`` RGB (``FrameBatch.frames``), with their source frame numbers and
times beside them (``FrameBatch.index``, ``FrameBatch.times``), so a long 4K video never has to be in memory:
:func:`iter_video` yields batches.

Selection, the same for both readers: frame ``i`` has time ``t_i``, its **timestamp** in seconds from the first
frame (``i / fps`` where a file has no timestamps, and for arrays); ``start``/``end`` keep
``start <= t_i < end``; then every ``stride``-th kept frame; then at most ``max_frames``. On a variable-frame-rate
file timestamps and ``i / fps`` disagree; the timestamps are what a player shows, so they are used.

What a reader saw is checked against what the file says, and told (a :class:`VideoReadWarning` at the end of the
pass, also in :attr:`VideoReader.notes`): fewer frames than the header states (a truncated or corrupt file: the
frames before the damage are kept), variable frame rate (frame intervals differ by more than 5%), and a frame rate
from the timestamps that differs from the header's (GIF headers often state the shortest frame delay). The frame
rate reported (:attr:`VideoReader.fps`, :func:`probe`) is the timestamps' mean rate, ``(n - 1) / (t_last - t_0)``.

Readers: ``backend="auto"`` and ``"pyav"`` read with PyAV; ``"decord"`` with decord (same frames on 8-bit video,
no AV1). Both decode through FFmpeg's converter to 8-bit RGB, so a file's conversions are the decoder's:
grayscale video comes back as R = G = B, alpha is dropped, and 10/12/16-bit video is reduced to 8 bits (FFmpeg
dithers: within ~3 codes of the top byte). Arrays and tensors do not go through here; see
:mod:`vidfix.metrics.layout` (which keeps 16-bit precision).

Writing goes through PyAV: h264 (libx264, yuv420p, CRF 18) by default; ``"h264-lossless"`` (libx264rgb, qp 0)
and ``"ffv1"`` (.mkv/.avi) round-trip RGB exactly, for tests and reference clips.

Example:
    >>> for batch in iter_video("clip.mp4", batch_size=32, stride=2):     # doctest: +SKIP
    ...     print(batch.index[0], batch.times[0], batch.frames.shape)       # (B, H, W, 3) uint8
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator
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
    "VideoReadWarning",
    "VideoReader",
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

_TIME_TOL = 1e-6  # seconds: a frame exactly at `start` is kept, one exactly at `end` is not
_VFR_SPREAD = 0.05  # frame intervals differing by more than this share of the median: variable frame rate
_RATE_TOL = 0.01  # timestamps' rate differing from the header's by more than this share: said


class VideoReadError(ValueError):
    """A file that exists but cannot be read as a video: empty, corrupt, no video stream, no frames selected."""


class VideoReadWarning(UserWarning):
    """A file read with a caveat: fewer frames than its header states, variable frame rate, a wrong header rate."""


@dataclass(frozen=True)
class VideoInfo:
    """What a file says about itself (``frame_count`` is ``None`` where the container does not say).

    ``fps`` is the header's rate, except for GIF, whose frame delays are read (the header states the shortest).
    """

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
    times: np.ndarray  # (B,) float64 seconds from the first frame


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


def select_indices(
    n: int | None,
    *,
    fps: float | None = None,
    stride: int = 1,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
) -> range:
    """Frame numbers kept by a selection over ``n`` constant-rate frames (frame ``i`` at ``i / fps`` seconds).

    Args:
        n: number of frames in the video, or ``None`` if unknown (then ``end`` or ``max_frames`` is needed).
        fps: frames per second (needed for ``start``/``end``).
        stride: keep every ``stride``-th frame.
        start, end: time range in seconds, ``start <= i / fps < end``.
        max_frames: keep at most this many.
    """
    _check_selection(stride, start, end, max_frames)
    if (start is not None or end is not None) and not fps:
        raise ValueError("start/end (seconds) need the frame rate: pass fps=")
    first = math.ceil((start - _TIME_TOL) * fps) if start is not None and fps else 0
    last = math.ceil((end - _TIME_TOL) * fps) if end is not None and fps else None
    stop = last if n is None else (n if last is None else min(n, last))
    if stop is None:
        if max_frames is None:
            raise ValueError("an unknown-length selection needs end or max_frames")
        stop = first + max_frames * stride
    kept = range(first, max(first, stop), stride)
    return kept[:max_frames] if max_frames is not None else kept


def _gif_rate(container: Any, stream: Any) -> float | None:
    """Mean frame rate of a GIF from its packets' timestamps (no decoding): its header states the shortest delay."""
    times = [float(p.pts * p.time_base) for p in container.demux(stream) if p.pts is not None]
    if len(times) < 2 or max(times) <= min(times):
        return None
    return (len(times) - 1) / (max(times) - min(times))


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
            fps = float(rate) if rate else None
            codec = str(s.codec_context.name)
            if codec == "gif":
                fps = _gif_rate(container, s) or fps
            return VideoInfo(
                path=str(p),
                width=int(s.codec_context.width),
                height=int(s.codec_context.height),
                fps=fps,
                frame_count=int(s.frames) or None,
                codec=codec,
            )
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise VideoReadError(
            f"cannot read {str(p)!r} as a video (not a video file, or corrupt): {err}"
        ) from err


@dataclass
class _Log:
    """What a reader saw, for the checks at the end of a pass."""

    header_frames: int | None
    header_fps: float | None
    tick: float = 0.0  # the time base: timestamps are multiples of it, so intervals jitter by one tick
    decoded: int = 0  # frames decoded, selected or not
    t0: float | None = None
    t_last: float | None = None
    dt_min: float = math.inf
    dt_max: float = 0.0
    dt_sum: float = 0.0
    complete: bool = False  # decoded to the end of the stream (not stopped early by end/max_frames)
    error: str | None = None  # why decoding stopped early

    def saw(self, t: float) -> None:
        if self.t_last is not None:
            dt = t - self.t_last
            self.dt_min, self.dt_max = min(self.dt_min, dt), max(self.dt_max, dt)
            self.dt_sum += dt
        self.t_last = t
        self.decoded += 1

    @property
    def measured_fps(self) -> float | None:
        """Mean rate of the decoded frames' timestamps, ``(n - 1) / (t_last - t_0)``."""
        return (self.decoded - 1) / self.dt_sum if self.decoded >= 2 and self.dt_sum > 0 else None

    @property
    def fps(self) -> float | None:
        """The header's rate where the timestamps agree with it (within 1%; millisecond time bases round), else theirs."""
        measured = self.measured_fps
        if measured is None or (self.header_fps and abs(measured / self.header_fps - 1) <= _RATE_TOL):
            return self.header_fps or measured
        return measured

    def notes(self, path: str) -> list[str]:
        out: list[str] = []
        short = self.header_frames is not None and self.decoded < self.header_frames
        if self.error is not None or (self.complete and short):
            what = (
                f"read {self.decoded} of the {self.header_frames} frames its header states"
                if short
                else (f"read {self.decoded} frames")
            )
            why = f"; decoding stopped: {self.error}" if self.error else ""
            out.append(f"{path!r}: {what} (truncated or corrupt file?){why}; measuring the frames read")
        spread = max(_VFR_SPREAD * self.dt_sum / max(1, self.decoded - 1), 1.5 * self.tick)
        if self.decoded >= 3 and self.dt_max - self.dt_min > spread:
            out.append(
                f"{path!r}: variable frame rate (frame intervals {1000 * self.dt_min:.1f}-{1000 * self.dt_max:.1f} ms, "
                f"mean {self.fps:.3g} fps): start/end select frames by their timestamps; chunks, lags and "
                "stride count frames"
            )
        elif self.fps and self.header_fps and self.fps != self.header_fps:
            out.append(
                f"{path!r}: frame rate from the timestamps is {self.fps:.4g} fps, the header says "
                f"{self.header_fps:.4g}; using the timestamps"
            )
        return out


class VideoReader:
    """The selected frames of a video file, decoded in batches; iterate once.

    After the pass, :attr:`notes` says what was read where it differs from what the file states (also issued as
    :class:`VideoReadWarning` when ``warn``), and :attr:`fps` is the timestamps' mean frame rate.
    """

    def __init__(
        self,
        path: str,
        *,
        batch_size: int,
        stride: int,
        start: float | None,
        end: float | None,
        max_frames: int | None,
        backend: Backend,
        threads: int,
        warn: bool,
    ) -> None:
        self.path = path
        self.batch_size, self.stride, self.start, self.end, self.max_frames = (
            batch_size,
            stride,
            start,
            end,
            max_frames,
        )
        self.backend, self.threads, self.warn = backend, threads, warn
        self.notes: list[str] = []
        self._log: _Log | None = None

    @property
    def fps(self) -> float | None:
        """Mean frame rate from the timestamps of the frames decoded so far (the header's before any)."""
        return self._log.fps if self._log is not None else None

    def _keep(self, t: float, kept: int, passed: int) -> tuple[bool, bool]:
        """(keep this frame, stop reading) for a frame at ``t`` seconds, ``passed`` frames inside the time range so far."""
        if self.end is not None and t >= self.end - _TIME_TOL:
            return False, True
        if self.max_frames is not None and kept >= self.max_frames:
            return False, True
        if self.start is not None and t < self.start - _TIME_TOL:
            return False, False
        return passed % self.stride == 0, False

    def __iter__(self) -> Iterator[FrameBatch]:
        read = self._decord if self.backend == "decord" else self._pyav
        count = 0
        for batch in read():
            count += len(batch.index)
            yield batch
        assert self._log is not None
        self.notes = self._log.notes(self.path)
        if self.warn:
            for note in self.notes:
                warnings.warn(note, VideoReadWarning, stacklevel=2)
        if not count:
            raise VideoReadError(_no_frames(self.path, self.start, self.end, self._log))

    def _batches(self, frames: Iterable[tuple[int, float, Any]]) -> Iterator[FrameBatch]:
        """Select from ``(i, t, frame)`` and group into batches; frames convert to RGB only when kept."""
        kept = passed = 0
        out: list[np.ndarray] = []
        index: list[int] = []
        times: list[float] = []
        for i, t, frame in frames:
            keep, stop = self._keep(t, kept, passed)
            if stop:
                break
            if self.start is None or t >= self.start - _TIME_TOL:
                passed += 1
            if not keep:
                continue
            kept += 1
            out.append(frame() if callable(frame) else frame)  # (H, W, 3) uint8
            index.append(i)
            times.append(t)
            if len(out) == self.batch_size:
                yield _batch(out, index, times)
                out, index, times = [], [], []
        if out:
            yield _batch(out, index, times)

    def _pyav(self) -> Iterator[FrameBatch]:
        import av

        try:
            container = av.open(self.path)
        except (av.error.FFmpegError, UnicodeDecodeError) as err:
            raise VideoReadError(
                f"cannot read {self.path!r} as a video (not a video file, or corrupt): {err}"
            ) from err
        with container:
            if not container.streams.video:
                raise VideoReadError(f"{self.path!r} has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.thread_count = self.threads
            rate = stream.average_rate or stream.guessed_rate
            log = self._log = _Log(
                header_frames=int(stream.frames) or None,
                header_fps=float(rate) if rate else None,
                tick=float(stream.time_base or 0.0),
            )

            def frames() -> Iterator[tuple[int, float, Any]]:
                it = container.decode(stream)
                i = 0
                while True:
                    try:
                        frame = next(it)
                    except StopIteration:
                        log.complete = True
                        return
                    except (av.error.FFmpegError, UnicodeDecodeError) as err:
                        if not log.decoded:
                            raise VideoReadError(
                                f"cannot read {self.path!r} as a video (not a video file, or corrupt): {err}"
                            ) from err
                        log.error = _first_line(err)
                        return
                    t = self._time(frame.time, i, log)
                    log.saw(t)
                    yield i, t, lambda f=frame: f.to_ndarray(format="rgb24")
                    i += 1

            yield from self._batches(frames())

    def _time(self, t: float | None, i: int, log: _Log) -> float:
        if t is None:  # no timestamps (raw streams): constant rate
            if not log.header_fps:
                if self.start is not None or self.end is not None:
                    raise VideoReadError(
                        f"{self.path!r} has neither timestamps nor a frame rate, so start/end (seconds) cannot be used"
                    )
                return float(i)
            return i / log.header_fps
        if log.t0 is None:
            log.t0 = float(t)
        return float(t) - log.t0

    def _decord(self) -> Iterator[FrameBatch]:
        import decord

        try:
            reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self.threads)
        except Exception as err:  # decord raises RuntimeError/DECORDError with FFmpeg text
            raise VideoReadError(f"decord cannot read {self.path!r}: {_first_line(err)}") from err
        n = len(reader)
        fps = float(reader.get_avg_fps()) or None
        log = self._log = _Log(header_frames=n or None, header_fps=fps)
        stamps = reader.get_frame_timestamp(list(range(n)))[:, 0] if n else np.zeros(0)  # (n,) start times
        rel = stamps - (stamps[0] if n else 0.0)

        def frames() -> Iterator[tuple[int, float, Any]]:
            for i, t in enumerate(rel.tolist()):
                log.saw(t)
                yield i, t, lambda i=i: reader[i].asnumpy()  # (H, W, 3) uint8, decoded only when kept
            log.complete = True

        try:
            yield from self._batches(frames())
        except VideoReadError:
            raise
        except Exception as err:
            raise VideoReadError(f"decord cannot read {self.path!r}: {_first_line(err)}") from err


def _batch(frames: list[np.ndarray], index: list[int], times: list[float]) -> FrameBatch:
    return FrameBatch(
        # (B, H, W, 3); one frame: a view (reshape keeps real strides, so torch sees channels-last memory)
        frames=frames[0].reshape(1, *frames[0].shape) if len(frames) == 1 else np.stack(frames),
        index=np.asarray(index, dtype=np.int64),
        times=np.asarray(times, dtype=np.float64),
    )


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
    warn: bool = True,
) -> VideoReader:
    """Decode the selected frames of a video file in batches of at most ``batch_size``.

    Args:
        path: video file (any container/codec FFmpeg reads).
        batch_size: frames per yielded batch (memory is about ``batch_size * H * W * 3`` bytes).
        stride, start, end, max_frames: the selection (module docstring; ``start``/``end`` by timestamps).
        backend: ``"auto"`` or ``"pyav"`` (PyAV), or ``"decord"``.
        threads: decoder threads (0: FFmpeg's choice, about one per core).
        warn: issue :class:`VideoReadWarning` for what the pass found (the reader's ``notes`` hold it either way).

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
    return VideoReader(
        p,
        batch_size=batch_size,
        stride=stride,
        start=start,
        end=end,
        max_frames=max_frames,
        backend=backend,
        threads=threads,
        warn=warn,
    )


def _no_frames(path: str, start: float | None, end: float | None, log: _Log | None) -> str:
    sel = ", ".join(f"{k}={v}" for k, v in (("start", start), ("end", end)) if v is not None)
    if sel and log is not None and log.decoded:
        span = f"; its {log.decoded} frames span 0-{log.t_last or 0.0:.3f} s"
        return f"no frames to read from {path!r} with {sel}{span}"
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
