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
  # a clip with scene cuts, measured within scenes; motion from optical flow:
  vidfix drift edited.mp4 --scenes --motion --plot drift.png
  # VBench subject/background consistency (DINO/CLIP weights from the Hugging Face cache) and LPIPS:
  vidfix drift long.mp4 --stride 2 --max-frames 600 --subject --background --lpips --json drift.json

JSON schema: see `python -c "import vidfix.metrics.report as r; print(r.__doc__)"` (schema vidfix.drift/2).
Start-end drift = mean of the last 15% of frames minus the first 15% (FramePack); signed. Comparisons are
differences of |drift| in spreads (each metric's frame-to-frame scatter), never ratios."""


@dataclass(frozen=True)
class DriftConfig:
    """Everything one ``vidfix drift`` run needs."""

    videos: tuple[str, ...]
    reference: tuple[str, ...] = ()
    names: tuple[str, ...] | None = None
    chunk_frames: int | None = None
    chunks: int | None = None
    lpips: bool = False
    subject: str | None = None  # DINO checkpoint ("" = the default)
    background: str | None = None  # CLIP checkpoint ("" = the default)
    motion: Literal["dis", "raft"] | None = None
    scorers: tuple[str, ...] = ()
    device: str = "cpu"
    scenes: Literal["warn", "split", "off"] = "warn"
    stride: int = 1
    start: float | None = None
    end: float | None = None
    max_frames: int | None = None
    grid: int | None = 160
    window: int = 32
    fraction: float = 0.15
    resize: bool = False
    ignore_fps: bool = False
    backend: Literal["auto", "decord", "pyav"] = "auto"
    json: str | None = None
    plot: str | None = None
    progress: bool = True


def _grid(value: str) -> int | None:
    if value == "full":
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 16:
        raise argparse.ArgumentTypeError(
            f"expected 'full' or an integer >= 16 (the grid's short side), got {value!r}"
        )
    return n


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
        description="Measure temporal drift of videos (colour, contrast, saturation, sharpness, flicker, SSIM; "
        "optional LPIPS, VBench subject/background consistency, motion from optical flow): start-end, per-chunk and "
        "lag curves, Frechet distance to reference frames; scene cuts found and, with --scenes, measured within.",
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
    p.add_argument(
        "--subject",
        nargs="?",
        const="",
        metavar="MODEL",
        help="VBench subject consistency from DINO features (default facebook/dino-vitb16; HF cache)",
    )
    p.add_argument(
        "--background",
        nargs="?",
        const="",
        metavar="MODEL",
        help="VBench background consistency from CLIP features (default openai/clip-vit-base-patch32)",
    )
    p.add_argument(
        "--motion",
        nargs="?",
        const="dis",
        choices=["dis", "raft"],
        help="dynamic degree and motion smoothness from optical flow (dis: OpenCV, no weights; raft: torchvision)",
    )
    p.add_argument(
        "--scorer",
        action="append",
        default=[],
        metavar="NAME",
        help="add a frame scorer: a registered name (entry point vidfix.scorers) or module:attr; repeatable",
    )
    p.add_argument("--device", default="cpu", help="device for the networks (cpu, cuda)")
    scenes = p.add_mutually_exclusive_group()
    scenes.add_argument(
        "--scenes", action="store_true", help="measure within scenes: a cut restarts anchors and is not drift"
    )
    scenes.add_argument("--no-scene-detection", action="store_true", help="skip scene-cut detection")
    p.add_argument("--stride", type=_positive, default=1, metavar="S", help="use every S-th frame")
    p.add_argument("--start", type=float, metavar="SEC", help="first second to use")
    p.add_argument("--end", type=float, metavar="SEC", help="second to stop at")
    p.add_argument("--max-frames", type=_positive, metavar="N", help="use at most N frames")
    p.add_argument(
        "--grid",
        type=_grid,
        default=160,
        metavar="N|full",
        help="short side of the analysis grid frames are shrunk to (antialiased; default 160), or full",
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
        subject=ns.subject,
        background=ns.background,
        motion=ns.motion,
        scorers=tuple(ns.scorer),
        device=ns.device,
        scenes="split" if ns.scenes else "off" if ns.no_scene_detection else "warn",
        stride=ns.stride,
        start=ns.start,
        end=ns.end,
        max_frames=ns.max_frames,
        grid=ns.grid,
        window=ns.window,
        fraction=ns.fraction,
        resize=ns.resize,
        ignore_fps=ns.ignore_fps,
        backend=ns.backend,
        json=ns.json,
        plot=ns.plot,
        progress=not ns.quiet,
    )


def _scorers(config: DriftConfig) -> list:
    """The frame scorers the options ask for, loaded before any video is measured (missing weights fail first)."""
    from vidfix.metrics import MotionScorer, background_consistency, load_scorer, subject_consistency

    out: list = []
    if config.subject is not None:
        out.append(subject_consistency(config.subject or None, device=config.device))
    if config.background is not None:
        out.append(background_consistency(config.background or None, device=config.device))
    if config.motion is not None:
        out.append(MotionScorer(config.motion))
    out += [load_scorer(spec) for spec in config.scorers]
    return out


def run(config: DriftConfig) -> dict:
    """Check the inputs, load the networks asked for, measure, print the table, write JSON and PNG."""
    import warnings

    from tqdm import tqdm
    from vidfix.metrics import (
        MetricsWarning,
        VideoReadWarning,
        drift_report,
        format_table,
        plot_report,
        probe,
        save_report,
    )

    videos = list(_expand(list(config.videos)))
    reference = list(_expand(list(config.reference)))
    for path in videos + reference:
        probe(path)  # a missing or unreadable file fails here, before any network loads
    scorers = _scorers(config)
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
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoReadWarning)  # the report's notes say it, once
            warnings.simplefilter("ignore", MetricsWarning)
            report = drift_report(
                videos,
                names=config.names,
                reference=reference or None,
                chunk_frames=config.chunk_frames,
                chunks=config.chunks,
                fraction=config.fraction,
                window=config.window,
                lpips=config.lpips,
                scorers=scorers,
                scenes=config.scenes,
                mismatch="resize" if config.resize else "error",
                ignore_fps=config.ignore_fps,
                stride=config.stride,
                start=config.start,
                end=config.end,
                max_frames=config.max_frames,
                grid=config.grid,
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
    """``vidfix drift ...``: 0 on success, 2 with one clear line on stderr for bad input or missing weights."""
    config = parse(argv)
    from vidfix.metrics import FeatureWeightsError, FlowWeightsError, LPIPSWeightsError

    try:
        run(config)
    except (OSError, ValueError, LPIPSWeightsError, FeatureWeightsError, FlowWeightsError) as err:
        # VideoReadError and UnreportableError are ValueErrors
        print(f"vidfix drift: error: {_one_line(err)}", file=sys.stderr)
        return 2
    return 0


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
