"""``vidfix bench speed``: what vidfix costs next to the model it corrects, and how seeds scale over processes.

Four measurements on the reference model (or ``--model``), each in interleaved rounds (every round times every
variant once; ratios are taken within a round, so load drift on a shared machine hits all variants alike) with
medians reported:

1. **Corrector vs model step**: one correction of a chunk's latents against one reference-model step (model
   call + scheduler step, the same latents) and against the memory floor ``x0 + x`` (``bench corrector``'s
   definition); plus the tapped step with the corrector against the tapped step without it.
2. **Sampler frames/s**: the chunked sampler plain, with the calibrated-style DCW 3D corrector, with the drift
   tracker (a per-chunk callback), and with both.
3. **Metrics frames/s vs decoding**: ``bench metrics``'s procedural clip at the model's frame size (h264):
   decoding alone, the metrics on decoded frames, and ``measure(path)``.
4. **Seeds/s with 1 vs 2 processes**: ``vidfix generate`` alone and under ``torchrun --standalone
   --nproc_per_node 2`` (gloo on CPU), whole command (start-up included) and generation alone (the per-batch
   wall times each process records in the manifest); the videos of both runs are compared bit for bit.

Example:
    vidfix bench speed --repeats 5
    vidfix bench speed --model my_model --model-class my_pkg:MyModel --no-processes --no-write
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

__all__ = ["SUMMARY", "SpeedConfig", "main", "parse", "run"]

SUMMARY = "corrector overhead vs a model step, sampler and metrics frames/s, seeds/s with 1 vs 2 processes"

_EXAMPLES = """examples:
  vidfix bench speed                                  # the BENCHMARKS.md run (shipped reference model)
  vidfix bench speed --repeats 3 --no-processes --no-write"""


@dataclass(frozen=True)
class SpeedConfig:
    """One speed benchmark run."""

    model: str | None = None  # model folder (None: the shipped reference model)
    model_class: str | None = None  # "module:Class" when config.json's class is not in vidfix
    batch: int = 1  # videos per model call in the sampler (part 2)
    step_batches: tuple[int, ...] = (1, 8)  # videos per model call in part 1 (one row group each)
    steps: int = 8  # solver steps per chunk (parts 2 and 4)
    frames: int = 32  # frames per video (parts 2 and 4)
    repeats: int = 15  # interleaved rounds of parts 1 and 3
    sampler_repeats: int = 3  # interleaved rounds of part 2
    process_repeats: int = 2  # interleaved rounds of part 4
    seeds: int = 6  # seeds per `vidfix generate` run (part 4)
    metrics_frames: int = 128  # frames of the metrics clip (part 3)
    threads: int = 1  # torch threads (each process in part 4)
    processes: bool = True  # run part 4
    pythonpath: tuple[str, ...] = ()  # extra import paths for part 4's subprocesses (tests)
    output: str = "BENCHMARKS.md"
    write: bool = True


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _rounds(variants: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Wall seconds of each variant per round, interleaved (every round runs every variant once)."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for k, fn in variants.items():
            times[k].append(_timed(fn))
    return times


def _ratio(a: list[float], b: list[float]) -> float:
    """Median of the per-round ratios ``a / b``."""
    return statistics.median(x / y for x, y in zip(a, b))


def _spread(times: list[float]) -> float:
    """Interquartile range over the median (0 for fewer than two rounds)."""
    if len(times) < 2:
        return 0.0
    q = statistics.quantiles(times, n=4)
    return (q[2] - q[0]) / statistics.median(times)


def _sizes(model: Any) -> dict[str, int]:
    cfg = model.config
    return {
        "F": int(cfg.chunk_frames),
        "K": int(cfg.max_context_frames),
        "C": int(cfg.in_channels),
        "S": int(cfg.sample_size),
    }


def corrector_vs_step(model: Any, folder: Path | None, cfg: SpeedConfig, batch: int) -> dict[str, Any]:
    """Part 1: corrector, memory floor and model step on the same chunk latents (``batch`` videos)."""
    import torch
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.scripts.bench_corrector import CORRECTORS, STEP

    from vidfix import DCW, EpsScaling, Identity, tap

    sz = _sizes(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, sz["C"], sz["F"], sz["S"], sz["S"], generator=g)  # (B, C, F, H, W)
    x0 = torch.randn(x.shape, generator=g) * 0.5
    ctx = torch.randn(batch, sz["C"], sz["K"], sz["S"], sz["S"], generator=g) * 0.5 if sz["K"] else None
    base = make_scheduler("euler", model_folder=folder)
    base.set_timesteps(cfg.steps)
    t = base.timesteps[cfg.steps // 2]
    dcw3 = CORRECTORS["fast 3d, 3 groups"]

    def step(scheduler: Any) -> None:
        s = copy.copy(scheduler)  # a fresh step index, shared (read-only) sigmas
        s.step(model(x, t, context=ctx), t, x, return_dict=False)

    plain, ident, corrected = base, tap(base, Identity()), tap(base, dcw3)
    correctors = {k: partial(c, x0, x, STEP) for k, c in CORRECTORS.items()}
    correctors["epsilon scaling"] = partial(EpsScaling(scale=1.005), x0, x, STEP)
    variants: dict[str, Callable[[], object]] = {
        "model step": partial(step, plain),
        "tapped step, identity": partial(step, ident),
        "tapped step, DCW 3d": partial(step, corrected),
        "floor (x0 + x)": partial(torch.add, x0, x),
        **correctors,
    }
    with torch.no_grad():
        for fn in variants.values():  # warm up
            fn()
        times = _rounds(variants, cfg.repeats)
    steps, floor = times["model step"], times["floor (x0 + x)"]
    assert isinstance(dcw3, DCW)
    return {
        "latent": [batch, sz["C"], sz["F"], sz["S"], sz["S"]],
        "step_spread": _spread(steps),
        "ms": {k: 1e3 * statistics.median(v) for k, v in times.items()},
        "of_step": {k: _ratio(times[k], steps) for k in correctors},
        "of_floor": {k: _ratio(times[k], floor) for k in correctors},
        "tapped_overhead": _ratio(times["tapped step, DCW 3d"], times["tapped step, identity"]) - 1.0,
    }


def sampler_fps(model: Any, folder: Path | None, cfg: SpeedConfig) -> dict[str, Any]:
    """Part 2: frames per second of the chunked sampler with and without the corrector and the tracker."""
    import torch
    from vidfix.pipelines import SamplerConfig, sample_video
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.scripts.bench_corrector import CORRECTORS

    from vidfix import DriftTracker

    sz = _sizes(model)
    sampler = SamplerConfig(
        num_frames=max(cfg.frames, sz["F"]), chunk_frames=sz["F"], context_frames=sz["K"], channels=sz["C"],
        height=sz["S"], width=sz["S"], num_steps=cfg.steps,
    )  # fmt: skip
    scheduler = make_scheduler("euler", model_folder=folder)
    dcw3 = CORRECTORS["fast 3d, 3 groups"]

    def generate(corrector: Any, track: bool) -> None:
        gens = [torch.Generator().manual_seed(s) for s in range(cfg.batch)]
        sample_video(model, scheduler, sampler, generators=gens, corrector=corrector,
                     on_chunk=[DriftTracker()] if track else [])  # fmt: skip

    variants: dict[str, Callable[[], object]] = {
        "plain": partial(generate, None, False),
        "DCW 3d": partial(generate, dcw3, False),
        "drift tracker": partial(generate, None, True),
        "DCW 3d + drift tracker": partial(generate, dcw3, True),
    }
    frames = cfg.batch * sampler.num_frames
    times = _rounds(variants, cfg.sampler_repeats)
    return {
        "frames": sampler.num_frames,
        "chunks": sampler.num_chunks,
        "fps": {k: frames / statistics.median(v) for k, v in times.items()},
        "vs_plain": {k: _ratio(v, times["plain"]) for k, v in times.items()},
    }


def metrics_vs_decoding(size: int, cfg: SpeedConfig) -> dict[str, Any]:
    """Part 3: frames per second of the drift metrics vs decoding, on a clip of the model's frame size."""
    from vidfix.metrics import iter_video, measure, read_video
    from vidfix.scripts.bench_metrics import make_clip

    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4", frames=cfg.metrics_frames, width=size, height=size)
        frames = read_video(clip)  # (T, H, W, 3) uint8
        n = len(frames)
        variants: dict[str, Callable[[], object]] = {
            "decoding alone": lambda: sum(len(b.index) for b in iter_video(clip, threads=cfg.threads)),
            "metrics on decoded frames": lambda: measure(frames),
            "decode + metrics (measure(path))": lambda: measure(clip, decode_threads=cfg.threads),
        }
        measure(frames[:8])  # warm up
        times = _rounds(variants, cfg.repeats)
    return {
        "frames": n,
        "size": size,
        "fps": {k: n / statistics.median(v) for k, v in times.items()},
        "vs_decoding": {k: _ratio(v, times["decoding alone"]) for k, v in times.items()},
    }


