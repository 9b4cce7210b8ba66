"""The no-op corrector: returns the data prediction untouched (the tap then leaves the step bit-identical)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from vidfix.protocols import Scalar, StepInfo

__all__ = ["Identity"]


@dataclass(frozen=True)
class Identity:
    """No correction: ``x0_hat' = x0_hat`` (the same tensor object)."""

    def __call__(self, x0: Tensor, x: Tensor, step: StepInfo) -> Tensor:
        return x0

    def correct_output(self, v: Tensor, x: Tensor, step: StepInfo, *, a: Scalar, b: Scalar) -> Tensor:
        """The tap's folded form (see :meth:`vidfix.correctors.DCW.correct_output`): ``v`` itself."""
        return v

    def to_dict(self) -> dict[str, object]:
        return {"type": "identity"}
