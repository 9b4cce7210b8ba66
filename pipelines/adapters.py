"""Diffusers video pipelines as vidfix :class:`~vidfix.protocols.Denoiser` s: calibrate the model you run.

``stabilize(pipe, DCW(...))`` needs coefficients measured for that model, scheduler and step count. This module
turns a pipeline's transformer into ``denoiser(x, t, context=None) -> model output`` (latents ``(B, C, F, H,
W)`` whatever the pipeline's own layout), with the pipeline's text conditioning and guidance, encodes the
user's own clips with the pipeline's VAE as reference samples, gives the scheduler the timesteps a
``pipe(...)`` run of that size uses, and writes the calibration file ``stabilize(pipe, calibration=FILE)`` and
``vidfix generate --pipeline --calibration FILE`` read.

    >>> denoiser = PipelineDenoiser.from_pipe(pipe, prompt="a red fox running through snow")  # doctest: +SKIP
    >>> reference = encode_video(pipe, clips, height=480, width=832)     # (B, C, F, H, W) latents
    >>> scheduler = pipeline_scheduler(pipe, reference.shape)
    >>> result = calibrate(denoiser, scheduler, reference, num_steps=30)
    >>> save_pipeline_calibration(result, "wan_calibration.json", pipe=pipe)

Supported: Wan 2.1/2.2 text-to-video, LTX-Video (and LTXCondition, unconditioned), CogVideoX, HunyuanVideo,
SkyReels-V2 diffusion forcing (its clean prefix frames are the denoiser's ``context``, so the chunked
sampler and a rollout calibration can drive it autoregressively). Per-family model calls follow each
pipeline's denoising loop in diffusers 0.42 (timestep shapes, guidance, rotary and coordinate inputs).
"""

from __future__ import annotations

import copy
import inspect
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from vidfix.pipelines.stabilize import Family, pipeline_spec

from vidfix._checks import check_latents
from vidfix.calibration import CalibrationResult
from vidfix.correctors.dcw import DCW
from vidfix.tap import is_tapped, original_class, untap

__all__ = [
    "PipelineDenoiser",
    "TextConditioning",
    "corrector_from_calibration",
    "encode_text",
    "encode_video",
    "pipeline_default",
    "pipeline_family",
    "pipeline_scheduler",
    "save_pipeline_calibration",
]


def pipeline_family(pipe: Any) -> Family:
    """The model family of a pipeline the adapter supports (image-to-video Wan is not: its transformer
    needs image latents in its channels)."""
    cls, spec = pipeline_spec(pipe)  # TypeError for unsupported pipelines, listing the supported ones
    if cls.__name__ == "WanImageToVideoPipeline":
        raise TypeError(
            "WanImageToVideoPipeline takes image latents in its transformer's channels; calibrate the "
            "text-to-video model of the same family (WanPipeline) and use its file"
        )
    return spec.family


def _transformer(pipe: Any) -> Any:
    model = getattr(pipe, "transformer", None)
    if model is None:
        raise ValueError(f"{type(pipe).__name__} has no transformer loaded")
    return model


def _ratios(pipe: Any) -> tuple[int, int]:
    """VAE compression (temporal, spatial) of a pipeline, under the attribute names each family uses."""
    t = getattr(pipe, "vae_scale_factor_temporal", None) or getattr(
        pipe, "vae_temporal_compression_ratio", None
    )
    s = getattr(pipe, "vae_scale_factor_spatial", None) or getattr(
        pipe, "vae_spatial_compression_ratio", None
    )
    return int(t or 1), int(s or 1)


def pipeline_default(pipe: Any, name: str, fallback: Any = None) -> Any:
    """The default of ``pipe(...)``'s argument ``name`` (e.g. the family's guidance scale)."""
    param = inspect.signature(type(pipe).__call__).parameters.get(name)
    return fallback if param is None or param.default is inspect.Parameter.empty else param.default