def processes(cfg: SpeedConfig, folder: Path | None) -> dict[str, Any]:
    """Part 4: seeds per second of `vidfix generate` with 1 process and with 2 (torchrun, gloo on CPU)."""
    import torch
    from vidfix.pipelines import load_video

    common = [
        "--frames", str(cfg.frames), "--steps", str(cfg.steps), "--seeds", f"0-{cfg.seeds - 1}",
        "--batch-size", "1", "--threads", str(cfg.threads), "--no-mp4", "--no-progress",
    ]  # fmt: skip
    if cfg.model is not None:
        common += ["--model", cfg.model]
    if cfg.model_class is not None:
        common += ["--model-class", cfg.model_class]
    env = os.environ | {"OMP_NUM_THREADS": str(cfg.threads)}
    if cfg.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*cfg.pythonpath, env.get("PYTHONPATH", "")])
    launch = {
        1: [sys.executable, "-m", "vidfix.scripts.generate"],
        2: [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            "-m", "vidfix.scripts.generate"],
    }  # fmt: skip
    wall: dict[int, list[float]] = {1: [], 2: []}
    gen: dict[int, list[float]] = {1: [], 2: []}
    identical = True
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(cfg.process_repeats):
            order = (1, 2) if r % 2 == 0 else (2, 1)  # alternate which goes first
            outs = {}
            for n in order:
                out = Path(tmp) / f"p{n}_r{r}"
                t0 = time.perf_counter()
                done = subprocess.run([*launch[n], *common, "--out", str(out)], env=env, capture_output=True,
                                      text=True)  # fmt: skip
                wall[n].append(time.perf_counter() - t0)
                if done.returncode != 0:
                    raise RuntimeError(
                        f"`vidfix generate` with {n} process(es) failed:\n{done.stderr[-3000:]}"
                    )
                manifest = json.loads((out / "manifest.json").read_text())
                per_process: dict[int, float] = {}
                for v in manifest["videos"]:  # batch size 1: one record per batch
                    per_process[v["process"]] = per_process.get(v["process"], 0.0) + float(v["wall_seconds"])
                gen[n].append(max(per_process.values()))
                outs[n] = out
            for s in range(cfg.seeds):
                a = load_video(outs[1] / f"seed_{s:06d}")
                b = load_video(outs[2] / f"seed_{s:06d}")
                identical = identical and torch.equal(a, b)
    return {
        "seeds": cfg.seeds,
        "load_before": load,
        "seeds_per_s": {n: cfg.seeds / statistics.median(v) for n, v in wall.items()},
        "gen_seeds_per_s": {n: cfg.seeds / statistics.median(v) for n, v in gen.items()},
        "speedup": _ratio(wall[1], wall[2]),
        "gen_speedup": _ratio(gen[1], gen[2]),
        "identical": identical,
        "cpus": os.cpu_count(),
    }


