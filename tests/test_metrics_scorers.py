"""The scorer extension point (an object, a registered name, ``module:attr`` on the command line) and the import
rule: ``vidfix.metrics`` and ``vidfix drift --help`` never import diffusers (nor any network)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import ClassVar

import numpy as np
import pytest
import torch
from _videos import scene, to_u8, with_brightness
from vidfix.metrics import (
    FrameScorer,
    MetricInfo,
    available_scorers,
    drift_report,
    load_scorer,
    measure,
    write_video,
)
from vidfix.scripts import drift as drift_cli


class Brightness:
    """The smallest scorer: mean of each frame, with a start flag kept to check scene starts arrive."""

    metrics: ClassVar[dict[str, MetricInfo]] = {
        "brightness": MetricInfo("0-1", "mean of all channels", "brighter", score=True)
    }
    size: int | None = None

    def __init__(self) -> None:
        self.starts: list[bool] = []

    def start(self) -> None:
        self.starts = []

    def __call__(self, frames: torch.Tensor, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        self.starts += starts.tolist()
        return {"brightness": frames.mean((1, 2, 3))}


class Sized(Brightness):
    metrics: ClassVar[dict[str, MetricInfo]] = {
        "brightness64": MetricInfo("0-1", "mean at 64 px", "brighter")
    }
    size = 64  # wants frames with a 64-pixel short side

    def __call__(self, frames: torch.Tensor, starts: torch.Tensor) -> dict[str, torch.Tensor]:
        assert min(frames.shape[-2:]) == 48  # never upscaled: these frames are smaller than 64
        return {"brightness64": frames.mean((1, 2, 3))}


def test_a_scorer_adds_a_series_in_the_same_pass():
    x = to_u8(with_brightness(scene(10, 48, 64), 0.1))
    scorer = Brightness()
    assert isinstance(scorer, FrameScorer)
    vm = measure(x, scorers=[scorer, Sized()], lags=(), scenes="off", batch_size=4)
    np.testing.assert_allclose(vm.series["brightness"], x.reshape(10, -1).mean(1) / 255, atol=1e-6)
    np.testing.assert_allclose(vm.series["brightness64"], vm.series["brightness"], atol=1e-6)
    assert scorer.starts == [True] + [False] * 9
    assert vm.info("brightness").description == "mean of all channels"
    with pytest.raises(TypeError, match="not a frame scorer"):
        measure(x, scorers=[object()])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'brightness' comes from two scorers"):
        measure(x, scorers=[Brightness(), Brightness()])
    clash = Brightness()
    clash.metrics = {"ssim": MetricInfo("0-1", "a second ssim", "up")}  # type: ignore[misc]
    with pytest.raises(ValueError, match="'ssim' is a built-in metric"):
        measure(x, scorers=[clash])


def test_scorers_load_by_name_or_module_attr(monkeypatch):
    scorer = load_scorer("test_metrics_scorers:Brightness")
    assert isinstance(scorer, Brightness)
    monkeypatch.setattr(
        "vidfix.metrics.scorers.available_scorers", lambda: {"bright": "test_metrics_scorers:Brightness"}
    )
    assert isinstance(load_scorer("bright"), Brightness)
    with pytest.raises(ValueError, match=r"unknown scorer 'judge': give a registered name \(bright\)"):
        load_scorer("judge")
    with pytest.raises(ValueError, match="cannot load scorer"):
        load_scorer("test_metrics_scorers:Nope")
    with pytest.raises(ValueError, match="not a frame scorer"):
        load_scorer("test_metrics_scorers:textwrap")
    assert isinstance(available_scorers(), dict)


def test_cli_takes_a_scorer(tmp_path, capsys):
    clip = write_video(tmp_path / "c.mkv", to_u8(with_brightness(scene(12, 32, 32), 0.1)), codec="ffv1")
    out = tmp_path / "d.json"
    assert (
        drift_cli.main(
            [str(clip), "--scorer", "test_metrics_scorers:Brightness", "--json", str(out), "--quiet"]
        )
        == 0
    )
    assert "brightness" in capsys.readouterr().out
    report = drift_report(clip, scorers=[Brightness()])
    assert (
        report["metrics"]["brightness"]["score"]
        and report["videos"][0]["start_end"]["brightness"]["signed"] > 0.05
    )


def _run(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow
def test_metrics_and_drift_help_never_import_diffusers():
    shown = _run(
        """
        import contextlib, io, sys
        from vidfix.scripts import cli
        with contextlib.redirect_stdout(io.StringIO()) as out:
            try:
                cli.main(["drift", "--help"])
            except SystemExit:
                pass
        assert "vidfix drift plain.mp4" in out.getvalue()
        print(sorted(m for m in ("diffusers", "transformers", "vidfix.metrics", "cv2") if m in sys.modules))
        import vidfix.metrics
        heavy = ("diffusers", "transformers", "lpips", "scenedetect", "torchvision.models.optical_flow")
        print([m for m in heavy if m in sys.modules])
        """
    )
    assert shown.split("\n")[:2] == ["[]", "[]"]
