"""Subject and background consistency: VBench's arithmetic on known features, a swapped subject is seen, the
plumbing runs on tiny random DINO/DINOv2/CLIP models built from configs, and missing weights give one clear line."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _videos import scene, to_u8
from vidfix.metrics import (
    FeatureConsistency,
    FeatureWeightsError,
    MetricsWarning,
    consistency_scores,
    drift_report,
    encoder_from_config,
    load_encoder,
    measure,
    start_end,
)
from vidfix.scripts import drift as drift_cli


def test_vbench_arithmetic_on_known_features():
    f = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [2.0, 0.0]])  # unit after normalising
    got = consistency_scores(f)
    # frame t: (max(0, cos(f_t, f_(t-1))) + max(0, cos(f_t, f_0))) / 2
    want = [math.nan, (1 + 1) / 2, (0 + 0) / 2, (0 + 0) / 2, (0 + 1) / 2]
    np.testing.assert_allclose(got.numpy(), want, equal_nan=True)
    starts = torch.tensor([True, False, False, True, False])  # a scene starts at frame 3
    np.testing.assert_allclose(
        consistency_scores(f, starts).numpy(), [math.nan, 1.0, 0.0, math.nan, 0.0], equal_nan=True
    )


def _thumbnail(frames: torch.Tensor) -> torch.Tensor:
    """A meaningful stand-in encoder: the frame shrunk to 8x8, centred (what a subject looks like, coarsely)."""
    x = torch.nn.functional.adaptive_avg_pool2d(frames, 8).flatten(1)  # (B, 3 * 64)
    return x - x.mean(1, keepdim=True)


def _swapped_subject(t: int = 24, swap: int = 12) -> np.ndarray:
    """A red square on a fixed background; from frame ``swap`` a blue disc of the same size takes its place."""
    frames = np.repeat(scene(1, 64, 64, seed=4, noise=0.0), t, axis=0)
    yy, xx = np.mgrid[0:64, 0:64]
    square = (abs(yy - 32) < 14) & (abs(xx - 32) < 14)
    disc = (yy - 32) ** 2 + (xx - 32) ** 2 < 16**2
    rng = np.random.default_rng(0)
    for i in range(t):
        frames[i][square if i < swap else disc] = [0.9, 0.1, 0.1] if i < swap else [0.1, 0.2, 0.9]
        frames[i] += rng.normal(0, 0.01, frames[i].shape)
    return to_u8(frames)


def test_a_swapped_subject_drops_subject_consistency():
    scorer = FeatureConsistency(_thumbnail, "subject_consistency", "8x8 thumbnails", size=None)
    vm = measure(_swapped_subject(), scorers=[scorer], lags=(), scenes="off")
    s = vm.series["subject_consistency"]
    assert np.isnan(s[0]) and np.nanmin(s[1:12]) > 0.95  # the same subject: consistent
    assert s[12] < 0.7 and np.nanmax(s[13:]) < 0.8  # swapped: far from the first frame from then on
    assert start_end(s).signed < -0.2
    assert vm.info("subject_consistency").score and vm.info("subject_consistency").kind == "anchor"


def _tiny_configs():
    from transformers import CLIPVisionConfig, Dinov2Config, ViTConfig

    small = dict(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, patch_size=16
    )
    return {
        "dino-vit": ("dino", ViTConfig(image_size=224, **small)),
        "dinov2": ("dino", Dinov2Config(image_size=224, **small)),
        "clip": ("clip", CLIPVisionConfig(image_size=224, projection_dim=16, **small)),
    }


@pytest.mark.parametrize("which", ["dino-vit", "dinov2", "clip"])
def test_tiny_random_encoders_run_through_measure(which, tmp_path):
    kind, config = _tiny_configs()[which]
    torch.manual_seed(0)
    encoder = encoder_from_config(kind, config)
    assert not encoder.reportable
    frames = torch.rand(3, 3, 240, 320)
    features = encoder(frames)
    assert features.shape == (3, 16 if kind == "clip" else 32) and torch.isfinite(features).all()
    scorer = FeatureConsistency(encoder, "subject_consistency", which)
    with pytest.warns(MetricsWarning, match="random-weight encoder"):
        vm = measure(to_u8(scene(6, 120, 160, seed=1)), scorers=[scorer], lags=(), scenes="off")
    s = vm.series["subject_consistency"]
    assert np.isnan(s[0]) and np.all((s[1:] >= 0) & (s[1:] <= 1 + 1e-9))
    assert any("not reportable" in n for n in vm.notes)
    # A saved checkpoint folder loads like a hub name.
    encoder.module.save_pretrained(tmp_path / which)
    loaded = load_encoder(kind, str(tmp_path / which), download=False)
    torch.testing.assert_close(loaded(frames), features)


def test_missing_weights_offline_say_how_to_fetch_them(monkeypatch):
    with pytest.raises(
        FeatureWeightsError, match=r"not in the Hugging Face cache.*hf download vidfix-test/no-such-dino"
    ):
        load_encoder("dino", "vidfix-test/no-such-dino", download=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FeatureWeightsError, match="HF_HUB_OFFLINE is set"):
        load_encoder("clip", "vidfix-test/no-such-clip")
    with pytest.raises(ValueError, match="unknown encoder"):
        load_encoder("siglip", "x")  # type: ignore[arg-type]


def test_cli_missing_weights_is_one_clear_line(tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    from vidfix.metrics import write_video

    clip = write_video(tmp_path / "c.mkv", to_u8(scene(4, 32, 32)), codec="ffv1")
    assert drift_cli.main([str(clip), "--subject", "vidfix-test/no-such-dino", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "hf download vidfix-test/no-such-dino" in err and "Traceback" not in err


def test_report_lists_scorer_metrics():
    scorer = FeatureConsistency(_thumbnail, "background_consistency", "thumbnails", size=64)
    report = drift_report(_swapped_subject(), scorers=[scorer], chunks=3)
    info = report["metrics"]["background_consistency"]
    assert info["score"] and info["unit"] == "cosine"
    assert "background_consistency" in report["videos"][0]["chunks"]["vde"]  # a positive score: VDE defined
