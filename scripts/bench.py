"""``vidfix bench <target>``: benchmarks that write their numbers to BENCHMARKS.md.

Each target lives in ``vidfix.scripts.bench_<target>`` with ``main(argv) -> int`` and writes its own
section of BENCHMARKS.md (see :func:`write_section`), with the command, machine and date; ``--no-write``
prints instead and leaves the working tree alone. The timing method (1-thread process CPU time, interleaved
rounds, the load recorded) lives in :mod:`vidfix.scripts._timing`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib
import os
import platform
import re
import sys
from pathlib import Path

__all__ = ["TARGETS", "machine_line", "main", "write_section"]

SUMMARY = "benchmarks (corrector, metrics, quality, speed, startup, testbed) written to BENCHMARKS.md"

TARGETS: dict[str, str] = {
    "corrector": "time and memory of one 3D correction step: fused kernel vs eager vs ptwt vs the memory floor",
    "metrics": "frames per second of the drift metrics vs decoding alone",
    "quality": "drift of the reference model with each corrector and baseline",
    "speed": "corrector vs a model call, sampler frames/s, seeds/s over 1-2 processes and 2 threads",
    "startup": "start-up time of every command (fresh processes): --help and a process that generates",
    "testbed": "per-band drift on the exact Gaussian testbed: exact, injected errors, calibrated fixes",
}


def machine_line() -> str:
    """One line naming the machine a benchmark ran on (CPU model, cores, torch, device)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} logical cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), {gpu}, Python {platform.python_version()}"
    )


def write_section(target: str, body: str, *, path: str | os.PathLike[str] = "BENCHMARKS.md") -> Path:
    """Replace (or append) the ``target`` section of BENCHMARKS.md with ``body``.

    The section is delimited by HTML comments, so each benchmark owns its own block and reruns replace it.
    """
    out = Path(path)
    text = (
        out.read_text()
        if out.exists()
        else "# vidfix benchmarks\n\nEvery number below comes with the command that reproduces it.\n"
    )
    begin, end = f"<!-- bench:{target} -->", f"<!-- /bench:{target} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    out.write_text(text if text.endswith("\n") else text + "\n")
    return out


def today() -> str:
    return _dt.date.today().isoformat()


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="vidfix bench",
        description="Run a benchmark and write its table to BENCHMARKS.md.",
        epilog="example:\n  vidfix bench corrector --repeats 20\n\ntargets:\n"
        + "\n".join(f"  {k:<10} {v}" for k, v in TARGETS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=sorted(TARGETS), help="which benchmark to run")
    if not args or args[0] in {"-h", "--help"}:
        parser.print_help()
        return 0
    ns = parser.parse_args(args[:1])
    module = importlib.import_module(f"vidfix.scripts.bench_{ns.target}")
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
