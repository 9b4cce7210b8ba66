"""vidfix.metrics: temporal drift of any video file or tensor, with numbers you can reproduce.

Frames are ``(T, 3, H, W)`` float in [0, 1] (sRGB); arrays and tensors state their layout (``THWC``, ``TCHW``,
``CTHW``, ``BCTHW``, ``BTCHW``, ``BTHWC``) and value range; files are decoded with decord (PyAV fallback) in batches.
No network is needed except, optionally, the LPIPS backbone from the torch hub cache.

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
    FrechetCurve,
    StartEnd,
    channel_drift,
    chunk_bounds,
    chunk_curve,
    chunk_means,
    compare,
    frechet_distance,
    frechet_over_time,
    lag_curve,
    standardize,
    start_end,
    start_end_drift,
    video_drift_error,
    window_bounds,
    windowed_frechet,
)
from vidfix.metrics.io import (
    FrameBatch,
    VideoInfo,
    VideoReadError,
    iter_video,
    probe,
    read_video,
    select_indices,
    write_video,
)
from vidfix.metrics.layout import LAYOUTS, Layout, as_frames, as_videos, to_uint8
from vidfix.metrics.measure import (
    DEFAULT_LAGS,
    FEATURE_NAMES,
    METRICS,
    MetricInfo,
    VideoMetrics,
    auto_subsample,
    frame_stats,
    measure,
    with_anchor,
)
from vidfix.metrics.perceptual import LPIPSModel, LPIPSWeightsError, backbone_file, load_lpips, lpips_distance
from vidfix.metrics.report import (
    SCHEMA,
    UnreportableError,
    drift_report,
    format_table,
    load_report,
    plot_report,
    save_report,
)
from vidfix.metrics.sharpness import laplacian_variance, wavelet_energy_shares
from vidfix.metrics.similarity import flicker, ssim

__all__ = [
    "CHANNEL_METRICS",
    "COLOR_STATS",
    "DEFAULT_LAGS",
    "DRIFT_METRICS",
    "FEATURE_NAMES",
    "LAYOUTS",
    "METRICS",
    "SCHEMA",
    "FrameBatch",
    "FrechetCurve",
    "LPIPSModel",
    "LPIPSWeightsError",
    "Layout",
    "MetricInfo",
    "StartEnd",
    "UnreportableError",
    "VideoInfo",
    "VideoMetrics",
    "VideoReadError",
    "as_frames",
    "as_videos",
    "auto_subsample",
    "backbone_file",
    "channel_drift",
    "chunk_bounds",
    "chunk_curve",
    "chunk_means",
    "color_stats",
    "compare",
    "delta_e",
    "drift_report",
    "flicker",
    "format_table",
    "frame_stats",
    "frechet_distance",
    "frechet_over_time",
    "iter_video",
    "lab_to_rgb",
    "lag_curve",
    "laplacian_variance",
    "load_lpips",
    "load_report",
    "lpips_distance",
    "luma",
    "measure",
    "plot_report",
    "probe",
    "read_video",
    "rgb_to_lab",
    "save_report",
    "select_indices",
    "srgb_to_linear",
    "ssim",
    "standardize",
    "start_end",
    "start_end_drift",
    "to_uint8",
    "video_drift_error",
    "wavelet_energy_shares",
    "window_bounds",
    "windowed_frechet",
    "with_anchor",
    "write_video",
]