def run(cfg: SpeedConfig) -> dict[str, Any]:
    """All four parts (part 4 only with ``cfg.processes``)."""
    import torch
    from vidfix.pipelines.factory import describe_model, load_denoiser

    torch.set_num_threads(cfg.threads)
    model, folder = load_denoiser(cfg.model, model_class=cfg.model_class)
    out: dict[str, Any] = {"model": describe_model(model, folder), "sizes": _sizes(model)}
    out["corrector"] = [corrector_vs_step(model, folder, cfg, b) for b in cfg.step_batches]
    out["sampler"] = sampler_fps(model, folder, cfg)
    out["metrics"] = metrics_vs_decoding(_sizes(model)["S"], cfg)
    if cfg.processes:
        out["processes"] = processes(cfg, folder)
    return out


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


def markdown(cfg: SpeedConfig, res: dict[str, Any], command: str) -> str:
    """The BENCHMARKS.md section."""
    from vidfix.scripts.bench import machine_line, today

    s, m = res["sampler"], res["metrics"]
    weights = res["model"].get("weights_sha256")
    L = [
        "## Speed (`vidfix bench speed`)",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {today()}; model `{res['model']['class']}`"
        + (f" (weights sha256 {weights[:12]})" if weights else "")
        + "; medians of interleaved rounds, ratios taken within a round.",
        "",
        f"**Corrector vs one model step** (Euler, {cfg.repeats} rounds; model step = model call + scheduler step on "
        "the same chunk latents (B, C, F, H, W); spread = interquartile range of the model step over rounds):",
        "",
        "| latent | variant | ms | % of a model step | x memory floor |",
        "|---|---|---:|---:|---:|",
    ]
    worst: dict[int, float] = {}  # batch -> worst fast-path corrector, fraction of a model step
    for c in res["corrector"]:
        shape = "x".join(str(v) for v in c["latent"])
        L.append(
            f"| {shape} | model step (spread {100 * c['step_spread']:.1f}%) | {c['ms']['model step']:.2f} | - | - |"
        )
        for k in ("tapped step, identity", "tapped step, DCW 3d", "floor (x0 + x)"):
            L.append(f"| {shape} | {k} | {c['ms'][k]:.3f} | - | - |")
        for k in c["of_step"]:
            L.append(
                f"| {shape} | {k} | {c['ms'][k]:.3f} | {100 * c['of_step'][k]:.3f} | {c['of_floor'][k]:.2f} |"
            )
        worst[c["latent"][0]] = max(v for k, v in c["of_step"].items() if not k.startswith("ptwt"))
    L += [
        "",
        "Tapped step with DCW 3d vs the tapped step without (end to end): "
        + ", ".join(f"{100 * c['tapped_overhead']:+.2f}% at batch {c['latent'][0]}" for c in res["corrector"])
        + "; such differences sit inside the model step's run-to-run spread, so the corrector's own time is "
        "the number to read.",
        "",
        f"**Sampler frames/s** ({cfg.batch} video(s) of {s['frames']} frames, {s['chunks']} chunks, {cfg.steps} "
        f"Euler steps, {cfg.sampler_repeats} rounds):",
        "",
        "| variant | frames/s | time vs plain |",
        "|---|---:|---:|",
        *(f"| {k} | {_f(v)} | {s['vs_plain'][k]:.3f} |" for k, v in s["fps"].items()),
        "",
        f"**Metrics frames/s vs decoding** (`bench metrics` procedural clip at {m['size']}x{m['size']}, "
        f"{m['frames']} frames, h264, {cfg.threads} thread(s); the 480p numbers are in the metrics section):",
        "",
        "| stage | frames/s | time vs decoding |",
        "|---|---:|---:|",
        *(f"| {k} | {_f(v)} | {m['vs_decoding'][k]:.2f} |" for k, v in m["fps"].items()),
        "",
        f"Metrics vs generation: the metrics take {_f(s['fps']['plain'] / m['fps']['metrics on decoded frames'])}x "
        "the time per frame of generating it (plain sampler).",
    ]
    ok = all(v <= 0.01 for v in worst.values())
    target_corr = (
        f"corrector overhead <= 1% of a reference-model step: {'**met**' if ok else '**not met**'} (slowest "
        "fast-path corrector: " + ", ".join(f"{100 * v:.2f}% at batch {b}" for b, v in worst.items()) + ")"
    )
    if not ok:
        target_corr += (
            "; at small batches the corrector's fixed per-call cost (a few dozen small tensor operations, "
            "Python dispatch) dominates the tiny pixel latents, while the model's cost grows with the batch"
        )
    targets = [f"- {target_corr}."]
    if "processes" in res:
        p = res["processes"]
        L += [
            "",
            f"**Seeds/s with 1 vs 2 processes** (`vidfix generate`, {p['seeds']} seeds of {cfg.frames} frames, "
            f"{cfg.steps} steps, batch size 1, {cfg.threads} thread(s) per process, {cfg.process_repeats} "
            f"rounds, order alternated; load average {p['load_before']:.2f} on {p['cpus']} cores before):",
            "",
            "| processes | seeds/s, whole command | seeds/s, generation only |",
            "|---:|---:|---:|",
            f"| 1 | {_f(p['seeds_per_s'][1])} | {_f(p['gen_seeds_per_s'][1])} |",
            f"| 2 (`torchrun --standalone --nproc_per_node 2`) | {_f(p['seeds_per_s'][2])} | "
            f"{_f(p['gen_seeds_per_s'][2])} |",
            f"| speed-up | {p['speedup']:.2f}x | {p['gen_speedup']:.2f}x |",
            "",
            f"Videos of 1 and 2 processes bit-identical: {'yes' if p['identical'] else '**no**'}.",
        ]
        ok = p["speedup"] >= 1.8
        why = ""
        if not ok:
            why = (
                f" Two processes on a {p['cpus']}-core box that other jobs share (load {p['load_before']:.2f} "
                "before the run) cannot double throughput; start-up (imports, model load, gloo rendezvous) is "
                f"part of the whole command. Generation alone: {p['gen_speedup']:.2f}x."
            )
        targets.append(
            f"- 2 processes >= 1.8x the seeds/s of 1: {'**met**' if ok else '**not met**'} "
            f"({p['speedup']:.2f}x whole command).{why}"
        )
    L += ["", "Targets:", *targets]
    return "\n".join(L)


