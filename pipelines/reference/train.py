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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos
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
    logit_mean: float = -0.8  # noise level s = sigmoid(N(logit_mean, logit_std)) (logit-normal, SD3 / EDM)
    logit_std: float = 1.2
    weighting: Literal["edm", "v"] = (
        "edm"  # per-sample weight of the v error: EDM's unit-variance target, or 1
    )
    uniform_frac: float = 0.1  # fraction of samples with s ~ U(0, 1) instead (covers the ends)
    max_start_frame: int = 100_000  # clips start at a uniform frame in [0, max_start_frame)
    threads: int = 0  # torch threads for the run (0: leave torch's setting)
    save_dtype: Literal["float32", "float16"] = "float16"  # dtype of the exported weights (size budget)
    sample_shift: float = 1.0  # timestep shift written to the exported scheduler_config.json
    model: dict[str, Any] = field(default_factory=dict)  # ReferenceVideoModel kwargs (defaults if empty)
    data: SpriteVideoConfig = field(default_factory=SpriteVideoConfig)  # the process (size = sample_size)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ValueError("steps, batch_size and checkpoint_every must be >= 1")
        if not 0.0 <= self.context_drop <= 1.0 or not 0.0 <= self.full_context <= 1.0:
            raise ValueError("context_drop and full_context are probabilities in [0, 1]")
        if not 0.0 <= self.context_noise < 1.0:
            raise ValueError(f"context_noise is a flow noise level in [0, 1), got {self.context_noise}")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("output_dir")  # the folder may move; everything else must match on resume
        for key in ("threads", "save_dtype", "sample_shift"):  # export and machine settings, not training
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
    """Flow-matching loss on clips ``(B, C, K + F, H, W)``: the first K frames are context, the last F the chunk."""
    mc: Any = model.config  # a diffusers FrozenDict: keys are attributes too
    K = mc.max_context_frames
    B = clips.shape[0]
    context, x0 = clips[:, :, :K], clips[:, :, K:]  # (B, C, K, H, W), (B, C, F, H, W)

    # Context count per sample: 0 (dropped), K (full) or 1..K-1; present slots are the last k.
    u = torch.rand(B, generator=generator)
    partial = torch.randint(1, max(K, 2), (B,), generator=generator).clamp(max=K)
    k = torch.where(
        u < cfg.context_drop,
        0,
        torch.where(u < cfg.context_drop + (1 - cfg.context_drop) * cfg.full_context, K, partial),
    )
    present = torch.arange(K)[None, :] >= (K - k)[:, None]  # (B, K)
    if cfg.context_noise > 0 and K > 0:
        a = (cfg.context_noise * torch.rand(B, generator=generator)).view(B, 1, 1, 1, 1)
        context = (1 - a) * context + a * torch.randn(context.shape, generator=generator)

    # Noise level: logit-normal, some uniform.
    s = torch.sigmoid(cfg.logit_mean + cfg.logit_std * torch.randn(B, generator=generator))
    s = torch.where(
        torch.rand(B, generator=generator) < cfg.uniform_frac, torch.rand(B, generator=generator), s
    )
    eps = torch.randn(x0.shape, generator=generator)
    sb = s[:, None, None, None, None]
    x_s = (1 - sb) * x0 + sb * eps
    v = model.forward_padded(x_s, s * mc.num_train_timesteps, context, present)
    err = (v - (eps - x0)).pow(2).mean((1, 2, 3, 4))  # (B,)
    if cfg.weighting == "edm":
        # EDM weighting (Karras et al. 2022): 1 / c_out^2, i.e. a unit-variance target for the network;
        # weighs x0 errors at high noise far more than plain v-MSE does.
        c_out = model.preconditioning(s, context, present)[4].view(B)
        err = err / c_out**2
    return err.mean()


def _lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


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
) -> TrainResult:
    """Train (or resume) the reference model; write ``<output_dir>/model`` (EMA weights, diffusers format).

    Resumes from ``<output_dir>/checkpoint.pt`` when present; refuses one written by a different config.
    ``on_step(step, loss)`` is called after every step.
    """
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

    K, Fr = model.config.max_context_frames, model.config.chunk_frames
    ema_params = list(ema.parameters())
    params = list(model.parameters())
    model.train()
    bar = tqdm(
        range(start, cfg.steps), initial=start, total=cfg.steps, desc="train reference", disable=not progress
    )
    for step in bar:
        g = _step_generator(cfg.seed, step, 1)
        seeds = [
            _TRAIN_SEED_BASE + cfg.seed * 10**8 + step * cfg.batch_size + i for i in range(cfg.batch_size)
        ]
        starts = torch.randint(0, cfg.max_start_frame, (cfg.batch_size,), generator=g).tolist()
        clips = reference_videos(seeds, K + Fr, start=starts, config=cfg.data)  # (B, C, K + F, H, W)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg)
        loss = flow_matching_loss(model, clips, g, cfg)
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
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
            _save_checkpoint(
                ckpt_path,
                {"config": cfg.to_json(), "step": step + 1, "model": model.state_dict(), "ema": ema.state_dict(),
                 "optimizer": opt.state_dict(), "losses": losses},
            )  # fmt: skip
    bar.close()
    model_dir = export_model(
        ema.eval(), out / "model", data=cfg.data, shift=cfg.sample_shift, dtype=cfg.save_dtype
    )
    (out / "losses.json").write_text(json.dumps(losses) + "\n")
    return TrainResult(model=ema, losses=losses, model_dir=model_dir)
