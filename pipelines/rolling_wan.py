"""Rolling-KV-cache Wan (Self-Forcing-style autoregressive generation) through the loop-level API.

Self-Forcing, CausVid and their successors run a Wan 2.1 transformer chunk by chunk with a rolling KV cache of
the clean chunks generated so far, each chunk in a few x0 / re-noise steps. diffusers is adding that cache:
issue #12600, and PR #13681 ("Add a (rolling) KV cache for Wan models to enable autoregressive rollouts", open
since May 2026, byte-equivalent to upstream Self-Forcing). **The installed diffusers (0.42.1) does not have it**:
:func:`rolling_kv_support` says so in one line, and :func:`stabilize_rolling` (the rolling-KV counterpart of
``stabilize``) raises with that line. This module is written against the PR's public interface, so it runs once the PR is in the installed
diffusers:

* ``diffusers.models.transformers.transformer_wan.WanRollingKVCache(num_blocks=..., window_size=-1)``, with
  ``enable_append_mode()`` (the next call adds its keys and values as the newest chunk), ``enable_overwrite_mode()``
  (the next call replaces the newest chunk), ``overwrite_newest`` and ``reset()``;
* ``WanTransformer3DModel(hidden_states, timestep, encoder_hidden_states, frame_offset=..., attention_kwargs={"kv_cache":
  cache}, return_dict=False)``, ``frame_offset`` being the chunk's first latent frame (after temporal patching).

The loop (as in the PR author's reference script): for chunk ``k`` at offset ``k * F``, draw noise; for each
level ``s_i`` of the few-step list, run the model (append mode at the first step, overwrite after, so the cache
holds one entry for the chunk), take ``x0 = x - s v``, correct it with the :class:`vidfix.ARLoop`, re-noise to
the next level; then write the clean chunk into the cache at ``t = 0`` (overwrite mode). Latents are
``(B, C, F, H, W)``.

    >>> handle = stabilize_rolling(pipe, DCW(low=0.01), track_drift=True)            # doctest: +SKIP
    >>> video = handle("a red fox running through snow", num_chunks=8)              # (T, H, W, 3) in [0, 1]
    >>> handle.loop.tracker.curve("std")                                            # drift per chunk
"""

from __future__ import annotations

import inspect
import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from vidfix.pipelines.fewstep import warp_levels

from vidfix.loop import ARLoop
from vidfix.protocols import Corrector
from vidfix.tracker import DriftTracker

__all__ = [
    "RollingKVUnavailable",
    "RollingWan",
    "rolling_kv_support",
    "self_forcing_levels",
    "stabilize_rolling",
]

_MODULE = "diffusers.models.transformers.transformer_wan"


class RollingKVUnavailable(RuntimeError):
    """The installed diffusers has no rolling-KV-cache Wan path (diffusers PR #13681)."""


#: The cache methods RollingWan calls (the PR's interface at the time of writing).
_CACHE_METHODS = ("enable_append_mode", "enable_overwrite_mode", "reset")


def rolling_kv_support() -> str | None:
    """None when the installed diffusers has the rolling-KV Wan path of PR #13681; else one line saying why not."""
    import importlib

    import diffusers

    module = importlib.import_module(_MODULE)
    if not hasattr(module, "WanRollingKVCache"):
        return (
            f"diffusers {diffusers.__version__} has no rolling-KV-cache Wan (WanRollingKVCache, diffusers PR "
            "#13681 / issue #12600); for Self-Forcing-style loops call vidfix.ARLoop from your own loop "
            "(docs/stabilize/self-forcing.md)"
        )
    missing = [m for m in _CACHE_METHODS if not callable(getattr(module.WanRollingKVCache, m, None))]
    if missing:  # e.g. a later revision of the PR with another cache interface (configure_write, ...)
        return (
            f"diffusers {diffusers.__version__} has WanRollingKVCache without {', '.join(missing)}: this is not the "
            "interface of diffusers PR #13681 that vidfix supports; call vidfix.ARLoop from your own loop instead"
        )
    if "frame_offset" not in inspect.signature(module.WanTransformer3DModel.forward).parameters:
        return (
            f"diffusers {diffusers.__version__} has WanRollingKVCache but WanTransformer3DModel.forward takes no "
            "frame_offset: this is not the interface of diffusers PR #13681 that vidfix supports"
        )
    return None


