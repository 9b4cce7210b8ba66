"""``vidfix bench corrector``: time and memory of one 3D correction step on a Wan-480p-sized latent.

Variants: DCW through the default dispatch (the fused kernel: C++ on the CPU, Triton on CUDA), the same
corrector on the eager path (``backend="haar"``, the reference), a low-band-only and the paper's 2d form,
the ptwt path, and the **memory floor**: an out-of-place add over the same two tensors (``x0 + x``: every
correction must at least read both and write one). Method (:mod:`vidfix.scripts._timing`): on the CPU,
ratios from process CPU time at one thread, in interleaved rounds (median of per-round ratios, the ratio
of the minima beside it), then wall time at ``--threads`` threads; on CUDA, wall time after a synchronize.
Peak memory per call against the floor's, and the error of each variant against a float64 reference.
The finiteness check is off (the sampler checks each chunk).

Example:
    vidfix bench corrector --repeats 30
    vidfix bench corrector --shape 1 16 21 60 104 --dtypes float32 bfloat16 --no-write
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from vidfix.scripts._timing import Load, interleaved, load, peak_memory, ratio, ratio_of_min
from vidfix.scripts.bench import machine_line, today, write_section

from vidfix import DCW, StepInfo

__all__ = ["CORRECTORS", "GPUS", "STEP", "WAN21", "BenchConfig", "DiT", "main", "markdown", "on_paper", "run"]

SUMMARY = "time and memory of one 3D correction step (fused kernel vs eager vs ptwt vs the memory floor)"

FLOOR = "floor (x0 + x)"
FUSED = "DCW 3d, 3 groups"
# The timed correctors: DCW with all three band groups (the 3d form) through the default dispatch and on the
# eager reference path, low band only (the paper's EDM setting), the paper's 2d form, and ptwt.
CORRECTORS: dict[str, DCW] = {
    FUSED: DCW(low=0.02, spatial=0.01, temporal=-0.01, check_finite=False),
    "DCW 3d, 3 groups, eager": DCW(
        low=0.02, spatial=0.01, temporal=-0.01, backend="haar", check_finite=False
    ),
    "DCW 3d, low only": DCW(low=0.02, check_finite=False),
    "DCW 2d (paper)": DCW(low=0.02, spatial=0.01, dims="2d", check_finite=False),
    "DCW 3d, 3 groups, ptwt": DCW(low=0.02, spatial=0.01, temporal=-0.01, backend="ptwt", check_finite=False),
}

# A mid-trajectory flow-matching step (s = 0.6 -> 0.55).
STEP = StepInfo(alpha=0.4, beta=0.6, alpha_next=0.45, beta_next=0.55, s=0.6, param="flow")


@dataclass(frozen=True)
class BenchConfig:
    shape: tuple[int, ...] = (1, 16, 21, 60, 104)  # (B, C, F, H, W): Wan 2.1 480p, 81 frames
    dtypes: tuple[str, ...] = ("float32", "bfloat16")
    repeats: int = 20  # interleaved rounds per phase
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)  # the wall-time phase (CPU)
    device: str = "cpu"
    write: bool = True
    output: str = "BENCHMARKS.md"


@dataclass
class DtypeResult:
    """One dtype's numbers; dicts are keyed by variant."""

    dtype: str
    kernel: str  # what the default dispatch ran
    ms: dict[str, float]  # CPU ms at 1 thread (CPU) or wall ms (CUDA), median
    x_floor: dict[str, float]  # median of per-round ratios
    x_floor_min: dict[str, float]  # ratio of minima
    wall_ms: dict[str, float]  # wall ms at cfg.threads (CPU only)
    wall_x_floor: dict[str, float]
    memory_x_floor: dict[str, float | None]
    max_error: dict[str, float]  # against a float64 reference of the same inputs
    loads: tuple[Load, Load]


def _kernel_name(device: str) -> str:
    from vidfix.kernels import supports

    if not supports(device):
        return "eager (no fused kernel here)"
    return "Triton" if device.startswith("cuda") else "C++ (vidfix/csrc)"


def _memory(fn: Callable[[], object], device: str) -> int | None:
    if not device.startswith("cuda"):
        return peak_memory(fn)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    kept = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - before
    del kept
    return peak


def _errors(x0: torch.Tensor, x: torch.Tensor) -> dict[str, float]:
    """Max abs error of each corrector against the float64 eager result on the same (rounded) inputs."""
    out = {}
    for name, corr in CORRECTORS.items():
        ref_corr = CORRECTORS["DCW 2d (paper)"] if "2d" in name else CORRECTORS["DCW 3d, 3 groups, eager"]
        if "low only" in name:
            ref_corr = DCW(low=0.02, backend="haar", check_finite=False)
        ref = ref_corr(x0.double(), x.double(), STEP)
        out[name] = float((corr(x0, x, STEP).double() - ref).abs().max())
    return out


