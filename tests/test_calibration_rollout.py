"""Rollout calibration: the fit on synthetic responses (known answer, noise, refusal) and end to end on the
Gaussian testbed (sign of an injected drift per band group; refusal where there is no drift)."""

from __future__ import annotations

import json

import pytest
import torch
from vidfix.pipelines.calibrate_rollout import (
    RolloutCalibrationConfig,
    calibrate_rollout,
    fit_rollout_own_band,
    rollout_features,
)
from vidfix.pipelines.diffusers_run import make_corrector
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_scheduler,
    gaussian_video,
)
from vidfix.pipelines.sampler import SamplerConfig

from vidfix import DCW
from vidfix.calibration import CalibrationResult, chunk_features, fit_rollout

GROUPS3 = ("low", "spatial", "temporal")


def _synthetic(c_true, *, S=6, K=5, Fe=4, noise=0.01, seed=0):
    """Deviations that a coefficient vector ``c_true`` would cancel: e(c) = J (c - c_true) + seed noise."""
    g = torch.Generator().manual_seed(seed)
    G = len(c_true)
    J = torch.randn(G, K, Fe, generator=g, dtype=torch.float64)
    shared = noise * torch.randn(
        S, K, Fe, generator=g, dtype=torch.float64
    )  # per-seed noise, common to probes
    c = torch.tensor(c_true, dtype=torch.float64)

    def dev(coef):
        return torch.einsum("g,gkf->kf", coef - c, J)[None] + shared

    delta = 0.02
    eye = torch.eye(G, dtype=torch.float64)
    plus = torch.stack([dev(delta * eye[j]) for j in range(G)])
    minus = torch.stack([dev(-delta * eye[j]) for j in range(G)])
    return dev(torch.zeros(G, dtype=torch.float64)), plus, minus, delta


def test_fit_recovers_known_coefficients():
    base, plus, minus, delta = _synthetic([0.05, -0.03, 0.0])
    fit = fit_rollout(base, plus, minus, delta=delta, groups=GROUPS3, scale=torch.ones(4))
    assert fit.coefficients["low"] == pytest.approx(0.05, abs=5e-3)
    assert fit.coefficients["spatial"] == pytest.approx(-0.03, abs=5e-3)
    assert fit.coefficients["temporal"] == 0.0 and "noise" in fit.refused["temporal"]
    assert fit.drift[1] < fit.drift[0] / 10


def test_fit_refuses_pure_noise_and_bounds_coefficients():
    g = torch.Generator().manual_seed(1)
    base = 0.1 * torch.randn(6, 5, 4, generator=g, dtype=torch.float64)  # no drift, just seed scatter
    resp = torch.randn(3, 1, 5, 4, generator=g, dtype=torch.float64)
    plus, minus = base[None] + 0.02 * resp, base[None] - 0.02 * resp
    fit = fit_rollout(base, plus, minus, delta=0.02, groups=GROUPS3)
    assert all(v == 0.0 for v in fit.coefficients.values())
    assert all(fit.refused[gr] for gr in GROUPS3)
    far, p2, m2, delta = _synthetic([0.9, 0.0, 0.0])
    assert (
        fit_rollout(far, p2, m2, delta=delta, groups=GROUPS3, max_coefficient=0.2).coefficients["low"] == 0.2
    )
    with pytest.raises(ValueError, match="at least 3 seeds"):
        fit_rollout(base[:2], plus[:, :2], minus[:, :2], delta=0.02, groups=GROUPS3)


