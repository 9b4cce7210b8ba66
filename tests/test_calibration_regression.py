"""Regression calibration and the band-affine corrector: exact answers on the Gaussian testbed, an oracle
for the DCW direction, JSON round trips and bad input."""

from __future__ import annotations

import json

import pytest
import torch
from vidfix.pipelines.reference.gaussian import (
    GaussianVideoConfig,
    GaussianVideoDenoiser,
    ModelError,
    gaussian_scheduler,
    gaussian_video,
)

from vidfix import DCW, BandAffine, StepInfo
from vidfix.bands import GROUPS, band_filter
from vidfix.calibration import CalibrationResult, calibrate_regression, pooled_coefficient

CFG = GaussianVideoConfig()


@pytest.fixture(scope="module")
def clips():
    video = gaussian_video(CFG, 5, generator=torch.Generator().manual_seed(7), batch=64)
    return video[:, :, :1], video[:, :, 1:]  # context (64, 3, 1, 16, 16), reference (64, 3, 4, 16, 16)


def _calibrate(error, kind, steps, clips, **kw):
    sched = gaussian_scheduler(kind)
    model = GaussianVideoDenoiser(CFG, error=error).for_scheduler(sched, steps)
    ctx, ref = clips
    return calibrate_regression(
        model, sched, ref, num_steps=steps, context=ctx, generator=torch.Generator().manual_seed(1), **kw
    )


def _pooled(res, table, group, c=None):
    """The kept coefficients and their inverse-variance mean (see :func:`pooled_coefficient`: a kept pair at
    high noise can be a third off, so the plain mean is not the estimator)."""
    return pooled_coefficient(res.affine, table, group, channel=c)


def _min_pairs(kind, steps):
    """Kept (step, channel) pairs a band must have on this testbed (64 clips), by the scheduler's noise levels.

    Both probes are the same first-order regression at the same ``s`` (step 0 gives identical numbers), so the
    count only follows the schedule. FlowMatchEuler's last step sits at ``s = 1/1000`` (``x`` is nearly
    ``x0``: every channel of every band is measured, ``|t|`` in the thousands), hence ``steps``. UniPC's flow
    sigmas stop at ``s = 1/steps`` (``linspace(1, 1/1000, steps + 1)[:-1]``, then 0): at 4 steps its lowest
    level is 0.25, where the low-energy temporal band's gain is at ``|t|`` 3 to 8 and at 0.5 about 3, so only
    one step's worth of channels is guaranteed there (it measured 3 at 4 steps, 4 at 8)."""
    return steps if kind == "euler" else CFG.channels


@pytest.mark.parametrize("kind", ["euler", "unipc"])
def test_exact_model_gets_no_correction(kind, clips):
    res = _calibrate(ModelError(), kind, 8, clips)
    assert res.method == "regression"
    coefs = [v for t in ("gain", "shift") for g in res.affine[t] for row in res.affine[t][g] for v in row]
    coefs += [v for row in res.affine["offset"] for v in row]
    # The orthogonality principle: nothing to fix. Rare 3-sigma false positives stay tiny.
    assert sum(v != 0 for v in coefs) <= 3 and max(abs(v) for v in coefs) < 0.02


@pytest.mark.parametrize("kind", ["euler", "unipc"])
@pytest.mark.parametrize("steps", [4, 8, 16])
def test_gain_error_recovered_per_band(kind, steps, clips):
    """A per-band gain 1 + e on the data prediction: the fix is h = -e / (1 + e), sign and size (20%)."""
    gain = {"low": 0.03, "spatial": -0.05, "temporal": 0.05}
    res = _calibrate(ModelError(gain=gain), kind, steps, clips)
    need = _min_pairs(kind, steps)
    for g, e in gain.items():
        used, pooled = _pooled(res, "gain", g)
        true = -e / (1 + e)
        assert len(used) >= need, f"{g}: only {len(used)} of {3 * steps} (step, channel) pairs measurable"
        assert all(v * true > 0 for v in used), f"{g}: sign"
        assert abs(pooled / true - 1) < 0.2, f"{g}: {pooled:+.4f} vs {true:+.4f} ({used})"


