"""Drift tracker: zero drift on identical chunks, right sign on injected drift, JSON round trip, bad input."""

from __future__ import annotations

import pytest
import torch

from vidfix import DriftTracker


def _chunk(seed: int, shape=(2, 3, 4, 8, 8)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_identical_chunks_have_zero_drift():
    tracker = DriftTracker()
    for k in range(3):
        tracker(_chunk(0), index=k)
    for stat in ("mean", "std", "energy_low", "energy_spatial", "energy_temporal"):
        assert tracker.curve(stat) == [0.0, 0.0, 0.0]


def test_injected_drift_has_the_right_sign_and_size():
    tracker = DriftTracker()
    base = _chunk(0)
    for k in range(4):
        tracker(base * (1 + 0.1 * k) + 0.2 * k)  # contrast and brightness creep
    mean_drift = tracker.drift("mean")  # (chunks, B, C)
    m0 = tracker.values("mean")[0]  # chunk k's mean is (1 + 0.1k) m0 + 0.2k
    expected = torch.stack([0.1 * k * m0 + 0.2 * k for k in range(4)])
    assert torch.allclose(mean_drift, expected, atol=1e-5)
    std_rel = tracker.drift("std", relative=True)
    assert torch.allclose(
        std_rel[:, 1, 2], torch.tensor([0.0, 0.1, 0.2, 0.3], dtype=torch.float64), atol=1e-5
    )
    c = tracker.curve("std", relative=True)
    assert c == sorted(c) and c[0] == 0.0


def test_blur_lowers_detail_energy_not_low_energy():
    tracker = DriftTracker()
    x = _chunk(1)
    tracker(x)
    blurred = (x + x.roll(1, -1) + x.roll(1, -2) + x.roll(1, -3)) / 4
    tracker(blurred)
    rel = {s: tracker.curve(s, relative=True)[1] for s in ("energy_spatial", "energy_temporal")}
    assert tracker.drift("energy_spatial").mean() < 0 and tracker.drift("energy_temporal").mean() < 0
    assert rel["energy_spatial"] > 0.3


def test_energies_sum_to_mean_square():
    tracker = DriftTracker(level=2)
    stats = tracker(_chunk(2, (1, 2, 8, 8, 8)))
    x = _chunk(2, (1, 2, 8, 8, 8))
    total = sum(
        torch.tensor(e, dtype=torch.float64)
        for e in (stats.energy_low, stats.energy_spatial, stats.energy_temporal)
    )
    assert torch.allclose(total, x.pow(2).flatten(2).mean(-1).double(), rtol=1e-5)


def test_json_round_trip(tmp_path):
    tracker = DriftTracker(dims="2d")
    for k in range(3):
        tracker(_chunk(k))
    back = DriftTracker.from_json(tracker.to_json(tmp_path / "drift.json"))
    assert back.records == tracker.records and back.dims == "2d"
    assert back.curve("mean") == tracker.curve("mean")


def test_bad_input():
    tracker = DriftTracker()
    with pytest.raises(ValueError, match="no chunks yet"):
        tracker.curve("mean")
    tracker(_chunk(0))
    with pytest.raises(ValueError, match=r"has \(B, C\) = \(1, 3\)"):
        tracker(_chunk(0, (1, 3, 4, 8, 8)))
    with pytest.raises(FloatingPointError, match="chunk 1"):
        tracker(_chunk(0) * float("nan"))
    with pytest.raises(ValueError, match="rank 4"):
        tracker(_chunk(0)[:, :, 0])
    with pytest.raises(ValueError, match="allowed: 'mean'"):
        tracker.values("contrast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="allowed: '3d', '2d'"):
        DriftTracker(dims="1d")  # type: ignore[arg-type]
