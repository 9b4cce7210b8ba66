"""The structure judge: a small network trained on the sprite process that sees objects and motion.

Hand-made colour statistics cannot tell sprites from textured noise with the right colours. The judge
is trained on the process's exact ground truth (:func:`vidfix.pipelines.reference.data.render_truth`),
CenterNet-style: per pixel of a frame it predicts a sprite-centre heatmap and, at the centres, the
sprite's shape, base colour, radius and sub-pixel offset, plus a sprite-coverage mask. From that:

* **object score** (per frame, in [0, 1]): detections (heatmap peaks) matched one-to-one (Hungarian) to
  the sprites the video's seed really has; a pair scores its similarity
  ``p(shape) * exp(-|dcolour|^2 / 2 tau_c^2) * exp(-log(r / r_true)^2 / 2 tau_r^2) * exp(-blur^2 / 2 tau_b^2)``
  (``blur``: the judge's estimate of how much the sprite's edges are smeared, in pixels of Gaussian blur),
  and the frame scores ``sum(similarities) / max(detections, sprites)``: missing, extra, misshapen,
  recoloured, resized or blurred sprites all cost. Real video scores near 1 (less where sprites overlap), flat over time.
* **motion score** (per frame pair ``L`` frames apart, in [0, 1]): for each true sprite matched in both
  frames, the displacement over its true speed times ``L``, scored ``exp(-|log ratio|)``: a frozen sprite
  scores 0, one jumping about (shuffled frames) near 0, one moving at the process's speed near 1.
* **clip embedding** (per clip of ``clip_frames`` frames, for a Frechet distance over windows, "reference
  FVD"): the clip mean and spread of the judge's per-frame scene features, the clip's per-sprite speeds
  and its detection count, so objects and motion both count.

Latents are pixels, ``(B, 3, F, H, W)`` in [-1, 1]; the judge takes frames ``(N, 3, H, W)``.

Example:
    >>> judge = load_judge()                                                   # doctest: +SKIP
    >>> scores = judge_video(judge, video, seeds=[0, 1], data=SpriteVideoConfig())   # doctest: +SKIP
    >>> scores.object.mean(), scores.motion.mean()                             # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import Tensor, nn
from vidfix.pipelines.reference.data import SHAPES, SpriteVideoConfig, sample_params

__all__ = [
    "JUDGE_WEIGHTS_DIR",
    "Detections",
    "JudgeScores",
    "SpriteJudge",
    "clip_embeddings",
    "detect",
    "judge_video",
    "load_judge",
    "motion_scores",
    "object_scores",
    "require_process",
]

JUDGE_WEIGHTS_DIR: Path = Path(__file__).resolve().parent / "judge_weights"

HEADS = {"heat": 1, "mask": 1, "shape": len(SHAPES), "colour": 3, "radius": 1, "offset": 2, "blur": 1}


def _block(cin: int, cout: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.GroupNorm(min(groups, cout), cout),
        nn.SiLU(),
    )


class SpriteJudge(ModelMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' mixins type config_name differently
    """Per-frame sprite detector and scene encoder (a small U-Net with CenterNet-style heads).

    Args:
        channels: feature channels per level, finest first (each level halves the resolution).
        feature_dim: size of the per-frame scene feature (global pooled bottleneck, projected).
        summary_dim: size of the scene summary the feature is trained to predict (see ``judge_train``).
        norm_groups: GroupNorm groups.
    """

    @register_to_config
    def __init__(
        self,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        feature_dim: int = 16,
        summary_dim: int = 8,
        norm_groups: int = 8,
    ) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for c in channels:
            self.down.append(_block(cin, c, norm_groups))
            cin = c
        self.up = nn.ModuleList()
        for c in reversed(channels[:-1]):
            self.up.append(_block(cin + c, c, norm_groups))
            cin = c
        self.heads = nn.Conv2d(cin, sum(HEADS.values()), 1)
        self.feature = nn.Sequential(nn.Linear(channels[-1] * 2, feature_dim), nn.Tanh())
        self.summary = nn.Linear(feature_dim, summary_dim)

    def forward(self, frames: Tensor) -> dict[str, Tensor]:
        """Maps for frames ``(N, 3, H, W)`` in [-1, 1] (H, W multiples of ``2**(levels-1)``).

        Returns a dict: ``heat`` ``(N, H, W)`` centre probability, ``mask`` ``(N, H, W)`` coverage
        probability, ``shape`` ``(N, S, H, W)`` shape log-probabilities, ``colour`` ``(N, 3, H, W)`` in
        [0, 1], ``radius`` ``(N, H, W)`` (fraction of the frame side), ``offset`` ``(N, 2, H, W)`` (pixels,
        x then y), ``blur`` ``(N, H, W)`` (the Gaussian blur, in pixels, that softened the sprite's edges),
        ``feature`` ``(N, feature_dim)`` and ``summary`` ``(N, summary_dim)``.
        """
        h = frames.float()
        skips = []
        for i, block in enumerate(self.down):
            if i:
                h = F.avg_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        pooled = torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)  # (N, 2 C)
        skips.pop()
        for block in self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], 1))
        maps = self.heads(h).split(list(HEADS.values()), 1)
        out = dict(zip(HEADS, maps))
        feature = self.feature(pooled)
        return {
            "heat": torch.sigmoid(out["heat"][:, 0]),
            "heat_logit": out["heat"][:, 0],
            "mask": torch.sigmoid(out["mask"][:, 0]),
            "mask_logit": out["mask"][:, 0],
            "shape": F.log_softmax(out["shape"], 1),
            "colour": torch.sigmoid(out["colour"]),
            "radius": F.softplus(out["radius"][:, 0]) * 0.1,
            "offset": out["offset"],
            "blur": F.softplus(out["blur"][:, 0]),
            "feature": feature,
            "summary": self.summary(feature),
        }


def load_judge(*, path: str | Path | None = None, device: str | torch.device = "cpu") -> SpriteJudge:
    """Load the shipped judge (or one from ``path``) in eval mode, offline."""
    folder = Path(path) if path is not None else JUDGE_WEIGHTS_DIR
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"no judge in {folder} (config.json missing); train one with `vidfix train-judge`"
        )
    judge = SpriteJudge.from_pretrained(folder, torch_dtype=torch.float32, local_files_only=True)
    record = folder / "process_config.json"
    if record.is_file():  # the sprite process it was trained on (checked against the video it judges)
        judge.process = SpriteVideoConfig.from_json(json.loads(record.read_text())["data"])
    return judge.to(device).eval()


def require_process(judge: SpriteJudge, data: SpriteVideoConfig) -> None:
    """Refuse to judge video of a sprite process other than the judge's (sprite count, size, speed, shapes,
    background): its object score would measure the mismatch, not the video. Frame size and the hue trend
    may differ. A judge without a process record (a fresh or tiny one) is not checked."""
    known: SpriteVideoConfig | None = getattr(judge, "process", None)
    if known is None:
        return
    free = {"height", "width", "hue_speed"}
    diff = [
        f"{k} {getattr(data, k)} (judge: {getattr(known, k)})"
        for k in SpriteVideoConfig.__dataclass_fields__
        if k not in free and getattr(data, k) != getattr(known, k)
    ]
    if diff:
        raise ValueError(
            "the judge was trained on another sprite process: " + "; ".join(diff)
            + "; train one for this process with `vidfix train-judge` (JudgeTrainConfig(data=...))"
        )  # fmt: skip


# --------------------------------------------------------------------------------------------------------
# Detection.


@dataclass(frozen=True)
class Detections:
    """Sprites found in ``N`` frames, padded to ``D`` per frame (``valid`` marks real ones).

    Shapes: ``valid`` ``(N, D)``; ``centre`` ``(N, D, 2)`` pixels (x, y); ``shape_logp`` ``(N, D, S)``;
    ``colour`` ``(N, D, 3)`` in [0, 1]; ``radius`` ``(N, D)`` pixels; ``blur`` ``(N, D)`` pixels; ``score``
    ``(N, D)`` peak heat.
    """

    valid: Tensor
    centre: Tensor
    shape_logp: Tensor
    colour: Tensor
    radius: Tensor
    blur: Tensor
    score: Tensor

    @property
    def count(self) -> Tensor:
        return self.valid.sum(1)


def detect(maps: dict[str, Tensor], *, threshold: float = 0.35, max_sprites: int = 8) -> Detections:
    """Heatmap peaks above ``threshold`` (3x3 local maxima), at most ``max_sprites`` per frame, with the
    attributes read at each peak."""
    heat = maps["heat"]  # (N, H, W)
    _N, H, W = heat.shape
    peak = heat == F.max_pool2d(heat[:, None], 5, stride=1, padding=2)[:, 0]
    score = torch.where(peak & (heat > threshold), heat, torch.zeros_like(heat)).flatten(1)  # (N, H*W)
    D = min(max_sprites, H * W)
    top, idx = score.topk(D, dim=1)  # (N, D)
    valid = top > 0
    ys, xs = idx // W, idx % W

    def at(m: Tensor) -> Tensor:  # (N, C, H, W) -> (N, D, C)
        return m.flatten(2).gather(2, idx[:, None].expand(-1, m.shape[1], -1)).transpose(1, 2)

    offset = at(maps["offset"])  # (N, D, 2)
    centre = torch.stack([xs.float() + 0.5, ys.float() + 0.5], -1) + offset
    side = float(min(H, W))
    return Detections(
        valid=valid,
        centre=centre,
        shape_logp=at(maps["shape"]),
        colour=at(maps["colour"]),
        radius=at(maps["radius"][:, None])[..., 0] * side,
        blur=at(maps["blur"][:, None])[..., 0],
        score=top,
    )


# --------------------------------------------------------------------------------------------------------
# Scores.


@dataclass(frozen=True)
class SeedTruth:
    """What each video's seed really holds: ``present`` ``(B, S)``, ``shape`` ``(B, S)``, ``colour``
    ``(B, S, 3)`` in [0, 1], ``radius`` ``(B, S)`` pixels, ``speed`` ``(B, S)`` pixels per frame."""

    present: Tensor
    shape: Tensor
    colour: Tensor
    radius: Tensor
    speed: Tensor

    @staticmethod
    def of(seeds: Sequence[int], data: SpriteVideoConfig) -> SeedTruth:
        p = sample_params(list(seeds), data)
        return SeedTruth(
            present=p.present.bool(),
            shape=p.shape,
            colour=p.color.float(),
            radius=p.radius.float(),
            speed=p.vel.float().norm(dim=-1),
        )


TAU_COLOUR = 0.12  # colour tolerance (RGB distance in [0, 1]) of the object score
TAU_RADIUS = 0.2  # size tolerance (log radius ratio) of the object score
TAU_BLUR = 1.0  # edge tolerance (Gaussian blur in pixels) of the object score


def _similarity(det: Detections, truth: SeedTruth, rows: Tensor) -> Tensor:
    """Similarity ``(N, D, S)`` of each detection of frame ``n`` to each true sprite of its video ``rows[n]``."""
    shape_p = det.shape_logp.exp().gather(
        2, truth.shape[rows][:, None, :].expand(-1, det.shape_logp.shape[1], -1)
    )  # (N, D, S)
    dc = (det.colour[:, :, None] - truth.colour[rows][:, None]).norm(dim=-1)  # (N, D, S)
    dr = (det.radius[:, :, None].clamp_min(0.5) / truth.radius[rows][:, None]).log()
    sharp = torch.exp(-0.5 * (det.blur / TAU_BLUR) ** 2)[:, :, None]  # (N, D, 1)
    sim = (
        shape_p * torch.exp(-0.5 * (dc / TAU_COLOUR) ** 2) * torch.exp(-0.5 * (dr / TAU_RADIUS) ** 2) * sharp
    )
    return sim * det.valid[:, :, None] * truth.present[rows][:, None]


def _match(sim: Tensor) -> tuple[Tensor, Tensor]:
    """One-to-one matching per frame, greedy by similarity (best pair first; with a few sprites per frame it
    is the optimum but in rare ties): ``(N, S)`` matched detection index (-1: none) and its similarity."""
    N, D, S = sim.shape
    work = sim.detach().clone()
    index = torch.full((N, S), -1, dtype=torch.long)
    value = torch.zeros(N, S)
    rows = torch.arange(N)
    for _ in range(min(D, S)):
        best, flat = work.flatten(1).max(1)  # (N,)
        d, s = flat // S, flat % S
        hit = best > 0
        index[rows[hit], s[hit]] = d[hit]
        value[rows[hit], s[hit]] = best[hit].cpu()
        work[rows, d, :] = 0  # detection used
        work[rows, :, s] = 0  # sprite matched
    return index, value


def object_scores(det: Detections, truth: SeedTruth, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-frame object score ``(N,)`` (see the module docstring), with the matching: ``(N, S)`` detection
    index per true sprite (-1: unmatched) and its similarity."""
    index, value = _match(_similarity(det, truth, rows))
    denom = torch.maximum(det.count.float(), truth.present[rows].sum(1).float()).clamp_min(1.0)
    return value.sum(1) / denom, index, value


