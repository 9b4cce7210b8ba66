"""vidfix.metrics: temporal drift of any video file or tensor, with numbers you can reproduce.

Frames are ``(T, 3, H, W)`` float in [0, 1] (sRGB); arrays and tensors state their layout (``THWC``, ``TCHW``,
``CTHW``, ``BCTHW``, ``BTCHW``, ``BTHWC``) and value range, lists of frames are stacked; files are decoded with
PyAV frame by frame (timestamps kept) and shrunk at once to the analysis grid, so memory stays small at any
resolution. Scene cuts are found with PySceneDetect's content score. Optional: LPIPS (torch hub cache), subject and background
consistency (DINO, CLIP through ``transformers``), motion from optical flow (OpenCV DIS, or RAFT), and any
:class:`FrameScorer` of your own. Importing this package loads neither diffusers nor any network.

    >>> from vidfix.metrics import drift_report, format_table, plot_report
    >>> report = drift_report(["plain.mp4", "stabilized.mp4"], chunk_frames=16)     # doctest: +SKIP
    >>> print(format_table(report)); plot_report(report, "drift.png")               # doctest: +SKIP

From vidfix's sampler, decoded output ``(B, C, F, H, W)`` in [-1, 1]:

    >>> report = drift_report(video, layout="BCTHW", value_range=(-1, 1))          # doctest: +SKIP
"""

from vidfix.metrics.color import (
    COLOR_STATS,
    color_stats,
    delta_e,
    lab_to_rgb,
    luma,
    rgb_to_lab,
    srgb_to_linear,
)
from vidfix.metrics.drift import (
    CHANNEL_METRICS,
    DRIFT_METRICS,
    MIN_FRECHET_FRAMES,
    FrechetCurve,
    StartEnd,
    channel_drift,
    chunk_bounds,
    chunk_curve,
    chunk_means,
    compare,
    drift_series,
    frechet_distance,
    frechet_over_time,
    lag_curve,
    spread,
    standardize,
    start_end,
    start_end_drift,
    stitch,
    video_drift_error,
    window_bounds,
    windowed_frechet,
)
from vidfix.metrics.features import (
    FeatureConsistency,
    FeatureWeightsError,
    ImageEncoder,
    background_consistency,
    consistency_scores,
    encoder_from_config,
    load_encoder,
    subject_consistency,
)
from vidfix.metrics.grid import GRID, grid_shape
from vidfix.metrics.io import (
    FrameBatch,
    VideoInfo,
    VideoReader,
    VideoReadError,
    VideoReadWarning,
    iter_video,
    probe,
    read_video,
    select_indices,
    write_video,
)
from vidfix.metrics.layout import LAYOUTS, DataRangeWarning, Layout, as_frames, as_videos, to_uint8
from vidfix.metrics.measure import (
    DEFAULT_LAGS,
    FEATURE_NAMES,
    METRICS,
    MetricsWarning,
    VideoMetrics,
    frame_stats,
    measure,
    with_anchor,
)
from vidfix.metrics.motion import FlowWeightsError, MotionScorer
from vidfix.metrics.perceptual import LPIPSModel, LPIPSWeightsError, backbone_file, load_lpips, lpips_distance
from vidfix.metrics.plot import plot_report
from vidfix.metrics.report import (
    SCHEMA,
    UnreportableError,
    drift_report,
    format_table,
    load_report,
    save_report,
)
from vidfix.metrics.scenes import CutDetector, SceneMode
from vidfix.metrics.scorers import FrameScorer, MetricInfo, available_scorers, load_scorer
from vidfix.metrics.sharpness import laplacian_variance, wavelet_energy_shares
from vidfix.metrics.similarity import flicker, ssim

__all__ = [
    "CHANNEL_METRICS",
    "COLOR_STATS",
    "DEFAULT_LAGS",
    "DRIFT_METRICS",
    "FEATURE_NAMES",
    "GRID",
    "LAYOUTS",
    "METRICS",
    "MIN_FRECHET_FRAMES",
    "SCHEMA",
    "CutDetector",
    "DataRangeWarning",
    "FeatureConsistency",
    "FeatureWeightsError",
    "FlowWeightsError",
    "FrameBatch",
    "FrameScorer",
    "FrechetCurve",
    "ImageEncoder",
    "LPIPSModel",
    "LPIPSWeightsError",
    "Layout",
    "MetricInfo",
    "MetricsWarning",
    "MotionScorer",
    "SceneMode",
    "StartEnd",
    "UnreportableError",
    "VideoInfo",
    "VideoMetrics",
    "VideoReadError",
    "VideoReadWarning",
    "VideoReader",
    "as_frames",
    "as_videos",
    "available_scorers",
    "backbone_file",
    "background_consistency",
    "channel_drift",
    "chunk_bounds",
    "chunk_curve",
    "chunk_means",
    "color_stats",
    "compare",
    "consistency_scores",
    "delta_e",
    "drift_report",
    "drift_series",
    "encoder_from_config",
    "flicker",
    "format_table",
    "frame_stats",
    "frechet_distance",
    "frechet_over_time",
    "grid_shape",
    "iter_video",
    "lab_to_rgb",
    "lag_curve",
    "laplacian_variance",
    "load_encoder",
    "load_lpips",
    "load_report",
    "load_scorer",
    "lpips_distance",
    "luma",
    "measure",
    "plot_report",
    "probe",
    "read_video",
    "rgb_to_lab",
    "save_report",
    "select_indices",
    "spread",
    "srgb_to_linear",
    "ssim",
    "standardize",
    "start_end",
    "start_end_drift",
    "stitch",
    "subject_consistency",
    "to_uint8",
    "video_drift_error",
    "wavelet_energy_shares",
    "window_bounds",
    "windowed_frechet",
    "with_anchor",
    "write_video",
]
