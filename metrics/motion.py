"""Motion from optical flow: how much a video moves (dynamic degree) and how smoothly (motion smoothness).

Flow comes from OpenCV's DIS (``cv2.DISOpticalFlow``, no weights; default) or torchvision's RAFT (weights from
the torch hub cache), on the analysis grid. :class:`MotionScorer` adds three series, per analysed frame:

- ``motion_magnitude``: VBench dynamic degree's statistic: the mean of the largest 5% of flow magnitudes
  between the previous frame and this one, in pixels at a 256-pixel short side (so it does not depend on the
  resolution). NaN on a scene's first frame.
- ``dynamic``: 1 where ``motion_magnitude`` exceeds VBench's threshold (6 pixels at a 256-pixel short side), else
  0; its mean over frames is the share of moving frame pairs (VBench calls a video dynamic when that share is at
  least a quarter, on frames sampled at about 8 fps: use ``stride`` to match).
- ``motion_smoothness``: VBench's motion smoothness with flow in place of its interpolation network: the middle
  frame of each triple is predicted from its neighbours along the flow between them (linear motion), and the
  score is ``1 - mean |predicted - actual|`` on [0, 1] RGB values (VBench's ``(255 - MAE) / 255``). Steady
  motion is predicted well (near 1); jitter, stutter and objects that pop in or out are not. It is given on the
  triple's last frame (frame ``t`` scores frame ``t - 1``); NaN on a scene's first two frames.

A frozen video has magnitude 0, no dynamic frames and smoothness 1.

Example:
    >>> vm = measure("clip.mp4", scorers=[MotionScorer()])                 # doctest: +SKIP
    >>> float(np.nanmean(vm.series["dynamic"]))                            # share of moving frame pairs
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias, get_args

import numpy as np
import torch
from torch import Tensor
from vidfix.metrics.grid import _cv2
from vidfix.metrics.scorers import MetricInfo

__all__ = [
    "DYNAMIC_THRESHOLD",
    "FLOW_METHODS",
    "FlowMethod",
    "FlowWeightsError",
    "MotionScorer",
    "dis_flow",
    "interpolate_middle",
    "load_raft",
    "raft_flow",
    "top_magnitude",
]

FlowMethod: TypeAlias = Literal["dis", "raft"]
FLOW_METHODS: tuple[FlowMethod, ...] = get_args(FlowMethod)
DYNAMIC_THRESHOLD = 6.0  # VBench: pixels at a 256-pixel short side
_SCALE = 256.0
_TOP = 0.05  # VBench: mean of the largest 5% of magnitudes
_RAFT_SIDE = 128  # RAFT's smallest input side


class FlowWeightsError(RuntimeError):
    """RAFT weights are not in the torch hub cache and cannot be downloaded."""


def dis_flow(a: np.ndarray, b: np.ndarray, *, preset: int | None = None) -> np.ndarray:
    """DIS optical flow from frame ``a`` to ``b`` (``(h, w, 3)`` RGB or ``(h, w)``, uint8 or float in [0, 1]).

    Returns ``(h, w, 2)`` float32 ``(dx, dy)`` in pixels: ``a(x) ~ b(x + flow(x))``.
    """
    cv2 = _cv2()

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM if preset is None else preset)
    return dis.calc(_gray8(a), _gray8(b), None)


def _gray8(x: np.ndarray) -> np.ndarray:
    cv2 = _cv2()

    if x.dtype != np.uint8:
        x = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) if x.ndim == 3 else x


def raft_flow(model: Any, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RAFT flow from ``a`` to ``b`` (``(h, w, 3)`` RGB, uint8 or float in [0, 1]): ``(h, w, 2)`` float32.

    RAFT needs sides of at least 128 pixels, divisible by 8: smaller frames are enlarged first and the flow
    scaled back.
    """
    import torch.nn.functional as F

    h, w = a.shape[:2]
    scale = max(1.0, _RAFT_SIDE / min(h, w))
    size = (8 * math.ceil(h * scale / 8), 8 * math.ceil(w * scale / 8))

    def prep(x: np.ndarray) -> Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x)).float()
        t = t / 255.0 if x.dtype == np.uint8 else t
        t = t.permute(2, 0, 1)[None] * 2 - 1  # (1, 3, h, w) in [-1, 1]
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False) if size != (h, w) else t

    with torch.no_grad():
        flow = model(prep(a), prep(b))[-1]  # (1, 2, H', W'), the last refinement
        if size != (h, w):
            flow = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False)
            flow = flow * torch.tensor([w / size[1], h / size[0]]).view(
                1, 2, 1, 1
            )  # back to pixels of (h, w)
    return flow[0].permute(1, 2, 0).contiguous().numpy()


