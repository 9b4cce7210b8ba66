"""Training of the reference model: flow matching on the sprite process, step-budgeted, seeded, resumable.

Each step draws a batch of fresh videos of the process (seeds never used for evaluation), splits each
clip into clean context frames and a chunk, noises the chunk at a logit-normal noise level ``s`` and
regresses the velocity (diffusers flow convention):

    x_s = (1 - s) x0 + s eps,    loss = |model(x_s, 1000 s, context) - (eps - x0)|^2.

The context count is drawn per sample (none with ``context_drop``, so first chunks work). Everything
random at step ``i`` comes from a generator seeded by ``(seed, i)``, so the run is a function of its
config: a run killed and restarted from its checkpoint continues with the same loss sequence, bit for bit.
Latents are pixels, ``(B, C, F, H, W)``.

Example:
    >>> cfg = TrainConfig(output_dir="runs/ref", steps=100)     # doctest: +SKIP
    >>> train_reference(cfg)                                     # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from vidfix.pipelines.reference.data import TREND, SpriteVideoConfig, render_frames, sample_params
from vidfix.pipelines.reference.model import ReferenceVideoModel

__all__ = ["TrainConfig", "TrainResult", "export_model", "flow_matching_loss", "train_reference"]

_TRAIN_SEED_BASE = 1_000_000_000  # training videos use seeds >= this; evaluation and tests use small seeds
_CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything that determines a training run (a resume with a different config is refused)."""

    output_dir: str  # run folder: checkpoint, loss log, final weights in <output_dir>/model
    steps: int = 2000  # optimiser steps (the budget: runs are step-, not time-limited, so they reproduce)
    batch_size: int = 8  # clips per step
    lr: float = 1e-3  # peak AdamW learning rate
    min_lr_ratio: float = 0.1  # cosine decay from lr to lr * min_lr_ratio
    warmup_steps: int = 200  # linear warmup
    weight_decay: float = 0.0  # AdamW weight decay
    grad_clip: float = 1.0  # max global gradient norm
    ema_decay: float = 0.999  # EMA of weights (the shipped weights are the EMA)
    seed: int = 0  # run seed: weights init, data, noise
    checkpoint_every: int = 200  # steps between checkpoints (and at the end)
    context_drop: float = 0.1  # probability of no context at all (first-chunk mode)
    full_context: float = 0.7  # probability of all max_context_frames given some context (else 1..K-1)
    context_noise: float = 0.2  # context frames get flow noise at a level a ~ U(0, context_noise) per clip:
    # (1 - a) c + a eps. The model then does not copy its own sampling errors from generated context into
    # the next chunk (noise augmentation, as in Diffusion Forcing / SkyReels), so free rollouts last longer.
    # A model with ``context_noise_input`` is told a (Diffusion Forcing) and is sampled with a fixed level.
    context_clean: float = 0.0  # probability of a clean context (a = 0) instead
    context_blur: float = (
        0.0  # largest Gaussian blur (pixels) of the context, drawn U(0, context_blur) per clip:
    )
    # the model's own errors soften edges; trained to continue blurred context with sharp sprites, it has a
    # way back (the target is always the sharp real future). Not told to the model.
    context_blur_prob: float = 0.5  # fraction of clips with a blurred context
    context_damage: float = 0.0  # fraction of clips whose context is damaged the way rollouts damage it: blur,
    # faded contrast and a colour slip, each growing over the context frames (a trend the model must NOT
    # continue: the target is the sharp real future); not told to the model
    damage_blur: float = 1.5  # largest blur (pixels) of the newest damaged context frame
    damage_fade: float = 0.3  # largest contrast loss (fraction) of the newest damaged context frame
    damage_colour: float = 0.15  # largest colour slip (per channel, [-1, 1] units) of the newest frame
    trend_fraction: float = (
        0.0  # fraction of clips from the non-stationary variant (data with TREND's hue_speed)
    )
    self_context: float = 0.0  # fraction of clips whose context the model regenerates itself first (no grad):
    # the real context noised to a level in self_noise and denoised in self_steps Euler steps from the K real
    # frames before it. The model then learns to continue its own kind of errors (blur, melted edges, colour
    # slips) with the sharp real future, which still agrees with the regenerated context (same layout).
    self_noise: tuple[float, float] = (0.3, 0.7)
    self_steps: int = 3
    sink_gap: int = 512  # a model with sink frames sees one from up to this many frames before its context
    sink_drop: float = 0.15  # probability of no sink (so the model also runs without one)
    logit_mean: float = -0.8  # noise level s = sigmoid(N(logit_mean, logit_std)) (logit-normal, SD3 / EDM)
    logit_std: float = 1.2
    weighting: Literal["edm", "v"] = (
        "edm"  # per-sample weight of the v error: EDM's unit-variance target, or 1
    )
    uniform_frac: float = 0.1  # fraction of samples with s ~ U(0, 1) instead (covers the ends)
    max_start_frame: int = 100_000  # clips start at a uniform frame in [0, max_start_frame)
    precision: Literal["float32", "bfloat16"] = "float32"  # compute dtype (bfloat16: CPU/CUDA autocast)
    threads: int = 0  # torch threads for the run (0: leave torch's setting)
    device: str = "cpu"  # where to train ("cuda" where a GPU is lent); a checkpoint resumes on either
    save_dtype: Literal["float32", "float16"] = "float16"  # dtype of the exported weights (size budget)
    sample_shift: float = 1.0  # timestep shift written to the exported scheduler_config.json
    init_from: str = (
        ""  # start from these weights: a run folder's checkpoint.pt or a model folder ("": fresh)
    )
    model: dict[str, Any] = field(default_factory=dict)  # ReferenceVideoModel kwargs (defaults if empty)
    data: SpriteVideoConfig = field(default_factory=SpriteVideoConfig)  # the process (size = sample_size)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size and checkpoint_every must be >= 1")
        if not 0.0 <= self.context_drop <= 1.0 or not 0.0 <= self.full_context <= 1.0:
            raise ValueError("context_drop and full_context are probabilities in [0, 1]")
        if not 0.0 <= self.self_context <= 1.0 or not 0.0 < self.self_noise[0] <= self.self_noise[1] <= 1.0:
            raise ValueError(
                f"self_context must be in [0, 1] and self_noise an ordered range in (0, 1], got {self.self_context}, {self.self_noise}"
            )
        if not 0.0 <= self.context_noise < 1.0:
            raise ValueError(f"context_noise is a flow noise level in [0, 1), got {self.context_noise}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("output_dir")  # the folder may move; everything else must match on resume
        for key in ("threads", "device", "save_dtype", "sample_shift"):  # export and machine settings
            d.pop(key)
        d["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["data"].items()}
        return json.loads(json.dumps(d))


@dataclass(frozen=True)
class TrainResult:
    """What a run leaves: the EMA model, the loss per step and the folder of the saved weights."""

    model: ReferenceVideoModel
    losses: list[float]
    model_dir: Path


def _step_generator(seed: int, step: int, stream: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def flow_matching_loss(
    model: ReferenceVideoModel,
    clips: Tensor,
    generator: torch.Generator,
    cfg: TrainConfig,
) -> Tensor:
    """Flow-matching loss on clips ``(B, C, S + K + F, H, W)``: S sink frames (the model's ``sink_frames``),
    K context frames, then the F frames of the chunk.

    Every random draw comes from the CPU ``generator`` (then moves to the clips' device), so a run gives
    the same draws on any device.
    """
    mc: Any = model.config  # a diffusers FrozenDict: keys are attributes too
    K, S = mc.max_context_frames, model.sink_frames
    B = clips.shape[0]
    dev = clips.device
    # (B, C, S, H, W), (B, C, K, H, W), (B, C, F, H, W)
    sink, context, x0 = clips[:, :, :S], clips[:, :, S : S + K], clips[:, :, S + K :]

    def randn(shape: torch.Size) -> Tensor:
        return torch.randn(shape, generator=generator).to(dev)

    # Context count per sample: 0 (dropped), K (full) or 1..K-1; present slots are the last k.
    u = torch.rand(B, generator=generator)
    partial = torch.randint(1, max(K, 2), (B,), generator=generator).clamp(max=K)
    k = torch.where(
        u < cfg.context_drop,
        0,
        torch.where(u < cfg.context_drop + (1 - cfg.context_drop) * cfg.full_context, K, partial),
    )
    present = (torch.arange(K)[None, :] >= (K - k)[:, None]).to(dev)  # (B, K)
    if cfg.context_damage > 0 and K > 0:
        context = damage_context(context, generator, cfg)
    if cfg.context_blur > 0 and K > 0:
        blur = cfg.context_blur * torch.rand(B, generator=generator)
        blur = torch.where(torch.rand(B, generator=generator) < cfg.context_blur_prob, blur, 0.0).to(dev)
        context = blur_frames(context, blur)
    sigma = None
    if cfg.context_noise > 0 and K > 0:
        a = cfg.context_noise * torch.rand(B, generator=generator)
        a = torch.where(torch.rand(B, generator=generator) < cfg.context_clean, 0.0, a).to(dev)  # (B,)
        ab = a.view(B, 1, 1, 1, 1)
        context = (1 - ab) * context + ab * randn(context.shape)
        sigma = a if mc.context_noise_input else None

    # Noise level: logit-normal, some uniform.
    s = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(B, generator=generator))
    s = torch.where(
        torch.rand(B, generator=generator) < cfg.uniform_frac, torch.rand(B, generator=generator), s
    ).to(dev)
    eps = randn(x0.shape)
    sb = s[:, None, None, None, None]
    x_s = (1 - sb) * x0 + sb * eps
    sink_on = (torch.rand(B, generator=generator) >= cfg.sink_drop).to(dev) if S else None
    v = model.forward_padded(
        x_s, s * mc.num_train_timesteps, context, present, sigma, sink if S else None, sink_on
    )
    err = (v.float() - (eps - x0)).pow(2).mean((1, 2, 3, 4))  # (B,)
    if cfg.weighting == "edm":
        # EDM weighting (Karras et al. 2022): 1 / c_out^2, i.e. a unit-variance target for the network;
        # weighs x0 errors at high noise far more than plain v-MSE does.
        c_out = model.preconditioning(s, context, present)[4].view(B)
        err = err / c_out**2
    return err.mean()


@torch.no_grad()
def regenerate_context(
    model: ReferenceVideoModel, clips: Tensor, generator: torch.Generator, cfg: TrainConfig
) -> Tensor:
    """Clips ``(B, C, S + K + K + F, H, W)`` (sink, K earlier real frames, the context, the chunk) to
    ``(B, C, S + K + F, H, W)``: for a ``self_context`` fraction of them the context is replaced by the model's
    own SDEdit of it (noised to a level in ``self_noise``, ``self_steps`` Euler steps, conditioned on the
    earlier real frames and the sink); the earlier frames are dropped."""
    mc: Any = model.config  # a diffusers FrozenDict: keys are attributes too
    K, S = mc.max_context_frames, model.sink_frames
    B, dev = clips.shape[0], clips.device
    sink, pre, ctx, chunk = (
        clips[:, :, :S],
        clips[:, :, S : S + K],
        clips[:, :, S + K : S + 2 * K],
        clips[:, :, S + 2 * K :],
    )
    rows = (torch.rand(B, generator=generator) < cfg.self_context).nonzero().flatten().tolist()
    if rows and K > 0:
        lo, hi = cfg.self_noise
        level = (lo + (hi - lo) * torch.rand(len(rows), generator=generator)).to(dev)  # (b,)
        x = ctx[rows]
        eps = torch.randn(x.shape, generator=generator).to(dev)
        lb = level.view(-1, 1, 1, 1, 1)
        x = (1 - lb) * x + lb * eps
        present = torch.ones(len(rows), K, dtype=torch.bool, device=dev)
        on = torch.ones(len(rows), dtype=torch.bool, device=dev) if S else None
        was = model.training
        model.eval()
        for i in range(cfg.self_steps):
            s_now = level * (1 - i / cfg.self_steps)
            s_next = level * (1 - (i + 1) / cfg.self_steps)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
                v = model.forward_padded(
                    x, s_now * mc.num_train_timesteps, pre[rows], present, None, sink[rows] if S else None, on
                ).float()
            x = x + (s_next - s_now).view(-1, 1, 1, 1, 1) * v  # Euler step of dx/ds = v
        model.train(was)
        ctx = ctx.clone()
        ctx[rows] = x.clamp(-1, 1).to(ctx.dtype)
    return torch.cat([sink, ctx, chunk], 2)


def damage_context(context: Tensor, generator: torch.Generator, cfg: TrainConfig) -> Tensor:
    """Damage a ``context_damage`` fraction of contexts ``(B, C, K, H, W)`` like a drifting rollout does: blur,
    contrast fade and a colour slip, each at a random size for the clip growing linearly to the newest frame."""
    B, C, K, H, W = context.shape
    dev = context.device
    on = (torch.rand(B, generator=generator) < cfg.context_damage).float()
    ramp = (torch.arange(1, K + 1, dtype=torch.float32) / K)[None]  # (1, K): newest frame damaged most
    size = lambda top: (top * torch.rand(B, 1, generator=generator) * on[:, None] * ramp).to(dev)  # noqa: E731
    blur, fade = size(cfg.damage_blur), size(cfg.damage_fade)  # (B, K)
    slip = (torch.rand(B, C, 1, generator=generator) * 2 - 1).to(dev) * size(cfg.damage_colour)[:, None]  # (B, C, K)
    x = blur_frames(context.transpose(1, 2).reshape(B * K, C, 1, H, W), blur.reshape(-1))  # (B K, C, 1, H, W)
    x = x.view(B, K, C, H, W).transpose(1, 2)  # (B, C, K, H, W)
    mean = x.mean((1, 3, 4), keepdim=True)
    x = mean + (x - mean) * (1 - fade)[:, None, :, None, None] + slip[..., None, None]
    return x.clamp(-1, 1)


def blur_frames(video: Tensor, sigma: Tensor, *, radius: int = 5) -> Tensor:
    """Blur every frame of ``video`` ``(B, C, F, H, W)`` with a Gaussian of std ``sigma`` ``(B,)`` pixels (0: none)."""
    B, C, Fn, H, W = video.shape
    k = torch.arange(-radius, radius + 1, dtype=video.dtype, device=video.device)
    w = torch.exp(-0.5 * (k[None] / sigma.clamp_min(1e-3)[:, None].to(video.dtype)) ** 2)  # (B, 2r+1)
    w = (w / w.sum(1, keepdim=True)).repeat_interleave(C * Fn, 0)  # (B C F, 2r+1)
    x = torch.nn.functional.pad(video.reshape(1, B * C * Fn, H, W), (radius,) * 4, mode="reflect")
    x = torch.nn.functional.conv2d(x, w[:, None, None, :], groups=B * C * Fn)
    x = torch.nn.functional.conv2d(x, w[:, None, :, None], groups=B * C * Fn)
    return x.view(B, C, Fn, H, W)


def training_clips(
    seeds: list[int],
    frames: int,
    starts: list[int],
    cfg: TrainConfig,
    generator: torch.Generator,
    sink: int = 0,
) -> Tensor:
    """Clips ``(B, C, sink + frames, H, W)`` of the training seeds: ``sink`` frames from up to ``cfg.sink_gap``
    frames before the clip's start, then ``frames`` consecutive frames from ``starts``; a ``trend_fraction``
    of the clips from the non-stationary variant (the background hue turns), the rest stationary."""
    B = len(seeds)
    gap = torch.randint(0, cfg.sink_gap + 1, (B, sink), generator=generator) if sink else torch.zeros(B, 0)
    first = torch.tensor(starts, dtype=torch.float64)[:, None]
    index = torch.cat([(first - gap).clamp_min(0), first + torch.arange(frames, dtype=torch.float64)], 1)
    turning = (
        torch.rand(B, generator=generator) < cfg.trend_fraction
        if cfg.trend_fraction > 0
        else torch.zeros(B, dtype=torch.bool)
    )
    clips = torch.empty(B, 3, sink + frames, cfg.data.height, cfg.data.width)
    for trend in (False, True):
        rows = (turning == trend).nonzero().flatten().tolist()
        if rows:
            data = replace(cfg.data, hue_speed=TREND.hue_speed) if trend else cfg.data
            params = sample_params([seeds[i] for i in rows], data)
            clips[rows] = render_frames(params, index[rows], data)
    return clips


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _init_weights(model: ReferenceVideoModel, ema: ReferenceVideoModel, source: Path) -> None:
    """Load starting weights: a run's ``checkpoint.pt`` (its model and EMA) or a model folder (both from it)."""
    if source.is_dir() and (source / "checkpoint.pt").is_file():
        source = source / "checkpoint.pt"
    if source.is_file():
        state = torch.load(source, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        return
    if not (source / "config.json").is_file():
        raise FileNotFoundError(
            f"init_from {source}: neither a checkpoint.pt nor a model folder (config.json)"
        )
    loaded = ReferenceVideoModel.from_pretrained(source, torch_dtype=torch.float32, local_files_only=True)
    model.load_state_dict(loaded.state_dict())
    ema.load_state_dict(loaded.state_dict())


def _optimizer_to(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Move an optimizer's state (loaded on the CPU) to ``device``, so a checkpoint resumes on either."""
    for state in opt.state.values():
        for key, value in state.items():
            if isinstance(value, Tensor) and value.dim() > 0:
                state[key] = value.to(device)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a kill never leaves a torn checkpoint


def export_model(
    model: ReferenceVideoModel,
    folder: str | Path,
    *,
    data: SpriteVideoConfig,
    shift: float = 1.0,
    dtype: Literal["float32", "float16"] = "float16",
) -> Path:
    """Write a model folder as it ships: weights (``dtype`` on disk, loaded as float32), ``config.json``,
    ``scheduler_config.json`` (stock ``FlowMatchEulerDiscreteScheduler`` with the recommended ``shift``) and
    ``process_config.json`` (key ``data``: the sprite process it was trained on, for the demo and tests)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    folder = Path(folder)
    copy.deepcopy(model).to(getattr(torch, dtype)).save_pretrained(folder)
    scheduler: Any = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=model.config["num_train_timesteps"], shift=shift
    )
    scheduler.save_config(folder)
    process = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(data).items()}
    (folder / "process_config.json").write_text(json.dumps({"data": process}, indent=2) + "\n")
    return folder


def train_reference(
    cfg: TrainConfig,
    *,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
    max_seconds: float | None = None,
) -> TrainResult:
    """Train (or resume) the reference model; write ``<output_dir>/model`` (EMA weights, diffusers format).

    Resumes from ``<output_dir>/checkpoint.pt`` when present; refuses one written by a different config.
    ``on_step(step, loss)`` is called after every step. ``max_seconds``: stop after this much wall time
    with a checkpoint (and the model so far exported); the same call again continues the run bit for bit.
    """
    import time

    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / _CHECKPOINT
    model_kwargs = {**cfg.model, "sample_size": cfg.data.height}
    if cfg.data.height != cfg.data.width:
        raise ValueError(f"the reference model takes square frames, got {cfg.data.height}x{cfg.data.width}")

    model = ReferenceVideoModel(**model_kwargs).reset_parameters(_step_generator(cfg.seed, -1, 0))
    ema = ReferenceVideoModel(**model_kwargs)
    ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.99))
    losses: list[float] = []
    start = 0
    if cfg.init_from and not ckpt_path.exists():
        _init_weights(model, ema, Path(cfg.init_from))
    if ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state["config"] != cfg.to_json():
            raise ValueError(
                f"{ckpt_path} was written by a different training config; use another output_dir "
                f"or the same arguments (saved config: {json.dumps(state['config'], sort_keys=True)})"
            )
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        losses = list(state["losses"])
        start = int(state["step"])
    (out / "train_config.json").write_text(json.dumps(cfg.to_json(), indent=2, sort_keys=True) + "\n")

    K, Fr, S = model.config.max_context_frames, model.config.chunk_frames, model.sink_frames
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use device='cpu'")
    model.to(device)
    ema.to(device)
    _optimizer_to(opt, device)
    model.train()
    bar = tqdm(
        range(start, cfg.steps), initial=start, total=cfg.steps, desc="train reference", disable=not progress
    )
    began = time.monotonic()
    for step in bar:
        g = _step_generator(cfg.seed, step, 1)
        seeds = [
            _TRAIN_SEED_BASE + cfg.seed * 10**8 + step * cfg.batch_size + i for i in range(cfg.batch_size)
        ]
        starts = torch.randint(0, cfg.max_start_frame, (cfg.batch_size,), generator=g).tolist()
        pre = K if cfg.self_context > 0 else 0  # real frames before the context, to regenerate it from
        clips = training_clips(seeds, pre + K + Fr, starts, cfg, g, sink=S)  # (B, C, S + pre + K + F, H, W)
        if pre:
            clips = regenerate_context(model, clips.to(device), g, cfg)  # (B, C, S + K + F, H, W)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
            loss = flow_matching_loss(model, clips.to(device), g, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        decay = min(cfg.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        losses.append(float(loss.detach()))
        if on_step is not None:
            on_step(step, losses[-1])
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        out_of_time = max_seconds is not None and time.monotonic() - began > max_seconds
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or out_of_time:
            _save_checkpoint(
                ckpt_path,
                {"config": cfg.to_json(), "step": step + 1, "model": model.state_dict(), "ema": ema.state_dict(),
                 "optimizer": opt.state_dict(), "losses": losses},
            )  # fmt: skip
        if out_of_time:
            break
    bar.close()
    model_dir = export_model(
        ema.eval(), out / "model", data=cfg.data, shift=cfg.sample_shift, dtype=cfg.save_dtype
    )
    (out / "losses.json").write_text(json.dumps(losses) + "\n")
    return TrainResult(model=ema, losses=losses, model_dir=model_dir)
