"""``vidfix bench metrics``: frames per second of the pure drift metrics against decoding alone, on a 480p clip.

Makes a procedural 854x480 clip (textured background, moving shapes, fresh noise), encodes it with PyAV (h264),
then times, interleaved in one run so load affects all alike: decoding alone (decord, to RGB uint8), the pure
metrics on the decoded frames in memory (default analysis grid, and every pixel), and decode + metrics together.
Writes the medians and ratios to BENCHMARKS.md (``<!-- bench:metrics -->``) with the command, machine and date.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["BenchConfig", "main", "make_clip"]

EXAMPLE = "example:\n  vidfix bench metrics --frames 120 --repeats 3"


@dataclass(frozen=True)
class BenchConfig:
    """One benchmark run."""

    frames: int = 120
    repeats: int = 3
    width: int = 854
    height: int = 480
    threads: int = 1
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


def make_clip(path: str | Path, *, frames: int = 120, width: int = 854, height: int = 480) -> Path:
    """Encode the procedural benchmark clip with PyAV (h264, 24 fps)."""
    from vidfix.metrics import write_video

    return write_video(path, _procedural_frames(frames, height, width), fps=24, codec="h264")


def _elapsed(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run(config: BenchConfig, command: str) -> str:
    """Time the stages and return the markdown section."""
    import torch
    from vidfix.metrics import auto_subsample, iter_video, measure, probe, read_video
    from vidfix.scripts.bench import machine_line, today

    torch.set_num_threads(config.threads)
    with tempfile.TemporaryDirectory() as tmp:
        clip = (
            Path(config.clip)
            if config.clip
            else make_clip(
                Path(tmp) / "bench_480p.mp4", frames=config.frames, width=config.width, height=config.height
            )
        )
        info = probe(clip)
        frames = read_video(clip)  # (T, H, W, 3) uint8, decoded once for the pure-metrics timings
        n = len(frames)
        step = auto_subsample(info.height, info.width)
        full = frames[: min(n, 32)]  # every pixel is slow: time it on the first 32 frames
        stages: dict[str, Callable[[], object]] = {
            "decode": lambda: sum(len(b.index) for b in iter_video(clip, threads=config.threads)),
            "metrics": lambda: measure(frames),
            "metrics_coarse": lambda: measure(frames, subsample=step + 1),
            "metrics_full": lambda: measure(full, subsample=1),
            "both": lambda: measure(clip, decode_threads=config.threads),
        }
        counts = {"decode": n, "metrics": n, "metrics_coarse": n, "metrics_full": len(full), "both": n}
        measure(frames[:16])  # warm up
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in stages}
        for _ in range(config.repeats):  # interleaved: load changes hit every stage alike
            for key, fn in stages.items():
                times[key].append(_elapsed(fn))
    t = {k: statistics.median(w for w, _ in v) / counts[k] for k, v in times.items()}  # wall s per frame
    cpu = {k: statistics.median(c for _, c in v) / counts[k] for k, v in times.items()}  # CPU s per frame
    ratio = t["metrics"] / t["decode"]
    cpu_ratio = cpu["metrics"] / cpu["decode"]
    grid = f"{-(-info.height // step)}x{-(-info.width // step)}"
    coarse = f"{-(-info.height // (step + 1))}x{-(-info.width // (step + 1))}"

    def row(label: str, key: str) -> str:
        return (
            f"| {label} | {1 / t[key]:.0f} | {1000 * t[key]:.2f} | {t[key] / t['decode']:.2f} "
            f"| {1000 * cpu[key]:.2f} | {cpu[key] / cpu['decode']:.2f} |"
        )

    verdict = "met" if ratio <= 1 else "not met"
    cpu_verdict = "met" if cpu_ratio <= 1 else "not met"
    return "\n".join(
        [
            "## Drift metrics speed (`vidfix bench metrics`)",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine_line()}  ",
            f"Date: {today()}",
            "",
            f"Clip: procedural {info.width}x{info.height}, {n} frames, {info.codec} (libx264 CRF 18), "
            f"decoded by decord to RGB uint8. Median of {config.repeats} interleaved repeats; {config.threads} "
            "thread(s) for torch and for the decoder alike. `decode + metrics` decodes in a background thread, "
            "overlapping the metrics.",
            "",
            "| stage | frames/s | wall ms/frame | wall vs decoding | CPU ms/frame | CPU vs decoding |",
            "|---|---:|---:|---:|---:|---:|",
            row("decoding alone", "decode"),
            row(f"pure metrics, default analysis grid (step {step}: {grid} points)", "metrics"),
            row(f"pure metrics, coarser grid (`subsample={step + 1}`: {coarse} points)", "metrics_coarse"),
            row(
                f"pure metrics, every pixel ({info.height}x{info.width}; first {len(full)} frames)",
                "metrics_full",
            ),
            row("decode + metrics (`measure(path)`)", "both"),
            "",
            f"Target (pure metrics cost no more than decoding): wall time **{verdict}** (ratio {ratio:.2f}), "
            f"CPU time **{cpu_verdict}** (ratio {cpu_ratio:.2f}). "
            "Pure metrics = every per-frame statistic, block SSIM to the first frame, flicker, lag SSIM "
            "(lags 2-50, every 4th frame) and the Frechet features; no LPIPS.",
        ]
    )


def parse(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(
        prog="vidfix bench metrics",
        description="Frames per second of the drift metrics vs decoding alone, written to BENCHMARKS.md.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--frames", type=int, default=120, help="frames in the procedural clip")
    p.add_argument("--repeats", type=int, default=3, help="interleaved repeats (median reported)")
    p.add_argument("--width", type=int, default=854)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--threads", type=int, default=1, help="threads for the metrics (torch) and for decoding")
    p.add_argument("--clip", help="time this video instead of the procedural clip")
    p.add_argument("--output", default="BENCHMARKS.md", help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only")
    ns = p.parse_args(argv)
    if ns.frames < 2 or ns.repeats < 1 or ns.threads < 1:
        p.error("--frames must be >= 2, --repeats and --threads >= 1")
    return BenchConfig(
        ns.frames, ns.repeats, ns.width, ns.height, ns.threads, ns.clip, ns.output, not ns.no_write
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
