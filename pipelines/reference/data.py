"""The procedural sprite-video process the reference model is trained on and measured against.

Each video (one integer seed) is one or two large anti-aliased sprites (disc, square, triangle, ring,
cross) of fixed colours bouncing at constant speed inside the frame, over a flat coloured background with a
few soft plane waves that pan slowly. Every quantity is a closed-form function of (seed, frame index), so any
frame range of any length renders directly, deterministically, and independently of the batch it lands in,
and the renderer gives exact ground truth (:func:`render_truth`: each sprite's visible mask, centre,
velocity, shape, colour and size; the background's hue).

Why stationary: sprite positions follow reflected straight lines started from a uniform unfolded position,
so each position is uniform at every time; texture phases are uniform, so a pan leaves their law unchanged.
The true per-frame statistics (mean colour, contrast, saturation, sharpness) therefore have no trend over
time, and any trend in generated video is drift, measurable against fresh real samples.

The non-stationary variant (:data:`TREND`, ``hue_speed > 0``): the background's hue turns at a constant
per-video speed and direction (a slow white-balance rotation, cyclic so it runs forever), so the frame's
mean colour moves; the true trend is known per seed (:attr:`SpriteParams.hue_speed`). A model trained on it
continues the turn from its context; a stabilizer that clamps statistics to the first chunk stops it.

Layout: pixels are the latents, float32 in [-1, 1], ``(B, 3, F, H, W)`` (``(3, F, H, W)`` for one video).

Example:
    >>> video = reference_video(7, 32)                       # (3, 32, 64, 64), seed 7, frames 0..31
    >>> later = reference_video(7, 8, start=1000)            # frames 1000..1007 of the same video
    >>> batch = reference_videos([0, 1, 2], 16, start=[0, 50, 9])   # (3, 3, 16, 64, 64)
    >>> turning = reference_videos([0, 1], 16, config=TREND)  # the non-stationary variant
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

__all__ = [
    "SHAPES",
    "TREND",
    "Shape",
    "SpriteParams",
    "SpriteTruth",
    "SpriteVideoConfig",
    "reference_video",
    "reference_videos",
    "render_frames",
    "render_truth",
    "sample_params",
]

Shape: TypeAlias = Literal["disc", "square", "triangle", "ring", "cross"]
SHAPES: tuple[Shape, ...] = get_args(Shape)


@dataclass(frozen=True, kw_only=True)
class SpriteVideoConfig:
    """Law of the sprite process. Lengths are fractions of the frame's smaller side, so any size works."""

    height: int = 64  # frame height in pixels
    width: int = 64  # frame width in pixels
    min_sprites: int = 1  # sprites per video, drawn uniformly in [min_sprites, max_sprites]
    max_sprites: int = 2
    shapes: tuple[Shape, ...] = SHAPES  # shapes a sprite may take, drawn uniformly
    radius: tuple[float, float] = (0.15, 0.22)  # sprite circumradius range (fraction of side)
    speed: tuple[float, float] = (0.005, 0.012)  # sprite speed range per frame (fraction of side)
    pan_speed: tuple[float, float] = (0.0005, 0.0015)  # background pan speed per frame (fraction of side)
    waves: int = 2  # coarse background plane waves (1.5 to 5 cycles per side)
    fine_waves: int = 0  # fine background plane waves (8 to 12 cycles per side): detail to keep or lose
    wave_amplitude: tuple[float, float] = (0.02, 0.05)  # coarse wave amplitude range (of the [0, 1] range)
    hue_speed: tuple[float, float] = (0.0, 0.0)  # background hue turn per frame, in turns (sign random)
    edge: float = 1.0  # width of the anti-aliased sprite edge, in pixels

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SpriteVideoConfig:
        """The config a JSON record holds (lists as tuples; keys it does not know are ignored)."""
        fields = set(cls.__dataclass_fields__)
        kwargs: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields}
        return cls(**kwargs)

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8:
            raise ValueError(f"frames must be at least 8x8 pixels, got {self.height}x{self.width}")
        if not 1 <= self.min_sprites <= self.max_sprites:
            raise ValueError(
                f"need 1 <= min_sprites <= max_sprites, got {self.min_sprites}, {self.max_sprites}"
            )
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad or not self.shapes:
            raise ValueError(f"unknown shapes {bad}; allowed: {', '.join(SHAPES)}")
        if self.radius[0] <= 0 or self.radius[1] >= 0.4 or self.radius[0] > self.radius[1]:
            raise ValueError(f"radius range must lie in (0, 0.4) and be ordered, got {self.radius}")
        if not 0.0 <= self.hue_speed[0] <= self.hue_speed[1] < 0.5:
            raise ValueError(
                f"hue_speed range must lie in [0, 0.5) turns per frame and be ordered, got {self.hue_speed}"
            )

    @property
    def trending(self) -> bool:
        """True for the non-stationary variant (the background hue turns)."""
        return self.hue_speed[1] > 0


