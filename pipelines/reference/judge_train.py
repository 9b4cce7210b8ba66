"""Training of the structure judge on the sprite process's exact ground truth; seeded, resumable.

Each step renders fresh frames with their truth (:func:`vidfix.pipelines.reference.data.render_truth`),
stationary and turning-hue alike, and adds frames that hold no sprite at all, which the judge must leave
empty: white noise, noise with a real frame's colour mean/std and spectrum (random Fourier phases), blurred
noise, and the background texture alone. Real frames are mildly blurred, noised or tinted at random
(targets unchanged except the blur head's, which learns how much a sprite's edges are smeared), so a
blurred sprite is still found and its blur is measured.

Targets (CenterNet-style, Zhou et al. 2019): a Gaussian (``sigma`` 2 px) at each visible sprite centre;
shape, base colour, radius and sub-pixel offset at the pixels within 3 px of a centre; the blur applied (0
for clean frames) at every sprite pixel; the sprite
coverage; a scene summary (visible count, background colour, coverage, mean sprite colour) that the
per-frame feature must predict. Frames ``(N, 3, H, W)`` in [-1, 1].

Example:
    >>> train_judge(JudgeTrainConfig(output_dir="runs/judge"))                # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from vidfix.pipelines.reference.data import (
    TREND,
    SpriteTruth,
    SpriteVideoConfig,
    reference_videos,
    render_frames,
    render_truth,
    sample_params,
)
from vidfix.pipelines.reference.judge import SpriteJudge

__all__ = [
    "SANITY_CASES",
    "JudgeTrainConfig",
    "judge_loss",
    "judge_targets",
    "negatives",
    "sanity_videos",
    "train_judge",
]

_SEED_BASE = 2_000_000_000  # judge training seeds; disjoint from the model's and from evaluation seeds
_CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True, kw_only=True)
class JudgeTrainConfig:
    """Everything that determines a judge training run."""

    output_dir: str  # run folder: checkpoint, loss log, final weights in <output_dir>/model
    steps: int = 2500  # optimiser steps
    batch_size: int = 48  # frames per step (of them, ``negative_fraction`` hold no sprite)
    lr: float = 2e-3  # peak AdamW learning rate (cosine decay to 5%)
    warmup_steps: int = 100
    negative_fraction: float = 0.2  # frames with no sprite: noise, matched noise, blurred noise, texture
    augment_fraction: float = 0.5  # real frames blurred (up to max_blur px, learned), mildly noised / tinted
    max_blur: float = 3.0  # largest Gaussian blur (pixels) of the augmented frames
    seed: int = 0
    checkpoint_every: int = 250
    precision: str = "bfloat16"  # compute dtype of the forward pass ("float32" or "bfloat16" autocast)
    threads: int = 0  # torch threads (0: leave torch's setting)
    model: dict[str, Any] = field(default_factory=dict)  # SpriteJudge kwargs
    data: SpriteVideoConfig = field(default_factory=SpriteVideoConfig)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("output_dir", "threads"):
            d.pop(key)
        return json.loads(json.dumps(d))


def _gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Blur frames ``(N, C, H, W)`` with a per-frame Gaussian of std ``sigma`` ``(N,)`` pixels (0: none)."""
    r = 9
    k = torch.arange(-r, r + 1, dtype=x.dtype)
    w = torch.exp(-0.5 * (k[None] / sigma.clamp_min(1e-3)[:, None]) ** 2)  # (N, 2r+1)
    w = w / w.sum(1, keepdim=True)
    N, C, H, W = x.shape
    y = F.pad(x.reshape(1, N * C, H, W), (r, r, r, r), mode="reflect")
    wk = w.repeat_interleave(C, 0)  # (N C, 2r+1)
    y = F.conv2d(y, wk[:, None, None, :], groups=N * C)
    y = F.conv2d(y, wk[:, None, :, None], groups=N * C)
    return y.view(N, C, H, W)


