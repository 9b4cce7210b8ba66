"""Sharpness per frame: variance of the Laplacian, and the share of energy in each wavelet detail level.

Inputs are luma planes ``(T, H, W)`` in [0, 1] (:func:`vidfix.metrics.luma`). Blur lowers ``sharpness`` and
moves energy from the finest wavelet level (``wavelet_l1``) to coarser ones; both are per frame.

- ``sharpness``: population variance of the 4-neighbour Laplacian ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` of
  luma in 0-255 units, over the interior pixels (the OpenCV "variance of Laplacian" blur measure).
- ``wavelet_l{k}``: share of the frame's AC energy (sum of squares of mean-removed luma) in the detail bands
  of level ``k`` of an orthonormal 2D Haar transform, k = 1 (finest) .. ``levels``. What is left is the coarse
  approximation's share. The plane is cropped to a multiple of ``2**levels`` (at most ``2**levels - 1``
  trailing rows/columns), so no padding enters the energy. A flat frame has all shares 0.

Orthonormal Haar keeps energy, so a level's detail energy is the energy of its input minus the energy of its
approximation, ``||a_(k-1)||^2 - ||a_k||^2`` with ``a_k = 2 * mean of 2x2 blocks of a_(k-1)``: no bands needed.

Example:
    >>> y = torch.rand(2, 64, 64)
    >>> wavelet_energy_shares(y, levels=3).shape
    torch.Size([2, 3])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["laplacian_variance", "wavelet_energy_shares"]


def _check_plane(y: Tensor, minimum: int) -> None:
    if not isinstance(y, Tensor) or y.dim() != 3 or not y.is_floating_point():
        raise ValueError(
            f"expected a float luma tensor (T, H, W), got {getattr(y, 'shape', type(y).__name__)}"
        )
    if y.shape[1] < minimum or y.shape[2] < minimum:
        raise ValueError(
            f"frames of {y.shape[1]}x{y.shape[2]} are too small; need at least {minimum}x{minimum}"
        )


@torch.no_grad()
def laplacian_variance(y: Tensor) -> Tensor:
    """Variance of the 4-neighbour Laplacian of luma in 0-255 units, per frame: ``(T, H, W)`` to ``(T,)``."""
    _check_plane(y, 3)
    c = y[:, 1:-1, 1:-1]
    lap = (y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:]) - 4 * c  # (T, H-2, W-2)
    lap = lap.flatten(1)  # (T, N)
    n = lap.shape[1]
    d = lap - lap.sum(1, keepdim=True) / n  # centred: E[x^2] - E[x]^2 cancels badly in float32
    return (d * d).sum(1) / n * 255.0**2


@torch.no_grad()
def wavelet_energy_shares(y: Tensor, *, levels: int = 3) -> Tensor:
    """Share of AC energy in each Haar detail level, finest first: ``(T, H, W)`` to ``(T, levels)``."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    block = 2**levels
    _check_plane(y, block)
    _, h, w = y.shape
    a = y[:, : h // block * block, : w // block * block]
    a = a - a.mean((1, 2), keepdim=True)  # (T, H', W') mean removed: AC energy only
    energy = [a.square().sum((1, 2))]
    for _ in range(levels):
        a = F.avg_pool2d(a[:, None], 2)[:, 0] * 2.0  # (T, H/2, W/2) orthonormal Haar approximation
        energy.append(a.square().sum((1, 2)))
    e = torch.stack(energy, dim=1)  # (T, levels + 1)
    detail = e[:, :-1] - e[:, 1:]  # (T, levels)
    total = e[:, :1]
    return torch.where(total > 0, detail / total.clamp_min(1e-30), torch.zeros_like(detail)).clamp_(min=0.0)