#: The non-stationary variant: the background hue turns by 1/500 to 1/250 of a turn per frame (a full turn
#: in 250-500 frames), clockwise or not, per seed; everything else as the stationary process.
TREND = SpriteVideoConfig(hue_speed=(0.002, 0.004))


@dataclass(frozen=True)
class SpriteParams:
    """Per-video parameters of a batch (``S`` = max_sprites slots, unused slots have ``present == 0``).

    Shapes: ``present, shape, radius, angle`` ``(B, S)``; ``pos0, vel`` ``(B, S, 2)`` (unfolded start and
    velocity in pixels, (x, y)); ``color`` ``(B, S, 3)``; ``bg_hsv`` ``(B, 3)`` (background hue, saturation,
    value at frame 0); ``hue_speed`` ``(B,)`` (signed turns per frame; 0 for the stationary process);
    ``wave_k`` ``(B, N, 2)`` (radians per pixel); ``wave_phase`` ``(B, N)``; ``wave_color`` ``(B, N, 3)``;
    ``pan`` ``(B, 2)`` pixels per frame.
    """

    present: Tensor
    shape: Tensor
    radius: Tensor
    angle: Tensor
    pos0: Tensor
    vel: Tensor
    color: Tensor
    bg_hsv: Tensor
    hue_speed: Tensor
    wave_k: Tensor
    wave_phase: Tensor
    wave_color: Tensor
    pan: Tensor

    def background(self, frames: Tensor) -> Tensor:
        """Background base colour (RGB in [0, 1]) at frame indices ``frames`` ``(B, F)``: ``(B, F, 3)``."""
        hue = torch.remainder(self.bg_hsv[:, None, 0] + self.hue_speed[:, None] * frames, 1.0)  # (B, F)
        sat, val = self.bg_hsv[:, None, 1].expand_as(hue), self.bg_hsv[:, None, 2].expand_as(hue)
        return _hsv_to_rgb(hue, sat, val)


