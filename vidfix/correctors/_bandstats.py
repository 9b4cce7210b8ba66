"""Per-video, per-channel band statistics and band rescaling, shared by the stateful correctors.

Latents are ``(B, C, F, H, W)`` (or ``(B, C, H, W)`` frames, 2d). A band group's component is its part of
the signal (:func:`vidfix.bands.group_components`; the components sum to the input). Its statistics are
the per-video, per-channel mean (non-zero for the low group only) and the standard deviation around it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from vidfix.bands import Dims, Group, group_components

__all__ = ["BandMoments", "band_moments", "clamp_abs", "rescale_bands"]


@dataclass(frozen=True)
class BandMoments:
    """Per-video, per-channel statistics of each band group.

    Attributes:
        mean: ``(B, C)`` channel means (they live in the low band).
        std: group -> ``(B, C)`` standard deviation of the group's component around its mean.
    """

    mean: Tensor
    std: dict[Group, Tensor]

    def detach(self) -> BandMoments:
        return BandMoments(self.mean.detach().clone(), {g: v.detach().clone() for g, v in self.std.items()})

    def blend(self, other: BandMoments, weight: float) -> BandMoments:
        """``(1 - weight) * self + weight * other`` (std blended in log space): a running reference."""
        std = {g: (self.std[g].log() * (1 - weight) + other.std[g].log() * weight).exp() for g in self.std}
        return BandMoments(self.mean * (1 - weight) + other.mean * weight, std)


def _dims(x: Tensor, dims: Dims) -> Dims:
    return "2d" if x.dim() == 4 or x.shape[2] < 2 else dims


def band_moments(
    x: Tensor, *, dims: Dims = "3d", level: int = 1, comps: Mapping[Group, Tensor] | None = None
) -> tuple[BandMoments, dict[Group, Tensor]]:
    """Statistics of ``x`` per band group (and the components, to reuse in :func:`rescale_bands`)."""
    parts = (
        dict(comps) if comps is not None else group_components(x.float(), dims=_dims(x, dims), level=level)
    )
    red = tuple(range(2, x.dim()))
    mean = x.float().mean(dim=red)  # (B, C)
    std: dict[Group, Tensor] = {}
    for g, comp in parts.items():
        c = comp.float()
        centre = c.mean(dim=red, keepdim=True)
        std[g] = (c - centre).pow(2).mean(dim=red).sqrt().clamp_min(1e-12)  # (B, C)
    return BandMoments(mean, std), parts


def rescale_bands(
    x: Tensor,
    comps: Mapping[Group, Tensor],
    log_gain: Mapping[Group, Tensor],
    shift: Tensor | None = None,
) -> Tensor:
    """``x`` with each group's component scaled by ``exp(log_gain[g])`` around its mean (per video and
    channel, ``(B, C)``) and the channel means moved by ``shift`` ``(B, C)``."""
    out = x.clone()
    red = tuple(range(2, x.dim()))
    view = (*x.shape[:2],) + (1,) * (x.dim() - 2)
    for g, lg in log_gain.items():
        if g not in comps:
            continue
        comp = comps[g]
        centre = comp.mean(dim=red, keepdim=True)
        out += (comp - centre) * (lg.exp() - 1.0).view(view).to(x.dtype)
    if shift is not None:
        out += shift.view(view).to(x.dtype)
    return out


def clamp_abs(x: Tensor, bound: float | Tensor) -> Tensor:
    """``x`` clipped to ``[-bound, bound]``."""
    b = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    return torch.maximum(torch.minimum(x, b), -b)
