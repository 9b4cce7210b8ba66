"""Tiny random-weight chunk denoisers for sampler and CLI tests (the core ``Denoiser`` protocol).

Latents are ``(B, C, F, H, W)``. Weights are drawn from a seeded generator (never the global RNG), so every
test sees the same model. ``TinyChunkDenoiser`` saves and loads like any diffusers model.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn


def _init(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def tiny_reference_model() -> Any:
    """``ReferenceVideoModel.tiny`` with context-noise input and every weight random (its zero-initialised layers
    redrawn), so rollouts depend on the context. Built after ``torch.manual_seed(0)`` (the global RNG), as the
    benchmark tests have always built it; whatever they draw next continues from that state."""
    from vidfix.pipelines.reference.model import ReferenceVideoModel

    torch.manual_seed(0)
    model = ReferenceVideoModel.tiny(context_noise_input=True, context_sigma=0.05).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and float(p.abs().max()) == 0.0:
                p.normal_(0, 0.05)
    return model


class TinyChunkDenoiser(ModelMixin, ConfigMixin):
    """``model(x, t, context=...) -> v``: a 3D conv over the chunk, its context's mean frame as extra channels."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 8,
        chunk_frames: int = 4,
        max_context_frames: int = 2,
        hidden: int = 8,
        num_train_timesteps: int = 1000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        C = in_channels
        self.conv_in = nn.Conv3d(2 * C, hidden, 3, padding=1)
        self.time = nn.Linear(2, hidden)
        self.conv_out = nn.Conv3d(hidden, C, 3, padding=1)
        _init(self, seed)

    def forward(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **_: Any) -> Tensor:
        B, C, F, H, W = x.shape
        if tuple(x.shape[1:]) != (
            self.config.in_channels,
            self.config.chunk_frames,
            self.config.sample_size,
            self.config.sample_size,
        ):
            raise ValueError(f"bad chunk shape {tuple(x.shape)}")
        if context is not None and context.shape[2] > self.config.max_context_frames:
            raise ValueError(f"too many context frames: {context.shape[2]}")
        ctx = (
            context.mean(2, keepdim=True) if context is not None else x.new_zeros(B, C, 1, H, W)
        )  # (B, C, 1, H, W)
        h = torch.cat([x, ctx.expand(B, C, F, H, W)], 1)  # (B, 2C, F, H, W)
        s = t.float().reshape(-1)[:1] / self.config.num_train_timesteps
        emb = self.time(torch.stack([s, 1 - s], -1))  # (1, hidden)
        h = torch.tanh(self.conv_in(h) + emb[:, :, None, None, None])
        return torch.tanh(self.conv_out(h)) + x * 0.5  # (B, C, F, H, W)


class PlainDenoiser(nn.Module):
    """A plain module with the duck-typed ``check_chunk`` hook (takes 4-frame chunks, <= 2 context frames)."""

    chunk_frames, max_context_frames = 4, 2

    def __init__(self, channels: int = 2, seed: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, 1)
        _init(self, seed)

    def check_chunk(self, chunk_frames: int, context_frames: int) -> None:
        if chunk_frames != self.chunk_frames or context_frames > self.max_context_frames:
            raise ValueError(
                f"PlainDenoiser takes chunks of {self.chunk_frames} frames and <= {self.max_context_frames} "
                f"context frames, got {chunk_frames} and {context_frames}"
            )

    def forward(self, x: Tensor, t: Tensor, *, context: Tensor | None = None) -> Tensor:
        bias = 0.0 if context is None else context.mean(dim=(2, 3, 4), keepdim=True)  # (B, C, 1, 1, 1)
        return torch.tanh(self.conv(x)) + bias


class Spy:
    """Wraps a denoiser; records every call's context (cloned) and can turn call ``nan_at`` into NaN."""

    def __init__(self, inner: Any, *, nan_at: int | None = None) -> None:
        self.inner, self.nan_at = inner, nan_at
        self.contexts: list[Tensor | None] = []
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **kw: Any) -> Tensor:
        self.contexts.append(None if context is None else context.clone())
        out = self.inner(x, t, context=context, **kw)
        if self.nan_at is not None and self.calls == self.nan_at:
            out = out * float("nan")
        self.calls += 1
        return out


class PerItem:
    """Runs a denoiser one video at a time, so its output cannot depend on the batch (CPU convolutions
    differ in the last bits between batch sizes); isolates the sampler's own batch independence."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **kw: Any) -> Tensor:
        outs = [
            self.inner(x[b : b + 1], t, context=None if context is None else context[b : b + 1], **kw)
            for b in range(x.shape[0])
        ]
        return torch.cat(outs, 0)  # (B, C, F, H, W)


class ChunkRecorder:
    """An identity corrector with the chunk hooks of a stateful one: records ``(hook, index, tensor)``.

    A stand-in for anchoring / closed-loop state (``vidfix.ChunkAware``); tensors are cloned.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, Tensor | None]] = []

    def __call__(self, x0: Tensor, x: Tensor, step: Any) -> Tensor:
        return x0

    def start_chunk(self, index: int, *, context: Tensor | None) -> None:
        self.calls.append(("start", index, None if context is None else context.clone()))

    def end_chunk(self, chunk: Tensor, *, index: int) -> None:
        self.calls.append(("end", index, chunk.clone()))
