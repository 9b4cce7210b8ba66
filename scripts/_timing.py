"""Timing for the benchmarks (not a command): interleaved rounds, process CPU time, machine load, peak memory.

The method, for a shared and noisy machine:

- **Process CPU time at one thread** is the number ratios come from: other jobs on the box stretch wall time
  but hardly the CPU time a single-threaded call needs (``time.process_time``: every thread of this process,
  so it is the call's own cost only at one thread). Wall time is recorded beside it, and is what a run at N
  threads (or on a GPU, after a synchronize) reports.
- **Interleaved rounds**: every round times every variant once, so load that drifts during a run hits all
  variants alike; ratios are taken within a round, then summarised over rounds (median; the ratio of the
  minima, the least disturbed rounds, beside it).
- **The load is recorded** (``os.getloadavg`` before and after) next to each table.
- **Peak memory**: the resident-set high-water mark over one call (Linux), with glibc told to return every
  block of 128 KB or more to the system when freed, so earlier calls' freed tensors do not hide a peak.

Example:
    >>> rounds = interleaved({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, 5)
    >>> ratio(rounds["b"].cpu, rounds["a"].cpu) > 0
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

__all__ = [
    "Load",
    "Rounds",
    "children_cpu",
    "interleaved",
    "load",
    "peak_memory",
    "ratio",
    "ratio_of_min",
]


@dataclass
class Rounds:
    """Seconds per round of one variant: process CPU time and wall time."""

    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)

    def median(self, kind: Literal["cpu", "wall"] = "cpu") -> float:
        return statistics.median(getattr(self, kind))

    def min(self, kind: Literal["cpu", "wall"] = "cpu") -> float:
        return min(getattr(self, kind))


def interleaved(
    variants: Mapping[str, Callable[[], object]],
    rounds: int,
    *,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, Rounds]:
    """Time every variant once per round, ``rounds`` times (after ``warmup`` untimed rounds).

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before each clock read, so asynchronous work is counted.
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    out = {k: Rounds() for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            if sync is not None:
                sync()
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            if sync is not None:
                sync()
            out[k].cpu.append(time.process_time() - c0)
            out[k].wall.append(time.perf_counter() - w0)
    return out


def ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of the per-round ratio ``a / b``."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def ratio_of_min(a: Sequence[float], b: Sequence[float]) -> float:
    """``min(a) / min(b)``: the ratio of the least disturbed rounds."""
    return min(a) / min(b)


@dataclass(frozen=True)
class Load:
    """The machine's load average (1, 5, 15 minutes) and core count at one moment."""

    one: float
    five: float
    fifteen: float
    cpus: int

    def __str__(self) -> str:
        return f"{self.one:.2f} / {self.five:.2f} / {self.fifteen:.2f} (1 / 5 / 15 min) on {self.cpus} cores"


def load() -> Load:
    """The load average now (zeros where the platform has none)."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        one = five = fifteen = 0.0
    return Load(one, five, fifteen, os.cpu_count() or 1)


def children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far (subprocess timings)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_libc: list[ctypes.CDLL | None] = []


def _release_freed_memory() -> None:
    """Fix glibc's mmap and trim thresholds at 128 KB (glibc raises them after frees, keeping memory) and
    hand every free page back to the system, so the next allocation shows in the resident set."""
    if not _libc:
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
            if libc is not None:
                libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
                libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
        except (OSError, AttributeError):
            libc = None
        _libc.append(libc)
    libc = _libc[0]
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def peak_memory(fn: Callable[[], object]) -> int | None:
    """Peak resident memory (bytes) that one call of ``fn`` adds above what is resident before it.

    What ``fn`` returns is held until the call's end is measured, so an output counts. None where the
    kernel offers no resettable high-water mark (not Linux). The first call fixes glibc's thresholds for the
    rest of the process (every large block is then mapped afresh, page faults included): measure memory
    after the timings.
    """
    _release_freed_memory()
    try:
        before = _status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        kept = fn()
        peak = _status_kb("VmHWM")
    except OSError:
        return None
    del kept
    return max(0, peak - before) * 1024