@pytest.mark.parametrize("kind", ["euler", "unipc"])
def test_offset_recovered_per_channel(kind, clips):
    offset = (0.03, -0.02, 0.015)
    res = _calibrate(ModelError(offset=offset), kind, 8, clips)
    for c, d in enumerate(offset):
        used, pooled = _pooled(res, "offset", None, c)
        assert len(used) >= 3 and all(v * d < 0 for v in used)
        assert abs(pooled / -d - 1) < 0.2, (c, pooled, used)


@pytest.mark.parametrize("kind", ["euler", "unipc"])
def test_snr_misreading_matches_the_oracle(kind, clips):
    """No closed form for the per-band fix of a noise-level misreading: the reference is the same regression
    on the exact posterior mean (the population answer, free of the data's own noise)."""
    steps = 8
    sched = gaussian_scheduler(kind)
    exact = GaussianVideoDenoiser(CFG)
    ctx, _ = clips
    res = _calibrate(ModelError(snr=0.5), kind, steps, clips)
    orc = _calibrate(
        ModelError(snr=0.5),
        kind,
        steps,
        clips,
        target=lambda x, info: exact.exact_x0(x, float(info.s), context=ctx),
    )
    del sched
    for g in ("spatial", "temporal"):  # the misreading lives in the detail bands
        pairs = [
            (a, b)
            for ra, rb in zip(res.affine["shift"][g], orc.affine["shift"][g])
            for a, b in zip(ra, rb)
            if a != 0.0 and b != 0.0 and abs(b) < 1.0  # the last steps' huge k act on a tiny x_next - x0
        ]
        assert len(pairs) >= 3, g
        cal, ora = sum(a for a, _ in pairs), sum(b for _, b in pairs)
        assert ora < 0 and all(a < 0 for a, _ in pairs), g  # believing the sample noisier -> negative k
        assert abs(cal / ora - 1) < 0.2, (g, cal, ora)


def test_band_affine_equals_dcw_in_x0_form():
    """k on every band is Eq. 17 with lam = k c0 (the DCW x0 form), on any step."""
    g = torch.Generator().manual_seed(0)
    x0, x = torch.randn(2, 3, 4, 8, 8, generator=g), torch.randn(2, 3, 4, 8, 8, generator=g)
    step = StepInfo(0.4, 0.6, 0.55, 0.45, 0.6, "flow")
    k = {"low": 0.1, "spatial": -0.05, "temporal": 0.02}
    aff = BandAffine(knots=(0.0, 1.0), shift={gr: [[v], [v]] for gr, v in k.items()})
    dcw = DCW(
        **{gr: v * float(step.c0) for gr, v in k.items()}, **{f"{gr}_schedule": "constant" for gr in GROUPS}
    )
    assert torch.allclose(aff(x0, x, step), dcw(x0, x, step), atol=1e-5)


def test_band_affine_gain_and_offset_per_channel():
    g = torch.Generator().manual_seed(1)
    x0, x = torch.randn(1, 2, 4, 8, 8, generator=g), torch.randn(1, 2, 4, 8, 8, generator=g)
    step = StepInfo(0.5, 0.5, 0.6, 0.4, 0.5, "flow")
    aff = BandAffine(
        knots=(0.2, 0.8), gain={"spatial": [[0.1, -0.2], [0.3, 0.0]]}, offset=[[0.5, 0.0], [0.5, 0.0]]
    )
    got = aff(x0, x, step)
    h = torch.tensor([0.2, -0.1]).view(1, 2, 1, 1, 1)  # halfway between the knots
    want = x0 + band_filter(x0, {"spatial": 1.0}) * h + torch.tensor([0.5, 0.0]).view(1, 2, 1, 1, 1)
    assert torch.allclose(got, want, atol=1e-6)
    zero = BandAffine(knots=(0.5,), gain={"low": [[0.0]]})
    assert zero(x0, x, step) is x0
    assert BandAffine.from_dict(json.loads(json.dumps(aff.to_dict()))) == aff
    with pytest.raises(ValueError, match="one row per knot"):
        BandAffine(knots=(0.1, 0.5), gain={"low": [[0.1]]})
    with pytest.raises(ValueError, match="strictly increasing"):
        BandAffine(knots=(0.5, 0.1))
    with pytest.raises(ValueError, match="channels"):
        BandAffine(knots=(0.5,), gain={"low": [[0.1, 0.2, 0.3]]})(x0, x, step)


