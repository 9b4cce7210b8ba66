"""The reference chunk denoiser vidfix ships: a small pixel-space flow-matching video model.

One call denoises a chunk of ``chunk_frames`` frames given up to ``max_context_frames`` clean frames that
precede it (the last frames of the previous chunk; none for the first chunk). Latents are pixels,
``(B, C, F, H, W)`` in [-1, 1]. Trained with flow matching in the diffusers convention, so the stock
``FlowMatchEulerDiscreteScheduler`` and ``UniPCMultistepScheduler(prediction_type="flow_prediction",
use_flow_sigmas=True)`` drive it:

    x_s = (1 - s) x0 + s eps,    model(x_s, t=1000 s, context) ~ v = eps - x0,    x0_hat = x_s - s v.

Architecture (MCVD-style, chosen for CPU speed): frames are stacked along channels, so one 2D U-Net pass
sees the whole chunk and its context at once. Noisy frames, clean context frames (right-aligned, missing
slots zero) and a per-slot "context present" mask are concatenated, pixel-unshuffled by ``patch_size``,
run through a U-Net with timestep (AdaGN) conditioning and self-attention at the coarsest level, and
pixel-shuffled back to ``(B, C, F, H, W)``. Context costs only input channels, not extra passes.

Example:
    >>> model = ReferenceVideoModel.tiny()                     # random weights, for tests
    >>> x = torch.randn(2, 3, model.config.chunk_frames, 16, 16)
    >>> v = model(x, torch.tensor(500.0), context=torch.zeros(2, 3, 1, 16, 16))   # (2, 3, F, 16, 16)
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn

from vidfix._checks import check_finite, check_latents

__all__ = ["ReferenceVideoModel"]

_M = TypeVar("_M", bound=nn.Module)


def timestep_embedding(t: Tensor, dim: int, *, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of timesteps ``t`` ``(B,)`` (in [0, 1000]) -> ``(B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([args.cos(), args.sin()], dim=-1)


def _zero(layer: _M) -> _M:
    """Mark a residual branch's last layer to start at zero (each block starts as the identity)."""
    layer._vidfix_zero_init = True  # type: ignore[assignment]  # a plain marker attribute, not a submodule
    for param in layer.parameters(recurse=False):
        nn.init.zeros_(param)
    return layer


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the second norm modulated by the embedding (AdaGN), plus a skip."""

    def __init__(self, cin: int, cout: int, emb_dim: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(min(groups, cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * cout)
        self.norm2 = nn.GroupNorm(min(groups, cout), cout, affine=False)
        self.conv2 = _zero(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        y = self.conv1(F.silu(self.norm1(h)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # (B, cout, 1, 1) each
        y = self.norm2(y) * (1 + scale) + shift
        return self.skip(h) + self.conv2(F.silu(y))


class Stage(nn.ModuleList):
    """The residual blocks of one U-Net level, run in order with the shared embedding."""

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        for block in self:
            h = block(h, emb)
        return h


class Attention(nn.Module):
    """Multi-head self-attention over the positions of a feature map (global reach at the coarsest level)."""

    def __init__(self, ch: int, heads: int, groups: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(min(groups, ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.out = _zero(nn.Conv2d(ch, ch, 1))

    def forward(self, h: Tensor) -> Tensor:
        B, C, H, W = h.shape
        qkv = self.qkv(self.norm(h)).reshape(B, 3, self.heads, C // self.heads, H * W)  # (B, 3, nh, hd, HW)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # (B, nh, HW, hd) each
        y = F.scaled_dot_product_attention(q, k, v)  # (B, nh, HW, hd)
        y = y.transpose(-1, -2).reshape(B, C, H, W)  # (B, C, H, W)
        return h + self.out(y)


class ReferenceVideoModel(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' mixins type config_name differently
    """Chunk-conditioned flow-matching denoiser: ``model(x, t, context=...) -> v`` (a vidfix ``Denoiser``).

    Args:
        in_channels: colour channels (pixels are the latents).
        sample_size: frame height and width the model takes.
        chunk_frames: frames per chunk; the model denoises exactly this many.
        max_context_frames: most clean context frames it takes; any count from 0 to this works.
        patch_size: pixel-unshuffle factor of the stem (trades resolution for channels, for speed).
        block_channels: U-Net channels per level, finest first (each level halves the resolution).
        layers_per_block: residual blocks per level on each side of the U-Net.
        attention_heads: heads of the self-attention at the coarsest level.
        norm_groups: GroupNorm groups.
        num_train_timesteps: timestep scale: ``t = s * num_train_timesteps`` (diffusers flow convention).
        sigma_data: RMS of the data, for the preconditioning; 0 turns it off (the network outputs v directly).
        sigma_residual: RMS of a chunk frame minus the last context frame, for the context-anchored
            preconditioning (:meth:`preconditioning`); 0 turns the anchoring off.
        context_noise_input: the model is told the flow noise level of its context frames (Diffusion
            Forcing: trained on context noised to a random level, sampled with a fixed one; see
            :attr:`context_sigma`); False: context is assumed clean.
        context_sigma: the context noise level the model was trained to be sampled with (flow level
            ``c' = (1 - a) c + a eps``); samplers read it as the default (vidfix's ``context_noise = 1000 a``).
        sink_frames: clean frames from the start of the video the model always sees besides the recent
            context (an attention "sink", as in Self-Forcing and LongLive): where the sprites' appearance
            comes from; 0 for none.
    """

    #: vidfix's chunked sampler passes the context's noise level as ``context_sigma=`` to models with this flag.
    accepts_context_sigma = True

    @property
    def sink_frames(self) -> int:
        """Frames from the start of the video the model takes as ``sink=`` (vidfix's sampler passes them)."""
        return int(self.config.get("sink_frames", 0))

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        sample_size: int = 64,
        chunk_frames: int = 4,
        max_context_frames: int = 4,
        patch_size: int = 2,
        block_channels: tuple[int, ...] = (64, 128, 192),
        layers_per_block: int = 2,
        attention_heads: int = 4,
        norm_groups: int = 32,
        num_train_timesteps: int = 1000,
        sigma_data: float = 0.4,
        sigma_residual: float = 0.0,
        context_noise_input: bool = False,
        context_sigma: float = 0.0,
        sink_frames: int = 0,
    ) -> None:
        super().__init__()
        levels = len(block_channels)
        down = patch_size * 2 ** (levels - 1)
        if sample_size % down:
            raise ValueError(
                f"sample_size {sample_size} must be a multiple of patch_size * 2**(levels-1) = {down}"
            )
        if chunk_frames < 1 or max_context_frames < 0:
            raise ValueError(
                f"need chunk_frames >= 1 and max_context_frames >= 0, got {chunk_frames}, {max_context_frames}"
            )
        C, Fr, K, p = in_channels, chunk_frames, max_context_frames, patch_size
        emb_dim = 4 * block_channels[0]
        self.emb_dim = emb_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(block_channels[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.context_embed = nn.Embedding(K + 1, emb_dim)  # how many context frames are present
        self.context_noise_mlp = (
            nn.Sequential(
                nn.Linear(block_channels[0], emb_dim), nn.SiLU(), _zero(nn.Linear(emb_dim, emb_dim))
            )
            if context_noise_input
            else None
        )  # the context's noise level (Diffusion Forcing)
        if sink_frames < 0:
            raise ValueError(f"sink_frames must be >= 0, got {sink_frames}")
        cin = (C * (Fr + K + sink_frames) + K + sink_frames) * p * p
        self.conv_in = nn.Conv2d(cin, block_channels[0], 3, padding=1)

        self.down_blocks = nn.ModuleList()
        self.downsamplers = nn.ModuleList()
        ch = block_channels[0]
        for i, cout in enumerate(block_channels):
            self.down_blocks.append(
                Stage(
                    [
                        ResBlock(ch if j == 0 else cout, cout, emb_dim, norm_groups)
                        for j in range(layers_per_block)
                    ]
                )
            )
            ch = cout
            if i < levels - 1:
                self.downsamplers.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid1 = ResBlock(ch, ch, emb_dim, norm_groups)
        self.mid_attn = Attention(ch, attention_heads, norm_groups)
        self.mid2 = ResBlock(ch, ch, emb_dim, norm_groups)

        self.up_blocks = nn.ModuleList()
        self.upsamplers = nn.ModuleList()
        for i in reversed(range(levels)):
            skip = block_channels[i]
            cout = block_channels[i]
            self.up_blocks.append(
                Stage(
                    [
                        ResBlock((ch + skip) if j == 0 else cout, cout, emb_dim, norm_groups)
                        for j in range(layers_per_block)
                    ]
                )
            )
            ch = cout
            if i > 0:
                self.upsamplers.append(nn.Conv2d(ch, block_channels[i - 1], 3, padding=1))
                ch = block_channels[i - 1]
        self.norm_out = nn.GroupNorm(min(norm_groups, ch), ch)
        self.conv_out = _zero(nn.Conv2d(ch, C * Fr * p * p, 3, padding=1))
        # Linear path from the stacked input straight to the output: per-pixel values (the noise to remove,
        # the context to copy) need not squeeze through the U-Net's features.
        # Gated by the noise level: copying x_s pixels helps at low noise and leaks noise at high noise.
        self.input_skip = _zero(nn.Conv2d(cin, C * Fr * p * p, 3, padding=1))
        self.skip_gate = _zero(nn.Linear(emb_dim, C * Fr * p * p))

    @classmethod
    def tiny(cls, **overrides: Any) -> ReferenceVideoModel:
        """A tiny random-weight model (16x16 frames, 4-frame chunks, 2 context frames) for fast tests."""
        kwargs: dict[str, Any] = dict(
            sample_size=16, chunk_frames=4, max_context_frames=2, patch_size=2,
            block_channels=(16, 32), layers_per_block=1, attention_heads=2, norm_groups=8,
        )  # fmt: skip
        kwargs.update(overrides)
        return cls(**kwargs)

    def preconditioning(self, s: Tensor, context: Tensor, present: Tensor) -> tuple[Tensor, ...]:
        """Context-anchored EDM preconditioning (Karras et al. 2022), rewritten for flow matching.

        The last context frame ``p`` is the prior of every chunk frame: ``x0 = p + r``. Then
        ``y = x_s - (1 - s) p = (1 - s) r + s eps`` is a flow sample of the residual ``r`` (RMS
        ``sigma_residual``; with no context ``p = 0`` and ``r = x0``, RMS ``sigma_data``), and
        ``v = eps - x0 = -p + c_skip y + c_out F(c_in y, ...)``: ``c_skip y`` is the best linear guess of the
        residual's velocity, ``c_in`` scales ``y`` to unit variance and the network ``F`` learns the
        unit-variance rest. With no network output this predicts "the last frame holds".

        Args: ``s`` ``(B,)`` noise levels in [0, 1]; ``context`` ``(B, C, K, H, W)``; ``present`` ``(B, K)``.
        Returns: ``prior`` ``(B, C, 1, H, W)`` and ``sigma, c_in, c_skip, c_out`` ``(B, 1, 1, 1, 1)``.
        """
        cfg: Any = self.config
        B, K = s.shape[0], cfg.max_context_frames
        s = s.float().view(B, 1, 1, 1, 1)
        anchored = present[:, -1] if (K > 0 and cfg.sigma_residual > 0) else s.new_zeros(B, dtype=torch.bool)
        prior = (
            context[:, :, K - 1 :].float() * anchored.view(B, 1, 1, 1, 1)
            if K > 0
            else s.new_zeros(B, 1, 1, 1, 1)
        )
        if cfg.sigma_data <= 0:  # no preconditioning: the network outputs v
            one = torch.ones_like(s)
            return torch.zeros_like(prior), one, one, torch.zeros_like(s), one
        sd = torch.where(anchored, cfg.sigma_residual, cfg.sigma_data).float().view(B, 1, 1, 1, 1)
        var = (1 - s) ** 2 * sd**2 + s**2  # Var(y)
        return prior, sd, var.rsqrt(), (s - (1 - s) * sd**2) / var, sd * var.rsqrt()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> ReferenceVideoModel:
        """Re-draw every weight from ``generator`` (PyTorch's default laws), so training is seeded without
        touching the global RNG; residual branch outputs start at zero."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if getattr(module, "_vidfix_zero_init", False):
                    _zero(module)
                    continue
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    bound = 1.0 / math.sqrt(module.weight[0].numel())
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, generator=generator)
            elif isinstance(module, nn.GroupNorm) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        return self

    def _check(self, x: Any, t: Any, context: Any) -> tuple[Tensor, Tensor | None]:
        cfg: Any = self.config
        size, C, Fr, K = cfg.sample_size, cfg.in_channels, cfg.chunk_frames, cfg.max_context_frames
        check_latents(x, "x", ranks=(5,))
        if tuple(x.shape[1:]) != (C, Fr, size, size):
            raise ValueError(
                f"x has shape {tuple(x.shape)}; this model takes chunks (B, {C}, {Fr}, {size}, {size}) "
                f"(chunk_frames={Fr}, sample_size={size})"
            )
        check_finite(x, "x")
        if not isinstance(t, Tensor):
            raise TypeError(f"t must be a torch.Tensor (scalar or (B,)), got {type(t).__name__}")
        if t.dim() > 1 or (t.dim() == 1 and t.shape[0] not in (1, x.shape[0])):
            raise ValueError(f"t must be a scalar or have shape ({x.shape[0]},), got {tuple(t.shape)}")
        check_finite(t.float(), "t")
        if context is None:
            return t, None
        if not (
            isinstance(context, Tensor) and context.dim() == 5 and context.shape[2] == 0
        ):  # 0 frames: none
            check_latents(context, "context", ranks=(5,))
        if (
            context.shape[0] != x.shape[0]
            or tuple(context.shape[3:]) != (size, size)
            or context.shape[1] != C
        ):
            raise ValueError(
                f"context has shape {tuple(context.shape)}; expected (B={x.shape[0]}, {C}, K, {size}, {size})"
            )
        if context.shape[2] > K:
            raise ValueError(
                f"context has {context.shape[2]} frames; this model takes at most {K} (max_context_frames)"
            )
        check_finite(context, "context")
        return t, (context if context.shape[2] > 0 else None)

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        *,
        context: Tensor | None = None,
        context_sigma: float | Tensor | None = None,
        sink: Tensor | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Velocity ``v = eps - x0`` for the noisy chunk ``x`` ``(B, C, F, H, W)`` at timestep ``t`` in
        [0, 1000] (scalar or ``(B,)``), given context frames ``(B, C, K, H, W)``, ``K <= max_context_frames``
        (the frames right before the chunk, oldest first), or None. ``context_sigma`` (scalar or ``(B,)``)
        is the flow noise level the context was noised to, ``(1 - a) c + a eps`` (None: 0, clean); a model
        without ``context_noise_input`` only takes 0. ``sink`` ``(B, C, sink_frames, H, W)``: the video's
        first frames (clean), for a model with ``sink_frames`` (None: absent). Extra keyword arguments are
        refused."""
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {', '.join(sorted(kwargs))}")
        t, context = self._check(x, t, context)
        sigma = self._context_sigma(context_sigma, x.shape[0], x.device)
        B, C, _, H, W = x.shape
        K = int(self.config["max_context_frames"])
        k = 0 if context is None else context.shape[2]
        # Right-align the context: slot K-1 is the frame just before the chunk.
        padded = x.new_zeros(B, C, K, H, W)  # (B, C, K, H, W)
        present = torch.zeros(B, K, dtype=torch.bool, device=x.device)  # (B, K)
        if context is not None:
            padded[:, :, K - k :] = context
            present[:, K - k :] = True
        S = int(self.config.get("sink_frames", 0))
        if sink is not None:
            check_latents(sink, "sink", ranks=(5,))
            if S == 0 or tuple(sink.shape) != (B, C, S, H, W):
                raise ValueError(
                    f"sink has shape {tuple(sink.shape)}; this model takes "
                    + (f"({B}, {C}, {S}, {H}, {W})" if S else "none (sink_frames=0)")
                )
            check_finite(sink, "sink")
        sink_present = torch.full((B,), sink is not None, dtype=torch.bool, device=x.device)
        return self.forward_padded(x, t, padded, present, sigma, sink, sink_present)

    def _context_sigma(self, value: float | Tensor | None, batch: int, device: torch.device) -> Tensor | None:
        if value is None:
            return None
        sigma = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(-1)
        if sigma.numel() not in (1, batch):
            raise ValueError(
                f"context_sigma must be a scalar or have shape ({batch},), got {tuple(sigma.shape)}"
            )
        if not bool(((sigma >= 0) & (sigma < 1)).all()):
            raise ValueError(f"context_sigma is a flow noise level in [0, 1), got {sigma.tolist()}")
        if self.context_noise_mlp is None and bool((sigma > 0).any()):
            raise ValueError(
                "this model was trained on clean context (context_noise_input=False); it takes context_sigma=0 only"
            )
        return sigma.expand(batch)

    def forward_padded(
        self,
        x: Tensor,
        t: Tensor,
        context: Tensor,
        present: Tensor,
        context_sigma: Tensor | None = None,
        sink: Tensor | None = None,
        sink_present: Tensor | None = None,
    ) -> Tensor:
        """The unchecked core of :meth:`forward`, with a per-sample context: ``context`` ``(B, C, K, H, W)``
        with ``K = max_context_frames``, ``present`` ``(B, K)`` bool (absent slots are ignored), the
        context's noise level ``context_sigma`` ``(B,)`` (None: 0) and the sink ``(B, C, S, H, W)`` with
        ``sink_present`` ``(B,)``. Training uses it to mix context counts, noise levels and sinks in a batch."""
        cfg: Any = self.config
        B, C, Fr, H, W = x.shape
        K, p = cfg.max_context_frames, cfg.patch_size
        dtype = self.conv_in.weight.dtype
        s = t.reshape(-1).expand(B).to(x.device, torch.float32) / cfg.num_train_timesteps  # (B,)
        prior, _, c_in, c_skip, c_out = self.preconditioning(s, context, present)
        y = x.float() - (1 - s.view(B, 1, 1, 1, 1)) * prior  # (B, C, F, H, W): noisy residual of the prior
        x_in = (y * c_in).to(x.dtype)
        ctx_scale = 1.0 / cfg.sigma_data if cfg.sigma_data > 0 else 1.0
        mask = present.to(x.dtype)[:, :, None, None].expand(B, K, H, W)  # (B, K, H, W)
        ctx = context * mask.unsqueeze(1) * ctx_scale  # (B, C, K, H, W), absent slots zero
        parts = [x_in.reshape(B, C * Fr, H, W), ctx.reshape(B, C * K, H, W), mask]
        S = int(cfg.get("sink_frames", 0))
        if S:
            on = (
                torch.zeros(B, dtype=torch.bool, device=x.device)
                if sink is None or sink_present is None
                else sink_present.to(x.device)
            )
            smask = on.to(x.dtype)[:, None, None, None].expand(B, S, H, W)  # (B, S, H, W)
            snk = x.new_zeros(B, C, S, H, W) if sink is None else sink.to(x.dtype)
            parts += [(snk * smask.unsqueeze(1) * ctx_scale).reshape(B, C * S, H, W), smask]
        h = torch.cat(parts, 1)  # (B, C(F+K+S)+K+S, H, W)
        h = F.pixel_unshuffle(h.to(dtype), p)  # (B, (C(F+K+S)+K+S) p^2, H/p, W/p)

        # Timestep and context-count embedding.
        tt = t.reshape(-1).expand(B).to(x.device)  # (B,)
        emb = self.time_mlp(timestep_embedding(tt, cfg.block_channels[0]).to(dtype))
        emb = emb + self.context_embed(present.sum(1))  # (B, emb)
        if self.context_noise_mlp is not None:
            level = x.new_zeros(B) if context_sigma is None else context_sigma.to(x.device)
            emb = emb + self.context_noise_mlp(
                timestep_embedding(level * cfg.num_train_timesteps, cfg.block_channels[0]).to(dtype)
            )

        # U-Net.
        stem = h
        h = self.conv_in(stem)
        skips = []
        for i, stage in enumerate(self.down_blocks):
            h = stage(h, emb)
            skips.append(h)
            if i < len(self.downsamplers):
                h = self.downsamplers[i](h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, stage in enumerate(self.up_blocks):
            h = stage(torch.cat([h, skips.pop()], 1), emb)
            if i < len(self.upsamplers):
                h = self.upsamplers[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        gate = 1 + self.skip_gate(emb)[:, :, None, None]  # (B, C F p^2, 1, 1)
        h = self.conv_out(F.silu(self.norm_out(h))) + self.input_skip(stem) * gate  # (B, C F p^2, H/p, W/p)
        out = F.pixel_shuffle(h, p).reshape(B, C, Fr, H, W).float()  # (B, C, F, H, W)
        return (c_skip * y + c_out * out - prior).to(x.dtype)  # (B, C, F, H, W)
