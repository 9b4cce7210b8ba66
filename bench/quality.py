"""Quality benchmark on the reference model: every condition, judged by the structure judge, per window.

For each process (``stationary``; ``trend``: the background hue turns) x scheduler (``euler``, ``unipc``, or
``fewstep``: the few-step x0 / re-noise mode of distilled causal models, at the same ``shift``) x step count:

1. **Real video.** Each sampler seed's real video of the process: its first ``K`` frames start every
   rollout of that seed, teacher forcing reads the rest, and the ``real`` row measures it. A pool of fresh
   real videos (other seeds) is the reference of the Frechet distance over judge clip embeddings
   ("reference FVD") and gives the process's own spread.
2. **Calibrate** what the conditions need (one-step calibration in 2D and 3D on real clips).
3. **Tune** every condition with a grid on the *tuning seeds* (shorter rollouts): the candidate with the
   best objective wins (object score times motion relative to real, over the second half).
4. **Evaluate** every condition with its chosen candidate on the *evaluation seeds* (disjoint), for
   ``num_frames`` frames.

Conditions that read a calibration of the scheduler's solver step (``needs`` "2d", "3d" or "rollout") are
skipped under ``fewstep``, which has no solver step to probe; each setting records which and why
(:attr:`SettingResult.skipped`, :func:`skip_reason`).

Reported per condition (:class:`Row`): per-window object score, motion score, reference FVD, colour drift
(own-start RMS of channel mean and std), flicker; frames until the object score falls below half of
teacher forcing's, per seed; on the trend process the hue trend kept (measured over true). Every random
draw has its own seeded generator (one per video), so a rerun gives the same numbers.
Latents are pixels ``(B, 3, F, H, W)`` in [-1, 1].

Example:
    >>> result = run_quality(model, judge, QualityConfig(num_frames=256))        # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from vidfix.bench import conditions as C
from vidfix.pipelines.choices import SCHEDULERS, SchedulerName
from vidfix.pipelines.reference.data import TREND, SpriteVideoConfig, reference_videos
from vidfix.pipelines.reference.evaluate import (
    Measured,
    RealPool,
    frames_to_half,
    measure_videos,
    real_pool,
    trend_kept,
    window_table,
)
from vidfix.pipelines.reference.judge import SpriteJudge, require_process
from vidfix.pipelines.sampler import SamplerConfig, sample_video, video_teacher

from vidfix._checks import check_choice
from vidfix.calibration import CalibrationResult, calibrate

__all__ = [
    "Process",
    "QualityConfig",
    "QualityResult",
    "Row",
    "SettingResult",
    "objective",
    "run_quality",
    "skip_reason",
]

Process = Literal["stationary", "trend"]


@dataclass(frozen=True, kw_only=True)
class QualityConfig:
    """One quality benchmark: what runs, on which seeds, how long, and how it is measured."""

    processes: tuple[Process, ...] = ("stationary", "trend")
    schedulers: tuple[SchedulerName, ...] = ("euler", "unipc")  # "fewstep" too: calibrated conditions skipped
    steps: tuple[int, ...] = (8,)  # solver steps per chunk (one calibration and tuning per count)
    num_frames: int = 512  # frames per evaluated video
    tune_frames: int = 128  # frames per tuning video
    window: int = 32  # frames per reported window
    tune_seeds: tuple[int, ...] = (0, 1)  # sampler seeds that choose every parameter
    eval_seeds: tuple[int, ...] = (100, 101, 102, 103)  # sampler seeds every reported number comes from
    conditions: tuple[str, ...] = C.CONDITIONS
    grids: dict[str, tuple[float, ...]] = field(default_factory=dict)  # candidate overrides per condition
    calib_seeds: tuple[int, ...] = tuple(range(700_000, 700_008))  # process seeds of calibration clips
    rollout_chunks: int = 6  # chunks per probe rollout of the rollout calibration (condition dcw_rollout)
    pool_videos: int = 48  # fresh real videos of the FVD reference pool
    batch_size: int = 4  # videos per model call
    shift: float = 1.0  # timestep shift of the schedulers (fewstep's levels too; Self-Forcing's Wan uses 5)
    context_noise: float | None = None  # SkyReels a of the context (None: the model's context_sigma)

    def __post_init__(self) -> None:
        if self.num_frames % self.window or self.tune_frames % self.window:
            raise ValueError(f"num_frames and tune_frames must be multiples of window {self.window}")
        if set(self.tune_seeds) & set(self.eval_seeds):
            raise ValueError("tuning and evaluation seeds must be disjoint")
        for scheduler in self.schedulers:
            check_choice("scheduler", scheduler, SCHEDULERS)
        for name in self.conditions:
            C.get(name)


@dataclass
class Row:
    """One condition's numbers in one setting (evaluation seeds)."""

    condition: str
    parameter: str
    table: dict[str, list[float]]
    frames_to_half: list[int | None]
    trend: list[float]
    tuning: dict[str, float] = field(default_factory=dict)  # candidate -> objective on the tuning seeds


