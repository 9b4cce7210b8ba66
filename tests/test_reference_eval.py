"""The reference model's evaluation: rollouts of the right shape, teacher forcing uses the real frames,
the per-window tables and summaries on known inputs."""

import math

import pytest
import torch
from vidfix.pipelines.reference.data import TREND, SpriteVideoConfig, reference_videos, sample_params
from vidfix.pipelines.reference.evaluate import (
    COLOUR_STATS,
    Measured,
    RealPool,
    frame_statistics,
    frames_to_half,
    hue_series,
    rollout,
    save_strip,
    trend_kept,
    window_table,
)
from vidfix.pipelines.reference.model import ReferenceVideoModel

SMALL = SpriteVideoConfig(height=16, width=16)


def _model(**kw: object) -> ReferenceVideoModel:
    """A tiny model whose every weight is random (the zero-initialised output layers too, so it reads its
    context)."""
    model = ReferenceVideoModel.tiny(**kw).reset_parameters(torch.Generator().manual_seed(0)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1 and float(p.abs().max()) == 0.0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_frame_statistics_shapes_and_flat_video() -> None:
    stats = frame_statistics(reference_videos([0, 1], 3, config=SMALL))
    assert set(stats) == set(COLOUR_STATS) and all(v.shape == (2, 3) for v in stats.values())
    flat = frame_statistics(torch.zeros(1, 3, 2, 16, 16))
    assert float(flat["contrast"].abs().max()) < 1e-4 and float(flat["sharpness"].abs().max()) < 1e-4
    assert float(flat["std_g"].abs().max()) < 1e-6


@pytest.mark.parametrize("noise", [0.0, 100.0])
def test_rollouts(noise: float) -> None:
    model = _model(context_noise_input=True)
    real = reference_videos([0, 1], 2 + 8, config=SMALL)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    free = rollout(model, real, 8, mode="free", generators=gens, steps=2, context_noise=noise)
    assert free.shape == (2, 3, 8, 16, 16) and torch.isfinite(free).all()
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    teacher = rollout(model, real, 8, mode="teacher", generators=gens, steps=2, context_noise=noise)
    assert torch.equal(teacher[:, :, :4], free[:, :, :4])  # the first chunk sees the same real context
    assert not torch.equal(teacher[:, :, 4:], free[:, :, 4:])
    with pytest.raises(ValueError, match="mode"):
        rollout(model, real, 8, mode="other", generators=gens)  # type: ignore[arg-type]


def test_context_noise_reaches_the_model_and_changes_the_rollout() -> None:
    model = _model(context_noise_input=True)
    seen: list[object] = []
    hook = model.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw.get("context_sigma")), with_kwargs=True
    )
    real = reference_videos([0], 2 + 8, config=SMALL)
    a = rollout(
        model, real, 8, mode="free", generators=[torch.Generator().manual_seed(0)], steps=2, context_noise=200
    )
    hook.remove()
    assert seen and all(s == pytest.approx(0.2) for s in seen)
    b = rollout(
        model, real, 8, mode="free", generators=[torch.Generator().manual_seed(0)], steps=2, context_noise=0
    )
    assert not torch.equal(a, b)


def _measured(obj: torch.Tensor, clips: torch.Tensor) -> Measured:
    B, F = obj.shape
    stats = {k: torch.zeros(B, F) for k in COLOUR_STATS}
    stats["std_r"] = torch.arange(F).float().expand(B, F) / F  # a steady std ramp on one channel
    return Measured(object=obj, motion=torch.full((B, F - 4), 0.5), clips=clips, clip_frames=8, clip_stride=4,
                    stats=stats, hue=torch.zeros(B, F), flicker=torch.zeros(B, F - 1))  # fmt: skip


def test_window_table_on_known_measures() -> None:
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(3, 15, 4, generator=g)  # 64 frames: clips at 0, 4, ..., 56
    m = _measured(torch.linspace(1, 0, 64).expand(3, 64), clips)
    pool = RealPool(
        measured=_measured(torch.ones(20, 64), torch.randn(20, 15, 4, generator=g)), seeds=tuple(range(20))
    )
    t = window_table(m, pool, window=32)
    assert t["object"] == pytest.approx(
        [float(torch.linspace(1, 0, 64)[:32].mean()), float(torch.linspace(1, 0, 64)[32:].mean())]
    )
    assert t["motion"] == pytest.approx([0.5, 0.5])
    assert t["std_drift"][0] == 0.0 and t["std_drift"][1] == pytest.approx(0.5 / math.sqrt(3), rel=1e-5)
    shifted = _measured(m.object, clips + 5.0)
    assert window_table(shifted, pool, window=32)["fvd"][0] > t["fvd"][0] + 50  # far from the pool: large FD


def test_frames_to_half() -> None:
    obj = torch.ones(2, 100)
    obj[0, 60:] = 0.2  # falls at frame 60
    # The window [s, s + 10) averages (60 - s + 0.2 (s - 50)) / 10, below 0.5 from s = 57 on.
    assert frames_to_half(obj, torch.tensor([1.0, 1.0]), window=10) == [57, None]
    assert frames_to_half(obj, 2.5, window=10) == [0, 0]  # half of 2.5 is above every score


def test_trend_is_recovered_from_real_video() -> None:
    """The trend measure reads the background hue's turn off real frames of the turning process."""
    seeds = [3, 4, 5, 6]
    data = TREND
    video = reference_videos(seeds, 48, start=20, config=data)
    from vidfix.pipelines.reference.data import render_truth

    _, truth = render_truth(seeds, 48, start=20, config=data)
    mask = truth.alpha.sum(1)  # the exact sprite mask (B, F, H, W)
    hue = hue_series(video, mask)
    kept = trend_kept(hue, seeds, data)
    assert all(abs(k - 1) < 0.1 for k in kept), kept
    still = trend_kept(hue_series(reference_videos(seeds, 48, config=TREND.__class__()), mask), seeds, data)
    assert all(abs(k) < 0.1 for k in still), still
    assert sample_params(seeds, data).hue_speed.abs().min() > 0


def test_save_strip(tmp_path) -> None:
    v = reference_videos([0], 16, config=SMALL)[0]
    path = save_strip({"real": v, "other": -v}, tmp_path / "strip.png", frames=[0, 7, 15])
    from PIL import Image

    img = Image.open(path)
    assert img.size[0] > 3 * 16 * 3 and img.size[1] > 2 * 16 * 3
