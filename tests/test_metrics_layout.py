"""Arrays and tensors in every stated layout and value range give the same frames; bad input gives clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from vidfix.metrics import LAYOUTS, as_frames, as_videos, to_uint8

# From (T, H, W, C) to each layout (one video; B = 1 for the batched ones).
TO_LAYOUT = {
    "THWC": lambda x: x,
    "TCHW": lambda x: x.transpose(0, 3, 1, 2),
    "CTHW": lambda x: x.transpose(3, 0, 1, 2),
    "BCTHW": lambda x: x.transpose(3, 0, 1, 2)[None],
    "BTCHW": lambda x: x.transpose(0, 3, 1, 2)[None],
    "BTHWC": lambda x: x[None],
}


@pytest.mark.filterwarnings(
    "ignore::vidfix.metrics.DataRangeWarning"
)  # a bright random clip looks like [0, 1]
@settings(max_examples=30, deadline=None)
@given(arrays(np.uint8, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6), st.just(3))))
def test_every_layout_gives_the_same_frames(x):
    expected = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255)  # (T, 3, H, W)
    for layout in LAYOUTS:
        got = as_frames(np.ascontiguousarray(TO_LAYOUT[layout](x)), layout=layout)
        assert torch.equal(got, expected), layout
        signed = torch.from_numpy(TO_LAYOUT[layout](x).astype(np.float32)) / 127.5 - 1  # [-1, 1] tensor
        assert torch.allclose(as_frames(signed, layout=layout, value_range=(-1, 1)), expected, atol=1e-6), (
            layout
        )
    assert np.array_equal(to_uint8(expected), x)


def test_sampler_batch_splits_into_videos():
    x = torch.rand(3, 3, 5, 8, 8) * 2 - 1  # vidfix sampler output (B, C, F, H, W) in [-1, 1]
    videos = as_videos(x, layout="BCTHW", value_range=(-1, 1))
    assert len(videos) == 3 and videos[1].shape == (5, 3, 8, 8)
    assert torch.allclose(videos[2][4], (x[2, :, 4] + 1) / 2)
    with pytest.raises(ValueError, match="holds 3 videos"):
        as_frames(x, layout="BCTHW", value_range=(-1, 1))


def test_channel_conversions():
    gray = np.arange(2 * 4 * 4, dtype=np.uint8).reshape(2, 4, 4, 1)
    f = as_frames(gray)
    assert torch.equal(f[:, 0], f[:, 1]) and torch.equal(f[:, 1], f[:, 2])
    assert torch.allclose(f[:, 0], torch.from_numpy(gray[..., 0] / 255).float())
    rgba = np.random.default_rng(0).integers(0, 256, (2, 4, 4, 4), dtype=np.uint8)
    assert torch.equal(as_frames(rgba), as_frames(np.ascontiguousarray(rgba[..., :3])))  # alpha dropped
    deep = np.full((1, 2, 2, 3), 65535, dtype=np.uint16)
    deep[0, 0, 0] = [0, 32768, 1]
    g = as_frames(deep)
    assert g[0, :, 0, 0].tolist() == pytest.approx([0.0, 32768 / 65535, 1 / 65535])  # 16 bits kept
    assert float(g[0, 0, 1, 1]) == 1.0


def test_slight_overshoot_is_clamped():
    x = torch.full((2, 3, 4, 4), 1.03)  # decoders overshoot a little
    assert float(as_frames(x, layout="TCHW").max()) == 1.0


@pytest.mark.parametrize(
    ("x", "kwargs", "match"),
    [
        (
            np.zeros((4, 8, 8, 3), np.uint8),
            {"layout": "TCHW"},
            r"8 channels on the C axis.*fits layout 'THWC'",
        ),
        (np.zeros((8, 8, 3), np.uint8), {}, r"rank 3\) does not match layout 'THWC'"),
        (torch.zeros(1, 3, 4, 8, 8), {"layout": "TCHW"}, "does not match layout"),
        (np.zeros((0, 8, 8, 3), np.uint8), {}, "empty"),
        (torch.rand(2, 3, 4, 4) * 2 - 1, {"layout": "TCHW"}, r"looks like \[-1, 1\]"),
        (torch.rand(2, 3, 4, 4) * 255, {"layout": "TCHW"}, "looks like 0-255"),
        (torch.full((1, 3, 2, 2), float("nan")), {"layout": "TCHW"}, "NaN"),
        (np.zeros((1, 2, 2, 3), np.int32), {}, "pass value_range"),
        (np.zeros((1, 2, 2, 3), bool), {}, "dtype bool"),
        (np.zeros((1, 2, 2, 3)), {"layout": "HWC"}, "unknown layout"),
        (np.zeros((1, 2, 2, 3)), {"value_range": (1, 0)}, "hi > lo"),
        ("clip.mp4", {}, "numpy array, a torch tensor or a list of frames"),
        ([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))], {}, "frames in the list differ in shape"),
        ([np.zeros((4, 4, 3))], {"layout": "CTHW"}, "list of frames is stacked along a new first axis"),
    ],
)
def test_bad_input_gives_clear_errors(x, kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        as_frames(x, **kwargs)