def negatives(real: Tensor, generator: torch.Generator, kinds: Tensor) -> Tensor:
    """Sprite-free frames shaped like ``real`` ``(N, 3, H, W)``: kind 0 white noise, 1 noise with each real
    frame's per-channel mean/std and spectrum (random Fourier phases), 2 blurred noise with its colour
    statistics. (Kind 3, the background alone, is rendered by the caller.)"""
    N = real.shape[0]
    noise = torch.randn(real.shape, generator=generator)
    mu, sd = real.mean((2, 3), keepdim=True), real.std((2, 3), keepdim=True)
    spec = torch.fft.rfft2(real - mu)
    phase = torch.rand(spec.shape, generator=generator) * 2 * math.pi
    matched = torch.fft.irfft2(spec.abs() * torch.exp(1j * phase), s=real.shape[-2:]) + mu
    blurred = _gaussian_blur(noise, 0.5 + 2.5 * torch.rand(N, generator=generator))
    blurred = (blurred - blurred.mean((2, 3), keepdim=True)) / blurred.std((2, 3), keepdim=True) * sd + mu
    white = noise * (0.2 + 0.6 * torch.rand(N, 1, 1, 1, generator=generator))
    k = kinds.view(N, 1, 1, 1)
    return torch.where(k == 0, white, torch.where(k == 1, matched, blurred)).clamp(-1, 1)


def judge_targets(truth: SpriteTruth, frame: int, size: int) -> dict[str, Tensor]:
    """Dense targets for frame ``frame`` of every video in ``truth`` (frames ``size x size``)."""
    alpha = truth.alpha[:, :, frame]  # (B, S, H, W)
    B, _S, H, W = alpha.shape
    visible = alpha.flatten(2).sum(-1) / truth.area[:, :, frame].clamp_min(1e-6)  # (B, S)
    seen = truth.present & (visible > 0.3)  # (B, S)
    c = truth.centre[:, :, frame]  # (B, S, 2)
    gy, gx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    d2 = (gx - c[..., 0, None, None]) ** 2 + (gy - c[..., 1, None, None]) ** 2  # (B, S, H, W)
    d2 = torch.where(seen[..., None, None], d2, torch.full_like(d2, 1e9))
    heat = torch.exp(-d2 / (2 * 2.0**2)).amax(1)  # (B, H, W)
    nearest = d2.argmin(1)  # (B, H, W)
    near = d2.amin(1) <= 9.0  # within 3 px of a visible centre
    idx = nearest.flatten(1)  # (B, H*W)
    shape = truth.shape.gather(1, idx).view(B, H, W)
    colour = truth.color.gather(1, idx[..., None].expand(-1, -1, 3)).view(B, H, W, 3).permute(0, 3, 1, 2)
    radius = truth.radius.gather(1, idx).view(B, H, W) / size
    cx = c[..., 0].gather(1, idx).view(B, H, W)
    cy = c[..., 1].gather(1, idx).view(B, H, W)
    offset = torch.stack([cx - gx, cy - gy], 1)  # (B, 2, H, W)
    cover = alpha.sum(1).clamp(0, 1)  # (B, H, W)
    weights = alpha.flatten(2).sum(-1)  # (B, S) visible pixels per sprite
    mean_colour = (truth.color * weights[..., None]).sum(1) / weights.sum(1, keepdim=True).clamp_min(1.0)
    summary = torch.cat(
        [
            seen.sum(1, keepdim=True).float() / 3,
            truth.background[:, frame],
            cover.mean((1, 2))[:, None],
            mean_colour,
        ],
        1,
    )  # (B, 8)
    return {"heat": heat, "near": near, "shape": shape, "colour": colour, "radius": radius, "offset": offset,
            "mask": cover, "summary": summary}  # fmt: skip


def _empty_targets(n: int, size: int, summary: Tensor) -> dict[str, Tensor]:
    z = torch.zeros(n, size, size)
    return {"heat": z, "near": z.bool(), "shape": z.long(), "colour": z[:, None].expand(-1, 3, -1, -1),
            "radius": z, "offset": z[:, None].expand(-1, 2, -1, -1), "mask": z, "summary": summary,
            "blur": z}  # fmt: skip


