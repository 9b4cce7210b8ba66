"""The exact reference: a Gaussian stationary video process whose optimal chunk denoiser has a closed form.

The process (per channel ``c``, independent channels): every spatial Fourier coefficient ``z_k`` of the
centred frame follows an AR(1) in time,

    z_k(t) = rho_k z_k(t - 1) + sqrt(1 - rho_k^2) w_k(t),     Var z_k = P_c(k),

with a power-law spectrum ``P_c(k) ∝ (k0^2 + |k|^2)^(-gamma / 2)`` scaled to the channel's variance and a
correlation ``rho_k`` that falls from ``rho_low`` (coarsest frequency) to ``rho_high`` (Nyquist corner), plus
a per-channel mean. Fourier coefficients are independent, so everything below is a small linear problem
per frequency.

The chunk denoiser (flow matching, ``x_s = (1 - s) x0 + s eps``): given the clean context (only its last
frame matters for an AR(1)) the chunk ``x0`` of ``F`` frames is Gaussian per frequency with mean
``m_j = rho^(j+1) c`` and covariance ``S_ij = P (rho^|i-j| - rho^(i+1) rho^(j+1))`` (no context: ``m = 0``,
``S_ij = P rho^|i-j|``), so the posterior mean is exact:

    x0_hat = m + a S (a^2 S + s^2 I)^(-1) (x - a m),      a = 1 - s,

an ``F x F`` matrix per frequency (cached per noise level). :class:`GaussianVideoDenoiser` returns the
velocity ``v = (x - x0_hat) / s``, so the stock FlowMatchEuler and UniPC schedulers and vidfix's chunked
sampler drive it: with it the only error of a rollout is the solver's discretization.

Controlled model errors (:class:`ModelError`) mimic a network's bias, each with a known right correction:

* ``gain[g]``: the data prediction's band group ``g`` (3D Haar, around the process mean) is scaled by
  ``1 + gain[g]``; undone exactly by the x0 gain ``-gain / (1 + gain)`` on that band.
* ``snr``: the model reads the noise level wrong, more so at high noise: it acts at ``s_m`` with
  ``s_m / (1 - s_m) = (1 + snr s) s / (1 - s)``; its velocity is the exact one at ``s_m``.
* ``offset[c]``: a constant colour offset added to the data prediction of channel ``c``.
* ``velocity[g]``: the model's velocity output is scaled by ``1 + velocity[g]`` in band group ``g``: the
  SNR-t bias in the form DCW models it, undone exactly by DCW's x0-form coefficient ``k = b / (1 + b)``.

Latents are ``(B, C, F, H, W)``; ``C``, ``H``, ``W`` come from :class:`GaussianVideoConfig`.

Example:
    >>> cfg = GaussianVideoConfig()
    >>> video = gaussian_video(cfg, 64, generator=torch.Generator().manual_seed(0))   # (1, 3, 64, 16, 16)
    >>> model = GaussianVideoDenoiser(cfg)
    >>> true = band_energies(cfg)           # exact per-group, per-channel band energy, (C, 3)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_latents
from vidfix.bands import GROUPS, Group, band_filter
from vidfix.tracker import chunk_stats

__all__ = [
    "GaussianRollout",
    "GaussianVideoConfig",
    "GaussianVideoDenoiser",
    "ModelError",
    "band_energies",
    "band_variance_ratio",
    "gaussian_rollout",
    "gaussian_scheduler",
    "gaussian_video",
]


@dataclass(frozen=True, kw_only=True)
class GaussianVideoConfig:
    """Law of the Gaussian video process (channels independent, stationary in space and time)."""

    channels: int = 3  # C
    height: int = 16  # H
    width: int = 16  # W
    chunk_frames: int = 4  # F: frames the denoiser is meant to denoise at once (any F works)
    gamma: float = 2.0  # spectrum exponent: P(k) ∝ (k0^2 + |k|^2)^(-gamma / 2) (natural images: about 2)
    knee: float = 1.0  # k0, in cycles per frame
    rho_low: float = 0.95  # frame-to-frame correlation of the coarsest frequencies
    rho_high: float = 0.5  # frame-to-frame correlation at the Nyquist corner (log-linear in |k| between)
    channel_std: tuple[float, ...] = (0.5, 0.4, 0.3)  # pixel standard deviation of each channel
    channel_mean: tuple[float, ...] = (0.1, 0.0, -0.1)  # mean of each channel

    def __post_init__(self) -> None:
        for name in ("channels", "height", "width", "chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.channel_std) != self.channels or len(self.channel_mean) != self.channels:
            raise ValueError(
                f"channel_std and channel_mean need one value per channel ({self.channels}), "
                f"got {len(self.channel_std)} and {len(self.channel_mean)}"
            )
        if any(v <= 0 for v in self.channel_std):
            raise ValueError(f"channel_std must be > 0, got {self.channel_std}")
        for name in ("rho_low", "rho_high"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.knee <= 0:
            raise ValueError(f"knee must be > 0, got {self.knee}")


@dataclass(frozen=True, kw_only=True)
class ModelError:
    """Controlled errors of the data prediction (all zero: the exact denoiser).

    Attributes:
        gain: relative gain error per band group (3D Haar, around the process mean), e.g. ``{"low": 0.1}``.
        snr: noise-level misreading that grows with the noise level: the model acts at ``s_m`` with
            ``s_m / (1 - s_m) = (1 + snr * s) * s / (1 - s)`` (> 0: it believes the sample noisier).
        offset: colour offset added to each channel's data prediction (empty: none).
        velocity: relative gain error of the velocity output per band group.
    """

    gain: Mapping[str, float] = field(default_factory=dict)
    snr: float = 0.0
    offset: tuple[float, ...] = ()
    velocity: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("gain", "velocity"):
            for g, v in getattr(self, name).items():
                check_choice("band group", g, GROUPS)
                if v <= -1.0:
                    raise ValueError(f"{name}[{g!r}] must be > -1 (a gain of 1 + {name}), got {v}")
        if self.snr <= -1.0:
            raise ValueError(f"snr must be > -1, got {self.snr}")

    @property
    def is_exact(self) -> bool:
        return (
            not any(self.gain.values())
            and self.snr == 0.0
            and not any(self.offset)
            and not any(self.velocity.values())
        )

    def model_noise_level(self, s: float) -> float:
        """The noise level ``s_m`` the model acts at when the true one is ``s``."""
        if self.snr == 0.0 or s <= 0.0 or s >= 1.0:
            return s
        nsr = (1.0 + self.snr * s) * s / (1.0 - s)
        return nsr / (1.0 + nsr)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gain": dict(self.gain),
            "snr": self.snr,
            "offset": list(self.offset),
            "velocity": dict(self.velocity),
        }


# --------------------------------------------------------------------------------------------------------
# The process: spectrum, correlations, samples and exact band energies.


def _frequencies(cfg: GaussianVideoConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Angular frequencies along H and W ``(H, 1)``, ``(1, W)`` and the magnitude in cycles ``(H, W)``."""
    fy = torch.fft.fftfreq(cfg.height, dtype=torch.float64)[:, None] * cfg.height  # (H, 1) cycles per frame
    fx = torch.fft.fftfreq(cfg.width, dtype=torch.float64)[None, :] * cfg.width  # (1, W)
    mag = (fy**2 + fx**2).sqrt()  # (H, W)
    return 2 * math.pi * fy / cfg.height, 2 * math.pi * fx / cfg.width, mag