def load_raft(*, small: bool = True, download: bool = True) -> Any:
    """torchvision's RAFT with its published weights from the torch hub cache (downloading if allowed).

    Raises:
        FlowWeightsError: the weights file is missing and cannot be downloaded.
    """
    from pathlib import Path

    from torchvision.models.optical_flow import Raft_Large_Weights, Raft_Small_Weights, raft_large, raft_small

    weights = Raft_Small_Weights.DEFAULT if small else Raft_Large_Weights.DEFAULT
    path = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[1]
    if not path.is_file() and not download:
        raise FlowWeightsError(_raft_help(path, weights.url))
    try:
        model = (raft_small if small else raft_large)(weights=weights, progress=False)
    except Exception as err:  # URLError and friends from the download
        raise FlowWeightsError(_raft_help(path, weights.url)) from err
    return model.eval()


def _raft_help(path: Any, url: str) -> str:
    return (
        f"RAFT weights {path.name} are not in the torch hub cache ({path.parent}) and could not be downloaded; "
        f"fetch {url} on a machine with internet into that folder, or use flow='dis' (no weights)"
    )


def top_magnitude(flow: np.ndarray) -> float:
    """VBench dynamic degree's statistic: mean of the largest 5% of flow magnitudes ``|flow|`` (at least one)."""
    cv2 = _cv2()

    mag = cv2.magnitude(flow[..., 0], flow[..., 1]).reshape(-1)
    k = max(1, int(mag.size * _TOP))
    return float(np.partition(mag, mag.size - k)[mag.size - k :].mean(dtype=np.float64))


def interpolate_middle(a: np.ndarray, b: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The frame halfway between ``a`` and ``b`` along ``flow`` (from ``a`` to ``b``), assuming linear motion.

    Each pixel ``x`` of the middle frame averages ``a(x - flow(x) / 2)`` and ``b(x + flow(x) / 2)`` (the flow at
    ``x`` standing in for the flow through ``x``, as frame interpolation does for smooth motion).
    """
    cv2 = _cv2()

    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    half = flow * np.float32(0.5)
    fa = cv2.remap(a, gx - half[..., 0], gy - half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    fb = cv2.remap(b, gx + half[..., 0], gy + half[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.addWeighted(fa, 0.5, fb, 0.5, 0.0, dtype=cv2.CV_32F)


class MotionScorer:
    """A :class:`~vidfix.metrics.FrameScorer`: ``motion_magnitude``, ``dynamic`` and ``motion_smoothness`` (module docstring).

    Args:
        flow: ``"dis"`` (OpenCV, no weights) or ``"raft"`` (torchvision RAFT-small, weights from the torch hub cache).
        raft: a loaded RAFT model to use instead of loading one (tests: ``raft_small(weights=None)``).
    """

    metrics: Mapping[str, MetricInfo] = {
        "motion_magnitude": MetricInfo(
            "px@256",
            "mean of the top 5% optical-flow magnitudes to the previous frame",
            "more motion",
            "adjacent",
        ),
        "dynamic": MetricInfo(
            "0/1", "1 where motion_magnitude exceeds VBench's 6 px", "more moving frames", "adjacent"
        ),
        "motion_smoothness": MetricInfo(
            "0-1",
            "VBench motion smoothness: 1 - MAE of the previous frame predicted from its neighbours along the flow",
            "smoother motion",
            "adjacent",
            score=True,
        ),
    }
    size: int | None = None  # the analysis grid

    def __init__(self, flow: FlowMethod = "dis", *, raft: Any = None, download: bool = True) -> None:
        if flow not in FLOW_METHODS:
            raise ValueError(f"unknown flow {flow!r}; allowed: {', '.join(repr(f) for f in FLOW_METHODS)}")
        self.flow = flow
        self._raft = raft if raft is not None or flow == "dis" else load_raft(download=download)
        self.note = (
            "motion: RAFT with random weights (plumbing only; not reportable)"
            if raft is not None and getattr(raft, "reportable", True) is False
            else None
        )
        self._dis: Any = None
        self._history: list[np.ndarray] = []  # the scene's last two frames

    def start(self) -> None:
        self._history = []

    def _flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self.flow == "raft":
            return raft_flow(self._raft, a, b)
        cv2 = _cv2()

        if self._dis is None:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        return self._dis.calc(_gray8(a), _gray8(b), None)

    def __call__(self, frames: Tensor, starts: Tensor) -> dict[str, Tensor]:
        grid = frames.permute(0, 2, 3, 1).contiguous().numpy()  # (B, h, w, 3) float32 in [0, 1]
        scale = _SCALE / min(grid.shape[1:3])
        out = {k: torch.full((len(grid),), math.nan, dtype=torch.float64) for k in self.metrics}
        for i, frame in enumerate(grid):
            if bool(starts[i]):
                self._history = []
            if self._history:
                magnitude = top_magnitude(self._flow(self._history[-1], frame)) * scale
                out["motion_magnitude"][i] = magnitude
                out["dynamic"][i] = float(magnitude > DYNAMIC_THRESHOLD)
            if len(self._history) == 2:
                before, middle = self._history
                guess = interpolate_middle(before, frame, self._flow(before, frame))
                out["motion_smoothness"][i] = 1.0 - float(np.abs(guess - middle).mean(dtype=np.float64))
            self._history = [*self._history[-1:], frame]
        return out