def judge_loss(out: dict[str, Tensor], tgt: dict[str, Tensor], summary_weight: Tensor) -> Tensor:
    """Sum of the heads' losses (heat and mask: BCE; attributes: at pixels near a centre; summary: MSE)."""
    heat = F.binary_cross_entropy_with_logits(out["heat_logit"], tgt["heat"], reduction="none")
    heat = (heat * (1 + 20 * tgt["heat"])).mean()  # centres are rare: weigh them up
    mask = F.binary_cross_entropy_with_logits(out["mask_logit"], tgt["mask"])
    near = tgt["near"]
    loss = heat + mask
    if bool(near.any()):
        shape = F.nll_loss(out["shape"].permute(0, 2, 3, 1)[near], tgt["shape"][near])
        colour = (
            (out["colour"].permute(0, 2, 3, 1)[near] - tgt["colour"].permute(0, 2, 3, 1)[near]).abs().mean()
        )
        radius = (out["radius"][near] - tgt["radius"][near]).abs().mean() * 10
        offset = (
            (out["offset"].permute(0, 2, 3, 1)[near] - tgt["offset"].permute(0, 2, 3, 1)[near]).abs().mean()
        )
        loss = loss + shape + 4 * colour + radius + 0.5 * offset
    edges = tgt["mask"] > 0.05  # blur is seen at a sprite's edges: learn it on all its pixels (squared error)
    if bool(edges.any()):
        loss = loss + 2 * (out["blur"][edges] - tgt["blur"][edges]).pow(2).mean()
    summ = ((out["summary"] - tgt["summary"]) ** 2).mean(1)
    return loss + (summ * summary_weight).sum() / summary_weight.sum().clamp_min(1.0) * 4


def _batch(cfg: JudgeTrainConfig, step: int) -> tuple[Tensor, dict[str, Tensor], Tensor]:
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    n = cfg.batch_size
    n_neg = round(n * cfg.negative_fraction)
    n_pos = n - n_neg
    size = cfg.data.height
    seeds = [_SEED_BASE + cfg.seed * 10**8 + step * n + i for i in range(n)]
    starts = torch.randint(0, 100_000, (n,), generator=g).tolist()
    turning = (torch.rand(n, generator=g) < 0.4).tolist()
    frames, targets = [], []
    for trend in (False, True):
        rows = [i for i in range(n_pos) if turning[i] == trend]
        if not rows:
            continue
        data = replace(cfg.data, hue_speed=TREND.hue_speed) if trend else cfg.data
        video, truth = render_truth([seeds[i] for i in rows], 1, start=[starts[i] for i in rows], config=data)
        frames.append(video[:, :, 0])
        targets.append(judge_targets(truth, 0, size))
    real = torch.cat(frames)  # (n_pos, 3, H, W)
    tgt = {k: torch.cat([t[k] for t in targets]) for k in targets[0]}

    # Damage on some real frames: blur (its size is the blur head's target; sprites stay sprites), mild
    # noise and tint (targets unchanged).
    aug = torch.rand(n_pos, generator=g) < cfg.augment_fraction
    sigma = torch.where(aug, cfg.max_blur * torch.rand(n_pos, generator=g) ** 1.5, torch.zeros(n_pos))
    real = torch.where(aug.view(-1, 1, 1, 1), _gaussian_blur(real, sigma), real)
    tgt["blur"] = sigma.view(-1, 1, 1).expand(-1, size, size).clone()
    noise = torch.randn(real.shape, generator=g) * 0.03 * torch.rand(n_pos, 1, 1, 1, generator=g)
    tint = (torch.rand(n_pos, 3, 1, 1, generator=g) - 0.5) * 0.04
    real = torch.where(aug.view(-1, 1, 1, 1), real + noise + tint, real).clamp(-1, 1)

    # Sprite-free frames: three kinds of noise and the background alone.
    kinds = torch.randint(0, 4, (n_neg,), generator=g)
    neg_seeds = seeds[n_pos:]
    params = sample_params(neg_seeds, cfg.data)
    bare = replace(params, present=torch.zeros_like(params.present))
    frames_idx = torch.tensor(starts[n_pos:], dtype=torch.float64)[:, None]
    texture = render_frames(bare, frames_idx, cfg.data)[:, :, 0]  # (n_neg, 3, H, W)
    like = real[torch.randint(0, n_pos, (n_neg,), generator=g)]
    neg = torch.where((kinds == 3).view(-1, 1, 1, 1), texture, negatives(like, g, kinds.clamp(max=2)))
    bg = params.background(frames_idx)[:, 0].float()  # (n_neg, 3)
    summary = torch.cat([torch.zeros(n_neg, 1), bg, torch.zeros(n_neg, 1), torch.zeros(n_neg, 3)], 1)
    empty = _empty_targets(n_neg, size, summary)
    x = torch.cat([real, neg])
    tgt = {k: torch.cat([tgt[k], empty[k]]) for k in tgt}
    summary_weight = torch.cat([torch.ones(n_pos), (kinds == 3).float()])  # noise has no scene summary
    return x, tgt, summary_weight


