"""The no-op corrector: returns the data prediction untouched (the tap then leaves the step bit-identical)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vidfix.protocols import StepInfo

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """No correction: ``x0_hat' = x0_hat`` (the same tensor object)."""

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        return x0

    def to_dict(self) -> dict[str, object]:
        return {"type": "identity"}
