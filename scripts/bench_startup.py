"""``vidfix bench startup``: what starting a process costs, command by command.

Each row runs a fresh Python process, ``--repeats`` rounds interleaved (row 1, row 2, ..., then again), and
reports the minimum and median wall time and the minimum CPU time (user + system of the child, which a loaded
machine inflates least). Rows: the interpreter alone, ``import torch``, ``import diffusers`` (which pulls in
torch._dynamo), ``vidfix --help`` and every command's ``--help`` (target: under 0.5 s), and a ``vidfix
generate`` of one chunk at one step on the shipped model, which is almost all start-up: the cost every extra
process of a multi-process run pays before its first model call.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SUMMARY", "Row", "main", "measure"]

SUMMARY = "start-up time of every vidfix command (fresh processes), written to BENCHMARKS.md"

_HELP_TARGET_S = 0.5
_GROUPS = ("floor", "help", "generate")


@dataclass(frozen=True)
class Row:
    """One measured command: ``argv`` run ``len(wall)`` times in fresh processes."""

    name: str
    group: str
    argv: tuple[str, ...]
    wall: tuple[float, ...] = ()
    cpu: tuple[float, ...] = ()

    @property
    def target(self) -> str:
        """The ``--help`` target, judged on CPU time (a loaded machine's queueing inflates wall time)."""
        if self.group != "help":
            return ""
        return "ok" if min(self.cpu) < _HELP_TARGET_S else f"missed (> {_HELP_TARGET_S} s)"


def _rows(groups: tuple[str, ...], work: Path) -> list[Row]:
    from vidfix.scripts.cli import COMMANDS

    py, cli = sys.executable, (sys.executable, "-m", "vidfix.scripts.cli")
    rows: list[Row] = []
    if "floor" in groups:
        rows += [
            Row("python (interpreter only)", "floor", (py, "-c", "pass")),
            Row("import torch", "floor", (py, "-c", "import torch")),
            Row("import diffusers (pulls torch._dynamo)", "floor", (py, "-c", "import diffusers")),
        ]
    if "help" in groups:
        rows.append(Row("vidfix --help", "help", (*cli, "--help")))
        rows += [Row(f"vidfix {name} --help", "help", (*cli, name, "--help")) for name in COMMANDS]
    if "generate" in groups:
        argv = (*cli, "generate", "--frames", "4", "--steps", "1", "--no-mp4", "--no-progress", "--threads", "1",
                "--out", str(work / "generate"))  # fmt: skip
        rows.append(Row("vidfix generate: 1 chunk, 1 step, shipped model", "generate", argv))
    return rows


def _run_once(argv: tuple[str, ...], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def measure(groups: tuple[str, ...] = _GROUPS, *, repeats: int = 5) -> list[Row]:
    """Measure the rows of ``groups``, ``repeats`` interleaved rounds each (one torch thread per process)."""
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="vidfix_startup_") as tmp:
        rows = _rows(groups, Path(tmp))
        walls: list[list[float]] = [[] for _ in rows]
        cpus: list[list[float]] = [[] for _ in rows]
        for _ in range(repeats):
            for i, row in enumerate(rows):
                if row.group == "generate":  # a new run folder each round
                    subprocess.run(["rm", "-rf", row.argv[-1]], check=False)
                wall, cpu = _run_once(row.argv, env)
                walls[i].append(wall)
                cpus[i].append(cpu)
    return [Row(r.name, r.group, r.argv, tuple(w), tuple(c)) for r, w, c in zip(rows, walls, cpus)]


def _table(rows: list[Row]) -> str:
    lines = [
        "| process | wall min (s) | wall median (s) | CPU min (s) | `--help` < 0.5 s (CPU) |",
        "|---|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {min(r.wall):.2f} | {statistics.median(r.wall):.2f} | {min(r.cpu):.2f} | {r.target} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from vidfix.scripts.bench import machine_line, today, write_section

    p = argparse.ArgumentParser(
        prog="vidfix bench startup",
        description="Start-up time of every vidfix command, in fresh processes.",
        epilog="examples:\n  vidfix bench startup                     # all rows, 5 rounds, into BENCHMARKS.md\n"
        "  vidfix bench startup --groups help --repeats 3 --no-write",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds per row (default 5)")
    p.add_argument(
        "--groups", nargs="+", choices=_GROUPS, default=list(_GROUPS), help="rows to measure (default all)"
    )
    p.add_argument("--output", default="BENCHMARKS.md", help="file whose startup section is replaced")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    ns = p.parse_args(sys.argv[1:] if argv is None else argv)
    if ns.repeats < 1:
        p.error("--repeats must be >= 1")

    load_before = os.getloadavg()
    rows = measure(tuple(ns.groups), repeats=ns.repeats)
    load_after = os.getloadavg()
    command_line = (
        "vidfix bench startup"
        + (f" --repeats {ns.repeats}" if ns.repeats != 5 else "")
        + (f" --groups {' '.join(ns.groups)}" if tuple(ns.groups) != _GROUPS else "")
    )
    body = "\n".join([
        "## Start-up cost of a process",
        "",
        f"Command: `{command_line}` · {today()} · {machine_line()} · load average (1 min) "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        f"Each row is a fresh process, {ns.repeats} rounds interleaved with the other rows, one torch thread. "
        "CPU is the child's user + system time (what a loaded machine inflates least; the `--help` target is "
        "judged on it: on a quiet machine a one-thread start-up's wall time is close to its CPU time). `--help` and the "
        "command modules import only the standard library until they run, so no help loads torch or diffusers; "
        "a generating process pays the torch and diffusers imports once, before its first model call.",
        "",
        _table(rows),
    ])  # fmt: skip
    print(body)
    if not ns.no_write:
        write_section("startup", body, path=ns.output)
        print(f"\nwrote the startup section of {ns.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
