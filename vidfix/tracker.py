"""Drift tracker: a per-chunk callback that records each finished chunk's statistics against the first.

Chunks are latents ``(B, C, F, H, W)`` (each batch item is its own video). For every chunk the tracker
stores, per video and per channel, the mean, the standard deviation and the energy of each wavelet band
group (``low``, ``spatial``, ``temporal``; mean squared coefficient, so the groups sum to the mean square).
Drift is the change against chunk 0. It reads only the chunk, so it costs no model call.

Example:
    >>> tracker = DriftTracker()
    >>> for k, chunk in enumerate(chunks):            # doctest: +SKIP
    ...     tracker(chunk, index=k)
    >>> tracker.drift("std")                          # (chunks, B, C) change of std against chunk 0
    >>> tracker.to_json("drift.json")
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_finite, check_latents
from vidfix.bands import Dims, band_group, dwt

__all__ = ["ChunkStats", "DriftTracker", "Stat"]

Stat: TypeAlias = Literal["mean", "std", "energy_low", "energy_spatial", "energy_temporal"]
_STATS: tuple[Stat, ...] = get_args(Stat)


@dataclass(frozen=True)
class ChunkStats:
    """Statistics of one chunk; every field is a nested list ``[B][C]`` of floats (JSON-able)."""

    index: int
    frames: int
    mean: list[list[float]]
    std: list[list[float]]
    energy_low: list[list[float]]
    energy_spatial: list[list[float]]
    energy_temporal: list[list[float]]


def chunk_stats(chunk: Tensor, index: int, *, dims: Dims = "3d", level: int = 1) -> ChunkStats:
    """Per-video, per-channel statistics of a ``(B, C, F, H, W)`` chunk."""
    check_latents(chunk, "chunk", ranks=(5,))
    check_finite(chunk, f"chunk {index}")
    x = chunk.detach().float()
    if dims == "3d" and x.shape[2] < 2:
        dims = "2d"  # one frame has no temporal band
    bands = dwt(x, dims=dims, level=level)
    n = x[0, 0].numel()
    energy = {g: torch.zeros(x.shape[:2], dtype=torch.float64) for g in ("low", "spatial", "temporal")}
    energy["low"] += bands.low.double().pow(2).flatten(2).sum(-1).cpu() / n
    for lvl in bands.details:
        for key, coef in lvl.items():
            energy[band_group(key, dims)] += coef.double().pow(2).flatten(2).sum(-1).cpu() / n
    flat = x.flatten(2)  # (B, C, F*H*W)
    return ChunkStats(
        index=index,
        frames=int(x.shape[2]),
        mean=flat.mean(-1).double().cpu().tolist(),
        std=flat.std(-1, unbiased=False).double().cpu().tolist(),
        energy_low=energy["low"].tolist(),
        energy_spatial=energy["spatial"].tolist(),
        energy_temporal=energy["temporal"].tolist(),
    )


@dataclass
class DriftTracker:
    """Records :class:`ChunkStats` for each chunk it is called with; drift is measured against the first.

    Attributes:
        dims: band transform for the energies (``"3d"`` over F, H, W or ``"2d"`` per frame).
        level: wavelet levels.
        records: one :class:`ChunkStats` per chunk, in call order.
    """

    dims: Dims = "3d"
    level: int = 1
    records: list[ChunkStats] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("dims", self.dims, get_args(Dims))

    def __call__(self, chunk: Tensor, index: int | None = None, **_: Any) -> ChunkStats:
        """Record one finished chunk ``(B, C, F, H, W)``; extra keyword arguments are ignored (callback use)."""
        stats = chunk_stats(
            chunk, len(self.records) if index is None else int(index), dims=self.dims, level=self.level
        )
        if self.records and (len(stats.mean), len(stats.mean[0])) != (
            len(self.records[0].mean),
            len(self.records[0].mean[0]),
        ):
            raise ValueError(
                f"chunk {stats.index} has (B, C) = ({len(stats.mean)}, {len(stats.mean[0])}), "
                f"but chunk {self.records[0].index} had ({len(self.records[0].mean)}, {len(self.records[0].mean[0])})"
            )
        self.records.append(stats)
        return stats

    def values(self, stat: Stat) -> Tensor:
        """Raw statistic per chunk: ``(chunks, B, C)`` float64."""
        check_choice("stat", stat, _STATS)
        if not self.records:
            raise ValueError("the tracker has no chunks yet")
        return torch.tensor([getattr(r, stat) for r in self.records], dtype=torch.float64)

    def drift(self, stat: Stat, *, relative: bool = False) -> Tensor:
        """Change of ``stat`` against chunk 0, ``(chunks, B, C)``; ``relative`` divides by chunk 0's value."""
        v = self.values(stat)
        d = v - v[0]
        return d / v[0].abs().clamp_min(1e-12) if relative else d

    def curve(self, stat: Stat, *, relative: bool = False) -> list[float]:
        """One number per chunk: RMS over videos and channels of :meth:`drift` (0 at chunk 0)."""
        return self.drift(stat, relative=relative).pow(2).mean(dim=(1, 2)).sqrt().tolist()

    def to_dict(self) -> dict[str, Any]:
        return {
            "dims": self.dims,
            "level": self.level,
            "chunks": [asdict(r) for r in self.records],
            "curves": {s: self.curve(s) for s in _STATS} if self.records else {},
            "relative_curves": {s: self.curve(s, relative=True) for s in _STATS} if self.records else {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftTracker:
        return cls(
            data.get("dims", "3d"), data.get("level", 1), [ChunkStats(**r) for r in data.get("chunks", [])]
        )

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        out = Path(path)
        out.write_text(json.dumps(self.to_dict(), indent=1))
        return out

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> DriftTracker:
        return cls.from_dict(json.loads(Path(path).read_text()))