def _spectrum(cfg: GaussianVideoConfig) -> tuple[Tensor, Tensor]:
    """Per-channel power ``P`` ``(C, H, W)`` (mean over k = channel variance) and correlation ``rho`` ``(H, W)``."""
    _, _, mag = _frequencies(cfg)
    shape = (cfg.knee**2 + mag**2) ** (-cfg.gamma / 2)  # (H, W)
    shape = shape / shape.mean()
    std = torch.tensor(cfg.channel_std, dtype=torch.float64)
    power = std[:, None, None] ** 2 * shape  # (C, H, W)
    top = float(mag.max()) or 1.0
    rho = (
        cfg.rho_low * (cfg.rho_high / cfg.rho_low) ** (mag / top)
        if cfg.rho_low > 0
        else torch.zeros_like(mag)
    )
    return power, rho


def _channel_mean(cfg: GaussianVideoConfig, like: Tensor) -> Tensor:
    return torch.tensor(cfg.channel_mean, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1)


def gaussian_video(
    cfg: GaussianVideoConfig, frames: int, *, generator: torch.Generator, batch: int = 1
) -> Tensor:
    """Exact samples of the stationary process: ``(batch, C, frames, H, W)`` float32 (float64 inside)."""
    if frames < 1 or batch < 1:
        raise ValueError(f"frames and batch must be >= 1, got {frames} and {batch}")
    power, rho = _spectrum(cfg)
    amp = power.sqrt()  # (C, H, W)
    innov = (1.0 - rho**2).sqrt()  # (H, W)
    out = []
    z = None
    for _ in range(frames):
        w = torch.randn(batch, cfg.channels, cfg.height, cfg.width, generator=generator, dtype=torch.float64)
        what = torch.fft.fft2(w, norm="ortho")  # (B, C, H, W), E|w_k|^2 = 1, Hermitian
        z = amp * what if z is None else rho * z + innov * amp * what
        out.append(torch.fft.ifft2(z, norm="ortho").real)
    video = torch.stack(out, 2)  # (B, C, T, H, W)
    return (video + _channel_mean(cfg, video)).float()


