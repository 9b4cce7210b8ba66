"""Spread independent videos (seeds) over processes with accelerate; gather what each process made.

Never across the chunks of one video (they depend on each other). Seeds are cut into batches first and
the batches are shared out, so a video's batch, and thus its bits, do not depend on the process count.
Launch with ``torchrun --nproc_per_node N`` or ``accelerate launch --multi_gpu --num_processes N``
(on CPU ``accelerate launch --cpu`` starts a single process); the caller makes the
``accelerate.PartialState`` (``PartialState(cpu=not torch.cuda.is_available())``: gloo on CPU).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

__all__ = ["ProcessError", "batches_of", "run_split"]

T = TypeVar("T")


class ProcessError(RuntimeError):
    """Some process failed; the message holds each failing process's error."""


def batches_of(items: Sequence[T], size: int) -> list[list[T]]:
    """``items`` cut into consecutive batches of ``size`` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def run_split(state: Any, items: Sequence[T], fn: Callable[[list[T]], list[Any]]) -> list[Any]:
    """Run ``fn`` on this process's share of ``items`` and return every process's results, in item order.

    Every process gets the full list back (``gather_object``). An error in one process does not hang the
    others: errors are gathered too and raised everywhere as :class:`ProcessError`.
    """
    from accelerate.utils import gather_object

    if state.num_processes == 1:
        return list(fn(list(items)))
    with state.split_between_processes(list(items)) as mine:
        try:
            out, error = fn(list(mine)), None
        except Exception as err:  # reported by every process below, after the gather
            out, error = [], f"process {state.process_index}: {type(err).__name__}: {err}"
    gathered = gather_object([{"rank": state.process_index, "out": out, "error": error}])
    errors = [g["error"] for g in gathered if g["error"]]
    if errors:
        raise ProcessError("\n".join(errors))
    return [r for g in sorted(gathered, key=lambda g: g["rank"]) for r in g["out"]]
