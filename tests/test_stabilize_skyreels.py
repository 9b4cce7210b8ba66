"""SkyReels-V2 diffusion forcing long mode under stabilize(): per chunk, per frame, prefix untouched.

Tiny setup: 25 pixel frames = 7 latent frames, chunks of 13 frames (4 latent) overlapping by 5 (2 latent):
three chunks with windows [0, 4), [2, 6), [4, 7) in the video; each later chunk keeps a clean 2-frame prefix.
``addnoise_condition`` draws from the global RNG, so every run is preceded by ``torch.manual_seed``.
"""

from __future__ import annotations

import pytest
import torch
from _tiny_pipelines import build, call_kwargs
from vidfix.pipelines import stabilized
from vidfix.pipelines.skyreels import check_corrector, denoised_frames, long_video_chunks

from vidfix import DCW, Identity
from vidfix.tracker import chunk_stats

LONG = dict(num_frames=25, base_num_frames=13, overlap_history=5, causal_block_size=1, addnoise_condition=20)
PREFIX = 2
# Output latent frames each chunk contributes (the frames it denoised).
OUTPUT_SLICES = [slice(0, 4), slice(4, 6), slice(6, 7)]
CORRECTOR = DCW(low=0.2, spatial=0.2)


def run(name: str = "skyreels_df", **extra: object) -> torch.Tensor:
    pipe = build(name)  # before seeding: a first build draws from the global RNG
    kwargs = call_kwargs(name) | LONG | extra
    torch.manual_seed(0)
    return pipe(**kwargs).frames


def test_chunk_count_formula_matches_the_pipeline():
    assert long_video_chunks(25, base_num_frames=13, overlap_history=5) == 3
    assert long_video_chunks(9, base_num_frames=13, overlap_history=5) == 1
    with stabilized(build("skyreels_df"), Identity()) as handle:
        run()
    assert len(handle.chunks) == 3


