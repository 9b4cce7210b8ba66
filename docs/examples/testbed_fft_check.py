"""An independent check of the exact-testbed numbers in BENCHMARKS.md, and the strip beside them.

`vidfix bench testbed` measures drift as 3D Haar band variances; this script measures the same kind of
rollouts (Euler, 8 steps, 4 videos x 64 chunks) with a 2D FFT instead: the late per-channel mean offset in the
real video's stds, and spatial power at low (|k| <= 2) and high (|k| > 4) frequencies over the real video's.
It writes docs/testbed_strip.png (rows: real, exact denoiser, colour-offset error uncorrected and calibrated,
exact + rollout calibration; frames 0-255, channels shown as z-scores). About 10 s:

    python docs/examples/testbed_fft_check.py
"""

from __future__ import annotations

import json

import torch
from torch import Tensor
from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
from vidfix.pipelines.reference.evaluate import save_strip
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.sampler import SamplerConfig, sample_video

from vidfix.calibration import calibrate_regression

PROC = GaussianVideoConfig()
STEPS, VIDEOS, CHUNKS, F = 8, 4, 64, PROC.chunk_frames
SCHED = gaussian_scheduler("euler")


def sampler_config(chunks: int) -> SamplerConfig:
    return SamplerConfig(
        num_frames=chunks * F, chunk_frames=F, context_frames=1, channels=PROC.channels, height=PROC.height,
        width=PROC.width, num_steps=STEPS,
    )  # fmt: skip


def roll(model: GaussianVideoDenoiser, corrector: object, start: Tensor) -> Tensor:
    gens = [torch.Generator().manual_seed(b) for b in range(VIDEOS)]
    return sample_video(
        model.for_scheduler(SCHED, STEPS), SCHED, sampler_config(CHUNKS), generators=gens, corrector=corrector,
        context=start,
    )  # fmt: skip


def fft_power(v: Tensor) -> tuple[float, float]:
    """Mean spatial power at |k| <= 2 and at |k| > 4 (per-frame means removed)."""
    p = torch.fft.fft2(v - v.mean((-1, -2), keepdim=True), norm="ortho").abs() ** 2
    H, W = v.shape[-2:]
    k = ((torch.fft.fftfreq(H) * H)[:, None] ** 2 + (torch.fft.fftfreq(W) * W)[None] ** 2).sqrt()
    return float(p[..., k <= 2].mean()), float(p[..., k > 4].mean())


def main() -> None:
    torch.set_num_threads(1)
    real = gaussian_video(PROC, CHUNKS * F + 1, generator=torch.Generator().manual_seed(9), batch=VIDEOS)
    start = real[:, :, :1]
    exact = GaussianVideoDenoiser(PROC)
    offset = GaussianVideoDenoiser(PROC, error=ModelError(offset=(0.03, -0.02, 0.015)))
    clips = gaussian_video(PROC, 1 + F, generator=torch.Generator().manual_seed(3), batch=128)
    one_step = calibrate_regression(
        offset.for_scheduler(SCHED, STEPS), SCHED, clips[:, :, 1:], num_steps=STEPS, context=clips[:, :, :1],
        generator=torch.Generator().manual_seed(1),
    ).to_corrector()  # fmt: skip
    tune = list(range(1000, 1008))
    reference = torch.cat(
        list(gaussian_video(PROC, 16 * F, generator=torch.Generator().manual_seed(12), batch=8).split(F, dim=2))
    )
    rollout = calibrate_rollout(
        exact.for_scheduler(SCHED, STEPS), SCHED, sampler_config(8), seeds=tune,
        context=gaussian_video(PROC, 1, generator=torch.Generator().manual_seed(11), batch=len(tune)),
        reference=reference, options=RolloutCalibrationConfig(),
    )  # fmt: skip
    rows = {
        "real": real[:, :, 1:],
        "exact": roll(exact, None, start),
        "offset, uncorrected": roll(offset, None, start),
        "offset, calibrated": roll(offset, one_step, start),
        "exact + rollout": roll(exact, rollout.to_dcw(), start),
    }
    mu, sd = rows["real"].mean((0, 2, 3, 4)), rows["real"].std((0, 2, 3, 4))
    low_real, high_real = fft_power(rows["real"][:, :, -64:])
    out = {}
    for name, v in rows.items():
        late = v[:, :, -64:]
        low, high = fft_power(late)
        out[name] = {
            "colour_offset_std": round(float(((late.mean((0, 2, 3, 4)) - mu) / sd).pow(2).mean().sqrt()), 3),
            "low_power_vs_real": round(low / low_real, 3),
            "high_power_vs_real": round(high / high_real, 3),
        }
    print(json.dumps(out | {"rollout coefficients": rollout.rollout["coefficients"]}, indent=1))
    shown = {k: ((v[0] - mu[:, None, None, None]) / (3 * sd[:, None, None, None])).clamp(-1, 1) for k, v in rows.items()}
    save_strip(shown, "docs/testbed_strip.png", frames=[0, 16, 64, 128, 255], scale=6)


if __name__ == "__main__":
    main()
