"""Frame scorers: per-frame scores that :func:`vidfix.metrics.measure` streams frames through (the extension point).

A scorer turns frames into one or more per-frame series, batch by batch, in the same pass as the statistics:
subject and background consistency (:mod:`vidfix.metrics.features`), motion (:mod:`vidfix.metrics.motion`),
LPIPS, or anything else, e.g. a judge network trained on a known video process. It states what its series mean
(:class:`MetricInfo`, so reports, tables and plots describe them) and the frame size it wants.

To add one, write a class with the :class:`FrameScorer` shape and pass an instance to ``measure(...,
scorers=[...])`` or ``drift_report(..., scorers=[...])``. To make it available to ``vidfix drift --scorer NAME``,
register a factory (called with no arguments) under the entry-point group ``vidfix.scorers`` in your package's
``pyproject.toml``::

    [project.entry-points."vidfix.scorers"]
    structure = "mypackage.judge:StructureScorer"

or name it on the command line as ``--scorer mypackage.judge:StructureScorer``. :func:`load_scorer` resolves both.

Scenes: ``starts`` marks the frames that begin a scene (frame 0, and each cut when scenes are measured
separately); a scorer comparing frames with an earlier one restarts there (anchors re-set, no pair across it).

Example:
    >>> class Brightness:                                   # the smallest scorer: mean value of each frame
    ...     metrics = {"brightness": MetricInfo("0-1", "mean of all channels", "brighter")}
    ...     size = None                                     # the analysis grid
    ...     def start(self): pass
    ...     def __call__(self, frames, starts):
    ...         return {"brightness": frames.mean((1, 2, 3))}
    >>> isinstance(Brightness(), FrameScorer)
    True
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from torch import Tensor

__all__ = ["ENTRY_POINT_GROUP", "FrameScorer", "MetricInfo", "available_scorers", "load_scorer"]

ENTRY_POINT_GROUP = "vidfix.scorers"


@dataclass(frozen=True)
class MetricInfo:
    """What a per-frame metric is: unit, one-line meaning, what a rise means, and how it may be summarised.

    ``kind``: ``"statistic"`` (of the frame alone), ``"anchor"`` (against the scene's first frame or frames),
    ``"adjacent"`` (against the previous frame; NaN on a scene's first frame). ``score``: a positive quality
    score (higher is better, far from 0), the only kind for which a relative error such as LV-Bench's video
    drift error is defined.
    """

    unit: str
    description: str
    rise: str  # what an increase over time means, e.g. "brighter"
    kind: Literal["statistic", "anchor", "adjacent"] = "statistic"
    score: bool = False


@runtime_checkable
class FrameScorer(Protocol):
    """Per-frame scores from frames, streamed in batches (module docstring)."""

    metrics: Mapping[str, MetricInfo]  # the series it returns, and what they mean
    size: (
        int | None
    )  # short side of the frames it wants (resized with antialiasing), or None: the analysis grid

    def start(self) -> None:
        """A new video begins: forget everything about the last one."""
        ...

    def __call__(self, frames: Tensor, starts: Tensor) -> Mapping[str, Tensor]:
        """Scores of consecutive frames ``(B, 3, h, w)`` float32 in [0, 1] (on the CPU).

        ``starts`` ``(B,)`` bool marks frames that begin a scene. Returns ``{name: (B,)}`` for every name in
        :attr:`metrics` (NaN where undefined).
        """
        ...


def available_scorers() -> dict[str, str]:
    """Scorers registered by installed packages: ``{name: "module:attr"}`` (entry-point group ``vidfix.scorers``)."""
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_scorer(spec: str) -> FrameScorer:
    """A scorer from a registered name or ``"module:attr"`` (a class or factory called with no arguments).

    Raises:
        ValueError: unknown name, an attribute that cannot be imported, or an object that is not a scorer.
    """
    registered = available_scorers()
    target = registered.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(registered)) or "none registered"
        raise ValueError(
            f"unknown scorer {spec!r}: give a registered name ({known}) or 'module:attr' (a class or factory)"
        )
    module_name, _, attr = target.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load scorer {spec!r} ({target}): {err}") from err
    if not callable(factory):
        raise ValueError(f"{target} is a {type(factory).__name__}, not a frame scorer class or factory")
    scorer = factory()
    if not isinstance(scorer, FrameScorer):
        raise ValueError(
            f"{target} made a {type(scorer).__name__}, not a frame scorer "
            "(needs metrics, size, start() and __call__(frames, starts))"
        )
    return scorer
