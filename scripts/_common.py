"""Helpers the command-line tools share (not a command: no ``main``).

Only the standard library at import time: ``vidfix <command> --help`` must not load torch. Checks of option
values are argparse ``type=`` functions, so a bad value is one line naming the option and what is allowed,
before any work starts; :class:`Parser` turns argparse's errors into :class:`UsageError` for the CLI's one
error boundary (:func:`vidfix.scripts.cli.command`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Parser",
    "UsageError",
    "available_memory",
    "check_memory",
    "device_name",
    "fraction",
    "nonnegative_float",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "progress_bar",
    "resolve_device",
    "seeds",
]


class UsageError(ValueError):
    """Bad command-line input: one line on stderr and exit code 2 (the CLI's error boundary)."""


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are :class:`UsageError` (one line, exit 2), not usage + exit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _number(text: str, kind: Callable[[str], Any], rule: str, ok: Callable[[Any], bool]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {rule}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (frames, steps, threads, batch size)."""
    return int(_number(text, int, "an integer >= 1", lambda v: v >= 1))


def nonnegative_int(text: str) -> int:
    """An integer >= 0 (overlap)."""
    return int(_number(text, int, "an integer >= 0", lambda v: v >= 0))


def positive_float(text: str) -> float:
    """A finite number > 0 (fps, shift)."""
    return float(_number(text, float, "a finite number > 0", lambda v: math.isfinite(v) and v > 0))


def nonnegative_float(text: str) -> float:
    """A finite number >= 0 (context noise)."""
    return float(_number(text, float, "a finite number >= 0", lambda v: math.isfinite(v) and v >= 0))


def fraction(text: str) -> float:
    """A number in [0, 1] (anchoring and colour-matching strength)."""
    return float(_number(text, float, "a number in [0, 1]", lambda v: 0.0 <= v <= 1.0))


_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")


def device_name(text: str) -> str:
    """A device the tools run on: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (whether it exists is checked later)."""
    if not _DEVICE.match(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; allowed: cpu, cuda, cuda:N, mps")
    return text


def seeds(text: str) -> list[int]:
    """Seeds as ranges and lists (``0-7``, ``0,3,5-9``): :func:`vidfix.pipelines.factory.parse_seeds`."""
    from vidfix.pipelines.factory import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def resolve_device(name: str | None, option: str = "--device") -> Any:
    """The ``torch.device`` to run on: ``name``, or CUDA when present, else the CPU.

    A CUDA (or MPS) device that is absent gives a warning and the CPU; ``cuda:N`` beyond the GPUs present is
    a :class:`UsageError`.
    """
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            warnings.warn(
                f"{option} {name}: no CUDA device is available here; running on the CPU", stacklevel=2
            )
            return torch.device("cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s); allowed: "
                f"cuda:0 to cuda:{torch.cuda.device_count() - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        warnings.warn(f"{option} {name}: MPS is not available here; running on the CPU", stacklevel=2)
        return torch.device("cpu")
    return device


def available_memory() -> int:
    """Bytes of host memory available now (``MemAvailable``; the total where that is unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: do not refuse


def check_memory(needed: int, what: str, *, available: int | None = None, limit_hint: str = "") -> None:
    """Refuse a job whose estimated memory ``needed`` (bytes) exceeds what the machine has, before any work."""
    have = available_memory() if available is None else available
    if needed > have:
        raise UsageError(
            f"{what} needs about {_gb(needed)} of memory, more than the {_gb(have)} available here"
            + (f"; {limit_hint}" if limit_hint else "")
        )


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def progress_bar(desc: str, *, unit: str, disable: bool = False) -> tuple[Any, Callable[[int, int], None]]:
    """A tqdm bar and a ``progress(done, total)`` callback that drives it (the library's progress hook)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update