@dataclass(frozen=True)
class SpriteTruth:
    """Exact ground truth of rendered frames (``S`` sprite slots; absent slots have all-zero masks).

    Attributes:
        alpha: ``(B, S, F, H, W)`` each sprite's visible coverage in [0, 1] (after the sprites painted over it).
        area: ``(B, S, F)`` each sprite's whole area in pixels (as if nothing covered it).
        centre: ``(B, S, F, 2)`` sprite centre in pixels, (x, y).
        velocity: ``(B, S, F, 2)`` instantaneous velocity in pixels per frame (sign flips at a bounce).
        present, shape, radius, color: per-video sprite attributes as in :class:`SpriteParams`
            (``radius`` in pixels, ``color`` RGB in [0, 1] before shading).
        background: ``(B, F, 3)`` background base colour, RGB in [0, 1].
        hue: ``(B, F)`` background hue in turns, unwrapped (``hue_speed * frame`` plus the start hue).
    """

    alpha: Tensor
    area: Tensor
    centre: Tensor
    velocity: Tensor
    present: Tensor
    shape: Tensor
    radius: Tensor
    color: Tensor
    background: Tensor
    hue: Tensor


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV in [0, 1] to RGB in [0, 1]; ``(...,)`` each -> ``(..., 3)``."""
    k = torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype)
    kk = (k + h.unsqueeze(-1) * 6.0) % 6.0  # (..., 3)
    return v.unsqueeze(-1) - (v * s).unsqueeze(-1) * torch.clamp(torch.minimum(kk, 4.0 - kk), 0.0, 1.0)


def _uniform(g: torch.Generator, lo: float, hi: float, *shape: int) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)


def _params_one(seed: int, cfg: SpriteVideoConfig) -> dict[str, Tensor]:
    """Draw one video's parameters from its own generator, always the same draws in the same order."""
    g = torch.Generator().manual_seed(int(seed))
    side = float(min(cfg.height, cfg.width))
    S, N = cfg.max_sprites, cfg.waves + cfg.fine_waves
    n = int(torch.randint(cfg.min_sprites, cfg.max_sprites + 1, (1,), generator=g))
    present = (torch.arange(S) < n).double()
    shape = torch.randint(0, len(cfg.shapes), (S,), generator=g)
    shape = torch.tensor([SHAPES.index(cfg.shapes[int(i)]) for i in shape])
    radius = _uniform(g, *cfg.radius, S) * side
    angle = _uniform(g, 0.0, 2 * math.pi, S)
    # Unfolded start uniform over one reflection period [0, 2L): the reflected position is uniform forever.
    span = torch.tensor([cfg.width, cfg.height], dtype=torch.float64) - 2 * radius.unsqueeze(-1)  # (S, 2)
    pos0 = _uniform(g, 0.0, 1.0, S, 2) * 2 * span
    heading = _uniform(g, 0.0, 2 * math.pi, S)
    speed = _uniform(g, *cfg.speed, S) * side
    vel = torch.stack([heading.cos(), heading.sin()], -1) * speed.unsqueeze(-1)  # (S, 2)
    color = _hsv_to_rgb(_uniform(g, 0, 1, S), _uniform(g, 0.55, 1.0, S), _uniform(g, 0.6, 1.0, S))  # (S, 3)
    bg_hsv = torch.cat([_uniform(g, 0, 1, 1), _uniform(g, 0.15, 0.5, 1), _uniform(g, 0.3, 0.6, 1)])  # (3,)
    freq = torch.cat(
        [_uniform(g, 1.5, 5.0, cfg.waves), _uniform(g, 8.0, 12.0, cfg.fine_waves)]
    )  # cycles/side
    direction = _uniform(g, 0.0, 2 * math.pi, N)
    wave_k = torch.stack([direction.cos(), direction.sin()], -1) * (2 * math.pi * freq / side).unsqueeze(-1)
    wave_phase = _uniform(g, 0.0, 2 * math.pi, N)
    amp = torch.cat(
        [_uniform(g, *cfg.wave_amplitude, cfg.waves), _uniform(g, 0.03, 0.06, cfg.fine_waves)]
    )  # (N,)
    tint = torch.randn(N, 3, generator=g, dtype=torch.float64) * 0.5 + 1.0  # mostly luminance, some hue
    wave_color = tint / tint.norm(dim=-1, keepdim=True) * math.sqrt(3) * amp.unsqueeze(-1)  # (N, 3)
    pan_dir = _uniform(g, 0.0, 2 * math.pi, 1)
    pan = torch.cat([pan_dir.cos(), pan_dir.sin()]) * _uniform(g, *cfg.pan_speed, 1) * side  # (2,)
    # Drawn last, so the stationary and the turning process share every other parameter of a seed.
    turn = _uniform(g, *cfg.hue_speed, 1)[0] * torch.where(_uniform(g, 0, 1, 1)[0] < 0.5, -1.0, 1.0)
    return {
        "present": present, "shape": shape, "radius": radius, "angle": angle, "pos0": pos0, "vel": vel,
        "color": color, "bg_hsv": bg_hsv, "hue_speed": turn, "wave_k": wave_k, "wave_phase": wave_phase,
        "wave_color": wave_color, "pan": pan,
    }  # fmt: skip


