"""The sprite process: deterministic per seed, batch-independent, any range, right layout, stationary."""

import pytest
import torch
from vidfix.pipelines.reference.data import (
    SHAPES,
    SpriteVideoConfig,
    reference_video,
    reference_videos,
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