def _inputs(
    cfg: BenchConfig, dtype_name: str
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Callable[[], object]]]:
    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(cfg.shape, generator=g).to(cfg.device, dtype)
    x = torch.randn(cfg.shape, generator=g).to(cfg.device, dtype)
    variants: dict[str, Callable[[], object]] = {FLOOR: partial(torch.add, x0, x)}
    variants |= {name: partial(corr, x0, x, STEP) for name, corr in CORRECTORS.items()}
    return x0, x, variants


def time_dtype(cfg: BenchConfig, dtype_name: str) -> DtypeResult:
    """The timing phases and the errors for one dtype (memory comes later: see :func:`run`)."""
    x0, x, variants = _inputs(cfg, dtype_name)
    cuda = cfg.device.startswith("cuda")
    kind: Any = "wall" if cuda else "cpu"
    before = load()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            r1 = interleaved(variants, cfg.repeats, sync=torch.cuda.synchronize if cuda else None)
            rn = None
            if not cuda:
                torch.set_num_threads(cfg.threads)
                rn = interleaved(variants, cfg.repeats)
            errors = _errors(x0, x)
    finally:
        torch.set_num_threads(threads)
    floor = getattr(r1[FLOOR], kind)
    return DtypeResult(
        dtype=dtype_name,
        kernel=_kernel_name(cfg.device),
        ms={k: 1e3 * v.median(kind) for k, v in r1.items()},
        x_floor={k: ratio(getattr(v, kind), floor) for k, v in r1.items()},
        x_floor_min={k: ratio_of_min(getattr(v, kind), floor) for k, v in r1.items()},
        wall_ms={k: 1e3 * v.median("wall") for k, v in rn.items()} if rn else {},
        wall_x_floor={k: ratio(v.wall, rn[FLOOR].wall) for k, v in rn.items()} if rn else {},
        memory_x_floor={},
        max_error=errors,
        loads=(before, load()),
    )


def memory_dtype(cfg: BenchConfig, dtype_name: str) -> dict[str, float | None]:
    """Peak memory of each variant over the floor's (one call each)."""
    _, _, variants = _inputs(cfg, dtype_name)
    with torch.no_grad():
        memory = {k: _memory(fn, cfg.device) for k, fn in variants.items()}
    floor = memory[FLOOR]
    return {k: (m / floor if m is not None and floor else None) for k, m in memory.items()}


def run(cfg: BenchConfig) -> list[DtypeResult]:
    """One result per dtype: every timing first, then every memory measurement (on the CPU that pins the
    allocator's thresholds for the rest of the process, which would slow later allocations)."""
    rows = [time_dtype(cfg, d) for d in cfg.dtypes]
    for r in rows:
        r.memory_x_floor = memory_dtype(cfg, r.dtype)
    return rows


# ----------------------------------------------------------------------------------------------------------
# On paper: the correction against a Wan 2.1 step at 480p on an H100 / H200.


@dataclass(frozen=True)
class DiT:
    """A Wan 2.1 text-to-video transformer, from its published config (github.com/Wan-Video/Wan2.1,
    ``wan/configs/wan_t2v_1_3B.py``, ``wan_t2v_14B.py``, ``shared_config.py``: ``text_len = 512``)."""

    name: str
    dim: int
    ffn_dim: int
    num_layers: int
    text_len: int = 512

    def call_flops(self, tokens: int) -> float:
        """Matmul FLOPs of one forward (2 per multiply-add); norms, modulation and the head are left out.

        Per block: self-attention (q, k, v, o projections ``8 L d^2``; scores and weighted sum ``4 L^2 d``),
        cross-attention to the text (``4 L d^2 + 4 T d^2 + 4 L T d``) and the FFN (``4 L d f``).
        """
        L, d, f, T = tokens, self.dim, self.ffn_dim, self.text_len
        block = 8 * L * d * d + 4 * L * L * d + 4 * L * d * d + 4 * T * d * d + 4 * L * T * d + 4 * L * d * f
        return float(self.num_layers * block)