def test_group_that_would_worsen_its_own_band_is_refused_and_the_others_refit():
    """The joint fit can pick a group's coefficient for its effect on other features (here the low group
    cancels a colour drift) while it pushes the group's own band further from its target. That group is
    refused; the others are refit without it; a group that helps its own band is kept."""
    S, K = 6, 5
    growth = torch.arange(1, K + 1, dtype=torch.float64)[:, None]  # drift grows over chunks
    # Features: log energy of low, spatial, temporal, then one colour mean. Response per unit coefficient:
    J = (
        torch.tensor(
            [[-0.5, 0.0, 0.0, -3.0], [0.0, 2.0, 0.0, 0.1], [0.0, 0.0, 2.0, 0.0]], dtype=torch.float64
        )[:, None]
        * growth
    )  # (G, K, Fe)
    e0 = torch.tensor([-0.05, 0.04, -0.06, 0.3], dtype=torch.float64) * growth  # (K, Fe)
    noise = 0.01 * torch.randn(S, K, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    delta = 0.02
    base = e0[None] + noise
    plus = torch.stack([base + delta * J[j] for j in range(3)])
    minus = torch.stack([base - delta * J[j] for j in range(3)])
    own = {"low": 0, "spatial": 1, "temporal": 2}
    kw = {"delta": delta, "groups": GROUPS3, "scale": torch.ones(4)}

    joint = fit_rollout(base, plus, minus, **kw)
    c_low = joint.coefficients["low"]
    assert c_low > 0 and not joint.refused["low"]  # significant, kept by the joint fit ...
    e_low = e0[:, 0] + sum(joint.coefficients[g] * J[j, :, 0] for j, g in enumerate(GROUPS3))
    assert e_low.pow(2).mean() > (e_low - c_low * J[0, :, 0]).pow(2).mean()  # ... and it worsens the low band

    fit = fit_rollout_own_band(base, plus, minus, own=own, **kw)
    assert fit.coefficients["low"] == 0.0 and "own band" in fit.refused["low"], fit.refused
    assert not fit.refused["spatial"] and not fit.refused["temporal"], fit.refused
    refit = fit_rollout(base, plus[1:], minus[1:], delta=delta, groups=GROUPS3[1:], scale=torch.ones(4))
    for g in ("spatial", "temporal"):
        assert fit.coefficients[g] == pytest.approx(refit.coefficients[g], abs=1e-12)
    assert fit.coefficients["spatial"] != pytest.approx(joint.coefficients["spatial"], abs=1e-3)  # refit
    assert fit.estimate["low"] == joint.estimate["low"] and fit.drift == refit.drift
    assert fit.response == joint.response
    # Without the conflict (no colour drift for the low group to chase) nothing changes.
    calm = base.clone()
    calm[..., 3] = noise[..., 3]
    cp = torch.stack([calm + delta * J[j] for j in range(3)])
    cm = torch.stack([calm - delta * J[j] for j in range(3)])
    assert fit_rollout_own_band(calm, cp, cm, own=own, **kw) == fit_rollout(calm, cp, cm, **kw)
    with pytest.raises(ValueError, match="no band feature"):
        fit_rollout_own_band(base, plus, minus, own={"low": 0}, **kw)


def test_chunk_features_are_band_log_energies_and_colour():
    x = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.5 + 1.0
    f = chunk_features(x)
    assert f.shape == (2, 6)
    assert torch.allclose(f[:, 3:], x.double().mean(dim=(2, 3, 4)))
    doubled = chunk_features(2 * x)  # energies scale by 4: log + log 4
    assert torch.allclose(
        doubled[:, :3] - f[:, :3], torch.full((2, 3), float(torch.tensor(4.0).log()), dtype=torch.float64)
    )


# -- end to end on the Gaussian testbed ----------------------------------------------------------------------

CFG = GaussianVideoConfig()
SEEDS = list(range(6))


def _rollout_calibration(cfg, error, *, target="reference", kind="unipc", steps=16, chunks=6, scorers=None):
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(cfg, error=error).for_scheduler(sched, steps)
    start = torch.cat(
        [gaussian_video(cfg, 1, generator=torch.Generator().manual_seed(s + 10**6)) for s in SEEDS]
    )
    real = gaussian_video(cfg, 4, generator=torch.Generator().manual_seed(3), batch=32)
    sconf = SamplerConfig(num_frames=4 * chunks, chunk_frames=4, context_frames=1, channels=cfg.channels,
                          height=cfg.height, width=cfg.width, num_steps=steps)  # fmt: skip
    return calibrate_rollout(
        model, sched, sconf, seeds=SEEDS, context=start, reference=real if target == "reference" else None,
        options=RolloutCalibrationConfig(target=target), scorers=scorers,
    )  # fmt: skip


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_recovers_the_sign_of_an_injected_drift_per_group(sign):
    """A velocity gain 1 + b in a band group (the SNR-t bias in DCW's form) is undone by a DCW coefficient of
    b's sign; with opposite signs in the spatial and temporal groups both are recovered, and flipping the
    injection flips both."""
    b = 0.2 * sign
    res = _rollout_calibration(CFG, ModelError(velocity={"spatial": b, "temporal": -b}))
    coef, refused = res.rollout["coefficients"], res.rollout["refused"]
    assert not refused["spatial"] and not refused["temporal"], refused
    assert coef["spatial"] * b > 0 and coef["temporal"] * b < 0, coef
    fit = res.rollout["fit"]
    for gr in ("spatial", "temporal"):  # well outside the uncertainty
        assert abs(fit["estimate"][gr]) > 4 * fit["stderr"][gr]
    assert res.rollout["validation"]["trials"][-1]["drift"] < res.rollout["validation"]["base_drift"]


def test_refuses_when_there_is_no_drift():
    """No temporal correlation: chunks do not feed back, so nothing grows over chunks."""
    white = GaussianVideoConfig(rho_low=0.0, rho_high=0.0)
    res = _rollout_calibration(white, ModelError(), target="first", kind="euler", steps=8)
    assert all(v == 0.0 for v in res.rollout["coefficients"].values())
    assert all(res.rollout["refused"].values()), res.rollout["refused"]
    assert all(v == 0.0 for lam in res.lam.values() for v in lam)


def test_file_is_a_calibration_file_and_scorers_count(tmp_path):
    """Same file as the one-step calibration (``vidfix generate --calibration`` reads its DCW); an extra
    per-chunk scorer becomes a drift feature."""
    calls = []

    def brightness(chunk):
        calls.append(chunk.shape[0])
        return chunk.mean(dim=(1, 2, 3, 4))

    res = _rollout_calibration(CFG, ModelError(velocity={"spatial": 0.2}), kind="euler", steps=6, chunks=3,
                               scorers={"brightness": brightness})  # fmt: skip
    assert "brightness" in res.rollout["features"] and calls
    path = res.save(tmp_path / "rollout.json")
    data = json.loads(path.read_text())
    assert data["type"] == "vidfix-calibration" and data["method"] == "rollout"
    back = CalibrationResult.load(path)
    assert back.rollout["coefficients"] == res.rollout["coefficients"]
    dcw = make_corrector("dcw", calibration=path)
    assert isinstance(dcw, DCW)
    s = res.s[2]
    assert dcw.lambdas(s)["spatial"] == pytest.approx(res.rollout["coefficients"]["spatial"], abs=1e-9)


def test_rollout_features_and_bad_input():
    x = torch.randn(3, 3, 4, 8, 8)
    f = rollout_features(x, dims="3d", scorers={"one": lambda c: torch.ones(c.shape[0])})
    assert f.shape == (3, 7) and torch.all(f[:, -1] == 1)
    with pytest.raises(ValueError, match="returned 1 values for 3 videos"):
        rollout_features(x, dims="3d", scorers={"bad": lambda c: torch.ones(1)})
    with pytest.raises(ValueError, match="delta"):
        RolloutCalibrationConfig(delta=0.5)
    with pytest.raises(ValueError, match="band group"):
        RolloutCalibrationConfig(groups=("temporal",), dims="2d")
    sched = gaussian_scheduler("euler")
    sconf = SamplerConfig(
        num_frames=8, chunk_frames=4, context_frames=1, channels=3, height=16, width=16, num_steps=4
    )
    with pytest.raises(ValueError, match="at least 3 seeds"):
        calibrate_rollout(GaussianVideoDenoiser(CFG), sched, sconf, seeds=[0, 1])


def test_cli_rollout_option(tmp_path, capsys):
    """``vidfix calibrate --rollout N`` writes the same file; bad values are one clear line."""
    from _tiny_models import TinyChunkDenoiser
    from safetensors.torch import save_file
    from vidfix.scripts import calibrate as cal

    folder = tmp_path / "model"
    TinyChunkDenoiser().save_pretrained(folder)
    data = tmp_path / "clips.safetensors"
    save_file(
        {"video": torch.rand(2, 3, 12, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1}, str(data)
    )
    tiny = [
        "--model",
        str(folder),
        "--model-class",
        "_tiny_models:TinyChunkDenoiser",
        "--no-progress",
        "--data",
        str(data),
    ]
    out = tmp_path / "rollout.json"
    assert cal.main([*tiny, "--clips", "3", "--steps", "3", "--rollout", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "coefficient" in printed and "wrote" in printed
    result = CalibrationResult.load(out)
    assert result.method == "rollout" and result.samples == 3 and result.rollout["chunks"] == 2
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(make_corrector("dcw", calibration=out), DCW)
    assert cal.main([*tiny, "--rollout", "-1", "--out", str(out)]) == 2
    assert "argument --rollout: expected an integer >= 0" in capsys.readouterr().err