@dataclass
class SettingResult:
    process: str
    scheduler: str
    steps: int
    rows: dict[str, Row]
    seconds: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)  # condition -> why it did not run in this setting


@dataclass
class QualityResult:
    config: dict[str, Any]
    settings: list[SettingResult]
    command: str = ""
    machine: str = ""
    date: str = ""

    def save(self, path: str | Path) -> None:
        """Write strict JSON (NaN as null) atomically."""
        import os

        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(_finite(asdict(self)), indent=1, allow_nan=False) + "\n")
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | Path) -> QualityResult:
        try:
            d = json.loads(Path(path).read_text())
            settings = [
                SettingResult(**{**s, "rows": {k: _row(r) for k, r in s["rows"].items()}})
                for s in d["settings"]
            ]
            return QualityResult(
                d["config"], settings, d.get("command", ""), d.get("machine", ""), d.get("date", "")
            )
        except (KeyError, TypeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: not a saved quality result ({err})") from err


def _finite(v: Any) -> Any:
    """NaN/inf as None, recursively (strict JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x) for x in v]
    return v


def _row(d: dict[str, Any]) -> Row:
    nan = lambda xs: [math.nan if x is None else x for x in xs]  # noqa: E731
    return Row(**{**d, "table": {k: nan(v) for k, v in d["table"].items()}, "trend": nan(d["trend"])})


#: What each calibration ``needs`` probes; the few-step mode has no solver step for any of them.
_STEP_CALIBRATIONS = {
    "2d": "the one-step calibration (2D)",
    "3d": "the one-step calibration (3D)",
    "rollout": "the rollout calibration",
}


def skip_reason(condition: str, scheduler: str) -> str | None:
    """Why ``condition`` cannot run under ``scheduler`` (None: it runs).

    The one-step and rollout calibrations measure the scheduler's solver step through the tap, which
    refuses :class:`~vidfix.pipelines.fewstep.FewStepScheduler` (predict x0, re-noise: no solver step), so
    the conditions that read them do not run in the ``fewstep`` settings.

    Example:
        >>> skip_reason("dcw3d_cal", "fewstep")
        'needs the one-step calibration (3D), which probes a solver step; fewstep (predict x0, re-noise) has none'
        >>> skip_reason("dcw3d_cal", "euler") is None and skip_reason("eps", "fewstep") is None
        True
    """
    if scheduler != "fewstep":
        return None
    cals = [_STEP_CALIBRATIONS[n] for n in C.get(condition).needs if n in _STEP_CALIBRATIONS]
    if not cals:
        return None
    return f"needs {' and '.join(cals)}, which probes a solver step; fewstep (predict x0, re-noise) has none"


def objective(table: dict[str, list[float]], real_motion: float) -> float:
    """Tuning objective over the second half of the windows: mean object score times the motion score
    relative to real video's (capped at 1), so neither lost sprites nor frozen ones win."""
    half = len(table["object"]) // 2
    obj = float(np.mean(table["object"][half:]))
    motion = np.array(table["motion"][half:], dtype=float)
    mot = float(np.nanmean(motion)) if np.isfinite(motion).any() else 0.0
    return obj * min(1.0, mot / max(real_motion, 1e-6))


class _Setting:
    """Everything of one process x scheduler x steps: real videos, pool, calibrations, rollouts."""

    def __init__(
        self,
        model: Any,
        judge: SpriteJudge,
        config: QualityConfig,
        process: Process,
        scheduler: SchedulerName,
        steps: int,
        *,
        log: Callable[[str], None],
        progress: Callable[[int], None],
    ) -> None:
        self.model, self.judge, self.cfg = model, judge, config
        mc = model.config
        self.K, self.Fc, self.size = int(mc.max_context_frames), int(mc.chunk_frames), int(mc.sample_size)
        base = SpriteVideoConfig(height=self.size, width=self.size)
        self.data = replace(base, hue_speed=TREND.hue_speed) if process == "trend" else base
        self.process, self.scheduler, self.steps = process, scheduler, steps
        self.context_noise = (
            1000.0 * float(mc.get("context_sigma", 0.0))
            if config.context_noise is None
            else config.context_noise
        )
        self.log, self.progress = log, progress
        require_process(judge, self.data)
        self.pool: RealPool = real_pool(judge, self.data, videos=config.pool_videos)

    def make_scheduler(self) -> Any:
        from vidfix.pipelines.factory import make_scheduler

        return make_scheduler(
            self.scheduler,
            shift=self.cfg.shift,
            num_train_timesteps=int(self.model.config.num_train_timesteps),
        )

    def context(self, conditions: Sequence[str]) -> C.Context:
        """What ``conditions`` (the ones that run in this setting) need: calibrations, the model."""
        needs = {n for name in conditions for n in C.get(name).needs}
        cals: dict[str, CalibrationResult] = {}
        if needs & {"2d", "3d", "rollout"}:  # real calibration clips (never tuning or evaluation seeds)
            clips = reference_videos(list(self.cfg.calib_seeds), self.K + self.Fc, start=333, config=self.data)
            kw = {"context_sigma": 0.0} if getattr(self.model, "accepts_context_sigma", False) else {}
        if needs & {"2d", "3d"}:
            g = torch.Generator().manual_seed(0)
            for dims in sorted(needs & {"2d", "3d"}):
                cals[dims] = calibrate(
                    self.model, self.make_scheduler(), clips[:, :, self.K :], num_steps=self.steps,
                    context=clips[:, :, : self.K], dims=dims, generator=g, denoiser_kwargs=kw,  # type: ignore[arg-type]  # dims: "2d" or "3d"
                )  # fmt: skip
        extra: dict[str, Any] = {}
        if "model" in needs:  # conditions that call the model themselves (TTC)
            extra["model"] = self.model
        if "rollout" in needs:  # rollout calibration: short rollouts from real calibration clips
            from vidfix.pipelines.calibrate_rollout import RolloutCalibrationConfig, calibrate_rollout

            extra["rollout"] = calibrate_rollout(
                self.model, self.make_scheduler(), self.sampler_config(self.cfg.rollout_chunks * self.Fc),
                seeds=list(self.cfg.calib_seeds), context=clips[:, :, : self.K] if self.K else None,
                reference=clips[:, :, self.K :], options=RolloutCalibrationConfig(dims="3d"), denoiser_kwargs=kw,
            )  # fmt: skip
        return C.Context(calibrations=cals, context_noise=self.context_noise, extra=extra)

    def sampler_config(self, frames: int, setup: C.Setup | None = None) -> SamplerConfig:
        """The sampler settings of this setting for ``frames`` frames (with ``setup``'s baselines)."""
        setup = setup or C.Setup()
        return SamplerConfig(
            num_frames=frames, chunk_frames=self.Fc, context_frames=self.K, channels=3, height=self.size,
            width=self.size, num_steps=self.steps, context_noise=self.context_noise + setup.extra_context_noise,
            anchor=setup.anchor, color_match=setup.color_match,
        )  # fmt: skip

    def real(self, seeds: Sequence[int], frames: int) -> Tensor:
        return reference_videos(list(seeds), self.K + frames, config=self.data)  # (B, C, K + N, H, W)

    @torch.no_grad()
    def rollout(self, setup: C.Setup, seeds: Sequence[int], frames: int) -> Tensor:
        """Videos ``(B, 3, frames, H, W)`` of ``seeds`` under ``setup``, in batches of ``batch_size``."""
        out = []
        for i in range(0, len(seeds), self.cfg.batch_size):
            part = list(seeds[i : i + self.cfg.batch_size])
            real = self.real(part, frames)
            config = self.sampler_config(frames, setup)
            gens = [torch.Generator().manual_seed(s) for s in part]
            video = sample_video(
                self.model, self.make_scheduler(), config, generators=gens, context=real[:, :, : self.K],
                teacher=video_teacher(real, offset=self.K) if setup.teacher else None, corrector=setup.corrector,
                progress=lambda done, total: None,
            )  # fmt: skip
            self.progress(len(part) * frames)
            out.append(video)
        return torch.cat(out)

    def measure(self, video: Tensor, seeds: Sequence[int]) -> Measured:
        return measure_videos(video, self.judge, seeds=seeds, data=self.data)

    def row(
        self, name: str, parameter: str, m: Measured, seeds: Sequence[int], teacher_level: Tensor | None
    ) -> Row:
        table = window_table(m, self.pool, window=self.cfg.window)
        level = teacher_level if teacher_level is not None else m.object.mean(1)
        trend = trend_kept(m.hue, seeds, self.data) if self.process == "trend" else []
        return Row(name, parameter, table, frames_to_half(m.object, level), trend)


def run_quality(
    model: Any,
    judge: SpriteJudge,
    config: QualityConfig,
    *,
    log: Callable[[str], None] = print,
    progress: Callable[[int, int], None] | None = None,
) -> QualityResult:
    """Calibrate, tune on the tuning seeds and evaluate on the evaluation seeds, per setting."""
    import time

    settings = [(p, s, n) for p in config.processes for s in config.schedulers for n in config.steps]

    def runs(scheduler: str) -> list[str]:
        """The conditions that run under ``scheduler`` (the others are skipped, with the reason)."""
        return [c for c in config.conditions if skip_reason(c, scheduler) is None]

    def frames(scheduler: str) -> int:
        """Frames one setting generates: every evaluation rollout and every tuning candidate's."""
        conds = runs(scheduler)
        tuning = sum(len(_grid(config, c)) for c in conds)
        return (
            len(config.eval_seeds) * config.num_frames * len(conds)
            + len(config.tune_seeds) * config.tune_frames * tuning
        )

    total, done = sum(frames(s) for _, s, _ in settings), 0

    def tick(frames: int) -> None:
        nonlocal done
        done += frames
        if progress is not None:
            progress(done, total)

    results = []
    for process, scheduler, steps in settings:
        began = time.monotonic()
        log(f"[{process} {scheduler} {steps} steps] real pool, calibration")
        st = _Setting(model, judge, config, process, scheduler, steps, log=log, progress=tick)
        skipped = {c: r for c in config.conditions if (r := skip_reason(c, scheduler)) is not None}
        for name, why in skipped.items():
            log(f"  {name}: skipped ({why})")
        ctx = st.context(runs(scheduler))
        rows: dict[str, Row] = {}
        eval_seeds, tune_seeds = list(config.eval_seeds), list(config.tune_seeds)
        real_eval = st.real(eval_seeds, config.num_frames)[:, :, st.K :]
        real_m = st.measure(real_eval, eval_seeds)
        real_tune_m = st.measure(st.real(tune_seeds, config.tune_frames)[:, :, st.K :], tune_seeds)
        real_motion = float(np.nanmean(window_table(real_tune_m, st.pool, window=config.window)["motion"]))
        teacher_level: Tensor | None = None
        order = sorted(runs(scheduler), key=lambda c: c != "teacher")  # teacher first: its level
        rows["real"] = st.row("real", "-", real_m, eval_seeds, None)
        for name in order:
            cond = C.get(name)
            grid = _grid(config, name)
            choice: float | None = None
            scores: dict[str, float] = {}
            if grid:
                for value in grid:
                    video = st.rollout(cond.build(value, ctx), tune_seeds, config.tune_frames)
                    m = st.measure(video, tune_seeds)
                    scores[cond.describe(value)] = objective(
                        window_table(m, st.pool, window=config.window), real_motion
                    )
                best = max(scores.values())
                choice = next(v for v in grid if scores[cond.describe(v)] == best)
                log(f"  {name}: tuning {scores} -> {cond.describe(choice)}")
            video = st.rollout(cond.build(choice, ctx), eval_seeds, config.num_frames)
            m = st.measure(video, eval_seeds)
            if name == "teacher":
                teacher_level = m.object.mean(1)
            row = st.row(name, cond.describe(choice), m, eval_seeds, teacher_level)
            row.tuning = scores
            rows[name] = row
            log(f"  {name}: object {[round(x, 2) for x in row.table['object']]}")
        results.append(SettingResult(process, scheduler, steps, rows, time.monotonic() - began, skipped))
    return QualityResult(config=json.loads(json.dumps(asdict(config), default=str)), settings=results)


def _grid(config: QualityConfig, name: str) -> tuple[float, ...]:
    return tuple(config.grids.get(name, C.get(name).grid))
