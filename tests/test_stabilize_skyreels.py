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
from vidfix.pipelines.skyreels import denoised_frames, iteration_frames, long_video_chunks, wants_3d

from vidfix import DCW, Identity, StepInfo
from vidfix.tracker import chunk_stats

LONG = dict(num_frames=25, base_num_frames=13, overlap_history=5, causal_block_size=1, addnoise_condition=20)
PREFIX = 2
# Output latent frames each chunk contributes (the frames it denoised).
OUTPUT_SLICES = [slice(0, 4), slice(4, 6), slice(6, 7)]
CORRECTOR = DCW(low=0.2, spatial=0.2, dims="2d")
# Constant detail schedules: with 2 steps the paper's (1 - s) weight is ~0 at the one step that corrects.
CORRECTOR_3D = DCW(
    low=0.2, spatial=0.1, temporal=0.2, spatial_schedule="constant", temporal_schedule="constant"
)


def _corrector(dims: str) -> DCW:
    """Per-frame (2d) or across the frames each step updates (3d)."""
    return CORRECTOR if dims == "2d" else CORRECTOR_3D


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
        assert torch.equal(run(ar_step=ar_step), ref)


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_correction_reaches_every_chunk(ar_step, dims):
    ref = run(ar_step=ar_step)
    with stabilized(build("skyreels_df"), _corrector(dims)) as handle:
        out = run(ar_step=ar_step)
    assert [c.index for c in handle.chunks] == [0, 1, 2]
    assert [c.denoised_frames for c in handle.chunks] == [(0, 1, 2, 3), (2, 3), (2,)]
    for chunk, frames in zip(handle.chunks, OUTPUT_SLICES):
        # one step per denoised frame and step; every one corrected but each frame's last (to noise 0: x_next = x0)
        assert chunk.steps == 2 * len(chunk.denoised_frames) and chunk.corrected == chunk.steps // 2
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


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("ar_step", [0, 2])
def test_long_prefix_frames_untouched(ar_step, dims):
    """Every step of chunk k leaves its prefix equal to the last frames chunk k-1 finished with."""
    chunks: list[list[torch.Tensor]] = []

    def record(pipe, i, t, kwargs):
        if i == 0:
            chunks.append([])
        chunks[-1].append(kwargs["latents"].clone())
        return kwargs

    with stabilized(build("skyreels_df"), _corrector(dims), track_drift=True) as handle:
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
        assert torch.equal(run("skyreels_df_i2v", num_frames=29), ref)
    with stabilized(build("skyreels_df_i2v"), CORRECTOR, track_drift=True) as handle:
        out = run("skyreels_df_i2v", num_frames=29)
    # chunk 0 keeps the image latent frame (a clean prefix of one frame)
    assert [c.denoised_frames for c in handle.chunks] == [(1, 2, 3), (2, 3), (2, 3)]
    assert all(c.corrected > 0 for c in handle.chunks) and len(handle.tracker.records) == 3
    torch.testing.assert_close(out[:, :, :1], ref[:, :, :1])  # the image frame itself is untouched


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_video_to_video_long_mode(dims):
    kwargs = dict(
        num_frames=13, base_num_frames=9, overlap_history=5
    )  # continue a 5-frame video by 13 frames
    ref = run("skyreels_df_v2v", **kwargs)
    corrector = _corrector(dims)
    with stabilized(build("skyreels_df_v2v"), corrector, track_drift=True) as handle:
        out = run("skyreels_df_v2v", **kwargs)
    assert len(handle.chunks) >= 2 and all(c.corrected > 0 for c in handle.chunks)
    assert handle.tracker is not None and len(handle.tracker.records) == len(handle.chunks)
    assert (out - ref).abs().max() > 1e-4