WAN21 = (DiT("Wan 2.1 1.3B", 1536, 8960, 30), DiT("Wan 2.1 14B", 5120, 13824, 40))
# HBM bandwidth (bytes/s) and dense BF16 tensor-core peak (FLOP/s), NVIDIA's H100 SXM and H200 datasheets.
GPUS = {"H100 SXM": (3.35e12, 989e12), "H200": (4.8e12, 989e12)}
LAUNCH_S = 10e-6  # fixed cost of one fused call on a GPU: a kernel launch and the coefficient table
EAGER_BYTES, EAGER_LAUNCHES = 10.0, 20  # the unfused path: ~10x the floor's traffic (CPU: 7-13x), ~20 kernels


def on_paper(
    latent: tuple[int, ...] = (1, 16, 21, 60, 104), patch: tuple[int, int, int] = (1, 2, 2)
) -> list[dict[str, Any]]:
    """The correction's share of a Wan 2.1 call and step, from FLOPs and bytes (no measurement).

    A call takes at least ``FLOPs / peak`` (100% utilisation: real calls are slower, so the shares are upper
    bounds); a step is two calls (classifier-free guidance, Wan's default). The fused correction moves the
    floor's bytes (read ``x0`` and ``x``, write once, bf16) at full bandwidth plus :data:`LAUNCH_S`; the
    unfused (eager) path is taken at :data:`EAGER_BYTES` times the bytes and :data:`EAGER_LAUNCHES` launches.

    >>> rows = on_paper()
    >>> all(r["fused_pct_step"] < 0.01 for r in rows)
    True
    """
    B, C, F, H, W = latent
    tokens = B * (F // patch[0]) * (H // patch[1]) * (W // patch[2])
    floor_bytes = 3 * B * C * F * H * W * 2  # bf16
    rows = []
    for model in WAN21:
        flops = model.call_flops(tokens)
        for gpu, (bandwidth, peak) in GPUS.items():
            call_s = flops / peak
            fused_s = floor_bytes / bandwidth + LAUNCH_S
            eager_s = EAGER_BYTES * floor_bytes / bandwidth + EAGER_LAUNCHES * 5e-6
            rows.append({
                "model": model.name, "gpu": gpu, "tokens": tokens, "call_tflop": flops / 1e12,
                "call_ms": 1e3 * call_s, "fused_us": 1e6 * fused_s, "eager_us": 1e6 * eager_s,
                "fused_pct_step": 100 * fused_s / (2 * call_s), "eager_pct_step": 100 * eager_s / (2 * call_s),
            })  # fmt: skip
    return rows


def paper_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """The on-paper table (see :func:`on_paper`)."""
    L = [
        "",
        "**On paper: Wan 2.1 at 480p** (832x480, 81 frames: latent (1, 16, 21, 60, 104), "
        f"{rows[0]['tokens']} tokens; `vidfix.scripts.bench_corrector.on_paper`). Model: matmul FLOPs of one call "
        "from the published configs (Wan-Video/Wan2.1 `wan/configs`), at the dense BF16 peak, so a lower bound "
        "on its time; a step = 2 calls (classifier-free guidance). Correction: the floor's bytes (bf16) at "
        f"HBM bandwidth plus {1e6 * LAUNCH_S:.0f} us of launch; unfused: {EAGER_BYTES:.0f}x the bytes and "
        f"{EAGER_LAUNCHES} launches. GPU figures from NVIDIA's H100 SXM (3.35 TB/s, 989 TFLOP/s) and H200 "
        "(4.8 TB/s, 989 TFLOP/s) datasheets.",
        "",
        "| model | GPU | TFLOP per call | call >= ms | fused correction us | % of a step | unfused us | % of a step |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        L.append(
            f"| {r['model']} | {r['gpu']} | {r['call_tflop']:.0f} | {r['call_ms']:.0f} | {r['fused_us']:.1f} | "
            f"{r['fused_pct_step']:.4f} | {r['eager_us']:.0f} | {r['eager_pct_step']:.4f} |"
        )
    worst = max(r["fused_pct_step"] for r in rows)
    L += ["", f"Target <= 0.01% of a step: {_verdict(worst <= 0.01)} (largest share {worst:.4f}%, fused)."]
    return L


def _verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def markdown(cfg: BenchConfig, rows: list[DtypeResult], command: str) -> str:
    """The BENCHMARKS.md section."""
    cuda = cfg.device.startswith("cuda")
    clock = "wall ms (CUDA, synchronized)" if cuda else "CPU ms, 1 thread"
    wall = "" if cuda else f" | wall ms, {cfg.threads} threads | wall x floor"
    L = [
        "## Corrector speed (`vidfix bench corrector`)" + (", CUDA" if cuda else ""),
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine_line()}, device `{cfg.device}`  ",
        f"Date: {today()}; latent {tuple(cfg.shape)} (B, C, F, H, W); {cfg.repeats} interleaved rounds per phase.",
        "",
        "Method: "
        + (
            "wall time after `torch.cuda.synchronize()`; "
            if cuda
            else "process CPU time at 1 thread (ratios: median of per-round ratios; `min` = ratio of the "
            f"minima), then wall time at {cfg.threads} threads; "
        )
        + "peak memory = the most memory one call holds above what was allocated before it (the output "
        "included), against the floor's; error = max abs difference to the float64 eager result on the "
        "same inputs. `DCW 3d, 3 groups` runs what `band_filter` dispatches to (the fused kernel named "
        "per table); `eager` is the readable reference path; finiteness check off in every row.",
    ]
    for r in rows:
        L += [
            "",
            f"**{r.dtype}** (fused kernel: {r.kernel}; load {r.loads[0]} before, {r.loads[1].one:.2f} after):",
            "",
            f"| variant | {clock} | x floor | x floor (min) | peak memory x floor{wall} | max abs error |",
            "|---|---:|---:|---:|---:|" + ("---:|---:|" if not cuda else "") + "---:|",
        ]
        for k in r.ms:
            mem = r.memory_x_floor.get(k)
            cells = [
                k,
                f"{r.ms[k]:.3f}",
                f"{r.x_floor[k]:.2f}",
                f"{r.x_floor_min[k]:.2f}",
                "n/a" if mem is None else f"{mem:.2f}",
            ]
            if not cuda:
                cells += [f"{r.wall_ms[k]:.3f}", f"{r.wall_x_floor[k]:.2f}"]
            cells.append("-" if k == FLOOR else f"{r.max_error[k]:.2e}")
            L.append("| " + " | ".join(cells) + " |")
    L += ["", "Targets (fused path, `DCW 3d, 3 groups`): <= 2x the floor in time, <= 1.5x in memory."]
    for r in rows:
        t, m = r.x_floor[FUSED], r.memory_x_floor.get(FUSED)
        L.append(
            f"- {r.dtype}: time {t:.2f}x (min {r.x_floor_min[FUSED]:.2f}x) {_verdict(t <= 2.0)}; memory "
            + ("n/a" if m is None else f"{m:.2f}x {_verdict(m <= 1.5)}")
            + f"; eager path {r.x_floor['DCW 3d, 3 groups, eager']:.2f}x, ptwt "
            f"{r.x_floor['DCW 3d, 3 groups, ptwt']:.2f}x."
        )
    if not cuda:
        L += [
            "",
            "GPU: the Triton kernel is tested on the CPU under `TRITON_INTERPRET=1` (tests/test_kernels.py); no GPU "
            "was lent to this work, so there are no CUDA timings here. `python scripts/gpu_check.py` checks and "
            "times it on any CUDA machine in a few minutes (`vidfix bench corrector --device cuda` writes its own "
            "section).",
        ]
    L += paper_markdown(on_paper())
    return "\n".join(L)