def band_energies(cfg: GaussianVideoConfig) -> Tensor:
    """Exact mean-square energy per channel and band group of centred chunks (1-level 3D Haar): ``(C, 3)``
    in the order of :data:`vidfix.bands.GROUPS` (``low``, ``spatial``, ``temporal``); rows sum to the variance.

    The Haar pair mean / difference along an axis passes ``(1 ± cos w) / 2`` of a frequency's power; along
    time, pairs of consecutive frames of an AR(1) keep ``(1 ± rho) / 2``.
    """
    wy, wx, _ = _frequencies(cfg)
    power, rho = _spectrum(cfg)
    ay, dy = (1 + torch.cos(wy)) / 2, (1 - torch.cos(wy)) / 2  # (H, 1)
    ax, dx = (1 + torch.cos(wx)) / 2, (1 - torch.cos(wx)) / 2  # (1, W)
    at, dt = (1 + rho) / 2, (1 - rho) / 2  # (H, W)
    low = at * ay * ax
    spatial = at * (1 - ay * ax)
    temporal = dt * (ay + dy) * (ax + dx)
    parts = torch.stack([low, spatial, temporal], 0)  # (3, H, W)
    return (power[:, None] * parts[None]).mean(dim=(-2, -1)).float()  # (C, 3)


def band_variance_ratio(chunk: Tensor, cfg: GaussianVideoConfig) -> dict[Group, float]:
    """Per band group: the chunk's energy around the process mean over the exact one, averaged over
    videos and channels (1 = the true process)."""
    check_latents(chunk, "chunk", ranks=(5,))
    centred = chunk.double() - _channel_mean(cfg, chunk.double())
    stats = chunk_stats(centred, 0)
    true = band_energies(cfg).double()  # (C, 3)
    out: dict[Group, float] = {}
    for j, g in enumerate(GROUPS):
        e = torch.tensor(getattr(stats, f"energy_{g}"), dtype=torch.float64)  # (B, C)
        out[g] = float((e / true[:, j]).mean())
    return out


# --------------------------------------------------------------------------------------------------------
# The exact denoiser.