# --------------------------------------------------------------------------------------------------------
# Text conditioning.


@dataclass(frozen=True)
class TextConditioning:
    """The transformer's text inputs, under its own argument names, for each guidance branch.

    ``cond`` holds e.g. ``encoder_hidden_states`` (and ``encoder_attention_mask`` for LTX and Hunyuan,
    ``pooled_projections`` for Hunyuan); ``uncond`` the same for the negative prompt (None: no guidance).
    Tensors have batch 1 (one prompt for every clip) or the batch of the latents.
    """

    cond: dict[str, Tensor]
    uncond: dict[str, Tensor] | None = None


def encode_text(
    pipe: Any,
    prompt: str,
    *,
    negative_prompt: str | None = None,
    guidance: bool = True,
    max_sequence_length: int | None = None,
    device: torch.device | str | None = None,
) -> TextConditioning:
    """Encode ``prompt`` (and the negative prompt, with ``guidance``) with the pipeline's own text encoders.

    HunyuanVideo's guidance is embedded in the model (``guidance_scale``), so it gets no negative branch.
    """
    family = pipeline_family(pipe)
    dev = device if device is not None else pipe._execution_device
    kw: dict[str, Any] = {"device": dev}
    if max_sequence_length is not None:
        kw["max_sequence_length"] = max_sequence_length
    if family == "hunyuan":
        embeds, pooled, mask = pipe.encode_prompt(prompt=prompt, prompt_2=None, **kw)
        return TextConditioning(
            {"encoder_hidden_states": embeds, "encoder_attention_mask": mask, "pooled_projections": pooled}
        )
    if family == "ltx":
        pe, pm, ne, nm = pipe.encode_prompt(
            prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=guidance, **kw
        )
        cond = {"encoder_hidden_states": pe, "encoder_attention_mask": pm}
        return TextConditioning(
            cond, {"encoder_hidden_states": ne, "encoder_attention_mask": nm} if guidance else None
        )
    pe, ne = pipe.encode_prompt(
        prompt=prompt, negative_prompt=negative_prompt, do_classifier_free_guidance=guidance, **kw
    )
    return TextConditioning(
        {"encoder_hidden_states": pe}, {"encoder_hidden_states": ne} if guidance else None
    )


# --------------------------------------------------------------------------------------------------------
# The denoiser: one model call per family, as in each pipeline's denoising loop.