def _cache_class() -> Any:
    """``WanRollingKVCache``, or :class:`RollingKVUnavailable` with the one-line reason."""
    reason = rolling_kv_support()
    if reason is not None:
        raise RollingKVUnavailable(reason)
    import importlib

    return importlib.import_module(_MODULE).WanRollingKVCache


def stabilize_rolling(
    pipe: Any,
    corrector: Corrector | None = None,
    *,
    calibration: str | os.PathLike[str] | None = None,
    track_drift: bool = False,
    **options: Any,
) -> RollingWan:
    """The rolling-KV counterpart of :func:`vidfix.pipelines.stabilize`: a :class:`RollingWan` to call.

    ``pipe(...)`` of a ``WanPipeline`` has no autoregressive mode to hook, so this returns the loop itself,
    with ``corrector`` (or the DCW of a ``calibration`` file) and, with ``track_drift``, a drift tracker in
    ``handle.loop.tracker``. Raises :class:`RollingKVUnavailable` with one line, before anything else, where
    the installed diffusers has no rolling-KV Wan (diffusers 0.42.1 has none).
    """
    _cache_class()
    if calibration is not None:
        if corrector is not None:
            raise ValueError("give a corrector or calibration=FILE, not both")
        from vidfix.pipelines.adapters import corrector_from_calibration

        corrector = corrector_from_calibration(calibration, pipe)
    return RollingWan(pipe, ARLoop(corrector, tracker=DriftTracker() if track_drift else None), **options)


def self_forcing_levels(
    levels: Sequence[float] = (1000, 750, 500, 250), *, shift: float = 5.0
) -> list[float]:
    """Noise levels ``s`` of a Self-Forcing ``denoising_step_list`` (``warp_denoising_step``: the flow shift)."""
    return warp_levels(levels, shift=shift)


