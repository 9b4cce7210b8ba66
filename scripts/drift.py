"""``vidfix drift``: measure the temporal drift of videos; a table in the terminal, JSON for programs, PNG plots.

Thin: parse arguments, build a frozen :class:`DriftConfig`, call :func:`vidfix.metrics.drift_report`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["SUMMARY", "DriftConfig", "main", "parse"]

SUMMARY = "drift metrics of any video: terminal table, JSON and PNG plots over time"

VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".gif"}

EXAMPLES = """examples:
  # compare a video with and without a stabilizer, chunks of 16 frames:
  vidfix drift plain.mp4 stabilized.mp4 --chunk-frames 16 --json drift.json --plot drift.png
  # generated frames against fresh real ones (windowed Frechet distance over time):
  vidfix drift generated.mp4 --reference real_clips/ --window 32 --json drift.json --plot drift.png
  # a long video: every 2nd frame, first 600, with LPIPS (weights from the torch hub cache):
  vidfix drift long.mp4 --stride 2 --max-frames 600 --lpips --json drift.json

JSON schema: see `python -c "import vidfix.metrics.report as r; print(r.__doc__)"` (schema vidfix.drift/1).
Start-end drift = mean of the last 15% of frames minus the first 15% (FramePack); signed."""


@dataclass(frozen=True)
class DriftConfig:
    """Everything one ``vidfix drift`` run needs."""

    videos: tuple[str, ...]
    reference: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    chunk_frames: int | None = None
    chunks: int | None = None
    lpips: bool = False
    stride: int = 1
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None
    subsample: int | Literal["auto"] = "auto"
    window: int = 32
    fraction: float = 0.15
    resize: bool = False
    ignore_fps: bool = False
    backend: Literal["auto", "decord", "pyav"] = "auto"
    json: str | None = None
    plot: str | None = None
    progress: bool = True


def _subsample(value: str) -> int | Literal["auto"]:
    if value == "auto":
        return "auto"
    try:
        return _positive(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 1, got {value!r}") from None


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value!r}")
    return n


def _expand(paths: list[str]) -> tuple[str, ...]:
    """Folders stand for the video files directly inside them (sorted by name)."""
    out: list[str] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            found = sorted(str(f) for f in path.iterdir() if f.suffix.lower() in VIDEO_SUFFIXES)
            if not found:
                raise ValueError(f"folder {p!r} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))})")
            out += found
        else:
            out.append(p)
    return tuple(out)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vidfix drift",
        description="Measure temporal drift of videos (colour, contrast, saturation, sharpness, flicker, SSIM, "
        "optional LPIPS): start-end, per-chunk and lag curves, and Frechet distance to reference frames.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files (or folders of them) to measure")
    p.add_argument(
        "--reference", nargs="+", metavar="REF", default=[], help="real/reference videos or folders"
    )
    p.add_argument("--names", nargs="+", metavar="NAME", help="labels for the videos (default: file names)")
    chunking = p.add_mutually_exclusive_group()
    chunking.add_argument("--chunk-frames", type=_positive, metavar="F", help="chunk length in frames")
    chunking.add_argument("--chunks", type=_positive, metavar="N", help="number of equal chunks")
    p.add_argument("--lpips", action="store_true", help="add LPIPS to the first and previous frame")
    p.add_argument("--stride", type=_positive, default=1, metavar="S", help="use every S-th frame")
    p.add_argument("--start", type=float, metavar="SEC", help="first second to use")
    p.add_argument("--end", type=float, metavar="SEC", help="second to stop at")
    p.add_argument("--max-frames", type=_positive, metavar="N", help="use at most N frames")
    p.add_argument(
        "--subsample", type=_subsample, default="auto", metavar="N|auto", help="analysis grid step"
    )
    p.add_argument("--window", type=_positive, default=32, metavar="W", help="frames per Frechet window")
    p.add_argument("--fraction", type=float, default=0.15, help="start-end share of frames (default 0.15)")
    p.add_argument(
        "--resize", action="store_true", help="resize videos of other sizes to the first one's size"
    )
    p.add_argument(
        "--ignore-fps", action="store_true", help="compare videos of different frame rates by frame"
    )
    p.add_argument("--backend", choices=["auto", "decord", "pyav"], default="auto", help="video reader")
    p.add_argument("--json", metavar="OUT.json", help="write the report as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="write plots of each metric over time")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def parse(argv: list[str] | None = None) -> DriftConfig:
    """Parse command-line arguments into a :class:`DriftConfig`."""
    ns = _parser().parse_args(argv)
    return DriftConfig(
        videos=tuple(ns.videos),
        reference=tuple(ns.reference),
        names=tuple(ns.names) if ns.names else None,
        chunk_frames=ns.chunk_frames,
        chunks=ns.chunks,
        lpips=ns.lpips,
        stride=ns.stride,
        start=ns.start,
        end=ns.end,
        max_frames=ns.max_frames,
        subsample=ns.subsample,
        window=ns.window,
        fraction=ns.fraction,
        resize=ns.resize,
        ignore_fps=ns.ignore_fps,
        backend=ns.backend,
        json=ns.json,
        plot=ns.plot,
        progress=not ns.quiet,
    )


def run(config: DriftConfig) -> dict:
    """Measure, print the table, write JSON and PNG; returns the report."""
    from tqdm import tqdm
    from vidfix.metrics import drift_report, format_table, plot_report, save_report

    bars: list[tqdm] = []

    def progress(name: str, expected: int | None):
        for bar in bars:
            bar.close()
        bar = tqdm(
            total=expected, desc=name, unit="frame", disable=None if config.progress else True, leave=False
        )
        bars.append(bar)
        return bar.update

    try:
        report = drift_report(
            list(_expand(list(config.videos))),
            names=config.names,
            reference=list(_expand(list(config.reference))) or None,
            chunk_frames=config.chunk_frames,
            chunks=config.chunks,
            fraction=config.fraction,
            window=config.window,
            lpips=config.lpips,
            mismatch="resize" if config.resize else "error",
            ignore_fps=config.ignore_fps,
            stride=config.stride,
            start=config.start,
            end=config.end,
            max_frames=config.max_frames,
            subsample=config.subsample,
            backend=config.backend,
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    print(format_table(report))
    if config.json:
        print(f"wrote {save_report(report, config.json)}")
    if config.plot:
        print(f"wrote {plot_report(report, config.plot)}")
    return report


def main(argv: list[str] | None = None) -> int:
    """``vidfix drift ...``: 0 on success, 2 with one clear line on stderr for bad input."""
    config = parse(argv)
    from vidfix.metrics import LPIPSWeightsError

    try:
        run(config)
    except (
        OSError,
        ValueError,
        LPIPSWeightsError,
    ) as err:  # VideoReadError and UnreportableError are ValueErrors
        print(f"vidfix drift: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
