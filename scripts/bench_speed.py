"""``vidfix bench speed``: what vidfix costs next to the model it corrects, and how seeds scale over processes.

Four measurements on the reference model (or ``--model``). Method (:mod:`vidfix.scripts._timing`): process
CPU time at ``--threads`` threads (default 1), interleaved rounds (every round times every variant once),
ratios taken within a round and summarised by their median; the machine's load recorded beside each table.

1. **Corrector vs model call**: one correction of a chunk's latents against one reference-model call (the
   same latents), against the memory floor ``x0 + x`` (``bench corrector``'s definition), and what the tap
   adds to a scheduler step (tapped step with DCW 3d minus the plain step, model output given), per call.
2. **Sampler frames/s**: the chunked sampler plain, with the DCW 3D corrector, with the drift tracker (a
   per-chunk callback), and with both.
3. **Metrics frames/s vs decoding**: ``bench metrics``'s procedural clip at the model's frame size (h264):
   decoding alone, the metrics on decoded frames, and ``measure(path)``.
4. **Seeds/s over processes**: ``vidfix generate`` with 1 process, 2 processes (``torchrun --standalone
   --nproc_per_node 2``, gloo on CPU) and 1 process with 2 threads, at 8, 24 and 64 seeds: wall-clock
   seeds/s (what this machine gave at its load), the CPU seconds of each run (all processes), and the
   speed-up 2 processes would give on 2 free cores (``2 x CPU(1 process) / CPU(2 processes)``: the work
   and start-up of both processes split evenly), which does not depend on the load. Videos of 1 and 2
   processes are compared bit for bit.

Example:
    vidfix bench speed --repeats 5
    vidfix bench speed --model my_model --model-class my_pkg:MyModel --no-processes --no-write
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
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

from vidfix.scripts._timing import Load, Rounds, children_cpu, interleaved, load, ratio

__all__ = ["SUMMARY", "SpeedConfig", "main", "parse", "run"]

SUMMARY = "corrector overhead vs a model call, sampler and metrics frames/s, seeds/s over processes"

_EXAMPLES = """examples:
  vidfix bench speed                                  # the BENCHMARKS.md run (shipped reference model)
  vidfix bench speed --repeats 3 --no-processes --no-write
  vidfix bench speed --process-seeds 8 24 --process-frames 8 --no-write"""


@dataclass(frozen=True)
class SpeedConfig:
    """One speed benchmark run."""

    model: str | None = None  # model folder (None: the shipped reference model)
    model_class: str | None = None  # "module:Class" when config.json's class is not in vidfix
    batch: int = 1  # videos per model call in the sampler (part 2)
    step_batches: tuple[int, ...] = (1, 8)  # videos per model call in part 1 (one row group each)
    steps: int = 8  # solver steps per chunk (part 2)
    frames: int = 32  # frames per video (part 2)
    repeats: int = 15  # interleaved rounds of parts 1 and 3
    sampler_repeats: int = 3  # interleaved rounds of part 2
    process_repeats: int = 1  # interleaved rounds of part 4
    process_seeds: tuple[int, ...] = (8, 24, 64)  # seeds per `vidfix generate` run (part 4)
    process_frames: int = 16  # frames per video in part 4
    process_steps: int = 4  # solver steps per chunk in part 4
    metrics_frames: int = 128  # frames of the metrics clip (part 3)
    threads: int = 1  # torch threads (each process in part 4)
    processes: bool = True  # run part 4
    pythonpath: tuple[str, ...] = ()  # extra import paths for part 4's subprocesses (tests)
    output: str = "BENCHMARKS.md"
    write: bool = True


def _spread(times: list[float]) -> float:
    """Interquartile range over the median (0 for fewer than two rounds)."""
    if len(times) < 2:
        return 0.0
    q = statistics.quantiles(times, n=4)
    return (q[2] - q[0]) / statistics.median(times)


def _per_round(a: Rounds, b: Rounds, c: Rounds) -> float:
    """Median over rounds of ``(a - b) / c`` (CPU time): an added cost as a fraction of ``c``."""
    return statistics.median((x - y) / z for x, y, z in zip(a.cpu, b.cpu, c.cpu, strict=True))


def _sizes(model: Any) -> dict[str, int]:
    cfg = model.config
    return {
        "F": int(cfg.chunk_frames),
        "K": int(cfg.max_context_frames),
        "C": int(cfg.in_channels),
        "S": int(cfg.sample_size),
    }


def corrector_vs_step(model: Any, folder: Path | None, cfg: SpeedConfig, batch: int) -> dict[str, Any]:
    """Part 1: correctors, memory floor, model call and tapped scheduler steps on the same chunk latents."""
    import torch
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.scripts.bench_corrector import CORRECTORS, FLOOR, FUSED, STEP

    from vidfix import DCW, EpsScaling, Identity, tap

    sz = _sizes(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, sz["C"], sz["F"], sz["S"], sz["S"], generator=g)  # (B, C, F, H, W)
    x0 = torch.randn(x.shape, generator=g) * 0.5
    ctx = torch.randn(batch, sz["C"], sz["K"], sz["S"], sz["S"], generator=g) * 0.5 if sz["K"] else None
    base = make_scheduler("euler", model_folder=folder)
    base.set_timesteps(cfg.steps)
    t = base.timesteps[cfg.steps // 2]
    with torch.no_grad():
        out = model(x, t, context=ctx)

    def step(scheduler: Any) -> None:
        s = copy.copy(scheduler)  # a fresh step index, shared (read-only) sigmas
        s.step(out, t, x, return_dict=False)

    # The tap with DCW as a user builds it (its default options), so changes to the defaults show here.
    user_dcw = DCW(low=0.02, spatial=0.01, temporal=-0.01)
    correctors = {k: partial(c, x0, x, STEP) for k, c in CORRECTORS.items()}
    correctors["epsilon scaling"] = partial(EpsScaling(scale=1.005), x0, x, STEP)
    variants: dict[str, Callable[[], object]] = {
        "model call": partial(model, x, t, context=ctx),
        "scheduler step": partial(step, base),
        "tapped step, identity": partial(step, tap(base, Identity())),
        "tapped step, DCW 3d": partial(step, tap(base, user_dcw)),
        FLOOR: partial(torch.add, x0, x),
        **correctors,
    }
    before = load()
    with torch.no_grad():
        r = interleaved(variants, cfg.repeats)
    call, floor = r["model call"], r[FLOOR]
    return {
        "latent": [batch, sz["C"], sz["F"], sz["S"], sz["S"]],
        "call_spread": _spread(call.cpu),
        "ms": {k: 1e3 * v.median() for k, v in r.items()},
        "of_call": {k: ratio(r[k].cpu, call.cpu) for k in correctors},
        "of_floor": {k: ratio(r[k].cpu, floor.cpu) for k in correctors},
        "tap_dcw": _per_round(r["tapped step, DCW 3d"], r["scheduler step"], call),
        "tap_identity": _per_round(r["tapped step, identity"], r["scheduler step"], call),
        "fused": FUSED,
        "loads": [before, load()],
    }


def sampler_fps(model: Any, folder: Path | None, cfg: SpeedConfig) -> dict[str, Any]:
    """Part 2: frames per second of the chunked sampler with and without the corrector and the tracker."""
    import torch
    from vidfix.pipelines import SamplerConfig, sample_video
    from vidfix.pipelines.factory import make_scheduler
    from vidfix.scripts.bench_corrector import CORRECTORS, FUSED

    from vidfix import DriftTracker

    sz = _sizes(model)
    sampler = SamplerConfig(
        num_frames=max(cfg.frames, sz["F"]), chunk_frames=sz["F"], context_frames=sz["K"], channels=sz["C"],
        height=sz["S"], width=sz["S"], num_steps=cfg.steps,
    )  # fmt: skip
    scheduler = make_scheduler("euler", model_folder=folder)
    dcw3 = CORRECTORS[FUSED]

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
    before = load()
    r = interleaved(variants, cfg.sampler_repeats, warmup=0)
    return {
        "frames": sampler.num_frames,
        "chunks": sampler.num_chunks,
        "fps": {k: frames / v.median() for k, v in r.items()},
        "vs_plain": {k: ratio(v.cpu, r["plain"].cpu) for k, v in r.items()},
        "loads": [before, load()],
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
        before = load()
        r = interleaved(variants, cfg.repeats, warmup=0)
    return {
        "frames": n,
        "size": size,
        "fps": {k: n / v.median() for k, v in r.items()},
        "vs_decoding": {k: ratio(v.cpu, r["decoding alone"].cpu) for k, v in r.items()},
        "loads": [before, load()],
    }


# Part 4's runs: name -> (processes, threads per process).
RUNS: dict[str, tuple[int, int]] = {
    "1 process": (1, 1),
    "2 processes": (2, 1),
    "1 process x 2 threads": (1, 2),
}


def _generate(out: Path, seeds: int, procs: int, threads: int, cfg: SpeedConfig) -> dict[str, float]:
    """One `vidfix generate` run: wall and CPU seconds (all processes) and generation-only seconds."""
    cmd = [sys.executable, "-m", "vidfix.scripts.generate"]
    if procs > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs),
               "-m", "vidfix.scripts.generate"]  # fmt: skip
    cmd += [
        "--frames", str(cfg.process_frames), "--steps", str(cfg.process_steps), "--seeds", f"0-{seeds - 1}",
        "--batch-size", "1", "--threads", str(threads), "--no-mp4", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    if cfg.model is not None:
        cmd += ["--model", cfg.model]
    if cfg.model_class is not None:
        cmd += ["--model-class", cfg.model_class]
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    if cfg.pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*cfg.pythonpath, env.get("PYTHONPATH", "")])
    c0, t0 = children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - c0
    if done.returncode != 0:
        raise RuntimeError(f"`vidfix generate` with {procs} process(es) failed:\n{done.stderr[-3000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    per_process: dict[int, float] = {}
    for v in manifest["videos"]:  # batch size 1: one record per batch
        per_process[v["process"]] = per_process.get(v["process"], 0.0) + float(v["wall_seconds"])
    return {"wall": wall, "cpu": cpu, "gen": max(per_process.values())}


def processes(cfg: SpeedConfig, folder: Path | None) -> dict[str, Any]:
    """Part 4: seeds/s of `vidfix generate` per run kind (:data:`RUNS`) and seed count; outputs compared."""
    import torch
    from vidfix.pipelines import load_video

    rows = []
    identical = True
    before = load()
    with tempfile.TemporaryDirectory() as tmp:
        for n in cfg.process_seeds:
            res: dict[str, list[dict[str, float]]] = {k: [] for k in RUNS}
            for r in range(cfg.process_repeats):
                order = list(RUNS)[r % len(RUNS) :] + list(RUNS)[: r % len(RUNS)]  # rotate who goes first
                outs = {}
                for name in order:
                    procs, threads = RUNS[name]
                    outs[name] = Path(tmp) / f"s{n}_r{r}_{procs}p{threads}t"
                    res[name].append(_generate(outs[name], n, procs, threads, cfg))
                for s in range(n):
                    a = load_video(outs["1 process"] / f"seed_{s:06d}")
                    b = load_video(outs["2 processes"] / f"seed_{s:06d}")
                    identical = identical and torch.equal(a, b)
                for out in outs.values():
                    shutil.rmtree(out)  # free the disk between rounds
            med = {
                k: {q: statistics.median(x[q] for x in v) for q in ("wall", "cpu", "gen")}
                for k, v in res.items()
            }
            one, two = med["1 process"], med["2 processes"]
            rows.append({
                "seeds": n,
                "seeds_per_s": {k: n / v["wall"] for k, v in med.items()},
                "gen_seeds_per_s": {k: n / v["gen"] for k, v in med.items()},
                "cpu_s": {k: v["cpu"] for k, v in med.items()},
                "speedup": one["wall"] / two["wall"],
                "threads_speedup": one["wall"] / med["1 process x 2 threads"]["wall"],
                "free_core_speedup": 2 * one["cpu"] / two["cpu"],
            })  # fmt: skip
    return {
        "rows": rows,
        "identical": identical,
        "cpus": os.cpu_count(),
        "loads": [before, load()],
        "startup": _startup(rows),
    }


def _startup(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """CPU seconds of start-up (intercept) and per seed (slope) of a line through (seeds, CPU) per run kind."""
    if len(rows) < 2:
        return None
    out = {}
    xs = [r["seeds"] for r in rows]
    for k in RUNS:
        ys = [r["cpu_s"][k] for r in rows]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        out[k] = my - slope * mx
        out[k + " per seed"] = slope
    return out


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


def _loads(loads: list[Load]) -> str:
    return f"load {loads[0]} before, {loads[1].one:.2f} after"


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
        + f"; process CPU time at {cfg.threads} thread(s), interleaved rounds, medians of per-round ratios.",
        "",
        f"**Corrector vs one model call** (Euler, {cfg.repeats} rounds; spread = interquartile range of the model "
        f"call over rounds; {_loads(res['corrector'][0]['loads'])}):",
        "",
        "| latent | variant | CPU ms | % of a model call | x memory floor |",
        "|---|---|---:|---:|---:|",
    ]
    for c in res["corrector"]:
        shape = "x".join(str(v) for v in c["latent"])
        L.append(
            f"| {shape} | model call (spread {100 * c['call_spread']:.1f}%) | {c['ms']['model call']:.2f} | - | - |"
        )
        for k in ("scheduler step", "tapped step, identity", "tapped step, DCW 3d", "floor (x0 + x)"):
            L.append(f"| {shape} | {k} | {c['ms'][k]:.3f} | - | - |")
        for k in c["of_call"]:
            L.append(
                f"| {shape} | {k} | {c['ms'][k]:.3f} | {100 * c['of_call'][k]:.3f} | {c['of_floor'][k]:.2f} |"
            )
    L += [
        "",
        "Added by the tap to a scheduler step (tapped step minus the plain step, the model output given; DCW as "
        "`DCW(low=0.02, spatial=0.01, temporal=-0.01)` with its default options), as a share of a model call: "
        + ", ".join(
            f"DCW 3d {100 * c['tap_dcw']:.2f}% / identity {100 * c['tap_identity']:.2f}% at batch {c['latent'][0]}"
            for c in res["corrector"]
        )
        + ".",
        "",
        f"**Sampler frames/s** ({cfg.batch} video(s) of {s['frames']} frames, {s['chunks']} chunks, {cfg.steps} "
        f"Euler steps, {cfg.sampler_repeats} rounds, frames per CPU second; {_loads(s['loads'])}):",
        "",
        "| variant | frames/s | CPU time vs plain |",
        "|---|---:|---:|",
        *(f"| {k} | {_f(v)} | {s['vs_plain'][k]:.3f} |" for k, v in s["fps"].items()),
        "",
        f"**Metrics frames/s vs decoding** (`bench metrics` procedural clip at {m['size']}x{m['size']}, "
        f"{m['frames']} frames, h264, {cfg.threads} thread(s), frames per CPU second; the 480p numbers are in the "
        f"metrics section; {_loads(m['loads'])}):",
        "",
        "| stage | frames/s | CPU time vs decoding |",
        "|---|---:|---:|",
        *(f"| {k} | {_f(v)} | {m['vs_decoding'][k]:.2f} |" for k, v in m["fps"].items()),
        "",
        f"Metrics vs generation: the metrics take {_f(s['fps']['plain'] / m['fps']['metrics on decoded frames'])}x "
        "the CPU time per frame of generating it (plain sampler).",
    ]
    tap1 = next((c for c in res["corrector"] if c["latent"][0] == 1), res["corrector"][0])
    ok = tap1["tap_dcw"] <= 0.01
    targets = [
        f"- tapped DCW 3D step <= 1% of a reference-model call at batch {tap1['latent'][0]}: "
        f"{'**met**' if ok else '**not met**'} ({100 * tap1['tap_dcw']:.2f}%; the correction alone, fused: "
        f"{100 * tap1['of_call'][tap1['fused']]:.2f}%)."
    ]
    if "processes" in res:
        L += _process_markdown(cfg, res["processes"])
        row24 = next((r for r in res["processes"]["rows"] if r["seeds"] == 24), None)
        if row24 is not None:
            ok = row24["speedup"] >= 1.8
            targets.append(
                f"- 2 processes >= 1.8x the seeds/s of 1 at 24 seeds: {'**met**' if ok else '**not met**'} on this "
                f"machine ({row24['speedup']:.2f}x wall at its load); on 2 free cores the CPU times give "
                f"{row24['free_core_speedup']:.2f}x "
                f"({'**met**' if row24['free_core_speedup'] >= 1.8 else '**not met**'})."
            )
    L += ["", "Targets:", *targets]
    return "\n".join(L)


def _process_markdown(cfg: SpeedConfig, p: dict[str, Any]) -> list[str]:
    L = [
        "",
        f"**Seeds/s over processes** (`vidfix generate`, {cfg.process_frames} frames per video, {cfg.process_steps} "
        f"steps, batch size 1, {cfg.process_repeats} round(s), run order rotated; {_loads(p['loads'])}; "
        "2 processes = `torchrun --standalone --nproc_per_node 2`):",
        "",
        "| seeds | run | seeds/s (wall) | seeds/s (generation only) | CPU s, all processes | speed-up (wall) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for r in p["rows"]:
        for k in RUNS:
            sp = {"1 process": "1.00x", "2 processes": f"{r['speedup']:.2f}x",
                  "1 process x 2 threads": f"{r['threads_speedup']:.2f}x"}[k]  # fmt: skip
            L.append(
                f"| {r['seeds']} | {k} | {_f(r['seeds_per_s'][k])} | {_f(r['gen_seeds_per_s'][k])} | "
                f"{r['cpu_s'][k]:.1f} | {sp} |"
            )
    L += [
        "",
        "2 processes on 2 free cores (from the CPU times: `2 x CPU(1 process) / CPU(2 processes)`, load-free): "
        + ", ".join(f"{r['free_core_speedup']:.2f}x at {r['seeds']} seeds" for r in p["rows"])
        + ".",
    ]
    if p["startup"]:
        st = p["startup"]
        L.append(
            f"Start-up vs work (a line through CPU seconds over seed counts): 1 process {st['1 process']:.1f} s "
            f"start-up + {st['1 process per seed']:.2f} s per seed; 2 processes {st['2 processes']:.1f} s (both, "
            f"gloo rendezvous included) + {st['2 processes per seed']:.2f} s per seed. Processes pay once the "
            "seeds' work dwarfs the second start-up."
        )
    L.append(f"Videos of 1 and 2 processes bit-identical: {'yes' if p['identical'] else '**no**'}.")
    return L


def parse(argv: list[str] | None = None) -> SpeedConfig:
    d = SpeedConfig()
    p = argparse.ArgumentParser(
        prog="vidfix bench speed",
        description="Corrector overhead vs a model call, sampler/metrics frames/s, seeds/s over processes.",
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
        help="videos per model call of the corrector-vs-call timing (default 1 8)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=d.steps, help="solver steps per chunk, sampler (default 8)")
    p.add_argument("--frames", type=int, default=d.frames, help="frames per video, sampler (default 32)")
    p.add_argument(
        "--repeats", type=int, default=d.repeats, help="rounds of the corrector and metrics timings"
    )
    p.add_argument(
        "--sampler-repeats", type=int, default=d.sampler_repeats, help="rounds of the sampler timings"
    )
    p.add_argument(
        "--process-repeats", type=int, default=d.process_repeats, help="rounds of the process runs"
    )
    p.add_argument(
        "--process-seeds", type=int, nargs="+", default=list(d.process_seeds),
        help="seeds per generate run (default 8 24 64)",
    )  # fmt: skip
    p.add_argument(
        "--process-frames", type=int, default=d.process_frames, help="frames per video (default 16)"
    )
    p.add_argument("--process-steps", type=int, default=d.process_steps, help="steps per chunk (default 4)")
    p.add_argument("--metrics-frames", type=int, default=d.metrics_frames)
    p.add_argument("--threads", type=int, default=d.threads, help="torch threads (per process)")
    p.add_argument("--no-processes", action="store_true", help="skip the runs over processes")
    p.add_argument("--output", default=d.output, help="markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print only")
    ns = p.parse_args(argv)
    for k in ("batch", "steps", "frames", "repeats", "sampler_repeats", "process_repeats", "process_frames",
              "process_steps", "threads"):  # fmt: skip
        if getattr(ns, k) < 1:
            p.error(f"--{k.replace('_', '-')} must be >= 1")
    if min(ns.process_seeds) < 1 or min(ns.step_batches) < 1:
        p.error("--process-seeds and --step-batches must be >= 1")
    if ns.metrics_frames < 2:
        p.error("--metrics-frames must be >= 2")
    return SpeedConfig(
        model=ns.model, model_class=ns.model_class, batch=ns.batch, step_batches=tuple(ns.step_batches),
        steps=ns.steps, frames=ns.frames, repeats=ns.repeats, sampler_repeats=ns.sampler_repeats,
        process_repeats=ns.process_repeats, process_seeds=tuple(ns.process_seeds),
        process_frames=ns.process_frames, process_steps=ns.process_steps, metrics_frames=ns.metrics_frames,
        threads=ns.threads, processes=not ns.no_processes, output=ns.output, write=not ns.no_write,
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