def motion_scores(
    det: Detections, index: Tensor, value: Tensor, truth: SeedTruth, frames: int, *, lag: int = 4
) -> Tensor:
    """Motion score per video and frame pair ``(B, F - lag)``: median over the true sprites matched (similarity
    > 0.25) in frames ``t`` and ``t + lag`` of ``exp(-|log(displacement / (speed * lag))|)``; NaN where no
    sprite is matched in both."""
    B = truth.present.shape[0]
    S = index.shape[1]
    idx = index.view(B, frames, S)
    ok = (value.view(B, frames, S) > 0.25) & (idx >= 0)
    safe = idx.clamp_min(0)
    centre = det.centre.view(B, frames, -1, 2).gather(
        2, safe[..., None].expand(-1, -1, -1, 2)
    )  # (B, F, S, 2)
    disp = (centre[:, lag:] - centre[:, :-lag]).norm(dim=-1)  # (B, F - lag, S)
    expected = (truth.speed * lag)[:, None, :].clamp_min(1e-3)  # (B, 1, S)
    ratio = (disp / expected).clamp_min(1e-3)
    score = torch.exp(-ratio.log().abs())
    both = ok[:, lag:] & ok[:, :-lag]
    return torch.where(both, score, torch.full_like(score, float("nan"))).nanmedian(-1).values  # (B, F - lag)