@dataclass
class RollingWan:
    """Self-Forcing-style generation with a Wan pipeline's transformer and diffusers' rolling KV cache.

    Attributes:
        pipe: a ``WanPipeline`` holding a causal (Self-Forcing / CausVid) transformer; its text encoder and
            VAE are used as they are.
        loop: the :class:`vidfix.ARLoop` (corrector, tracker, chunk hooks); ``ARLoop()`` is the plain loop.
        levels: the few-step noise levels ``s`` (default: Self-Forcing's 1000, 750, 500, 250 with shift 5).
        window_size: chunks the cache keeps (-1: all), as ``WanRollingKVCache(window_size=...)``.
        guidance_scale: classifier-free guidance (distilled few-step models use 1: none).
        context_timestep: timestep of the clean-chunk cache write (Self-Forcing's ``context_noise``, 0).
    """

    pipe: Any = field(repr=False)
    loop: ARLoop = field(default_factory=ARLoop)
    levels: Sequence[float] = field(default_factory=self_forcing_levels)
    window_size: int = -1
    guidance_scale: float = 1.0
    context_timestep: float = 0.0

    def __post_init__(self) -> None:
        _cache_class()  # one line, before any work, when this diffusers cannot run it
        if type(self.pipe).__name__ != "WanPipeline":
            raise TypeError(f"RollingWan runs a WanPipeline's transformer, got {type(self.pipe).__name__}")
        lv = list(self.levels)
        if not lv or any(not 0 < s <= 1 for s in lv) or any(b >= a for a, b in itertools.pairwise(lv)):
            raise ValueError(f"levels must be decreasing noise levels in (0, 1], got {lv}")

    # -- the model with its caches ---------------------------------------------------------------------

    def _run(
        self, cache: Any, x: Tensor, t: float, embeds: Tensor, offset: int, *, overwrite: bool
    ) -> Tensor:
        model = self.pipe.transformer
        previous = cache.overwrite_newest
        try:
            cache.enable_overwrite_mode() if overwrite else cache.enable_append_mode()
            timestep = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
            out = model(
                hidden_states=x.to(model.dtype), timestep=timestep, encoder_hidden_states=embeds,
                frame_offset=offset, attention_kwargs={"kv_cache": cache}, return_dict=False,
            )[0]  # fmt: skip
        finally:
            cache.overwrite_newest = previous
        return out.float()

    def _velocity(
        self, caches: list[Any], embeds: list[Tensor], x: Tensor, t: float, offset: int, first: bool
    ) -> Tensor:
        v = self._run(caches[0], x, t, embeds[0], offset, overwrite=not first)
        if len(caches) > 1:
            uncond = self._run(caches[1], x, t, embeds[1], offset, overwrite=not first)
            v = uncond + self.guidance_scale * (v - uncond)
        return v

    # -- generation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def latents(
        self,
        prompt_embeds: Tensor,
        *,
        num_chunks: int,
        latent_frames: int = 3,
        height: int = 480,
        width: int = 832,
        generator: torch.Generator,
        negative_prompt_embeds: Tensor | None = None,
    ) -> Tensor:
        """The video latents ``(B, C, num_chunks * latent_frames, h, w)`` (B = the prompt batch).

        Noise comes from ``generator`` only (chunk noise, then each re-noise), so a video depends on its seed.
        """
        model = self.pipe.transformer
        cache_cls = _cache_class()
        p_t, _, _ = model.config.patch_size
        if latent_frames % p_t:
            raise ValueError(
                f"latent_frames must be a multiple of the temporal patch size {p_t}, got {latent_frames}"
            )
        spatial = self.pipe.vae_scale_factor_spatial
        B, C = prompt_embeds.shape[0], model.config.in_channels
        shape = (B, C, latent_frames, height // spatial, width // spatial)
        embeds = [prompt_embeds]
        if self.guidance_scale > 1.0:
            if negative_prompt_embeds is None:
                raise ValueError("guidance_scale > 1 needs negative_prompt_embeds")
            embeds.append(negative_prompt_embeds)
        caches = [cache_cls(num_blocks=len(model.blocks), window_size=self.window_size) for _ in embeds]
        device = prompt_embeds.device
        sigmas = [float(s) for s in self.levels]
        chunks: list[Tensor] = []
        for k in range(num_chunks):
            offset = k * (latent_frames // p_t)
            self.loop.start_chunk(k, context=chunks[-1] if chunks else None)
            x = torch.randn(shape, generator=generator, device=generator.device).to(device)
            for i, s in enumerate(sigmas):
                s_next = sigmas[i + 1] if i + 1 < len(sigmas) else 0.0
                # Predict x0 (flow matching), correct it, re-noise to the next level.
                x0 = x - s * self._velocity(caches, embeds, x, 1000.0 * s, offset, first=i == 0)
                x0 = self.loop.x0(x0, x, s, s_next, index=i, num_steps=len(sigmas))
                if s_next > 0:
                    x = (1 - s_next) * x0 + s_next * torch.randn(
                        shape, generator=generator, device=generator.device
                    ).to(device)
            self.loop.end_chunk(x0)
            # Write the clean chunk into the caches, over the chunk's noisy entry.
            for cache, e in zip(caches, embeds):
                self._run(cache, x0, self.context_timestep, e, offset, overwrite=True)
            chunks.append(x0)
        for cache in caches:
            cache.reset()
        return torch.cat(chunks, 2)  # (B, C, num_chunks * F, h, w)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        *,
        num_chunks: int,
        negative_prompt: str | None = None,
        latent_frames: int = 3,
        height: int = 480,
        width: int = 832,
        generator: torch.Generator | None = None,
        max_sequence_length: int = 512,
    ) -> Tensor:
        """Encode the prompt, generate the latents, decode with the pipeline's VAE: ``(T, H, W, 3)`` in [0, 1]."""
        pipe = self.pipe
        guided = self.guidance_scale > 1.0
        embeds, negative = pipe.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=guided,
            max_sequence_length=max_sequence_length, device=pipe._execution_device,
        )  # fmt: skip
        dtype = pipe.transformer.dtype
        latents = self.latents(
            embeds.to(dtype), num_chunks=num_chunks, latent_frames=latent_frames, height=height, width=width,
            generator=generator or torch.Generator().manual_seed(0),
            negative_prompt_embeds=None if negative is None else negative.to(dtype),
        )  # fmt: skip
        vae = pipe.vae
        mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1).to(latents)
        std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1).to(latents)
        video = vae.decode((latents * std + mean).to(vae.dtype), return_dict=False)[0]  # (B, 3, T, H, W)
        frames = pipe.video_processor.postprocess_video(video, output_type="pt")[0]  # (T, 3, H, W) in [0, 1]
        return frames.permute(0, 2, 3, 1)  # (T, H, W, 3)