def sample_params(seeds: Sequence[int], config: SpriteVideoConfig | None = None) -> SpriteParams:
    """Parameters of the videos ``seeds`` (one generator per seed: a video never depends on its batch)."""
    cfg = config or SpriteVideoConfig()
    if len(seeds) == 0:
        raise ValueError("need at least one seed")
    rows = [_params_one(int(s), cfg) for s in seeds]
    return SpriteParams(**{k: torch.stack([r[k] for r in rows]) for k in rows[0]})


def _box(ax: Tensor, ay: Tensor, hx: Tensor, hy: Tensor) -> Tensor:
    """Signed distance to an axis-aligned box of half sizes ``hx, hy`` (``ax, ay`` = |local coordinates|)."""
    qx, qy = ax - hx, ay - hy
    return torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2) + torch.maximum(qx, qy).clamp(max=0)


def _sdf(shape: Shape, px: Tensor, py: Tensor, r: Tensor) -> Tensor:
    """Signed distance (pixels, negative inside) of ``shape`` with circumradius ``r`` at local ``px, py``."""
    if shape == "disc":
        return torch.sqrt(px * px + py * py) - r
    if shape == "ring":
        return (torch.sqrt(px * px + py * py) - 0.68 * r).abs() - 0.32 * r
    ax, ay = px.abs(), py.abs()
    if shape == "square":  # half side 0.78 r: a touch larger than inscribed, so it reads as a square
        return _box(ax, ay, 0.78 * r, 0.78 * r)
    if shape == "cross":  # plus sign: union of two boxes, arm half-width 0.34 r
        return torch.minimum(_box(ax, ay, 0.92 * r, 0.34 * r), _box(ax, ay, 0.34 * r, 0.92 * r))
    # Equilateral triangle (Quilez's exact SDF), half side h = r sqrt(3) / 2.
    k = math.sqrt(3.0)
    h = r * k / 2
    tx, ty = ax - h, -py + h / k
    flip = (tx + k * ty) > 0
    tx, ty = torch.where(flip, (tx - k * ty) / 2, tx), torch.where(flip, (-k * tx - ty) / 2, ty)
    tx = tx - torch.maximum(tx, -2 * h).clamp(max=0.0)
    return -torch.sqrt(tx * tx + ty * ty) * torch.sign(ty)


def _reflect(u: Tensor, span: Tensor) -> Tensor:
    """Position in ``[0, span]`` of a point bouncing between walls, from its unfolded coordinate ``u``."""
    y = torch.remainder(u, 2 * span)
    return span - (y - span).abs()


def _centres(params: SpriteParams, j: int, t: Tensor, side: Tensor) -> tuple[Tensor, Tensor]:
    """Centre ``(B, F, 2)`` and velocity ``(B, F, 2)`` in pixels of sprite slot ``j`` at frames ``t`` ``(B, F)``."""
    r = params.radius[:, j]  # (B,)
    span = (side - 2 * r[:, None])[:, None, :]  # (B, 1, 2)
    unfolded = params.pos0[:, j, None, :] + t.unsqueeze(-1) * params.vel[:, j, None, :]  # (B, F, 2)
    centre = r[:, None, None] + _reflect(unfolded, span)
    # d/du of the reflection is +1 on the way out and -1 on the way back.
    sign = torch.where(torch.remainder(unfolded, 2 * span) < span, 1.0, -1.0).to(unfolded.dtype)
    return centre, sign * params.vel[:, j, None, :]