def parse(argv: list[str] | None = None) -> SpeedConfig:
    d = SpeedConfig()
    p = argparse.ArgumentParser(
        prog="vidfix bench speed",
        description="Corrector overhead vs a model step, sampler/metrics frames/s, seeds/s over processes.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="DIR", help="model folder (default: the shipped reference model)")
    p.add_argument(
        "--model-class", metavar="MODULE:CLASS", help="model class, when config.json's is not in vidfix"
    )
    p.add_argument("--batch", type=int, default=d.batch, help="videos per sampler call (default 1)")
    p.add_argument(
        "--step-batches", type=int, nargs="+", default=list(d.step_batches),
        help="videos per model call of the corrector-vs-step timing (default 1 8)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=d.steps, help="solver steps per chunk (default 8)")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video (default 32)")
    p.add_argument(
        "--repeats", type=int, default=d.repeats, help="rounds of the corrector and metrics timings"
    )
    p.add_argument(
        "--sampler-repeats", type=int, default=d.sampler_repeats, help="rounds of the sampler timings"
    )
    p.add_argument(
        "--process-repeats", type=int, default=d.process_repeats, help="rounds of the 1 vs 2 processes"
    )
    p.add_argument("--seeds", type=int, default=d.seeds, help="seeds per generate run (default 6)")
    p.add_argument("--metrics-frames", type=int, default=d.metrics_frames)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (per process)")
    p.add_argument("--no-processes", action="store_true", help="skip the 1 vs 2 processes timing")
    p.add_argument("--output", default=d.output, help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only")
    ns = p.parse_args(argv)
    for k in (
        "batch",
        "steps",
        "frames",
        "repeats",
        "sampler_repeats",
        "process_repeats",
        "seeds",
        "threads",
    ):
        if getattr(ns, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if ns.metrics_frames < 2:
        p.error("--metrics-frames must be >= 2")
    return SpeedConfig(
        model=ns.model, model_class=ns.model_class, batch=ns.batch, step_batches=tuple(ns.step_batches),
        steps=ns.steps, frames=ns.frames,
        repeats=ns.repeats, sampler_repeats=ns.sampler_repeats, process_repeats=ns.process_repeats,
        seeds=ns.seeds, metrics_frames=ns.metrics_frames, threads=ns.threads, processes=not ns.no_processes,
        output=ns.output, write=not ns.no_write,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(args)
    from vidfix.scripts.bench import write_section

    try:
        res = run(cfg)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"vidfix bench speed: error: {err}", file=sys.stderr)
        return 2
    text = markdown(cfg, res, " ".join(["vidfix bench speed", *args]))
    print(text)
    if cfg.write:
        print(f"\nwritten to {write_section('speed', text, path=cfg.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
