"""Scene cuts: PySceneDetect's content detector, computed on the analysis grid in the measuring pass.

A cut (a change of shot) moves colour, brightness and every other statistic at once; read as drift it is the
largest "drift" in a video, and it is not drift. :class:`CutDetector` scores each analysed frame as
PySceneDetect's ``ContentDetector`` does with its defaults: the mean absolute change of hue, saturation and value
(OpenCV's 8-bit HSV) from the previous frame, averaged over the three; a frame scoring at least 27 starts a new
scene if the last cut is at least 15 frames back (PySceneDetect's ``SUPPRESS`` filter, which decides on the
frame itself, so anchors can restart there). It runs on the grid frames at half size (PySceneDetect shrinks
frames to about 256 pixels wide itself; the score is a mean over pixels). Written here rather than called,
because it is the same arithmetic on frames already decoded and shrunk, at a third of the cost, and without a
second OpenCV build: the tests run PySceneDetect itself (``scenedetect.detect``) on the same files as the oracle.

``scenes="warn"`` (the default) detects cuts and says where they are; ``"split"`` also measures within scenes:
anchors (SSIM and LPIPS to the first frame, ``delta_e``, feature consistency) restart at each cut, nothing
compares frames across a cut, and the drift summaries remove the jump at each cut (:func:`vidfix.metrics.stitch`);
``"off"`` skips detection.

Example:
    >>> detector = CutDetector()
    >>> dark, bright = np.full((2, 64, 64, 3), 30, np.uint8), np.full((2, 64, 64, 3), 200, np.uint8)
    >>> detector(np.concatenate([dark] * 10 + [bright] * 10)).nonzero()[0].tolist()   # a new scene at frame 20
    [20]
"""

from __future__ import annotations

import itertools
from typing import Any, Literal, TypeAlias, get_args

import numpy as np

__all__ = ["SCENE_MODES", "CutDetector", "SceneMode", "segments"]

SceneMode: TypeAlias = Literal["warn", "split", "off"]
SCENE_MODES: tuple[SceneMode, ...] = get_args(SceneMode)


class CutDetector:
    """Streaming cut detection: call with consecutive grid frames; returns which frames start a new scene.

    Args:
        threshold: mean HSV change (0-255 scale) that makes a cut (PySceneDetect's ``ContentDetector`` default 27).
        min_scene_len: shortest scene in (analysed) frames; a cut sooner than this after the last is ignored.
    """

    def __init__(self, *, threshold: float = 27.0, min_scene_len: int = 15) -> None:
        self.threshold = threshold
        self.min_scene_len = min_scene_len
        self.scores: list[float] = []  # content score of every frame seen (0 for the first)
        self._previous: Any = None  # H, S, V planes of the last frame
        self._last = 0  # the frame the length filter counts from (the first frame, then each cut)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(B, h, w, 3)`` RGB grid frames (uint8, or float in [0, 1]) to ``(B,)`` bool: a scene starts here."""
        import cv2

        out = np.zeros(len(frames), dtype=bool)
        for i, frame in enumerate(frames):
            hsv = cv2.split(cv2.cvtColor(_half8(frame), cv2.COLOR_RGB2HSV))
            t = len(self.scores)
            if self._previous is None:
                self.scores.append(0.0)
            else:
                change = [cv2.mean(cv2.absdiff(a, b))[0] for a, b in zip(hsv, self._previous, strict=True)]
                score = sum(change) / 3
                self.scores.append(score)
                if score >= self.threshold and t - self._last >= self.min_scene_len:
                    out[i], self._last = True, t
            self._previous = hsv
        return out


def _half8(frame: Any) -> np.ndarray:
    """One ``(h, w, 3)`` RGB grid frame, 8-bit, at half size (2x2 means) when at least 64 pixels on each side."""
    import cv2

    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = frame.shape[:2]
    if min(h, w) >= 64:
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return frame


def segments(n: int, cuts: Any) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` scenes of ``n`` frames split at ``cuts`` (positions where a scene starts)."""
    edges = sorted({int(c) for c in cuts if 0 < int(c) < n})
    bounds = [0, *edges, n]
    return list(itertools.pairwise(bounds))
