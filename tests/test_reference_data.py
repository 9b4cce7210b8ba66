"""The sprite process: deterministic per seed, batch-independent, any range, right layout, stationary."""

from dataclasses import replace

import pytest
import torch
from vidfix.pipelines.reference.data import (
    SHAPES,
    TREND,
    SpriteVideoConfig,
    reference_video,
    reference_videos,
    render_truth,
    sample_params,
)
from vidfix.pipelines.reference.evaluate import frame_statistics

SMALL = SpriteVideoConfig(height=32, width=32)


def test_layout_dtype_range() -> None:
    v = reference_videos([0, 1], 5, config=SMALL)
    assert v.shape == (2, 3, 5, 32, 32)
    assert v.dtype == torch.float32
    assert float(v.min()) >= -1.0 and float(v.max()) <= 1.0
    assert reference_video(0, 5, config=SMALL).shape == (3, 5, 32, 32)
    assert reference_videos([0], 3).shape == (1, 3, 3, 64, 64)  # default size


def test_deterministic_and_batch_independent() -> None:
    a = reference_video(11, 6, config=SMALL)
    b = reference_videos([3, 11, 4], 6, config=SMALL)[1]
    assert torch.equal(a, reference_video(11, 6, config=SMALL))
    assert torch.equal(a, b)
    assert not torch.equal(a, reference_video(12, 6, config=SMALL))


def test_any_range_is_a_window_of_one_video() -> None:
    long = reference_video(5, 20, config=SMALL)
    assert torch.equal(long[:, 7:15], reference_video(5, 8, start=7, config=SMALL))
    far = reference_videos([5, 6], 4, start=[100_000, 3], config=SMALL)
    assert torch.isfinite(far).all() and far.shape == (2, 3, 4, 32, 32)


def test_frames_move_and_differ() -> None:
    v = reference_video(2, 10, config=SMALL)
    assert float((v[:, 1:] - v[:, :-1]).abs().mean()) > 1e-3  # something moves
    assert float((v[:, 9] - v[:, 0]).abs().mean()) > float((v[:, 1] - v[:, 0]).abs().mean())  # coherently


def test_all_shapes_used_and_params_valid() -> None:
    p = sample_params(list(range(200)))
    assert set(p.shape[p.present > 0].tolist()) == set(range(len(SHAPES)))
    n = p.present.sum(1)
    assert int(n.min()) >= SpriteVideoConfig().min_sprites and int(n.max()) <= SpriteVideoConfig().max_sprites


def test_bad_config_and_args() -> None:
    with pytest.raises(ValueError, match="shapes"):
        SpriteVideoConfig(shapes=("hexagon",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_sprites"):
        SpriteVideoConfig(min_sprites=3, max_sprites=2)
    with pytest.raises(ValueError, match="num_frames"):
        reference_videos([0], 0)
    with pytest.raises(ValueError, match="start frames"):
        reference_videos([0, 1], 2, start=[0])


def test_stationary() -> None:
    """Early and late frames have the same statistics over many videos (no trend to mistake for drift)."""
    seeds = list(range(192))
    early = frame_statistics(reference_videos(seeds, 4, start=0, config=SMALL))
    late = frame_statistics(reference_videos(seeds, 4, start=5000, config=SMALL))
    for name in early:
        e, l_ = early[name].mean(1), late[name].mean(1)  # (B,) per video
        spread = torch.cat([e, l_]).std()
        # Difference of the two means within ~4 standard errors of the across-video spread.
        assert abs(float(e.mean() - l_.mean())) < 4 * float(spread) / len(seeds) ** 0.5, name


def test_truth_matches_the_rendered_frames() -> None:
    """The ground truth agrees with the pixels: masks cover the sprites, centres and velocities are exact."""
    video, truth = render_truth([0, 1, 2, 3], 6, start=[0, 40, 900, 7], config=SMALL)
    assert torch.equal(video, reference_videos([0, 1, 2, 3], 6, start=[0, 40, 900, 7], config=SMALL))
    B, S, F, H, W = truth.alpha.shape
    assert (B, F, H, W) == (4, 6, 32, 32) and S == SMALL.max_sprites
    # Absent sprites cover nothing; visible coverage never exceeds the whole area.
    assert float(truth.alpha[~truth.present].abs().sum()) == 0.0
    assert bool((truth.alpha.flatten(3).sum(-1) <= truth.area + 1e-3).all())
    # Where no sprite covers a pixel, the frame is the background (base colour plus soft waves).
    bare = truth.alpha.sum(1) < 1e-6  # (B, F, H, W)
    rgb = (video + 1) / 2  # (B, 3, F, H, W)
    bg = truth.background.permute(0, 2, 1)[..., None, None]  # (B, 3, F, 1, 1)
    dev = (rgb - bg).abs().amax(1)  # (B, F, H, W)
    assert float(dev[bare].max()) < 0.25
    # The coverage-weighted centroid of a fully visible sprite is its centre.
    for b in range(B):
        for s in range(S):
            if not bool(truth.present[b, s]):
                continue
            a = truth.alpha[b, s, 0]
            if float(a.sum()) < 0.99 * float(truth.area[b, s, 0]):
                continue  # partly covered
            gy, gx = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
            cx, cy = float((a * gx).sum() / a.sum()), float((a * gy).sum() / a.sum())
            if int(truth.shape[b, s]) in (0, 1, 3, 4):  # symmetric shapes: centroid = centre
                assert abs(cx - float(truth.centre[b, s, 0, 0])) < 0.3
                assert abs(cy - float(truth.centre[b, s, 0, 1])) < 0.3
    # Velocity is the frame-to-frame change of the centre (away from bounces).
    step = truth.centre[:, :, 1:] - truth.centre[:, :, :-1]
    mid = (truth.velocity[:, :, 1:] + truth.velocity[:, :, :-1]) / 2
    same = (truth.velocity[:, :, 1:] == truth.velocity[:, :, :-1]).all(-1)  # no bounce between
    assert bool(torch.allclose(step[same], mid[same], atol=1e-4))


def test_trend_variant_turns_the_background_hue_at_its_known_speed() -> None:
    seeds = list(range(16))
    _, still = render_truth(seeds, 3, config=SMALL)
    turning = replace(SMALL, hue_speed=TREND.hue_speed)
    _, truth = render_truth(seeds, 3, start=100, config=turning)
    speed = sample_params(seeds, turning).hue_speed
    assert bool((speed.abs() >= TREND.hue_speed[0]).all()) and bool((speed.abs() <= TREND.hue_speed[1]).all())
    assert 0 < int((speed > 0).sum()) < len(seeds)  # both directions
    assert torch.allclose(truth.hue[:, 2] - truth.hue[:, 0], 2 * speed, atol=1e-9)
    assert torch.equal(still.hue[:, 0], still.hue[:, 2])  # the stationary process does not turn
    # Same seeds, same sprites: only the background differs.
    assert torch.equal(sample_params(seeds, turning).color, sample_params(seeds, SMALL).color)


def test_trend_variant_is_not_stationary() -> None:
    """Its mean colour moves between early and late frames (unlike the stationary process's)."""
    turning = replace(SMALL, hue_speed=TREND.hue_speed)
    seeds = list(range(64))
    early = reference_videos(seeds, 2, start=0, config=turning).mean((2, 3, 4))
    late = reference_videos(seeds, 2, start=60, config=turning).mean((2, 3, 4))
    assert float((late - early).abs().mean()) > 0.02
