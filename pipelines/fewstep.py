"""Few-step x0 / re-noise sampling (Self-Forcing, CausVid): a level table the chunked sampler can run.

Distilled causal video models sample a chunk in a few steps: at each level ``s_i`` of a short list the model
predicts the clean chunk, and that prediction is re-noised to the next level with fresh noise; the last
prediction is the chunk. For a flow-matching velocity model (``x_s = (1 - s) x0 + s eps``, ``v = eps - x0``,
timestep ``t = 1000 s``):

    x0_i = x_i - s_i v(x_i, t_i)                           # predict x0
    x_{i+1} = (1 - s_{i+1}) x0_i + s_{i+1} eps_{i+1}       # re-noise (fresh eps); the last x0 is the chunk

Levels: ``levels`` on the training grid (Self-Forcing's ``denoising_step_list``, e.g. 1000, 750, 500, 250),
or ``num_steps`` evenly spaced ones from ``num_train_timesteps`` down (4 steps: exactly that list), mapped
through the flow shift ``s = shift u / (1 + (shift - 1) u)``, ``u = level / num_train_timesteps`` (Self-Forcing's
``warp_denoising_step`` with shift 5). Latents are ``(B, C, F, H, W)``.

The class is a diffusers ``SchedulerMixin`` / ``ConfigMixin`` (saves, loads and describes itself like any
scheduler), so ``sample_video(model, FewStepScheduler(), config, ...)`` runs this mode with any flow-matching
:class:`vidfix.protocols.Denoiser`: the corrector acts on each x0 through :class:`vidfix.loop.ARLoop`, and
the re-noise draws come from each video's own generator (a video depends on its seed only).

Example:
    >>> sched = FewStepScheduler(shift=5.0)
    >>> sched.set_timesteps(4)
    >>> [round(float(s), 4) for s in sched.sigmas]
    [1.0, 0.9375, 0.8333, 0.625, 0.0]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput
from torch import Tensor

__all__ = ["FewStepOutput", "FewStepScheduler", "warp_levels"]


def warp_levels(levels: Sequence[float], *, shift: float, num_train_timesteps: int = 1000) -> list[float]:
    """Noise levels ``s = shift u / (1 + (shift - 1) u)`` of training-grid levels, ``u = level / num_train_timesteps``.

    Self-Forcing's ``warp_denoising_step``: ``warp_levels([1000, 750, 500, 250], shift=5)`` is
    ``[1.0, 0.9375, 0.8333, 0.625]``.
    """
    u = torch.tensor([float(v) for v in levels], dtype=torch.float64) / num_train_timesteps
    return (shift * u / (1 + (shift - 1) * u)).tolist()


@dataclass
class FewStepOutput(BaseOutput):
    """``prev_sample``: the re-noised next input (the chunk at the last step); ``pred_original_sample``: x0."""

    prev_sample: Tensor
    pred_original_sample: Tensor


class FewStepScheduler(SchedulerMixin, ConfigMixin):  # type: ignore[misc]  # diffusers' mixins type config_name differently
    """Predict x0, re-noise to the next level (flow matching); see the module docstring.

    Args:
        num_train_timesteps: the model's timestep range (``t = num_train_timesteps * s``).
        shift: flow shift of the levels (1: none; Self-Forcing's Wan models use 5).
        levels: fixed levels on the training grid, decreasing, in ``(0, num_train_timesteps]``; None: evenly
            spaced from ``num_train_timesteps`` for the number of steps asked.
    """

    order = 1
    init_noise_sigma = 1.0

    @register_to_config
    def __init__(
        self, num_train_timesteps: int = 1000, shift: float = 1.0, levels: Sequence[float] | None = None
    ) -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
        if not shift > 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        if levels is not None:
            lv = [float(v) for v in levels]
            if not lv or any(not 0 < v <= num_train_timesteps for v in lv):
                raise ValueError(f"levels must be in (0, {num_train_timesteps}], got {list(levels)}")
            if any(b >= a for a, b in itertools.pairwise(lv)):
                raise ValueError(f"levels must be strictly decreasing, got {list(levels)}")
        self.timesteps = torch.empty(0)
        self.sigmas = torch.empty(0)
        self.num_inference_steps: int | None = None

    def set_timesteps(
        self, num_inference_steps: int | None = None, device: torch.device | str | None = None
    ) -> None:
        """Levels for ``num_inference_steps`` steps: ``sigmas`` (with a final 0) and ``timesteps = T sigmas``."""
        cfg: Any = self.config
        T = int(cfg.num_train_timesteps)
        fixed = cfg.levels
        if fixed is not None:
            if num_inference_steps is not None and num_inference_steps != len(fixed):
                raise ValueError(
                    f"this FewStepScheduler has {len(fixed)} fixed levels {list(fixed)}; asked for "
                    f"{num_inference_steps} steps"
                )
            levels = [float(v) for v in fixed]
        else:
            if num_inference_steps is None or num_inference_steps < 1:
                raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            n = num_inference_steps
            levels = [T * (n - i) / n for i in range(n)]  # T, T (n-1)/n, ..., T/n
        s = torch.tensor(
            warp_levels(levels, shift=float(cfg.shift), num_train_timesteps=T), dtype=torch.float64
        )
        self.sigmas = torch.cat([s, s.new_zeros(1)]).to(device=device, dtype=torch.float32)
        self.timesteps = (s * T).to(device=device, dtype=torch.float32)
        self.num_inference_steps = len(s)

    def scale_model_input(self, sample: Tensor, timestep: Tensor | None = None) -> Tensor:
        return sample

    def levels(self, index: int) -> tuple[float, float]:
        """Noise levels ``(s, s_next)`` of step ``index``."""
        return float(self.sigmas[index]), float(self.sigmas[index + 1])

    def convert_model_output(self, model_output: Tensor, sample: Tensor, index: int) -> Tensor:
        """The data prediction ``x0 = x - s v`` of step ``index``."""
        s = float(self.sigmas[index])
        return sample - s * model_output

    def renoise(self, x0: Tensor, noise: Tensor | None, index: int) -> Tensor:
        """Step ``index``'s result: ``(1 - s_next) x0 + s_next noise``, or ``x0`` itself at the last level."""
        s_next = float(self.sigmas[index + 1])
        if s_next == 0.0:
            return x0
        if noise is None:
            raise ValueError(f"step {index} re-noises to s={s_next:.4g}: it needs noise")
        return (1.0 - s_next) * x0 + s_next * noise

    def _index(self, timestep: Tensor | float) -> int:
        hits = (self.timesteps - float(timestep)).abs() < 1e-3
        if not bool(hits.any()):
            raise ValueError(f"timestep {float(timestep)} is not one of {self.timesteps.tolist()}")
        return int(hits.nonzero()[0])

    def step(
        self,
        model_output: Tensor,
        timestep: Tensor | float,
        sample: Tensor,
        *,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> FewStepOutput | tuple[Tensor, Tensor]:
        """One diffusers-style step: x0 from the velocity, re-noised with ``noise`` (or drawn from ``generator``)."""
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps(num_inference_steps) before step()")
        i = self._index(timestep)
        x0 = self.convert_model_output(model_output, sample, i)
        if noise is None and i + 1 < len(self.timesteps):
            noise = torch.randn(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)
        prev = self.renoise(x0, noise, i)
        return FewStepOutput(prev, x0) if return_dict else (prev, x0)
