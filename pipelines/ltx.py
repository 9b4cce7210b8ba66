"""LTX-Video latent layout: packed tokens ``(B, N, D)`` to ``(B, C, F, H, W)`` and back.

LTXPipeline and LTXConditionPipeline step their scheduler on packed tokens: the latent video
``(B, C, F*pt, H*p, W*p)`` is cut into ``pt x p x p`` patches, one token per patch, ``D = C * pt * p * p``
(diffusers ``_pack_latents``). The 3D wavelet needs the video back, so :class:`LTXTokens` unpacks with the
run's post-patch grid ``(F, H, W)`` and repacks. LTXCondition prepends conditioning tokens (images at
``frame_index > 0``) ahead of the grid; they are not part of the video grid, so they are left out of the
5D view and get no correction.

The grid is only known once a run starts: :func:`latent_grid` computes it from the ``prepare_latents``
arguments, and ``stabilize`` sets it on the layout at every call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["LTXTokens", "latent_grid"]


def latent_grid(
    num_frames: int,
    height: int,
    width: int,
    *,
    temporal_ratio: int,
    spatial_ratio: int,
    patch_size: int = 1,
    patch_size_t: int = 1,
) -> tuple[int, int, int]:
    """Post-patch token grid ``(F, H, W)`` of an LTX run of ``num_frames`` pixel frames at ``height x width``."""
    frames = (num_frames - 1) // temporal_ratio + 1
    return frames // patch_size_t, height // spatial_ratio // patch_size, width // spatial_ratio // patch_size


@dataclass
class LTXTokens:
    """A :class:`vidfix.tap.LatentLayout` for LTX's packed tokens.

    Attributes:
        patch_size, patch_size_t: the transformer's spatial and temporal patch sizes.
        grid: post-patch ``(F, H, W)`` of the current run (set per run).
        prefix_tokens: conditioning tokens ahead of the grid (LTXCondition), set per run.
    """

    patch_size: int = 1
    patch_size_t: int = 1
    grid: tuple[int, int, int] | None = None
    prefix_tokens: int = 0

    def _grid(self) -> tuple[int, int, int]:
        if self.grid is None:
            raise RuntimeError(
                "the LTX token layout does not know the latent grid yet: it is set when the stabilized "
                "pipeline prepares its latents (call the pipeline, not the scheduler directly)"
            )
        return self.grid

    def to_bcfhw(self, t: Tensor) -> Tensor:
        """``(B, N, D)`` tokens (or ``(B, 1, D)`` per-sample values) to ``(B, C, F*pt, H*p, W*p)``."""
        f, h, w = self._grid()
        p, pt = self.patch_size, self.patch_size_t
        b, n, d = t.shape
        if n == 1:  # one value per sample (per-token step coefficients that do not vary)
            return t.reshape(b, d, 1, 1, 1)  # (B, D, 1, 1, 1)
        if n < f * h * w:
            raise ValueError(f"{n} tokens cannot hold the latent grid {f}x{h}x{w} of this run")
        t = t[:, n - f * h * w :]  # (B, F*H*W, D): the video grid, conditioning tokens dropped
        if d == 1 and pt * p * p > 1:  # a per-token coefficient covers its whole patch
            t = t.reshape(b, f, h, w, 1, 1, 1, 1).expand(b, f, h, w, 1, pt, p, p)  # (B, F, H, W, 1, pt, p, p)
        elif d % (pt * p * p):
            raise ValueError(f"token width {d} is not a multiple of the patch volume {pt}x{p}x{p}")
        c = max(d // (pt * p * p), 1)
        x = t.reshape(b, f, h, w, c, pt, p, p)  # (B, F, H, W, C, pt, p, p)
        x = x.permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, C, F, pt, H, p, W, p)
        return x.reshape(b, c, f * pt, h * p, w * p)  # (B, C, F*pt, H*p, W*p)

    def from_bcfhw(self, x: Tensor) -> Tensor:
        """``(B, C, F*pt, H*p, W*p)`` back to ``(B, prefix + F*H*W, C*pt*p*p)``; prefix tokens are zero.

        The tap only converts corrections back, so zero on the conditioning tokens means "not corrected".
        """
        f, h, w = self._grid()
        p, pt = self.patch_size, self.patch_size_t
        b, c = x.shape[:2]
        t = x.reshape(b, c, f, pt, h, p, w, p)  # (B, C, F, pt, H, p, W, p)
        t = t.permute(0, 2, 4, 6, 1, 3, 5, 7)  # (B, F, H, W, C, pt, p, p)
        t = t.reshape(b, f * h * w, c * pt * p * p)  # (B, F*H*W, D)
        if self.prefix_tokens:
            pad = torch.zeros(b, self.prefix_tokens, t.shape[2], dtype=t.dtype, device=t.device)
            t = torch.cat([pad, t], dim=1)  # (B, prefix + F*H*W, D)
        return t