def _batched(
    kwargs: dict[str, Tensor], batch: int, device: torch.device, dtype: torch.dtype
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in kwargs.items():
        if v.shape[0] not in (1, batch):
            raise ValueError(f"text input {k} has batch {v.shape[0]}; expected 1 or the latents' {batch}")
        v = v.expand(batch, *v.shape[1:]) if v.shape[0] == 1 else v
        out[k] = v.to(device, dtype) if v.is_floating_point() else v.to(device)
    return out


@dataclass
class PipelineDenoiser:
    """``denoiser(x, t, context=None) -> model output`` for a diffusers video pipeline's transformer.

    ``x`` is ``(B, C, F, H, W)`` latents as the pipeline's scheduler sees them (normalised, see
    :func:`encode_video`), ``t`` a scheduler timestep; the output is what the scheduler expects (velocity,
    or v for CogVideoX), in ``x``'s dtype and layout. Classifier-free guidance is applied as the pipeline
    applies it. ``context`` (SkyReels-V2 DF only): clean latent frames ``(B, C, K, H, W)`` before the chunk,
    the diffusion-forcing prefix (timestep ``context_timestep``, 0 for clean frames).

    Attributes:
        pipe: the pipeline (its transformer, VAE ratios and helpers are used; nothing is changed).
        family: the model family.
        text: the text conditioning.
        guidance_scale: classifier-free guidance (embedded guidance for HunyuanVideo).
        guidance_scale_2: Wan 2.2's low-noise-stage guidance (None: ``guidance_scale``).
        frame_rate: LTX's frame rate (its rotary scale); fps: SkyReels' fps input.
        context_timestep: SkyReels' timestep of the prefix frames (its ``addnoise_condition`` when re-noised).
    """

    pipe: Any = field(repr=False)
    family: Family
    text: TextConditioning = field(repr=False)
    guidance_scale: float = 5.0
    guidance_scale_2: float | None = None
    frame_rate: int = 25
    fps: int = 24
    context_timestep: float = 0.0

    @classmethod
    def from_pipe(
        cls,
        pipe: Any,
        prompt: str | None = None,
        *,
        negative_prompt: str | None = None,
        text: TextConditioning | None = None,
        guidance_scale: float | None = None,
        max_sequence_length: int | None = None,
        **options: Any,
    ) -> PipelineDenoiser:
        """Build the adapter from a prompt (encoded with the pipeline's encoders) or a ready ``text``.

        ``guidance_scale`` defaults to the pipeline's own default; guidance > 1 encodes the negative prompt.
        ``options``: ``guidance_scale_2``, ``frame_rate``, ``fps``, ``context_timestep``.
        """
        family = pipeline_family(pipe)
        g = float(
            guidance_scale if guidance_scale is not None else pipeline_default(pipe, "guidance_scale", 1.0)
        )
        if max_sequence_length is None:  # what pipe(...) uses, not encode_prompt's own default
            max_sequence_length = pipeline_default(pipe, "max_sequence_length")
        if text is None:
            if prompt is None:
                raise ValueError("give a prompt or a ready TextConditioning (text=...)")
            guided = g > 1.0 and family != "hunyuan"
            text = encode_text(
                pipe,
                prompt,
                negative_prompt=negative_prompt,
                guidance=guided,
                max_sequence_length=max_sequence_length,
            )
        elif prompt is not None:
            raise ValueError("give either a prompt or text=..., not both")
        return cls(pipe, family, text, guidance_scale=g, **options)

    # -- the protocol ----------------------------------------------------------------------------------

    def check_chunk(self, chunk_frames: int, context_frames: int) -> None:
        """The chunked sampler's size check: only SkyReels-V2 DF takes context frames."""
        if context_frames and self.family != "skyreels_df":
            raise ValueError(
                f"{type(self.pipe).__name__} takes no context frames (only SkyReels-V2 diffusion forcing does); "
                f"got context_frames={context_frames}"
            )

    @torch.no_grad()
    def __call__(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **_: Any) -> Tensor:
        check_latents(x, "x", ranks=(5,))
        if context is not None:
            self.check_chunk(x.shape[2], context.shape[2])
        t = torch.as_tensor(t, device=x.device)
        model, g = self._stage(t)
        out = self._branch(model, x, t, context, self.text.cond)
        if self.text.uncond is not None and g > 1.0:
            uncond = self._branch(model, x, t, context, self.text.uncond)
            out = uncond + g * (out - uncond)
        return out.to(x.dtype)

    def _stage(self, t: Tensor) -> tuple[Any, float]:
        """Wan 2.2 switches to its low-noise transformer below ``boundary_ratio``; others have one model."""
        boundary = getattr(getattr(self.pipe, "config", None), "boundary_ratio", None)
        if self.family == "wan" and boundary is not None:
            if float(t.float().max()) < boundary * self.pipe.scheduler.config.num_train_timesteps:
                g2 = self.guidance_scale_2 if self.guidance_scale_2 is not None else self.guidance_scale
                return self.pipe.transformer_2, g2
        return _transformer(self.pipe), self.guidance_scale

    def _branch(
        self, model: Any, x: Tensor, t: Tensor, context: Tensor | None, text: dict[str, Tensor]
    ) -> Tensor:
        dtype = model.dtype
        kw = _batched(text, x.shape[0], x.device, dtype)
        call: Callable[..., Tensor] = _FAMILY_CALLS[self.family]
        return call(self, model, x.to(dtype), t, context, kw).float()


def _wan(
    self: PipelineDenoiser, model: Any, x: Tensor, t: Tensor, context: Tensor | None, kw: dict[str, Any]
) -> Tensor:
    B, _, F, H, W = x.shape
    timestep = t.expand(B)
    if getattr(self.pipe.config, "expand_timesteps", False):  # Wan 2.2 TI2V: one timestep per token
        _, ph, pw = model.config.patch_size
        timestep = t.expand(B, F * (H // ph) * (W // pw))
    return model(hidden_states=x, timestep=timestep, return_dict=False, **kw)[0]


def _skyreels(
    self: PipelineDenoiser, model: Any, x: Tensor, t: Tensor, context: Tensor | None, kw: dict[str, Any]
) -> Tensor:
    B, _, F = x.shape[:3]
    timestep = t.expand(B, F)
    K = 0
    if context is not None:  # the clean prefix frames, at their own timestep
        K = context.shape[2]
        x = torch.cat([context.to(x), x], 2)  # (B, C, K + F, H, W)
        prefix = torch.full((B, K), self.context_timestep, device=x.device, dtype=timestep.dtype)
        timestep = torch.cat([prefix, timestep], 1)  # (B, K + F)
    fps = [0 if self.fps == 16 else 1] * B  # the pipeline's fps embedding index
    out = model(
        hidden_states=x, timestep=timestep, enable_diffusion_forcing=True, fps=fps, return_dict=False, **kw
    )[0]
    return out[:, :, K:]  # (B, C, F, H, W)


def _ltx(
    self: PipelineDenoiser, model: Any, x: Tensor, t: Tensor, context: Tensor | None, kw: dict[str, Any]
) -> Tensor:
    B, _, F, H, W = x.shape
    p, pt = int(model.config.patch_size), int(model.config.patch_size_t)
    temporal, spatial = _ratios(self.pipe)
    tokens = self.pipe._pack_latents(x, p, pt)  # (B, F*H*W / (pt p p), C pt p p)
    out = model(
        hidden_states=tokens,
        timestep=t.expand(B),
        num_frames=F,
        height=H,
        width=W,
        rope_interpolation_scale=(temporal / self.frame_rate, spatial, spatial),
        return_dict=False,
        **kw,
    )[0]
    return self.pipe._unpack_latents(out, F, H, W, p, pt)  # (B, C, F, H, W)


def _cogvideox(
    self: PipelineDenoiser, model: Any, x: Tensor, t: Tensor, context: Tensor | None, kw: dict[str, Any]
) -> Tensor:
    B, _, F, H, W = x.shape
    pt = model.config.patch_size_t
    if pt is not None and F % pt:
        raise ValueError(f"CogVideoX 1.5 takes latent frame counts divisible by {pt}; got {F}")
    _, spatial = _ratios(self.pipe)
    rotary = None
    if model.config.use_rotary_positional_embeddings:
        rotary = self.pipe._prepare_rotary_positional_embeddings(H * spatial, W * spatial, F, x.device)
    frames_first = x.transpose(1, 2)  # (B, F, C, H, W)
    out = model(
        hidden_states=frames_first, timestep=t.expand(B), image_rotary_emb=rotary, return_dict=False, **kw
    )[0]
    return out.transpose(1, 2)  # (B, C, F, H, W)


def _hunyuan(
    self: PipelineDenoiser, model: Any, x: Tensor, t: Tensor, context: Tensor | None, kw: dict[str, Any]
) -> Tensor:
    B = x.shape[0]
    guidance = torch.full((B,), self.guidance_scale * 1000.0, device=x.device, dtype=x.dtype)
    return model(
        hidden_states=x, timestep=t.expand(B).to(x.dtype), guidance=guidance, return_dict=False, **kw
    )[0]


_FAMILY_CALLS: dict[str, Callable[..., Tensor]] = {
    "wan": _wan,
    "skyreels_df": _skyreels,
    "ltx": _ltx,
    "cogvideox": _cogvideox,
    "hunyuan": _hunyuan,
}


# --------------------------------------------------------------------------------------------------------
# Reference samples: the user's clips through the pipeline's VAE.


def _normalize(pipe: Any, family: Family, z: Tensor) -> Tensor:
    """Raw VAE latents ``(B, C, F, H, W)`` to the latents the pipeline's scheduler steps (its decode, inverted)."""
    vae = pipe.vae
    if family in ("wan", "skyreels_df"):
        shape = (1, -1, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean, device=z.device, dtype=z.dtype).view(shape)
        std = torch.tensor(vae.config.latents_std, device=z.device, dtype=z.dtype).view(shape)
        return (z - mean) / std
    if family == "ltx":
        return pipe._normalize_latents(z, vae.latents_mean, vae.latents_std, vae.config.scaling_factor)
    return z * float(vae.config.scaling_factor)  # CogVideoX, HunyuanVideo


@torch.no_grad()
def encode_video(
    pipe: Any,
    clips: Sequence[Tensor | np.ndarray],
    *,
    height: int,
    width: int,
    device: torch.device | str | None = None,
) -> Tensor:
    """Encode clips with the pipeline's VAE into the latents its scheduler steps: ``(B, C, F, H, W)`` float32.

    Args:
        pipe: a supported pipeline (its ``vae`` and ``video_processor``).
        clips: one video per item, ``(T, H, W, 3)`` RGB, uint8 or float in [0, 1], all with the same ``T``
            (``T = k * r + 1`` for the VAE's temporal compression ``r``: 4 for Wan, 8 for LTX).
        height, width: pixel size the clips are resized to (multiples of the VAE's spatial compression).

    The VAE's mode (its distribution's mean) is used, so the result is deterministic.
    """
    family = pipeline_family(pipe)
    temporal, spatial = _ratios(pipe)
    if not clips:
        raise ValueError("no clips to encode")
    frames = {int(c.shape[0]) for c in clips}
    if len(frames) != 1:
        raise ValueError(f"clips must have the same number of frames, got {sorted(frames)}")
    T = frames.pop()
    if (T - 1) % temporal:
        raise ValueError(
            f"{type(pipe).__name__}'s VAE compresses time by {temporal}: clips need k*{temporal}+1 frames "
            f"(e.g. {temporal + 1} or {4 * temporal + 1}), got {T}"
        )
    if height % spatial or width % spatial:
        raise ValueError(f"height and width must be multiples of {spatial}, got {height}x{width}")
    pixels = []
    for c in clips:
        v = torch.as_tensor(np.asarray(c))
        if v.dim() != 4 or v.shape[-1] != 3:
            raise ValueError(f"each clip must be (T, H, W, 3) RGB, got {tuple(v.shape)}")
        v = v.float() / 255.0 if v.dtype == torch.uint8 else v.float()
        pixels.append(v.permute(0, 3, 1, 2))  # (T, 3, H, W) in [0, 1]
    video = pipe.video_processor.preprocess_video(
        torch.stack(pixels), height=height, width=width
    )  # (B, 3, T, H, W)
    vae = pipe.vae
    dev = device if device is not None else pipe._execution_device
    latents = []
    for clip in video:
        dist = vae.encode(clip[None].to(dev, vae.dtype)).latent_dist
        latents.append(_normalize(pipe, family, dist.mode().float()))
    return torch.cat(latents, 0)  # (B, C, F, H, W)


# --------------------------------------------------------------------------------------------------------
# The timesteps of a pipe(...) run.


def _ltx_extra(pipe: Any, shape: Sequence[int]) -> Callable[[int], dict[str, Any]]:
    from diffusers.pipelines.ltx.pipeline_ltx import calculate_shift

    cfg = pipe.scheduler.config
    mu = calculate_shift(
        int(shape[2]) * int(shape[3]) * int(shape[4]),
        cfg.get("base_image_seq_len", 256),
        cfg.get("max_image_seq_len", 4096),
        cfg.get("base_shift", 0.5),
        cfg.get("max_shift", 1.15),
    )
    return lambda n: {"sigmas": np.linspace(1.0, 1 / n, n), "mu": mu}


def pipeline_scheduler(pipe: Any, shape: Sequence[int]) -> Any:
    """A copy of the pipeline's scheduler whose ``set_timesteps(n)`` gives the timesteps ``pipe(...)`` uses for
    latents of ``shape`` ``(B, C, F, H, W)``.

    Wan, SkyReels and CogVideoX call ``set_timesteps(n)`` as it is; HunyuanVideo passes the sigmas
    ``linspace(1, 0, n + 1)[:-1]``; LTX passes ``linspace(1, 1/n, n)`` and a shift ``mu`` from the latent
    size. The copy is a subclass of the scheduler's class (the vidfix tap accepts it).
    """
    family = pipeline_family(pipe)
    sched = untap(pipe.scheduler) if is_tapped(pipe.scheduler) else copy.deepcopy(pipe.scheduler)
    extra: Callable[[int], dict[str, Any]]
    if family == "hunyuan":
        extra = lambda n: {"sigmas": np.linspace(1.0, 0.0, n + 1)[:-1]}  # noqa: E731
    elif family == "ltx":
        extra = _ltx_extra(pipe, shape)
    else:
        return sched
    base = type(sched)

    def set_timesteps(
        self: Any, num_inference_steps: int | None = None, device: Any = None, **kw: Any
    ) -> None:
        if num_inference_steps is None:
            return base.set_timesteps(self, device=device, **kw)
        return base.set_timesteps(self, device=device, **(extra(num_inference_steps) | kw))

    attrs = {"set_timesteps": set_timesteps, "__module__": __name__, "__doc__": base.__doc__}
    sched.__class__ = type(base.__name__, (base,), attrs)
    return sched


# --------------------------------------------------------------------------------------------------------
# The calibration file.


def save_pipeline_calibration(
    result: CalibrationResult, path: str | os.PathLike[str], *, pipe: Any, info: dict[str, Any] | None = None
) -> Path:
    """Write ``result`` as the file ``stabilize(pipe, calibration=...)`` and ``generate --calibration`` read.

    The file is :meth:`CalibrationResult.save`'s JSON plus a ``pipeline`` record (class, family, scheduler,
    and ``info``: model folder, prompt, clip size ...); it is written to a temporary name, then renamed.
    """
    cls, _ = pipeline_spec(pipe)
    record = {"class": cls.__name__, "family": pipeline_family(pipe), "scheduler": result.scheduler} | (
        info or {}
    )
    data = result.to_dict() | {"dcw": result.to_dcw().to_dict(), "pipeline": record}
    out = Path(path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False, default=str))
    os.replace(tmp, out)
    return out


def corrector_from_calibration(path: str | os.PathLike[str], pipe: Any = None) -> DCW:
    """The DCW of a calibration file; with ``pipe``, refuse a file measured on another pipeline or scheduler."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read calibration file {str(p)!r}: {err}") from None
    if (
        not isinstance(data, dict)
        or data.get("type") != "vidfix-calibration"
        or not isinstance(data.get("dcw"), dict)
    ):
        raise ValueError(
            f"{p} is not a vidfix calibration file (write one with `vidfix calibrate --pipeline DIR`)"
        )
    if pipe is not None:
        cls, _ = pipeline_spec(pipe)
        measured = (data.get("pipeline") or {}).get("class")
        if measured is not None and measured != cls.__name__:
            raise ValueError(f"{p} was measured on {measured}, not {cls.__name__}")
        sched = original_class(pipe.scheduler).__name__
        if data.get("scheduler") not in (None, sched):
            raise ValueError(f"{p} was measured with {data['scheduler']}; this pipeline runs {sched}")
    return DCW.from_dict(data["dcw"])