@pytest.mark.parametrize("dims", ["2d", "3d"])
def test_causal_block_tail_bug_does_not_trip_us(dims):
    """diffusers issue 13609: with causal_block_size=2, a 5-frame chunk has 2 blocks and never denoises
    its last frame. vidfix must neither crash nor count those frames, and cannot change them."""
    kwargs = dict(num_frames=29, base_num_frames=17, causal_block_size=2, ar_step=1)
    ref = run(**kwargs)
    corrector = _corrector(dims)
    with stabilized(build("skyreels_df"), corrector, track_drift=True) as handle:
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


def test_denoised_frames_and_plan():
    mask = torch.tensor([[False, True, False], [False, True, True]])
    assert denoised_frames(mask) == (1, 2)
    assert list(iteration_frames(mask, [(0, 3), (1, 2)])) == [[1], [1]]
    assert wants_3d(DCW(low=0.1)) and not wants_3d(DCW(low=0.1, dims="2d")) and not wants_3d(Identity())


def _stacked_step(steps: list[StepInfo]) -> StepInfo:
    """Per-frame step infos as one with (1, 1, F, 1, 1) coefficients."""

    def col(name: str) -> torch.Tensor:
        return torch.tensor([float(getattr(st, name)) for st in steps], dtype=torch.float64).view(
            1, 1, -1, 1, 1
        )

    return StepInfo(col("alpha"), col("beta"), col("alpha_next"), col("beta_next"), col("s"), steps[0].param)


@pytest.mark.parametrize("ar_step", [0, 1])  # ar_step=1 steps frames at different noise levels together
def test_3d_corrector_equals_3d_correction_of_the_stacked_frames(ar_step):
    """Issue 14 item 4: in each loop iteration the frames' data predictions are corrected together in 3D; the
    per-frame x0' equal the 3D corrector applied to the stacked (B, C, F', H, W) predictions."""
    iterations: list[list] = [[]]
    with stabilized(
        build("skyreels_df"), CORRECTOR_3D, observer=lambda e: iterations[-1].append(e)
    ) as handle:
        out = run(ar_step=ar_step, callback_on_step_end=lambda pipe, i, t, kw: iterations.append([]) or kw)
    events = [e for it in iterations for e in it]
    assert sum(c.steps for c in handle.chunks) == len(events) and all(c.corrected for c in handle.chunks)
    checked = mixed = 0
    for group in iterations:
        if len(group) < 2:
            continue
        x0 = torch.stack([e.x0 for e in group], dim=2).double()  # (B, C, F', H, W)
        x = torch.stack([e.x for e in group], dim=2).double()
        corrected = torch.stack([e.x0_corrected for e in group], dim=2).double()
        oracle = CORRECTOR_3D(x0, x, _stacked_step([e.step for e in group]))
        torch.testing.assert_close(corrected, oracle, atol=1e-5, rtol=1e-5)
        checked += 1
        mixed += len({float(e.step.s) for e in group}) > 1
    assert checked >= 3 and bool(mixed) == (ar_step > 0)
    # A temporal coefficient now acts (it was refused when frames were corrected one at a time).
    no_temporal = DCW(low=0.2, spatial=0.1, spatial_schedule="constant")
    with stabilized(build("skyreels_df"), no_temporal):
        assert (run(ar_step=ar_step) - out).abs().max() > 1e-5


def test_3d_gathering_alone_changes_nothing():
    """Holding and gathering the frames' steps is exact: a zero-strength 3D corrector reproduces the plain run bit
    for bit (the clean prefix with 3D: test_long_prefix_frames_untouched)."""
    ref = run(ar_step=2)
    with stabilized(build("skyreels_df"), DCW(low=0.2, temporal=0.1, strength=0.0)):
        assert torch.equal(run(ar_step=2), ref)


def test_3d_image_to_video():
    with stabilized(build("skyreels_df_i2v"), CORRECTOR_3D) as handle:
        out = run("skyreels_df_i2v", num_frames=29)
    ref = run("skyreels_df_i2v", num_frames=29)
    assert all(c.corrected > 0 for c in handle.chunks) and (out - ref).abs().max() > 1e-4
    torch.testing.assert_close(out[:, :, :1], ref[:, :, :1])  # the image frame itself is untouched