def _apply(op: Tensor, xh: Tensor) -> Tensor:
    """``op`` ``(C, H, W', F, F)`` applied along frames of ``xh`` ``(B, C, F, H, W')`` (complex), per frequency."""
    B = xh.shape[0]
    v = torch.view_as_real(xh).permute(1, 3, 4, 2, 0, 5).flatten(-2)  # (C, H, W', F, B*2)
    out = (op @ v).unflatten(-1, (B, 2)).permute(4, 0, 3, 1, 2, 5)  # (B, C, F, H, W', 2)
    return torch.view_as_complex(out.contiguous())


class GaussianVideoDenoiser:
    """Exact flow-matching chunk denoiser of :class:`GaussianVideoConfig`'s process, with optional errors.

    Call it like any :class:`vidfix.Denoiser`: ``model(x, t, context=c) -> v`` with ``t = s *
    num_train_timesteps``. Schedulers that make timesteps integers (UniPC truncates) would shift the noise
    level by up to ``1 / num_train_timesteps``: :meth:`for_scheduler` snaps ``t`` back to the schedule's
    exact noise levels, so the denoiser stays exact.

    Attributes:
        config: the process.
        error: the injected model error (default none: exact).
        num_train_timesteps: timestep scale.
        calls: model calls so far.
    """

    def __init__(
        self,
        config: GaussianVideoConfig | None = None,
        *,
        error: ModelError | None = None,
        num_train_timesteps: int = 1000,
        sigmas: Sequence[float] = (),
    ) -> None:
        self.config = config or GaussianVideoConfig()
        self.error = error or ModelError()
        if self.error.offset and len(self.error.offset) != self.config.channels:
            raise ValueError(
                f"error.offset needs one value per channel ({self.config.channels}), got {len(self.error.offset)}"
            )
        self.num_train_timesteps = num_train_timesteps
        self.sigmas = tuple(float(s) for s in sigmas)
        self.calls = 0
        power, rho = _spectrum(self.config)
        half = self.config.width // 2 + 1  # rfft2 keeps the non-negative W frequencies
        self._power, self._rho = power[..., :half], rho[..., :half]
        self._cache: dict[tuple[float, int, bool], tuple[Tensor, Tensor, Tensor]] = {}

    # -- adapters ---------------------------------------------------------------------------------------

    def with_error(self, error: ModelError | None) -> GaussianVideoDenoiser:
        """The same process with another error (shares nothing mutable)."""
        return GaussianVideoDenoiser(
            self.config, error=error, num_train_timesteps=self.num_train_timesteps, sigmas=self.sigmas
        )

    def for_scheduler(self, scheduler: Any, num_steps: int) -> GaussianVideoDenoiser:
        """A copy that maps each timestep of ``scheduler`` at ``num_steps`` to its exact noise level."""
        probe = type(scheduler).from_config(scheduler.config)
        probe.set_timesteps(num_steps)
        sigmas = [float(s) for s in probe.sigmas if float(s) > 0]
        new = self.with_error(self.error)
        new.sigmas = tuple(sigmas)
        return new

    def check_chunk(self, chunk_frames: int, context_frames: int) -> None:
        """Any chunk length and context length work (only the last context frame matters)."""
        if chunk_frames < 1 or context_frames < 0:
            raise ValueError(
                f"need chunk_frames >= 1 and context_frames >= 0, got {chunk_frames}, {context_frames}"
            )

    def noise_level(self, t: Tensor | float) -> float:
        """Noise level ``s`` of timestep ``t`` (snapped to the nearest known schedule level, if any: UniPC
        truncates ``sigma * num_train_timesteps`` to an integer)."""
        s = float(t) / self.num_train_timesteps
        if self.sigmas:
            near = min(self.sigmas, key=lambda v: abs(v - s))
            if abs(near - s) <= 1.0 / self.num_train_timesteps + 1e-6:
                return near
        return s

    # -- the posterior mean -----------------------------------------------------------------------------

    def _operators(self, s: float, frames: int, context: bool) -> tuple[Tensor, Tensor, Tensor]:
        """Per frequency: the gain ``G`` ``(C, H, W, F, F)``, the prior mean weights ``r`` ``(H, W, F)``
        (``m = r * c``) and ``I - a G`` applied to the mean."""
        key = (round(s, 12), frames, context)
        if key not in self._cache:
            a = 1.0 - s
            j = torch.arange(frames, dtype=torch.float64)
            rho = self._rho[..., None, None]  # (H, W, 1, 1)
            corr = rho ** (j[:, None] - j[None, :]).abs()  # (H, W, F, F)
            r = self._rho[..., None] ** (j + 1)  # (H, W, F)
            if context:
                corr = corr - r[..., :, None] * r[..., None, :]
            cov = self._power[:, :, :, None, None] * corr  # (C, H, W, F, F)
            eye = torch.eye(frames, dtype=torch.float64)
            gain = torch.linalg.solve(a * a * cov + s * s * eye, a * cov)  # symmetric: S and A commute
            self._cache[key] = (gain, r if context else torch.zeros_like(r), eye - a * gain)
        return self._cache[key]

    def exact_x0(self, x: Tensor, s: float, *, context: Tensor | None = None) -> Tensor:
        """The exact posterior mean ``E[x0 | x_s = x, context]`` ``(B, C, F, H, W)`` at noise level ``s``."""
        check_latents(x, "x", ranks=(5,))
        _, C, F, H, W = x.shape
        if (C, H, W) != (self.config.channels, self.config.height, self.config.width):
            raise ValueError(
                f"x has (C, H, W) = {(C, H, W)}; the process has "
                f"{(self.config.channels, self.config.height, self.config.width)}"
            )
        if not 0.0 <= s <= 1.0:
            raise ValueError(f"noise level must be in [0, 1], got {s}")
        xd = x.double()
        mu = _channel_mean(self.config, xd)
        a = 1.0 - s
        has_ctx = context is not None and context.shape[2] > 0
        gain, r, rest = self._operators(s, F, has_ctx)
        # x0_hat - m = G (x - a m)  =>  x0_hat = G x + (I - a G) m, one F x F product per frequency.
        xh = torch.fft.rfft2(xd - a * mu, norm="ortho")  # (B, C, F, H, W//2+1) complex
        if has_ctx:
            assert context is not None
            ch = torch.fft.rfft2(context[:, :, -1].double() - mu[:, :, 0], norm="ortho")  # (B, C, H, W')
            mean = r.permute(2, 0, 1)[None, None] * ch[:, :, None]  # (B, C, F, H, W')
        out = _apply(gain, xh) if not has_ctx else _apply(gain, xh) + _apply(rest, mean)
        return (torch.fft.irfft2(out, s=(H, W), norm="ortho") + mu).to(x.dtype)

    def x0_hat(self, x: Tensor, s: float, *, context: Tensor | None = None) -> Tensor:
        """The model's data prediction at noise level ``s``: the exact one with :attr:`error` applied."""
        err = self.error
        s_m = err.model_noise_level(s)
        x0 = self.exact_x0(x, s_m, context=context)
        if any(err.gain.values()):
            mu = _channel_mean(self.config, x0)
            gains = {g: 1.0 + err.gain.get(g, 0.0) for g in GROUPS}
            x0 = band_filter(x0 - mu, gains) + mu
        if any(err.offset):
            x0 = x0 + torch.tensor(err.offset, dtype=x0.dtype, device=x0.device).view(1, -1, 1, 1, 1)
        return x0

    def __call__(self, x: Tensor, t: Tensor, *, context: Tensor | None = None, **_: Any) -> Tensor:
        """Flow velocity ``v = eps_hat - x0_hat`` for the noisy chunk ``x`` at timestep ``t``."""
        self.calls += 1
        s = self.noise_level(t)
        if s <= 0.0:
            raise ValueError("the denoiser needs a noise level > 0 (timestep 0 has no velocity)")
        s_m = self.error.model_noise_level(s)
        x0 = self.x0_hat(x, s, context=context)
        # The model's velocity at the level it believes: eps_hat = (x - (1 - s_m) x0) / s_m, v = eps_hat - x0.
        v = (x - x0) / s_m
        if any(self.error.velocity.values()):
            v = band_filter(v, {g: 1.0 + self.error.velocity.get(g, 0.0) for g in GROUPS})
        return v