def _render(
    params: SpriteParams, frames: Tensor, cfg: SpriteVideoConfig, truth: bool
) -> tuple[Tensor, SpriteTruth | None]:
    B = params.bg_hsv.shape[0]
    t = torch.as_tensor(frames, dtype=torch.float64)
    t = t.expand(B, -1) if t.dim() == 1 else t  # (B, F)
    H, W = cfg.height, cfg.width
    Fn = t.shape[1]
    gy, gx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")  # (H, W) float32

    # Background: base colour (its hue turning in the non-stationary variant) plus panning plane waves,
    # separable as cos(a + b) = cos a cos b - sin a sin b (a over x, b over y). Phases are reduced mod 2 pi
    # in float64 so the per-pixel work runs in float32.
    background = params.background(t)  # (B, F, 3)
    shift = t.unsqueeze(-1) * params.pan[:, None, :]  # (B, F, 2)
    phase = torch.remainder(
        params.wave_phase[:, None, :] - (params.wave_k[:, None] * shift[:, :, None]).sum(-1), 2 * math.pi
    )  # (B, F, N)
    k = params.wave_k.float()
    a = k[:, None, :, 0, None] * gx[0] + phase.float()[..., None]  # (B, F, N, W)
    b = (k[:, None, :, 1, None] * gy[:, 0]).expand(-1, Fn, -1, -1)  # (B, F, N, H)
    rows = torch.cat([b.cos(), -b.sin()], 2)  # (B, F, 2N, H)
    cols = torch.cat([a.cos(), a.sin()], 2)  # (B, F, 2N, W)
    tint = params.wave_color.float().repeat(1, 2, 1)  # (B, 2N, 3)
    img = background.float()[..., None, None] + torch.einsum("bfmh,bfmw,bmc->bfchw", rows, cols, tint)
    img = img.clamp(0.0, 1.0)  # (B, F, 3, H, W)

    # Sprites, painted in slot order (fixed depth order), each inside a square window that holds it:
    # sprites stay inside the frame, so a window of side 2 r_max + 4 clamped to the frame always covers one.
    side = torch.tensor([W, H], dtype=torch.float64)
    S = params.present.shape[1]
    n = min(2 * math.ceil(float(params.radius.max())) + 4, H, W)  # window side in pixels
    offs = torch.arange(n)
    flat = img.flatten(3)  # (B, F, 3, H*W)
    cover = img.new_zeros(B, S, Fn, H * W) if truth else None  # each sprite's painted alpha
    area = img.new_zeros(B, S, Fn)
    centres, velocities = [], []
    for j in range(S):
        centre, velocity = _centres(params, j, t, side)  # (B, F, 2) each
        centres.append(centre)
        velocities.append(velocity)
        if not bool(params.present[:, j].any()):
            continue
        r = params.radius[:, j]  # (B,)
        x0 = (centre[..., 0] - n / 2).round().long().clamp(0, W - n)  # (B, F) window origin
        y0 = (centre[..., 1] - n / 2).round().long().clamp(0, H - n)
        wx = x0[..., None, None] + offs  # (B, F, 1, n) pixel columns of the window
        wy = y0[..., None, None] + offs[:, None]  # (B, F, n, 1) pixel rows
        index = (wy * W + wx).flatten(2)  # (B, F, n*n)
        cf = centre.float()
        dx = (wx + 0.5 - cf[..., 0, None, None]).expand(-1, -1, n, n)  # (B, F, n, n)
        dy = (wy + 0.5 - cf[..., 1, None, None]).expand(-1, -1, n, n)
        ang = params.angle[:, j].float()
        ca, sa = ang.cos()[:, None, None, None], ang.sin()[:, None, None, None]
        px, py = ca * dx + sa * dy, -sa * dx + ca * dy
        rr = r.float()[:, None, None, None]
        d = torch.empty_like(px)
        for i, name in enumerate(SHAPES):  # each video's own shape only
            rows_i = params.shape[:, j] == i
            if bool(rows_i.any()):
                d[rows_i] = _sdf(name, px[rows_i], py[rows_i], rr[rows_i])
        alpha = (0.5 - d / cfg.edge).clamp(0.0, 1.0) * params.present[:, j].float()[
            :, None, None, None
        ]  # (B, F, n, n)
        shade = 1.0 - 0.18 * (px - py) / (rr * math.sqrt(2))  # soft light from the top left
        colour = (params.color.float()[:, j, None, :, None, None] * shade.unsqueeze(2)).clamp(
            0.0, 1.0
        )  # (B, F, 3, n, n)
        idx = index.unsqueeze(2).expand(-1, -1, 3, -1)  # (B, F, 3, n*n)
        under = flat.gather(3, idx)  # (B, F, 3, n*n)
        flat = flat.scatter(3, idx, under + alpha.flatten(2).unsqueeze(2) * (colour.flatten(3) - under))
        if cover is not None:
            # Sprites painted later cover this one's visible part: scale earlier coverage by (1 - alpha).
            a_full = img.new_zeros(B, Fn, H * W).scatter(2, index, alpha.flatten(2))  # (B, F, H*W)
            cover[:, :j] *= (1 - a_full).unsqueeze(1)
            cover[:, j] = a_full
            area[:, j] = alpha.flatten(2).sum(-1)
    img = flat.view(B, Fn, 3, H, W)  # (B, F, 3, H, W)
    video = (img * 2 - 1).permute(0, 2, 1, 3, 4).contiguous()  # (B, 3, F, H, W)
    if cover is None:
        return video, None
    hue = params.bg_hsv[:, None, 0] + params.hue_speed[:, None] * t  # (B, F) unwrapped turns
    return video, SpriteTruth(
        alpha=cover.view(B, S, Fn, H, W),
        area=area,
        centre=torch.stack(centres, 1).float(),  # (B, S, F, 2)
        velocity=torch.stack(velocities, 1).float(),  # (B, S, F, 2)
        present=params.present.bool(),
        shape=params.shape,
        radius=params.radius.float(),
        color=params.color.float(),
        background=background.float(),
        hue=hue,
    )


