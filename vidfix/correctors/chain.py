"""Chain: several correctors applied one after the other inside the same step.

``Chain(a, b)(x0, x, step) = b(a(x0, x, step), x, step)``: each sees the data prediction the previous one
left. The chunk hooks (:class:`vidfix.protocols.ChunkAware`) are passed on to every member that has them,
so a stateful corrector keeps working inside a chain (a measured fix plus on-path anchoring, say).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from vidfix.protocols import ChunkAware, Corrector, StepInfo

__all__ = ["Chain"]


@dataclass(frozen=True, init=False)
class Chain:
    """Apply ``correctors`` in order (an empty chain is the identity).

    Example:
        >>> fix = Chain(result.to_corrector(), DCW(temporal=-0.02))      # doctest: +SKIP
    """

    correctors: tuple[Corrector, ...]

    def __init__(self, *correctors: Corrector) -> None:
        for c in correctors:
            if not callable(c):
                raise TypeError(
                    f"every member must be callable as corrector(x0, x, step), got {type(c).__name__}"
                )
        flat: list[Corrector] = []
        for c in correctors:  # nested chains are flattened
            flat.extend(c.correctors if isinstance(c, Chain) else (c,))
        object.__setattr__(self, "correctors", tuple(flat))

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        out = x0
        for c in self.correctors:
            out = c(out, x, step)
        return out

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        for c in self.correctors:
            if isinstance(c, ChunkAware):
                c.start_chunk(index, context=context)

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        for c in self.correctors:
            if isinstance(c, ChunkAware):
                c.end_chunk(chunk, index=index)

    def to_dict(self) -> dict[str, Any]:
        members = [
            c.to_dict() if hasattr(c, "to_dict") else {"type": type(c).__name__} for c in self.correctors
        ]
        return {"type": "chain", "correctors": members}
