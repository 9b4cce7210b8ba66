"""GPU check of the fused band filter: the Triton kernel against the eager path on CUDA, then its speed.

Runs in a few minutes on any CUDA machine; where there is none it prints one line and exits 0.

    python scripts/gpu_check.py              # or: python -m vidfix.scripts.gpu_check
    python scripts/gpu_check.py --write      # also write the CUDA timing table into BENCHMARKS.md

Checks, each fused result against the float64 eager result of the same inputs on the same GPU: float32
within 1e-5, bfloat16 within half a bfloat16 ulp (plus 1e-5), on the Wan-480p latent, odd sizes, batch 2
with per-frame coefficients and gains (one frame all zero), every padding mode, 2d, ``(B, C, H, W)`` frames
and a ``(B, F, C, H, W)`` tensor seen as ``(B, C, F, H, W)``; the default dispatch must pick Triton. Then
``vidfix bench corrector --device cuda`` (float32 and bfloat16: fused vs eager vs the memory floor, wall
time after a synchronize, peak memory). Exit code 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from vidfix.kernels import Impl

__all__ = ["bf16_excess", "check_cases", "main"]

GAINS = {"low": 0.3, "spatial": -0.2, "temporal": 0.15}
WAN = (1, 16, 21, 60, 104)


def bf16_excess(out: Tensor, ref: Tensor) -> float:
    """Largest error beyond half a bfloat16 ulp of the float64 reference (<= 1e-5 passes)."""
    mag = ref.abs().clamp_min(2.0**-126)
    half_ulp = torch.exp2(torch.floor(torch.log2(mag)) - 8)  # bf16: 8 significant bits
    return float(((out.double() - ref).abs() - half_ulp).max())


def _case(name: str, shape: tuple[int, ...], *, dims: str = "3d", mode: str = "symmetric",
          per_frame: bool = False, layout: str = "BCFHW") -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "shape": shape,
        "dims": dims,
        "mode": mode,
        "per_frame": per_frame,
        "layout": layout,
    }


CASES = [
    _case("Wan 480p", WAN),
    _case("Wan 480p, per-frame", WAN, per_frame=True),
    _case("odd sizes", (2, 3, 5, 7, 9)),
    _case("odd sizes, reflect", (2, 3, 5, 7, 9), mode="reflect"),
    _case("odd sizes, zero", (2, 3, 5, 7, 9), mode="zero"),
    _case("batch 2, per-frame", (2, 4, 9, 33, 47), per_frame=True),
    _case("one frame", (1, 2, 1, 3, 2)),
    _case("2d", (2, 3, 5, 17, 31), dims="2d", per_frame=True),
    _case("frames (B, C, H, W)", (2, 3, 17, 31), dims="2d"),
    _case("(B, F, C, H, W) view", (2, 5, 3, 12, 20), layout="BFCHW"),
]


def _inputs(case: dict[str, Any], seed: int) -> tuple[Tensor, Tensor, Any, dict[str, Any]]:
    """float64 CPU inputs ``x0, x`` (``(B, C, F, H, W)``), coefficient ``a1`` and gains of one case."""
    g = torch.Generator().manual_seed(seed)
    shape = case["shape"]
    x0, x = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(2))
    if case["layout"] == "BFCHW":
        x0, x = x0.transpose(1, 2), x.transpose(1, 2)  # (B, C, F, H, W) views of (B, F, C, H, W) tensors
        shape = tuple(x0.shape)
    a1: Any = -0.4
    gains: dict[str, Any] = dict(GAINS)
    if case["per_frame"]:
        coef = torch.randn(shape[0], 1, shape[2], 1, 1, generator=g, dtype=torch.float64)  # (B, 1, F, 1, 1)
        coef[:, :, -1] = 0.0  # a frame with every coefficient 0
        low = coef.flip(2).roll(1, 2) * 0.5
        low[:, :, -1] = 0.0
        a1, gains["low"], gains["spatial"] = coef, low, torch.where(coef == 0, 0.0, 0.2)
    return x0, x, a1, gains


def _to(v: Any, device: str, dtype: torch.dtype) -> Any:
    return v.to(device, dtype) if isinstance(v, Tensor) else v


def check_cases(device: str = "cuda", impl: Impl = "auto") -> list[tuple[str, str, bool, float]]:
    """``(case, dtype, ok, error)`` for every case and dtype (error: max abs for float32, excess for bf16)."""
    from vidfix.bands import band_filter
    from vidfix.kernels import fused_band_filter

    out = []
    for i, case in enumerate(CASES):
        x0_64, x_64, a1, gains = _inputs(case, i)
        for dtype in (torch.float32, torch.bfloat16):
            x0, x = x0_64.to(device, dtype), x_64.to(device, dtype)
            if case["layout"] == "BFCHW":  # keep the strided layout on the device
                x0 = x0_64.transpose(1, 2).to(device, dtype).transpose(1, 2)
                x = x_64.transpose(1, 2).to(device, dtype).transpose(1, 2)
            g32 = {k: _to(v, device, torch.float32) for k, v in gains.items()}
            fused = fused_band_filter(x0, g32, [(_to(a1, device, torch.float32), x0), (0.7, x)],
                                      dims=case["dims"], mode=case["mode"], base=x0, impl=impl)  # fmt: skip
            name = str(dtype).removeprefix("torch.")
            if fused is None:
                out.append((case["name"], name, False, float("inf")))
                continue
            # The reference sees the rounded inputs: only the kernel's own error is measured.
            r0, r = x0.double(), x.double()
            g64 = {k: _to(v, device, torch.float64) for k, v in gains.items()}
            ref = band_filter(r0, g64, dims=case["dims"], mode=case["mode"], backend="haar",
                              terms=[(_to(a1, device, torch.float64), r0), (0.7, r)], base=r0)  # fmt: skip
            if dtype == torch.float32:
                err = float((fused.double() - ref).abs().max())
            else:
                err = bf16_excess(fused, ref)
            out.append((case["name"], name, err <= 1e-5, err))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--repeats", type=int, default=50, help="timing rounds (default 50)")
    p.add_argument("--write", action="store_true", help="write the CUDA timing table into BENCHMARKS.md")
    ns = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here, nothing to check (the CPU suite tests the Triton kernel under "
              "TRITON_INTERPRET=1)")  # fmt: skip
        return 0
    from vidfix.scripts import bench_corrector

    from vidfix.kernels import fused_band_filter, supports

    t0 = time.perf_counter()
    print(f"gpu_check on {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    if not supports("cuda"):
        print("gpu_check: FAILED: Triton cannot be imported here, so CUDA runs the eager path")
        return 1
    x = torch.randn(1, 2, 4, 8, 8, device="cuda")
    auto = fused_band_filter(x, GAINS, [(1.0, x)])
    results = check_cases("cuda")
    for name, dtype, ok, err in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<26} {dtype:<9} error {err:.2e}")
    cfg = bench_corrector.BenchConfig(repeats=ns.repeats, device="cuda", write=ns.write)
    rows = bench_corrector.run(cfg)
    text = bench_corrector.markdown(
        cfg, rows, "python scripts/gpu_check.py" + (" --write" if ns.write else "")
    )
    print(text)
    if ns.write:
        from vidfix.scripts.bench import write_section

        print(f"written to {write_section('corrector-cuda', text, path=cfg.output)}")
    failed = [r for r in results if not r[2]] + ([("dispatch", "-", False, 0.0)] if auto is None else [])
    speed = ", ".join(f"{r.dtype} {r.x_floor[bench_corrector.FUSED]:.2f}x the floor" for r in rows)
    verdict = "passed" if not failed else f"FAILED ({len(failed)} checks)"
    print(f"gpu_check: {verdict}; fused {speed}; {time.perf_counter() - t0:.0f} s")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