def gaussian_scheduler(kind: Literal["euler", "unipc"] = "euler", **overrides: Any) -> Any:
    """A stock diffusers flow-matching scheduler for the testbed (shift 1)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    check_choice("scheduler kind", kind, ("euler", "unipc"))
    if kind == "euler":
        return FlowMatchEulerDiscreteScheduler(**overrides)
    kwargs: dict[str, Any] = {
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": True,
        "flow_shift": 1.0,
    }
    return UniPCMultistepScheduler(**(kwargs | overrides))


# --------------------------------------------------------------------------------------------------------
# Rollouts on the testbed.


@dataclass(frozen=True)
class GaussianRollout:
    """Per-chunk statistics of a rollout: variance ratio per band group and colour drift per channel.

    Attributes:
        ratio: ``(chunks, 3)`` band energy over the exact one, groups in :data:`vidfix.bands.GROUPS` order.
        mean_shift: ``(chunks, C)`` chunk mean minus the process mean, in units of the channel's std.
    """

    ratio: Tensor
    mean_shift: Tensor

    def log_ratio(self) -> Tensor:
        return self.ratio.log()

    @classmethod
    def of_chunks(cls, chunks: list[Tensor], cfg: GaussianVideoConfig) -> GaussianRollout:
        """Measure chunks ``(B, C, F, H, W)`` (generated, or cut from real video for the reference values)."""
        mu = torch.tensor(cfg.channel_mean, dtype=torch.float64)
        std = torch.tensor(cfg.channel_std, dtype=torch.float64)
        ratios = [[band_variance_ratio(c, cfg)[g] for g in GROUPS] for c in chunks]
        shifts = [(c.double().mean(dim=(0, 2, 3, 4)) - mu) / std for c in chunks]
        return cls(torch.tensor(ratios, dtype=torch.float64), torch.stack(shifts))

    def late(self, tail: int = 16) -> Tensor:
        """Mean log variance ratio per group over the last ``tail`` chunks ``(3,)``."""
        return self.ratio[-tail:].log().mean(0)


def gaussian_rollout(
    denoiser: Any,
    scheduler: Any,
    *,
    num_steps: int,
    chunks: int = 64,
    videos: int = 8,
    seed: int = 0,
    corrector: Any = None,
    chunk_frames: int | None = None,
) -> GaussianRollout:
    """Roll ``videos`` videos of ``chunks`` chunks out with vidfix's chunked sampler from one real context
    frame of the process, and measure every chunk (see :class:`GaussianRollout`).

    Videos ``b`` use generator seed ``seed + b`` for the sampler and ``seed + b + 10**6`` for their real start
    frame, so two rollouts with the same ``seed`` share all their noise (paired comparisons).
    """
    from vidfix.pipelines.sampler import SamplerConfig, sample_video

    cfg = denoiser.config
    F = chunk_frames or cfg.chunk_frames
    start = torch.cat(
        [
            gaussian_video(cfg, 1, generator=torch.Generator().manual_seed(seed + b + 10**6))
            for b in range(videos)
        ]
    )  # (B, C, 1, H, W)
    sconf = SamplerConfig(
        num_frames=chunks * F, chunk_frames=F, context_frames=1, channels=cfg.channels,
        height=cfg.height, width=cfg.width, num_steps=num_steps,
    )  # fmt: skip
    collected: list[Tensor] = []
    model = denoiser.for_scheduler(scheduler, num_steps) if hasattr(denoiser, "for_scheduler") else denoiser
    gens = [torch.Generator().manual_seed(seed + b) for b in range(videos)]
    sample_video(model, scheduler, sconf, generators=gens, corrector=corrector, context=start,
                 on_chunk=lambda chunk, **_: collected.append(chunk))  # fmt: skip
    return GaussianRollout.of_chunks(collected, cfg)
