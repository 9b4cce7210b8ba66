"""The mission's core claim where nothing can blur it: on the exact Gaussian testbed, a per-band correction
with calibrated coefficients brings a biased model's drift over 64 chunks down to the exact denoiser's
(whose only error is the solver's), for Euler and UniPC at 4 to 16 steps.

Drift is the distance of each band group's variance from the true process's, ``|log(variance / true)|``,
averaged over the last 16 of 64 chunks; "reached" means at most ``MARGIN`` above the exact denoiser's (or
below it). Colour drift is the RMS chunk-mean offset in channel stds. The measured exception, stated and
asserted below rather than hidden: a noise-level misreading (``snr``) is not a per-band error, and its
low-band part is not brought to the exact level (``vidfix bench testbed`` has the numbers).
"""

from __future__ import annotations

import math

import pytest
import torch
from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_rollout,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.sampler import SamplerConfig

from vidfix import Chain
from vidfix.calibration import calibrate_regression

CFG = GaussianVideoConfig()
MARGIN = 0.03  # log variance: the paired-seed noise of the late mean is about 0.01
GAIN = ModelError(gain={"low": 0.03, "spatial": -0.05, "temporal": 0.05})
OFFSET = ModelError(offset=(0.03, -0.02, 0.015))
SNR = ModelError(snr=0.5)
SETTINGS = [("euler", 4), ("euler", 8), ("euler", 16), ("unipc", 4), ("unipc", 8), ("unipc", 16)]


@pytest.fixture(scope="module")
def data():
    clips = gaussian_video(CFG, 5, generator=torch.Generator().manual_seed(7), batch=128)
    real = gaussian_video(CFG, 4, generator=torch.Generator().manual_seed(8), batch=64)
    seeds = list(range(1000, 1006))
    start = torch.cat(
        [gaussian_video(CFG, 1, generator=torch.Generator().manual_seed(s + 10**6)) for s in seeds]
    )
    return {"ctx": clips[:, :, :1], "ref": clips[:, :, 1:], "real": real, "seeds": seeds, "start": start}


def _drift(kind, steps, error, corrector=None):
    """Per band |log variance ratio| over the last 16 of 64 chunks, and the colour drift (4 videos)."""
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(CFG, error=error)
    r = gaussian_rollout(model, sched, num_steps=steps, chunks=64, videos=4, corrector=corrector)
    late = r.ratio[-16:].log().mean(0).abs()
    return late.tolist(), float(r.mean_shift[-16:].pow(2).mean().sqrt())


def _one_step(kind, steps, error, data):
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(CFG, error=error).for_scheduler(sched, steps)
    res = calibrate_regression(model, sched, data["ref"], num_steps=steps, context=data["ctx"],
                               generator=torch.Generator().manual_seed(1))  # fmt: skip
    return res.to_corrector()


def _with_rollout(kind, steps, error, base, data):
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(CFG, error=error).for_scheduler(sched, steps)
    conf = SamplerConfig(
        num_frames=24, chunk_frames=4, context_frames=1, channels=3, height=16, width=16, num_steps=steps
    )
    res = calibrate_rollout(model, sched, conf, seeds=data["seeds"], context=data["start"], reference=data["real"],
                            base=base, options=RolloutCalibrationConfig())  # fmt: skip
    return Chain(base, res.to_dcw())


def _check_one_step(kind, steps, data):
    exact, exact_colour = _drift(kind, steps, ModelError())
    for name, err in (("gain", GAIN), ("offset", OFFSET)):
        plain, plain_colour = _drift(kind, steps, err)
        fixed, fixed_colour = _drift(kind, steps, err, _one_step(kind, steps, err, data))
        # The error matters (the test can fail) ...
        assert max(p - e for p, e in zip(plain, exact)) > 0.1 or plain_colour > exact_colour + 0.3, name
        # ... and the calibrated per-band fix brings every band (and colour) to the exact denoiser's level.
        for g, f, e in zip(("low", "spatial", "temporal"), fixed, exact):
            assert f <= e + MARGIN, f"{kind} {steps} {name} {g}: {f:.3f} vs exact {e:.3f}"
        assert fixed_colour <= exact_colour + 0.05, (
            f"{kind} {steps} {name} colour: {fixed_colour:.3f} vs {exact_colour:.3f}"
        )


def _check_snr(kind, steps, data):
    exact, _ = _drift(kind, steps, ModelError())
    plain, _ = _drift(kind, steps, SNR)
    one = _one_step(kind, steps, SNR, data)
    fixed, _ = _drift(kind, steps, SNR, _with_rollout(kind, steps, SNR, one, data))
    # Detail bands: the regression fix plus the rollout calibration reach (and pass) the exact level.
    for j, g in ((1, "spatial"), (2, "temporal")):
        assert fixed[j] <= exact[j] + MARGIN, (
            f"{kind} {steps} snr {g}: {fixed[j]:.3f} vs exact {exact[j]:.3f}"
        )
    # Low band: the measured limit. Not at the exact level, but no worse than uncorrected plus the margin.
    assert fixed[0] <= plain[0] + MARGIN, (
        f"{kind} {steps} snr low: {fixed[0]:.3f} vs uncorrected {plain[0]:.3f}"
    )
    return fixed[0] - exact[0]


def test_per_band_fix_reaches_the_exact_level_euler_8(data):
    _check_one_step("euler", 8, data)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "steps"), [s for s in SETTINGS if s != ("euler", 8)])
def test_per_band_fix_reaches_the_exact_level(kind, steps, data):
    _check_one_step(kind, steps, data)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "steps"), [("euler", 8), ("unipc", 16)])
def test_snr_misreading_detail_bands_reach_the_exact_level(kind, steps, data):
    gap = _check_snr(kind, steps, data)
    assert math.isfinite(gap)