def test_result_file_round_trip_and_generate_reads_it(tmp_path, clips):
    from vidfix.pipelines.diffusers_run import make_corrector

    res = _calibrate(ModelError(gain={"spatial": -0.05}), "euler", 6, clips)
    path = res.save(tmp_path / "cal.json")
    data = json.loads(path.read_text())
    assert data["method"] == "regression" and data["corrector"]["type"] == "band_affine"
    back = CalibrationResult.load(path)
    assert back.affine == res.affine and back.to_corrector() == res.to_corrector()
    assert isinstance(make_corrector("dcw", calibration=path), DCW)  # the DCW part, for `vidfix generate`
    # Files written before these fields existed still load.
    old = {k: v for k, v in data.items() if k not in ("method", "affine", "rollout", "corrector")}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert CalibrationResult.load(tmp_path / "old.json").method == "one_step"


def test_regression_bad_input(clips):
    ctx, ref = clips
    model = GaussianVideoDenoiser(CFG)
    sched = gaussian_scheduler("euler")
    with pytest.raises(ValueError, match="at least 2"):
        calibrate_regression(model, sched, ref[:1], num_steps=4, context=ctx[:1])
    with pytest.raises(ValueError, match="num_steps"):
        calibrate_regression(model, sched, ref, num_steps=1, context=ctx)


def test_pooled_coefficient_weights_by_the_calibrations_own_errors():
    # Two steps x two channels; column 0 (gain) and 2 (offset) of the stderr table are read.
    aff = {
        "gain": {"spatial": [[0.1, 0.0], [0.4, -0.2]]},
        "offset": [[0.0, 0.3], [0.5, 0.0]],
        "stderr": {
            "spatial": [[[0.01, 9, 9], [9, 9, 9]], [[0.03, 9, 9], [0.02, 9, 9]]],
            "low": [[[9, 9, 9], [9, 9, 0.1]], [[9, 9, 0.2], [9, 9, 9]]],
        },
    }
    kept, pooled = pooled_coefficient(aff, "gain", "spatial")
    assert kept == [0.1, 0.4, -0.2]
    w = [1e4, 1e4 / 9, 2500.0]
    assert pooled == pytest.approx((0.1 * w[0] + 0.4 * w[1] - 0.2 * w[2]) / sum(w))
    assert pooled_coefficient(aff, "gain", "spatial", channel=1) == ([-0.2], pytest.approx(-0.2))
    kept, pooled = pooled_coefficient(aff, "offset")  # stderr of the low band, column 2
    assert kept == [0.3, 0.5] and pooled == pytest.approx((0.3 * 100 + 0.5 * 25) / 125)
    empty = {"gain": {"low": [[0.0]]}, "stderr": {"low": [[[1, 1, 1]]]}}
    assert pooled_coefficient(empty, "gain", "low") == ([], 0.0)
    with pytest.raises(ValueError, match="needs a band group"):
        pooled_coefficient(aff, "gain")
    with pytest.raises(ValueError, match="no 'stderr'"):
        pooled_coefficient({"gain": {"low": [[0.1]]}}, "gain", "low")


@pytest.mark.parametrize("name", ["gain", "offset"])
def test_testbed_bench_reports_the_tested_estimator(name, clips):
    """``vidfix bench testbed``'s recovery rows pool as the tests above do (inverse-variance, not plain)."""
    from vidfix.scripts.bench_testbed import ERRORS, _recovery

    err = ERRORS[name]
    res = _calibrate(err, "unipc", 4, clips)
    rows = _recovery(name, err, res, None)
    want = (
        [pooled_coefficient(res.affine, "gain", g) for g in err.gain]
        if name == "gain"
        else [pooled_coefficient(res.affine, "offset", channel=c) for c in range(len(err.offset))]
    )
    assert len(rows) == len(want) > 0
    for row, (kept, pooled) in zip(rows, want):
        assert row["calibrated"] == pytest.approx(pooled) and row["steps"] == len(kept) > 0
        assert abs(row["calibrated"] / row["true"] - 1) < 0.2, row
