"""Helpers the command-line tools share (not a command: no ``main``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(desc: str, *, unit: str, disable: bool = False) -> tuple[Any, Callable[[int, int], None]]:
    """A tqdm bar and a ``progress(done, total)`` callback that drives it (the library's progress hook)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=desc, unit=unit, disable=disable, dynamic_ncols=True)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    return bar, update