def train_judge(cfg: JudgeTrainConfig, *, progress: bool = True, max_seconds: float | None = None) -> Path:
    """Train (or resume) the judge; write ``<output_dir>/model`` (diffusers format) and return its path."""
    from tqdm.auto import tqdm

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / _CHECKPOINT
    torch.manual_seed(cfg.seed)  # weight init only; the data draws use their own generators
    judge = SpriteJudge(**cfg.model)
    opt = torch.optim.AdamW(judge.parameters(), lr=cfg.lr, weight_decay=1e-4)
    losses: list[float] = []
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config"] != cfg.to_json():
            raise ValueError(f"{ckpt} was written by a different judge config; use another output_dir")
        judge.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        losses, start = list(state["losses"]), int(state["step"])
    judge.train()
    began = time.monotonic()
    bar = tqdm(
        range(start, cfg.steps), initial=start, total=cfg.steps, desc="train judge", disable=not progress
    )
    for step in bar:
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps)
        lr *= 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x, tgt, sw = _batch(cfg, step)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.precision == "bfloat16"):
            maps = judge(x)
        loss = judge_loss({k: v.float() for k, v in maps.items()}, tgt, sw)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(judge.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        late = max_seconds is not None and time.monotonic() - began > max_seconds
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps or late:
            tmp = ckpt.with_suffix(f".{os.getpid()}.tmp")
            torch.save({"config": cfg.to_json(), "step": step + 1, "model": judge.state_dict(),
                        "optimizer": opt.state_dict(), "losses": losses}, tmp)  # fmt: skip
            os.replace(tmp, ckpt)
        if late:
            break
    bar.close()
    folder = out / "model"
    judge.eval().save_pretrained(folder)
    # The process the judge knows: its object score means something only on video of this process.
    data = cfg.to_json()["data"]
    (folder / "process_config.json").write_text(json.dumps({"data": data, "steps": step + 1}, indent=2) + "\n")
    (out / "losses.json").write_text(json.dumps(losses) + "\n")
    return folder


SANITY_CASES: tuple[str, ...] = (
    "real",
    "white_noise",
    "matched_noise",
    "blurred_noise",
    "texture_only",
    "frozen",
    "shuffled",
    "colour_cast",
    "blurred",
)


def sanity_videos(
    seeds: list[int], num_frames: int, data: SpriteVideoConfig, *, start: int = 0, seed: int = 0
) -> dict[str, Tensor]:
    """The judge's sanity cases, each ``(B, 3, F, H, W)`` built from real video of ``seeds``: ``real`` itself;
    white noise; noise with each real frame's colour mean/std and spectrum; blurred noise with its colour
    statistics; the background texture without sprites; the first frame repeated (frozen); the frames
    shuffled in time; a colour cast (+0.3 red, -0.3 blue in [-1, 1] units, i.e. +-0.15 of the range); and
    blur growing from 0 to 3 px over the video."""
    g = torch.Generator().manual_seed(seed)
    real = reference_videos(seeds, num_frames, start=start, config=data)
    B, C, Fn, H, W = real.shape
    frames = real.transpose(1, 2).reshape(B * Fn, C, H, W)  # (B F, C, H, W)

    def video(x: Tensor) -> Tensor:
        return x.view(B, Fn, C, H, W).transpose(1, 2).contiguous()  # (B, C, F, H, W)

    kinds = lambda k: torch.full((B * Fn,), k)  # noqa: E731
    params = sample_params(seeds, data)
    bare = replace(params, present=torch.zeros_like(params.present))
    t = torch.arange(start, start + num_frames, dtype=torch.float64)
    perm = torch.randperm(Fn, generator=g)
    cast = torch.tensor([0.3, 0.0, -0.3]).view(1, 3, 1, 1, 1)
    sigma = torch.linspace(0, 3, Fn).repeat(B)
    return {
        "real": real,
        "white_noise": video(negatives(frames, g, kinds(0))),
        "matched_noise": video(negatives(frames, g, kinds(1))),
        "blurred_noise": video(negatives(frames, g, kinds(2))),
        "texture_only": render_frames(bare, t, data),
        "frozen": real[:, :, :1].expand(-1, -1, Fn, -1, -1).contiguous(),
        "shuffled": real[:, :, perm],
        "colour_cast": (real + cast).clamp(-1, 1),
        "blurred": video(_gaussian_blur(frames, sigma)),
    }