@dataclass(frozen=True)
class JudgeScores:
    """The judge's view of ``B`` videos of ``F`` frames.

    Attributes:
        object: ``(B, F)`` object score per frame.
        motion: ``(B, F - lag)`` motion score per frame pair (NaN where no sprite is matched in both).
        count: ``(B, F)`` detections per frame.
        feature: ``(B, F, feature_dim)`` per-frame scene features.
        centre: ``(B, F, S, 2)`` centre of each true sprite's matched detection (NaN: unmatched).
        lag: frame distance of the motion pairs.
    """

    object: Tensor
    motion: Tensor
    count: Tensor
    feature: Tensor
    centre: Tensor
    lag: int


@torch.no_grad()
def judge_video(
    judge: SpriteJudge,
    video: Tensor,
    *,
    seeds: Sequence[int],
    data: SpriteVideoConfig | None = None,
    lag: int = 4,
    batch_frames: int = 256,
) -> JudgeScores:
    """Score videos ``(B, 3, F, H, W)`` in [-1, 1] whose sprites are those of the process's ``seeds``
    (a rollout from a seed's real start context keeps that seed's sprites)."""
    data = data or SpriteVideoConfig()
    if video.dim() != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be (B, 3, F, H, W), got {tuple(video.shape)}")
    B, _, Fn, H, W = video.shape
    if len(seeds) != B:
        raise ValueError(f"got {len(seeds)} seeds for {B} videos")
    if Fn <= lag:
        raise ValueError(f"need more than lag={lag} frames, got {Fn}")
    frames = video.transpose(1, 2).reshape(B * Fn, 3, H, W).float()  # (B F, 3, H, W)
    parts = [judge(frames[i : i + batch_frames].to(judge.device)) for i in range(0, B * Fn, batch_frames)]
    maps = {
        k: torch.cat([p[k] for p in parts]).cpu()
        for k in ("heat", "shape", "colour", "radius", "offset", "blur")
    }
    feature = torch.cat([p["feature"] for p in parts]).cpu()
    det = detect(maps)
    truth = SeedTruth.of(seeds, data)
    rows = torch.arange(B).repeat_interleave(Fn)
    obj, index, value = object_scores(det, truth, rows)
    motion = motion_scores(det, index, value, truth, Fn, lag=lag)
    S = index.shape[1]
    centre = det.centre.gather(1, index.clamp_min(0)[..., None].expand(-1, -1, 2))  # (B F, S, 2)
    centre = torch.where((index >= 0)[..., None], centre, torch.full_like(centre, float("nan")))
    return JudgeScores(
        object=obj.view(B, Fn),
        motion=motion,
        count=det.count.view(B, Fn),
        feature=feature.view(B, Fn, -1),
        centre=centre.view(B, Fn, S, 2),
        lag=lag,
    )


