"""The structure judge as a frame scorer for :func:`vidfix.metrics.measure` and ``vidfix drift --scorer judge``.

:func:`~vidfix.pipelines.reference.judge.judge_video` needs the seeds of the videos it scores (it compares
detections with each seed's true sprites). This scorer needs none; per frame it gives

* ``judge_consistency``: VBench's consistency arithmetic on the judge's pooled per-frame scene feature
  ``f_t`` (the ``feature`` output of :class:`~vidfix.pipelines.reference.judge.SpriteJudge`):
  ``(max(0, cos(f_t, f_(t-1))) + max(0, cos(f_t, f_first))) / 2``, ``f_first`` the scene's first frame, NaN on
  a scene's first frame (as :class:`vidfix.metrics.FeatureConsistency` does for DINO and CLIP features);
* ``judge_sprites``: the number of sprites the judge detects
  (:func:`~vidfix.pipelines.reference.judge.detect` on its maps: heatmap peaks above the threshold).

Frames arrive as the scorer protocol gives them, ``(B, 3, h, w)`` in [0, 1] with a 64-pixel short side; they
are resized (bilinear, antialiased) to the judge's ``64 x 64`` where they differ and scaled to [-1, 1]. The
judge was trained on the reference sprite process only: both series mean something on video of that process
(a rollout of the reference model, say) and nothing elsewhere.

Example:
    >>> from vidfix.metrics import measure
    >>> vm = measure("rollout.mp4", scorers=[JudgeScorer()])                # doctest: +SKIP
    >>> vm.series["judge_consistency"], vm.series["judge_sprites"]          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor
from vidfix.metrics.scorers import MetricInfo
from vidfix.pipelines.reference.judge import SpriteJudge, detect, load_judge

__all__ = ["JUDGE_SIZE", "JudgeScorer"]

JUDGE_SIZE = 64  # the frame side the shipped judge was trained on (SpriteVideoConfig's 64 x 64)


class JudgeScorer:
    """A :class:`~vidfix.metrics.FrameScorer`: the judge's feature consistency and sprite count per frame.

    Args:
        judge: a loaded judge (default: the shipped one, :func:`~vidfix.pipelines.reference.judge.load_judge`).
        device: where the judge runs when it is loaded here.
        threshold: heatmap peak a detection needs (:func:`~vidfix.pipelines.reference.judge.detect`).
    """

    metrics: Mapping[str, MetricInfo] = {
        "judge_consistency": MetricInfo(
            "cosine",
            "mean cosine of the sprite judge's scene feature to the scene's first and the previous frame",
            "more consistent",
            "anchor",
            score=True,
        ),
        "judge_sprites": MetricInfo(
            "sprites", "sprites the sprite judge detects in the frame", "more sprites detected"
        ),
    }
    size: int | None = JUDGE_SIZE

    def __init__(
        self, judge: SpriteJudge | None = None, *, device: str | torch.device = "cpu", threshold: float = 0.35
    ) -> None:
        self.judge = judge if judge is not None else load_judge(device=device)
        self.threshold = threshold
        self.note = (
            "judge_consistency, judge_sprites: the structure judge of the reference sprite process; "
            "meaningful only on video of that process"
        )
        self._first: Tensor | None = None
        self._prev: Tensor | None = None

    def start(self) -> None:
        self._first = self._prev = None

    @torch.no_grad()
    def __call__(self, frames: Tensor, starts: Tensor) -> dict[str, Tensor]:
        # Resize to the judge's grid, scale to [-1, 1].
        x = frames.to(device=self.judge.device, dtype=torch.float32)  # (B, 3, h, w) in [0, 1]
        if x.shape[-2:] != (JUDGE_SIZE, JUDGE_SIZE):
            x = F.interpolate(
                x, size=(JUDGE_SIZE, JUDGE_SIZE), mode="bilinear", antialias=True, align_corners=False
            )
        maps = {k: v.cpu() for k, v in self.judge(x * 2 - 1).items()}  # (B, ...)
        # Sprites detected.
        count = detect(maps, threshold=self.threshold).count.double()  # (B,)
        # VBench consistency of the unit features, restarted at each scene start.
        f = F.normalize(maps["feature"].double(), dim=-1)  # (B, D)
        consistency = torch.full((len(f),), math.nan, dtype=torch.float64)
        for i in range(len(f)):
            if self._first is None or self._prev is None or bool(starts[i]):
                self._first = f[i]
            else:
                to_prev, to_first = (f[i] @ self._prev).clamp_min(0), (f[i] @ self._first).clamp_min(0)
                consistency[i] = (to_prev + to_first) / 2
            self._prev = f[i]
        return {"judge_consistency": consistency, "judge_sprites": count}
