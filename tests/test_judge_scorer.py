"""The structure judge as a frame scorer (``vidfix drift --scorer judge``), on the shipped judge.

Real video of the reference sprite process reads as consistent with its sprites found; white noise reads as
less consistent with no sprite. Margins (measured on the shipped judge, 24 frames, uint8): real video's mean
consistency is above 0.998 per video, white noise's about 0.985; real frames hold the seed's 1 or 2 sprites.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from vidfix.metrics import FrameScorer, MetricsWarning, load_scorer, measure, write_video
from vidfix.pipelines.reference.data import SpriteVideoConfig, reference_videos, sample_params
from vidfix.pipelines.reference.judge import load_judge
from vidfix.pipelines.reference.judge_scorer import JudgeScorer
from vidfix.scripts import drift as drift_cli

DATA = SpriteVideoConfig()
SEEDS = [0, 1, 2, 5]
FRAMES = 24


@pytest.fixture(scope="module")
def scorer() -> JudgeScorer:
    return JudgeScorer(load_judge())


def _u8(video: torch.Tensor) -> np.ndarray:
    """One video ``(3, F, H, W)`` in [-1, 1] as uint8 frames ``(F, H, W, 3)``."""
    return (((video + 1) / 2).clamp(0, 1).permute(1, 2, 3, 0) * 255).round().to(torch.uint8).numpy()


def test_real_video_is_consistent_and_holds_its_sprites(scorer: JudgeScorer) -> None:
    videos = reference_videos(SEEDS, FRAMES, config=DATA)  # (B, 3, F, 64, 64)
    sprites = sample_params(SEEDS, DATA).present.sum(1)  # (B,) the seed's true sprite count
    for video, true_count in zip(videos, sprites.tolist()):
        with pytest.warns(MetricsWarning, match="meaningful only on video of that process"):
            vm = measure(_u8(video), scorers=[scorer], lags=(), scenes="off")
        c, n = vm.series["judge_consistency"], vm.series["judge_sprites"]
        assert math.isnan(c[0]) and len(c) == FRAMES
        assert np.nanmean(c) > 0.997 and np.nanmin(c) > 0.99
        assert n.min() >= 1 and np.median(n) == true_count


@pytest.mark.filterwarnings("ignore::vidfix.metrics.MetricsWarning")
def test_white_noise_is_less_consistent_and_holds_no_sprite(scorer: JudgeScorer) -> None:
    real = measure(
        _u8(reference_videos([3], FRAMES, config=DATA)[0]), scorers=[scorer], lags=(), scenes="off"
    )
    rng = np.random.default_rng(0)
    for _ in range(3):
        noise = rng.integers(0, 256, (FRAMES, 64, 64, 3), dtype=np.uint8)
        vm = measure(noise, scorers=[scorer], lags=(), scenes="off")
        c, n = vm.series["judge_consistency"], vm.series["judge_sprites"]
        assert np.nanmean(c) < 0.992 < np.nanmin(real.series["judge_consistency"])
        assert n.mean() < 0.1


def test_frames_of_any_size_scene_starts_and_reset(scorer: JudgeScorer) -> None:
    assert isinstance(scorer, FrameScorer) and scorer.size == 64
    video = (reference_videos([1], 8, config=DATA)[0].transpose(0, 1) + 1) / 2  # (F, 3, 64, 64) in [0, 1]
    none = torch.zeros(8, dtype=torch.bool)
    scorer.start()
    square = scorer(video, none)
    # Frames of another size are resized to the judge's 64 x 64: same sprites, close features.
    wide = torch.nn.functional.interpolate(video, size=(96, 128), mode="bilinear", align_corners=False)
    scorer.start()
    resized = scorer(wide, none)
    assert torch.equal(resized["judge_sprites"], square["judge_sprites"])
    assert float(resized["judge_consistency"][1:].min()) > 0.99
    # A scene start restarts the anchor (NaN there); start() forgets the last video.
    cut = torch.tensor([False] * 4 + [True] + [False] * 3)
    scorer.start()
    first, second = scorer(video[:4], cut[:4]), scorer(video[4:], cut[4:])
    assert math.isnan(float(first["judge_consistency"][0]))
    assert math.isnan(float(second["judge_consistency"][0]))
    assert not second["judge_consistency"][1:].isnan().any()
    scorer.start()
    assert math.isnan(float(scorer(video[4:], torch.zeros(4, dtype=torch.bool))["judge_consistency"][0]))


def test_registered_as_judge_for_vidfix_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(load_scorer("judge"), JudgeScorer)  # entry point vidfix.scorers in pyproject.toml
    clip = write_video(tmp_path / "r.mkv", _u8(reference_videos([2], 16, config=DATA)[0]), codec="ffv1")
    out = tmp_path / "d.json"
    assert drift_cli.main([str(clip), "--scorer", "judge", "--json", str(out), "--quiet"]) == 0
    shown = capsys.readouterr().out
    assert "judge_consistency" in shown and "judge_sprites" in shown and "meaningful only" in shown
    assert "judge_consistency" in json.loads(out.read_text())["metrics"]