def clip_embeddings(scores: JudgeScores, *, clip_frames: int = 8, stride: int = 4) -> Tensor:
    """Clip embeddings ``(B, clips, E)`` for a Frechet distance: per clip of ``clip_frames`` frames, the
    mean and std of the per-frame features, the clip's sorted per-sprite speeds (pixels per frame, from the
    matched centres; 0 where a sprite is not seen) and its mean detection count."""
    _B, Fn, _ = scores.feature.shape
    starts = list(range(0, Fn - clip_frames + 1, stride))
    if not starts:
        raise ValueError(f"need at least clip_frames={clip_frames} frames, got {Fn}")
    out = []
    for s in starts:
        f = scores.feature[:, s : s + clip_frames]  # (B, T, E)
        c = scores.centre[:, s : s + clip_frames]  # (B, T, S, 2)
        step = (c[:, 1:] - c[:, :-1]).norm(dim=-1)  # (B, T-1, S)
        speed = torch.nan_to_num(step, nan=0.0).mean(1).clamp(max=8.0).sort(dim=-1, descending=True).values
        count = scores.count[:, s : s + clip_frames].float().mean(1, keepdim=True)
        out.append(torch.cat([f.mean(1), f.std(1), speed, count], -1))
    return torch.stack(out, 1)  # (B, clips, E)


def _nanmean(x: Tensor, dim: int) -> Tensor:
    ok = ~torch.isnan(x)
    return torch.where(ok, x, torch.zeros_like(x)).sum(dim) / ok.sum(dim).clamp_min(1)


def window_summary(scores: JudgeScores, window: int) -> dict[str, Any]:
    """Object and motion score per window of ``window`` frames, averaged over videos (NaN-aware)."""
    Fn = scores.object.shape[1]
    out: dict[str, list[float]] = {"object": [], "motion": []}
    for s in range(0, Fn - window + 1, window):
        out["object"].append(float(scores.object[:, s : s + window].mean()))
        m = scores.motion[:, s : min(s + window, scores.motion.shape[1])]
        out["motion"].append(float(_nanmean(m.flatten(), 0)) if m.numel() else math.nan)
    return out