def render_frames(params: SpriteParams, frames: Tensor, config: SpriteVideoConfig | None = None) -> Tensor:
    """Render frame indices ``frames`` (``(B, F)`` or ``(F,)`` integers) of each video: ``(B, 3, F, H, W)``.

    Positions and phases in float64 (exact at large frame indices), pixels in float32 in [-1, 1].
    """
    return _render(params, frames, config or SpriteVideoConfig(), truth=False)[0]


def render_truth(
    seeds: Sequence[int],
    num_frames: int,
    *,
    start: int | Sequence[int] = 0,
    config: SpriteVideoConfig | None = None,
) -> tuple[Tensor, SpriteTruth]:
    """Frames of the videos ``seeds`` as :func:`reference_videos` renders them, with their exact ground truth."""
    params, frames = _params_and_frames(seeds, num_frames, start, config)
    video, truth = _render(params, frames, config or SpriteVideoConfig(), truth=True)
    assert truth is not None
    return video, truth


def _params_and_frames(
    seeds: Sequence[int], num_frames: int, start: int | Sequence[int], config: SpriteVideoConfig | None
) -> tuple[SpriteParams, Tensor]:
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    starts = torch.as_tensor(
        [start] * len(seeds) if isinstance(start, int) else list(start), dtype=torch.float64
    )
    if starts.numel() != len(seeds):
        raise ValueError(f"got {starts.numel()} start frames for {len(seeds)} seeds")
    if bool((starts < 0).any()):
        raise ValueError("start frames must be >= 0")
    params = sample_params(seeds, config)
    return params, starts[:, None] + torch.arange(num_frames, dtype=torch.float64)  # (B, F)


def reference_videos(
    seeds: Sequence[int],
    num_frames: int,
    *,
    start: int | Sequence[int] = 0,
    config: SpriteVideoConfig | None = None,
) -> Tensor:
    """Frames ``start .. start + num_frames - 1`` of the videos ``seeds``: ``(B, 3, F, H, W)`` in [-1, 1].

    ``start`` is one frame index for all videos or one per video. Video ``seed`` is the same whatever
    batch it is rendered in and whatever range is asked for.
    """
    params, frames = _params_and_frames(seeds, num_frames, start, config)
    return render_frames(params, frames, config)


def reference_video(
    seed: int, num_frames: int, *, start: int = 0, config: SpriteVideoConfig | None = None
) -> Tensor:
    """One video of the process: ``(3, F, H, W)`` in [-1, 1] (see :func:`reference_videos`)."""
    return reference_videos([seed], num_frames, start=start, config=config)[0]
