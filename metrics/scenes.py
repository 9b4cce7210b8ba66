"""Scene cuts: PySceneDetect's content detector, run on the analysis grid in the measuring pass.

A cut (a change of shot) moves colour, brightness and every other statistic at once; read as drift it is the
largest "drift" in a video, and it is not drift. :func:`vidfix.metrics.measure` feeds each analysed frame to
PySceneDetect's ``ContentDetector`` (mean change of hue, saturation and value between frames, threshold 27,
scenes at least 15 frames long: its defaults), in its ``SUPPRESS`` mode, which decides a cut on the frame where it
happens, so anchors can restart there. It scores the grid frames at half size (about 140-190 pixels wide);
PySceneDetect shrinks frames to about 256 pixels wide itself, and the score is a mean over pixels that barely
depends on the size: the tests check that the grid finds the same cuts as ``scenedetect.detect`` on the file.

``scenes="warn"`` (the default) detects cuts and says where they are; ``"split"`` also measures within scenes:
anchors (SSIM and LPIPS to the first frame, ``delta_e``, feature consistency) restart at each cut, nothing
compares frames across a cut, and the drift summaries remove the jump at each cut (:func:`vidfix.metrics.stitch`);
``"off"`` skips detection.

Example:
    >>> detector = CutDetector()                                   # doctest: +SKIP
    >>> detector(grid_frames)                                      # doctest: +SKIP
    array([False, False, True, ...])                               # a new scene starts at the third frame
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
        threshold: PySceneDetect's ``ContentDetector`` threshold (mean HSV change, 0-255 scale).
        min_scene_len: shortest scene in (analysed) frames; a cut sooner than this after the last is ignored.
    """

    def __init__(self, *, threshold: float = 27.0, min_scene_len: int = 15) -> None:
        from scenedetect import FrameTimecode
        from scenedetect.detector import FlashFilter
        from scenedetect.detectors import ContentDetector

        self._detector = ContentDetector(
            threshold=threshold, min_scene_len=min_scene_len, filter_mode=FlashFilter.Mode.SUPPRESS
        )
        self._timecode = FrameTimecode
        self._seen = 0

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(B, h, w, 3)`` RGB grid frames (uint8, or float in [0, 1]) to ``(B,)`` bool: a scene starts here."""
        out = np.zeros(len(frames), dtype=bool)
        for i, frame in enumerate(frames):
            bgr = _bgr8(frame)
            cuts = self._detector.process_frame(self._timecode(self._seen, fps=25.0), bgr)
            out[i] = bool(cuts) and self._seen > 0
            self._seen += 1
        return out


def _bgr8(frame: Any) -> np.ndarray:
    """One ``(h, w, 3)`` RGB grid frame as the 8-bit BGR image PySceneDetect expects, at half the grid's size
    (2x2 means: the score is a mean over pixels; PySceneDetect shrinks frames to about 256 pixels wide itself)."""
    import cv2

    if frame.dtype != np.uint8:
        frame = (np.clip(frame, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w = frame.shape[:2]
    if min(h, w) >= 64:
        frame = cv2.resize(frame, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)


def segments(n: int, cuts: Any) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` scenes of ``n`` frames split at ``cuts`` (positions where a scene starts)."""
    edges = sorted({int(c) for c in cuts if 0 < int(c) < n})
    bounds = [0, *edges, n]
    return [(a, b) for a, b in itertools.pairwise(bounds)]