def parse(argv: list[str] | None = None) -> BenchConfig:
    d = BenchConfig()
    parser = argparse.ArgumentParser(
        prog="vidfix bench corrector",
        description="Time and memory of one 3D DCW correction step against the memory floor.",
        epilog="examples:\n  vidfix bench corrector --repeats 30\n"
        "  vidfix bench corrector --dtypes bfloat16 --repeats 5 --no-write",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--shape", type=int, nargs=5, default=list(d.shape), metavar=("B", "C", "F", "H", "W")
    )
    parser.add_argument(
        "--dtypes", nargs="+", default=list(d.dtypes), choices=["float32", "bfloat16", "float16"]
    )
    parser.add_argument("--repeats", type=int, default=d.repeats, help="interleaved rounds per phase")
    parser.add_argument(
        "--threads", type=int, default=d.threads, help="threads of the wall-time phase (default: all cores)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--output", default=d.output, help="file to write the section into")
    ns = parser.parse_args(argv)
    if ns.repeats < 1 or ns.threads < 1:
        parser.error("--repeats and --threads must be >= 1")
    if min(ns.shape) < 1:
        parser.error(f"--shape needs positive sizes, got {ns.shape}")
    return BenchConfig(
        tuple(ns.shape), tuple(ns.dtypes), ns.repeats, ns.threads, ns.device, not ns.no_write, ns.output
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg = parse(args)
    rows = run(cfg)
    text = markdown(cfg, rows, " ".join(["vidfix bench corrector", *args]))
    print(text)
    if cfg.write:
        section = "corrector-cuda" if cfg.device.startswith("cuda") else "corrector"
        print(f"\nwritten to {write_section(section, text, path=cfg.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
