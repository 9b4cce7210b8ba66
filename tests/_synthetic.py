"""Analytic denoisers for tests: the exact posterior mean of band-wise Gaussian data, with optional band bias.

Data: Haar-3D bands of ``(B, C, F, H, W)`` latents are independent Gaussians with std ``data_std[group]``.
For a sample ``x = alpha x0 + beta eps`` the optimal noise prediction per band is
``eps_hat = beta / (alpha^2 s_g^2 + beta^2) * x``. ``bias[group]`` multiplies the model's own output by
``(1 + b_g)`` band-wise: the noise prediction for VP/VE models, the velocity for flow models. In both cases
the DCW correction that undoes it exactly on a first-order step is known: ``k = b / (1 + b)`` in x0 form,
i.e. Eq. 17 with ``lam = k (1 - r) / r``, ``r = beta_next / beta``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from torch import Tensor

from vidfix.bands import band_filter


class GaussianBandDenoiser:
    """Exact denoiser for band-wise Gaussian data under a flow, VP or VE parameterisation."""

    def __init__(
        self,
        data_std: Mapping[str, float],
        *,
        param: Literal["flow", "vp", "ve"],
        prediction: Literal["flow_prediction", "epsilon", "v_prediction", "sample"],
        alphas_cumprod: Tensor | None = None,
        bias: Mapping[str, float] | None = None,
        num_train_timesteps: int = 1000,
    ) -> None:
        self.data_std = dict(data_std)
        self.param, self.prediction = param, prediction
        self.acp = alphas_cumprod
        self.bias = dict(bias or {})
        self.T = num_train_timesteps
        self.calls = 0

    def sample_data(self, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        white = torch.randn(shape, generator=generator)
        return band_filter(white, self.data_std)

    def _alpha_beta(self, t: Tensor) -> tuple[float, float]:
        t = float(t)
        if self.param == "flow":
            s = t / self.T
            return 1.0 - s, s
        if self.param == "ve":
            return 1.0, t  # t is sigma here (callers pass sigma for VE)
        assert self.acp is not None
        a = float(self.acp[round(t)])
        return a**0.5, (1 - a) ** 0.5

    def _biased(self, out: Tensor) -> Tensor:
        if not any(self.bias.values()):
            return out
        return band_filter(out, {g: 1.0 + self.bias.get(g, 0.0) for g in ("low", "spatial", "temporal")})

    def __call__(
        self, x: Tensor, t: Tensor, *, context: Any = None, alpha_beta: tuple[float, float] | None = None
    ) -> Tensor:
        self.calls += 1
        alpha, beta = alpha_beta or self._alpha_beta(t)
        # Posterior means per band: x0_hat = alpha s^2 / (alpha^2 s^2 + beta^2) x, eps_hat = beta / (...) x.
        x0 = band_filter(x, {g: alpha * s**2 / (alpha**2 * s**2 + beta**2) for g, s in self.data_std.items()})
        eps = band_filter(x, {g: beta / (alpha**2 * s**2 + beta**2) for g, s in self.data_std.items()})
        if self.prediction == "epsilon":
            return self._biased(eps)
        if self.prediction == "sample":
            return self._biased(x0)
        if self.prediction == "v_prediction":
            return self._biased(alpha * eps - beta * x0)
        return self._biased(eps - x0)  # flow velocity: x = (1 - s) x0 + s eps