@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_identity_reproduces_plain_run(ar_step):
    ref = run(ar_step=ar_step)
    assert ref.shape[2] == 7
    with stabilized(build("skyreels_df"), Identity(), track_drift=True):
        torch.testing.assert_close(run(ar_step=ar_step), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_correction_reaches_every_chunk(ar_step):
    ref = run(ar_step=ar_step)
    with stabilized(build("skyreels_df"), CORRECTOR) as handle:
        out = run(ar_step=ar_step)
    assert [c.index for c in handle.chunks] == [0, 1, 2]
    assert [c.denoised_frames for c in handle.chunks] == [(0, 1, 2, 3), (2, 3), (2,)]
    for chunk, frames in zip(handle.chunks, OUTPUT_SLICES):
        # one step per denoised frame and step; every one corrected
        assert chunk.steps == 2 * len(chunk.denoised_frames) and chunk.corrected == chunk.steps
        assert (out[:, :, frames] - ref[:, :, frames]).abs().max() > 1e-4
    if ar_step:
        assert handle.chunks[0].iterations > 2  # staggered: more loop iterations than steps


@pytest.mark.parametrize("ar_step", [0, 1])
def test_long_per_frame_timesteps(ar_step):
    """Each frame is corrected at its own noise level: with ar_step > 0 one loop iteration steps frames
    at different levels, and every frame still walks the whole schedule once."""
    iterations: list[list[float]] = [[]]
    with stabilized(
        build("skyreels_df"), CORRECTOR, observer=lambda e: iterations[-1].append(float(e.step.s))
    ) as handle:
        run(ar_step=ar_step, callback_on_step_end=lambda pipe, i, t, kw: iterations.append([]) or kw)
    chunk0 = iterations[: handle.chunks[0].iterations]
    mixed = [levels for levels in chunk0 if len(set(levels)) > 1]
    assert bool(mixed) == (ar_step > 0)
    sigmas = sorted({s for levels in chunk0 for s in levels}, reverse=True)
    assert len(sigmas) == 2 and sum(map(len, chunk0)) == 2 * 4  # 2 steps for each of 4 frames


@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_prefix_frames_untouched(ar_step):
    """Every step of chunk k leaves its prefix equal to the last frames chunk k-1 finished with."""
    chunks: list[list[torch.Tensor]] = []

    def record(pipe, i, t, kwargs):
        if i == 0:
            chunks.append([])
        chunks[-1].append(kwargs["latents"].clone())
        return kwargs

    with stabilized(build("skyreels_df"), CORRECTOR, track_drift=True) as handle:
        run(ar_step=ar_step, callback_on_step_end=record)
    assert len(chunks) == 3 and all(c.corrected > 0 for c in handle.chunks)
    for k in (1, 2):
        finished_before = chunks[k - 1][-1][:, :, -PREFIX:]
        for latents in chunks[k]:
            assert torch.equal(latents[:, :, :PREFIX], finished_before)


@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_drift_has_one_entry_per_chunk(ar_step):
    with stabilized(build("skyreels_df"), CORRECTOR, track_drift=True) as handle:
        out = run(ar_step=ar_step)
    tracker = handle.tracker
    assert tracker is not None and [r.index for r in tracker.records] == [0, 1, 2]
    # Each entry describes exactly the frames that chunk added to the video.
    for record, frames in zip(tracker.records, OUTPUT_SLICES):
        expected = chunk_stats(out[:, :, frames], record.index)
        assert record.frames == expected.frames
        torch.testing.assert_close(torch.tensor(record.std), torch.tensor(expected.std))
        torch.testing.assert_close(torch.tensor(record.energy_low), torch.tensor(expected.energy_low))
    assert len(tracker.curve("std")) == 3


def test_image_to_video_long_mode():
    # 29 frames = 8 latent: three full chunks. (diffusers 0.42.1's I2V pipeline raises an IndexError, with or
    # without vidfix, when the last chunk is shorter than base_num_frames, e.g. at 25 frames.)
    ref = run("skyreels_df_i2v", num_frames=29)
    with stabilized(build("skyreels_df_i2v"), Identity()):
        torch.testing.assert_close(run("skyreels_df_i2v", num_frames=29), ref, atol=1e-5, rtol=0)
    with stabilized(build("skyreels_df_i2v"), CORRECTOR, track_drift=True) as handle:
        out = run("skyreels_df_i2v", num_frames=29)
    # chunk 0 keeps the image latent frame (a clean prefix of one frame)
    assert [c.denoised_frames for c in handle.chunks] == [(1, 2, 3), (2, 3), (2, 3)]
    assert all(c.corrected > 0 for c in handle.chunks) and len(handle.tracker.records) == 3
    torch.testing.assert_close(out[:, :, :1], ref[:, :, :1])  # the image frame itself is untouched


def test_video_to_video_long_mode():
    kwargs = dict(
        num_frames=13, base_num_frames=9, overlap_history=5
    )  # continue a 5-frame video by 13 frames
    ref = run("skyreels_df_v2v", **kwargs)
    with stabilized(build("skyreels_df_v2v"), CORRECTOR, track_drift=True) as handle:
        out = run("skyreels_df_v2v", **kwargs)
    assert len(handle.chunks) >= 2 and all(c.corrected > 0 for c in handle.chunks)
    assert handle.tracker is not None and len(handle.tracker.records) == len(handle.chunks)
    assert (out - ref).abs().max() > 1e-4


def test_causal_block_tail_bug_does_not_trip_us():
    """diffusers issue 13609: with causal_block_size=2, a 5-frame chunk has 2 blocks and never denoises
    its last frame. vidfix must neither crash nor count those frames, and cannot change them."""
    kwargs = dict(num_frames=29, base_num_frames=17, causal_block_size=2, ar_step=1)
    ref = run(**kwargs)
    with stabilized(build("skyreels_df"), CORRECTOR, track_drift=True) as handle:
        out = run(**kwargs)
    windows = [(0, 5), (3, 8)]  # latent frames of each chunk in the video
    untouched = []
    for chunk, (start, stop) in zip(handle.chunks, windows):
        assert chunk.corrected > 0
        never = sorted(
            set(range(stop - start)) - set(chunk.denoised_frames) - set(range(PREFIX if start else 0))
        )
        untouched += [start + f for f in never]
    assert handle.tracker is not None
    assert [r.frames for r in handle.tracker.records] == [len(c.denoised_frames) for c in handle.chunks]
    for f in untouched:  # frames no step ever touched are identical with and without the corrector
        torch.testing.assert_close(out[:, :, f], ref[:, :, f])


def test_denoised_frames_and_corrector_check():
    mask = torch.tensor([[False, True, False], [False, True, True]])
    assert denoised_frames(mask) == (1, 2)
    check_corrector(DCW(low=0.1))
    with pytest.raises(ValueError, match="one latent frame at a time"):
        check_corrector(DCW(low=0.1, temporal=-0.01))
