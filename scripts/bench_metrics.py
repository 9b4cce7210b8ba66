"""``vidfix bench metrics``: CPU time of the drift metrics against PyAV decoding the same clip, and memory at 4K.

Makes procedural clips (textured background, moving shapes, fresh noise; h264 CRF 18) at each ``--sizes``, then
times in this one process, with one thread everywhere (torch, OpenCV, the decoder), in interleaved rounds so
that load changes hit every stage alike:

- **decode**: PyAV decoding the clip to RGB24 frames, plainly (``stream.thread_count = 1``, ``to_ndarray``);
- **metrics**: :func:`vidfix.metrics.measure` on the decoded frames in memory (default analysis grid, scene
  detection on: what ``vidfix drift`` computes), i.e. everything but decoding;
- **drift**: ``measure(path)``, decoding and metrics together (decoding overlaps in a background thread).

Times are process CPU seconds (``time.process_time``: all threads of this process), the median and the minimum
over rounds, with wall time beside them; the machine's load average is recorded before and after. The target
(issue 13) is metrics <= 1x decoding. Memory: peak RSS of a fresh process running ``measure`` on a 4K clip
(``--no-4k`` skips it), against a process that only imports the same libraries. Writes BENCHMARKS.md
(``<!-- bench:metrics -->``) with the command, machine, load and date unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["BenchConfig", "main", "make_clip"]

_FRAMES_4K = 64  # memory does not grow with length (streamed): a short clip shows the peak
EXAMPLE = "example:\n  vidfix bench metrics --frames 120 --rounds 5 --sizes 854x480 640x272"


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    frames: int = 120
    rounds: int = 5
    sizes: tuple[tuple[int, int], ...] = ((854, 480), (640, 272))  # (width, height)
    memory_4k: bool = True
    clip: str | None = None
    output: str = "BENCHMARKS.md"
    write: bool = True


def _procedural_frames(n: int, h: int, w: int, *, batch: int = 8, seed: int = 0) -> Iterator[np.ndarray]:
    """Batches of uint8 ``(B, H, W, 3)``: smooth colour background + texture, two moving squares, fresh noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) / max(h, w)
    base = np.stack(
        [
            120 + 60 * np.sin(2 * np.pi * (1.5 * xx + 0.1)),
            120 + 50 * np.cos(2 * np.pi * (1.2 * yy + 0.5 * xx)),
            110 + 40 * np.sin(2 * np.pi * (2.0 * yy - xx)),
        ],
        axis=-1,
    ) + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
    s = h // 6
    for start in range(0, n, batch):
        out = []
        for i in range(start, min(n, start + batch)):
            f = base.copy()
            for k, colour in enumerate(([200, 80, 70], [60, 150, 200])):
                y0 = int((h - s) * (0.5 + 0.4 * np.sin(2 * np.pi * (i / n + 0.3 * k))))
                x0 = (int(i * (w - s) / n) + k * w // 2) % (w - s)
                f[y0 : y0 + s, x0 : x0 + s] = colour
            f += rng.normal(0, 4, f.shape).astype(np.float32)
            out.append(np.clip(f, 0, 255).astype(np.uint8))
        yield np.stack(out)


def make_clip(
    path: str | Path, *, frames: int = 120, width: int = 854, height: int = 480, preset: str = "medium"
) -> Path:
    """Encode the procedural benchmark clip with PyAV (h264 CRF 18, 24 fps)."""
    from vidfix.metrics import write_video

    return write_video(
        path, _procedural_frames(frames, height, width), fps=24, codec="h264", options={"preset": preset}
    )


def decode_rgb(path: str | Path) -> int:
    """PyAV decoding to RGB24 frames, plainly, one thread: the yardstick. Returns the frame count."""
    import av

    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            n += 1
    return n


@dataclass
class _Times:
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def add(self, fn: Callable[[], object]) -> None:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        self.cpu.append(time.process_time() - c0)
        self.wall.append(time.perf_counter() - w0)


def _time_clip(clip: Path, rounds: int) -> tuple[int, dict[str, _Times]]:
    """Interleaved rounds of decode / metrics / drift on one clip."""
    from vidfix.metrics import measure, read_video

    frames = read_video(clip)  # (T, H, W, 3) uint8, decoded once for the metrics-only stage
    stages: dict[str, Callable[[], object]] = {
        "decode": lambda: decode_rgb(clip),
        "metrics": lambda: measure(frames),
        "drift": lambda: measure(clip, decode_threads=1),
    }
    measure(frames[:16])  # warm up: imports, OpenCV and scene-detector set-up
    times = {k: _Times() for k in stages}
    for _ in range(rounds):
        for key, fn in stages.items():
            times[key].add(fn)
    return len(frames), times


_MEMORY_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
import vidfix.metrics as m
if sys.argv[1] != "-":
    vm = m.measure(sys.argv[1], decode_threads=1)
    assert vm.frames > 0
# VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's peak across exec)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM")))
"""


def _peak_rss_mb(clip: str) -> float:
    """Peak resident memory (MB) of a fresh process measuring ``clip`` ("-": only the imports)."""
    done = subprocess.run(
        [sys.executable, "-c", _MEMORY_SCRIPT, clip], capture_output=True, text=True, check=True
    )
    return int(done.stdout.split()[-1]) / 1024  # kB


def run(config: BenchConfig, command: str) -> str:
    """Time the stages at each size and return the markdown section."""
    import torch
    from vidfix.metrics import grid_shape, probe
    from vidfix.scripts.bench import machine_line, today

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows: list[str] = []
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        clips = (
            [Path(config.clip)]
            if config.clip
            else [
                make_clip(Path(tmp) / f"bench_{w}x{h}.mp4", frames=config.frames, width=w, height=h)
                for w, h in config.sizes
            ]
        )
        for clip in clips:
            info = probe(clip)
            n, t = _time_clip(clip, config.rounds)
            cpu = {k: statistics.median(v.cpu) for k, v in t.items()}
            low = {k: min(v.cpu) for k, v in t.items()}
            wall = {k: statistics.median(v.wall) for k, v in t.items()}
            gh, gw = grid_shape(info.height, info.width)
            ratio = cpu["metrics"] / cpu["decode"]
            rows.append(
                f"| {info.width}x{info.height} ({gw}x{gh} grid) | {1000 * cpu['decode'] / n:.2f} "
                f"| {1000 * cpu['metrics'] / n:.2f} | **{ratio:.2f}** ({low['metrics'] / low['decode']:.2f}) "
                f"| {1000 * cpu['drift'] / n:.2f} | {cpu['drift'] / cpu['decode']:.2f} "
                f"| {1000 * wall['decode'] / n:.2f} / {1000 * wall['metrics'] / n:.2f} / {1000 * wall['drift'] / n:.2f} |"
            )
            verdicts.append(f"{info.width}x{info.height}: {'met' if ratio <= 1 else 'NOT met'} ({ratio:.2f})")
        memory = ""
        if config.memory_4k:
            clip4k = make_clip(
                Path(tmp) / "bench_4k.mp4", frames=_FRAMES_4K, width=3840, height=2160, preset="ultrafast"
            )
            base, peak = _peak_rss_mb("-"), _peak_rss_mb(str(clip4k))
            memory = (
                f"Memory: `measure` on a 3840x2160 h264 clip of {_FRAMES_4K} frames in a fresh process peaks at "
                f"**{peak:.0f} MB** resident (VmHWM; the same imports alone: {base:.0f} MB, so the measuring "
                f"adds {peak - base:.0f} MB; target <= 1024 MB: **{'met' if peak <= 1024 else 'NOT met'}**). "
                "Frames are shrunk to the grid as they are decoded, so memory does not grow with resolution "
                "or length."
            )
    load_after = os.getloadavg()
    load = (
        f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (1 min; {os.cpu_count()} cores)"
    )
    return "\n".join(
        [
            "## Drift metrics speed and memory (`vidfix bench metrics`)",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_line()}  ",
            f"Load: {load}  ",
            f"Date: {today()}",
            "",
            f"Clips: procedural, {config.frames} frames, h264 CRF 18. One process, one thread for torch, OpenCV and "
            f"the decoder; {config.rounds} interleaved rounds; process CPU time per frame, median over rounds "
            "(the ratio of the minima in parentheses). *decode*: PyAV to RGB24 frames (`thread_count = 1`, "
            "`to_ndarray`); *metrics*: `measure(frames)` on the decoded frames in memory (every statistic, SSIM "
            "to the first frame, flicker, lag SSIM, Frechet features, scene-cut detection; no networks); "
            "*drift*: `measure(path)`, decoding and metrics together.",
            "",
            "| clip | decode CPU ms/frame | metrics CPU ms/frame | metrics / decode | drift CPU ms/frame "
            "| drift / decode | wall ms/frame (decode / metrics / drift) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            f"Target (metrics at most the CPU time of decoding): {'; '.join(verdicts)}. {memory}",
        ]
    )


def _size(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {value!r}") from None
    if w < 32 or h < 32 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"expected even WIDTHxHEIGHT of at least 32x32, got {value!r}")
    return w, h


def parse(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(
        prog="vidfix bench metrics",
        description="CPU time of the drift metrics vs PyAV decoding, and peak memory at 4K, written to BENCHMARKS.md.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=120, help="frames in each procedural clip")
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median and minimum reported)")
    p.add_argument("--sizes", type=_size, nargs="+", default=[(854, 480), (640, 272)], metavar="WxH")
    p.add_argument("--clip", help="time this video instead of the procedural clips")
    p.add_argument("--no-4k", action="store_true", help="skip the 4K memory measurement")
    p.add_argument("--output", default="BENCHMARKS.md", help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only")
    ns = p.parse_args(argv)
    if ns.frames < 16 or ns.rounds < 1:
        p.error("--frames must be >= 16 and --rounds >= 1")
    return BenchConfig(
        frames=ns.frames,
        rounds=ns.rounds,
        sizes=tuple(ns.sizes),
        memory_4k=not ns.no_4k,
        clip=ns.clip,
        output=ns.output,
        write=not ns.no_write,
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    config = parse(args)
    from vidfix.scripts.bench import write_section

    markdown = run(config, " ".join(["vidfix bench metrics", *args]))
    print(markdown)
    if config.write:
        print(f"wrote {write_section('metrics', markdown, path=config.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
