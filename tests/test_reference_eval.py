"""The reference model's evaluation: rollouts of the right shape, teacher forcing uses the real frames."""

import pytest
import torch
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference.evaluate import (
    STATISTICS,
    evaluate,
    format_report,
    frame_statistics,
    rollout,
    save_strip,
)
from vidfix.pipelines.reference.model import ReferenceVideoModel


def _model() -> ReferenceVideoModel:
    return ReferenceVideoModel.tiny().reset_parameters(torch.Generator().manual_seed(0)).eval()


def test_frame_statistics_shapes_and_flat_video() -> None:
    stats = frame_statistics(reference_videos([0, 1], 3, config=SpriteVideoConfig(height=16, width=16)))
    assert set(stats) == set(STATISTICS) and all(v.shape == (2, 3) for v in stats.values())
    flat = frame_statistics(torch.zeros(1, 3, 2, 16, 16))
    assert float(flat["contrast"].abs().max()) < 1e-4 and float(flat["sharpness"].abs().max()) < 1e-4


def test_rollouts_and_report(tmp_path) -> None:
    model = _model()
    real = reference_videos([0, 1], 2 + 8, config=SpriteVideoConfig(height=16, width=16))
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    free = rollout(model, real, 8, mode="free", generators=gens, steps=2)
    assert free.shape == (2, 3, 8, 16, 16) and torch.isfinite(free).all()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    teacher = rollout(model, real, 8, mode="teacher", generators=gens, steps=2)
    assert torch.equal(teacher[:, :, :4], free[:, :, :4])  # the first chunk sees the same real context
    with pytest.raises(ValueError, match="mode"):
        rollout(model, real, 8, mode="other", generators=gens)  # type: ignore[arg-type]

    report = evaluate(model, num_videos=1, num_frames=8, window=4, steps=2)
    assert report.real["contrast"].shape == (2,) and report.psnr_free.shape == (2,)
    assert "wavelet_l1" in format_report(report)
    path = save_strip({k: v[0] for k, v in report.videos.items()}, tmp_path / "strip.png", every=2)
    assert path.stat().st_size > 0
