"""One-line stabilizer for diffusers video pipelines: the vidfix scheduler tap, installed and undone for you.

    >>> handle = stabilize(pipe, DCW(low=0.01), track_drift=True)      # doctest: +SKIP
    >>> video = pipe(prompt, num_frames=81).frames                     # the call is unchanged
    >>> handle.tracker.curve("std"); handle.undo()                     # doctest: +SKIP

or ``with stabilized(pipe, DCW(low=0.01)) as handle: pipe(...)``.

What it does: replaces ``pipe.scheduler`` with a tapped copy (:func:`vidfix.tap`, same scheduler class) that
corrects the data prediction inside every solver step, with the layout the pipeline's scheduler sees (CogVideoX is
frame-first, LTX packs tokens, SkyReels steps one frame at a time and a 3D corrector is applied across the frames
of each step), and gives the pipeline object a subclass of its own class for the duration, so that ``pipe(...)``
can set up each run (the LTX token grid, SkyReels chunk bookkeeping, drift tracking) without any change to the
user's call. That class swap is the one place Python allows intercepting ``pipe(...)``; the subclass keeps the
class name, ``isinstance`` and ``save_pretrained``, and pickles (``torch.save``) as the plain pipeline that is
stabilized again on load. :meth:`Stabilized.undo` restores the original class and scheduler object and switches
the tap off everywhere it was shared: pipelines built from the stabilized one (``WanPipeline(**pipe.components)``,
``from_pipe(pipe)``) step as plain pipelines again.

The correction is not part of the diffusers config: ``pipe.save_pretrained`` writes the plain pipeline and warns;
:meth:`Stabilized.save_pretrained` also writes ``vidfix_stabilize.json``, which :func:`stabilize_from_pretrained`
reads back.

Drift (``track_drift=True``) is read off the latents at the last step of each chunk through
``callback_on_step_end``, composed with the user's own callback (which runs first and may still edit the
latents). Latents are ``(B, C, F, H, W)`` for the corrector and the tracker, whatever the pipeline's layout.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

from torch import Tensor
from vidfix.pipelines import skyreels
from vidfix.pipelines.ltx import LTXTokens, latent_grid

from vidfix.protocols import Corrector
from vidfix.tap import (
    FrameGather,
    LatentLayout,
    TapEvent,
    as_layout,
    corrector_from_dict,
    corrector_to_dict,
    disable,
    is_tapped,
    tap,
)
from vidfix.tracker import DriftTracker

__all__ = [
    "STABILIZE_CONFIG_NAME",
    "SUPPORTED_PIPELINES",
    "ChunkRecord",
    "PipelineSpec",
    "Stabilized",
    "pipeline_spec",
    "stabilize",
    "stabilize_from_pretrained",
    "stabilized",
    "stabilizer",
]

STABILIZE_CONFIG_NAME = "vidfix_stabilize.json"

Family: TypeAlias = Literal["wan", "ltx", "cogvideox", "hunyuan", "skyreels_df"]
LayoutKind: TypeAlias = Literal["BCFHW", "BFCHW", "ltx_tokens"]


@dataclass(frozen=True)
class PipelineSpec:
    """How vidfix hooks one diffusers pipeline class.

    Attributes:
        family: the model family (decides the hooks below).
        layout: latents as the pipeline's scheduler sees them.
    """

    family: Family
    layout: LayoutKind

    @property
    def chunked(self) -> bool:
        """Generates the video chunk by chunk, stepping one scheduler per latent frame (SkyReels DF)."""
        return self.family == "skyreels_df"


# diffusers pipeline class name -> how to hook it. Subclasses of these classes are accepted too.
SUPPORTED_PIPELINES: dict[str, PipelineSpec] = {
    "WanPipeline": PipelineSpec("wan", "BCFHW"),
    "WanImageToVideoPipeline": PipelineSpec("wan", "BCFHW"),
    "LTXPipeline": PipelineSpec("ltx", "ltx_tokens"),
    "LTXConditionPipeline": PipelineSpec("ltx", "ltx_tokens"),
    "CogVideoXPipeline": PipelineSpec("cogvideox", "BFCHW"),
    "HunyuanVideoPipeline": PipelineSpec("hunyuan", "BCFHW"),
    "SkyReelsV2DiffusionForcingPipeline": PipelineSpec("skyreels_df", "BCFHW"),
    "SkyReelsV2DiffusionForcingImageToVideoPipeline": PipelineSpec("skyreels_df", "BCFHW"),
    "SkyReelsV2DiffusionForcingVideoToVideoPipeline": PipelineSpec("skyreels_df", "BCFHW"),
}


@dataclass
class ChunkRecord:
    """What the corrector did in one chunk of a run (single-chunk pipelines have one).

    Attributes:
        index: chunk number within the run.
        iterations: denoising-loop iterations of the chunk (0 when unknown).
        denoised_frames: latent frames of the chunk's window that it denoised (SkyReels DF; the clean
            prefix and frames the pipeline never steps are left out); empty for single-chunk pipelines.
        steps: scheduler steps the tap saw (one per latent frame and iteration for SkyReels).
        corrected: steps in which the corrector changed the data prediction.
        max_change: largest absolute change of the data prediction over the chunk.
    """

    index: int
    iterations: int = 0
    denoised_frames: tuple[int, ...] = ()
    steps: int = 0
    corrected: int = 0
    max_change: float = 0.0


def pipeline_spec(pipe: Any) -> tuple[type, PipelineSpec]:
    """The supported diffusers class behind ``pipe`` and its :class:`PipelineSpec`.

    Raises:
        TypeError: the pipeline is not supported (the message lists the supported ones).
    """
    for cls in type(pipe).__mro__:
        if cls.__name__ in SUPPORTED_PIPELINES and cls.__module__.startswith("diffusers."):
            return cls, SUPPORTED_PIPELINES[cls.__name__]
    raise TypeError(
        f"{type(pipe).__name__} is not supported by vidfix.pipelines.stabilize; supported: "
        f"{', '.join(SUPPORTED_PIPELINES)}. Any other pipeline whose scheduler is supported can be tapped "
        "directly: pipe.scheduler = vidfix.tap(pipe.scheduler, corrector, layout=...)"
    )


def _hook(original: Callable[..., Any], hook: Callable[..., Any]) -> Callable[..., Any]:
    """A method with ``original``'s name and signature that calls ``hook(original, self, args, kwargs)``."""

    @functools.wraps(original)
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return hook(original, self, args, kwargs)

    return method


@dataclass(eq=False)
class Stabilized:
    """A stabilized pipeline: what :func:`stabilize` installed, the run records, and :meth:`undo`.

    Also a context manager that undoes on exit. Records describe the most recent ``pipe(...)`` call.

    Attributes:
        pipe: the pipeline (its class is a vidfix subclass while active).
        corrector: the corrector applied in every scheduler step.
        spec: how the pipeline is hooked.
        track_drift: record drift at every call (see :attr:`tracker`).
        drift_window: latent frames per tracker entry for a run made of one chunk.
        observer: optional extra :class:`vidfix.tap.TapEvent` observer.
        check_finite: raise on a non-finite corrected step (see :func:`vidfix.tap`).
        tracker: the drift record of the latest call (``track_drift=True``): one entry per chunk when the
            pipeline generated several (SkyReels long mode), else one entry per ``drift_window`` latent frames.
        chunks: one :class:`ChunkRecord` per chunk of the latest call.
        active: whether the stabilizer is installed.
    """

    pipe: Any = field(repr=False)
    corrector: Corrector
    spec: PipelineSpec
    track_drift: bool = False
    drift_window: int = 1
    observer: Callable[[TapEvent], None] | None = None
    check_finite: bool = True
    tracker: DriftTracker | None = field(default=None, repr=False)
    chunks: list[ChunkRecord] = field(default_factory=list)
    active: bool = False
    _base_class: type = field(default=object, repr=False)
    _original_scheduler: Any = field(default=None, repr=False)
    _tapped: Any = field(default=None, repr=False)
    _taps: list[Any] = field(default_factory=list, repr=False)  # every scheduler this handle tapped
    _layout: LatentLayout = field(default_factory=lambda: as_layout("BCFHW"), repr=False)
    _gather: FrameGather | None = field(default=None, repr=False)
    _masks: list[Tensor] = field(default_factory=list, repr=False)
    _finished: list[Tensor] = field(default_factory=list, repr=False)

    def settings(self) -> dict[str, Any]:
        """The :func:`stabilize` arguments that rebuild this stabilizer (the observer, a live callback, is left out)."""
        return {
            "corrector": self.corrector,
            "track_drift": self.track_drift,
            "drift_window": self.drift_window,
            "check_finite": self.check_finite,
        }

    # -- install / undo --------------------------------------------------------------------------------

    def _install(self) -> None:
        pipe = self.pipe
        cls = type(pipe)
        if self.spec.layout == "ltx_tokens":
            self._layout = LTXTokens(
                patch_size=int(getattr(pipe, "transformer_spatial_patch_size", 1)),
                patch_size_t=int(getattr(pipe, "transformer_temporal_patch_size", 1)),
            )
        else:
            self._layout = as_layout(self.spec.layout)
        if self.spec.chunked and skyreels.wants_3d(self.corrector):
            self._gather = FrameGather()
        self._tap(pipe.scheduler)  # raises for an unsupported scheduler before anything is changed
        # A subclass of the pipeline's own class, same name: isinstance checks and save_pretrained still work.
        attrs: dict[str, Any] = {
            "__module__": cls.__module__,
            "__qualname__": cls.__qualname__,
            "__doc__": cls.__doc__,
            "_vidfix_handle": self,
            "__call__": _hook(cls.__call__, self._call),
            "__reduce_ex__": _reduce_stabilized,
        }
        if self.spec.layout == "ltx_tokens":
            attrs["prepare_latents"] = _hook(cls.prepare_latents, self._prepare_ltx_latents)
        if self.spec.chunked:
            attrs["generate_timestep_matrix"] = _hook(cls.generate_timestep_matrix, self._begin_chunk)
        self._base_class = cls
        object.__setattr__(pipe, "__class__", type(cls.__name__, (cls,), attrs))
        pipe.scheduler = self._tapped
        self.active = True

    def _tap(self, scheduler: Any) -> None:
        tapped = tap(
            scheduler,
            self.corrector,
            layout=self._layout,
            observer=self._observe,
            check_finite=self.check_finite,
            gather=self._gather,
        )
        self._tapped, self._original_scheduler = tapped, scheduler
        self._taps.append(tapped)

    def undo(self) -> None:
        """Restore the pipeline's class and its original scheduler object, and switch the tap off everywhere it
        is shared (scheduler copies, pipelines built from this one's components); idempotent."""
        if not self.active:
            return
        pipe = self.pipe
        if type(pipe).__dict__.get("_vidfix_handle") is self:
            object.__setattr__(pipe, "__class__", self._base_class)
        else:
            warnings.warn(
                f"the class of {type(pipe).__name__} was changed after stabilize(); it is left as it is",
                stacklevel=2,
            )
        if pipe.scheduler is self._tapped:
            pipe.scheduler = self._original_scheduler
        for tapped in self._taps:
            disable(tapped)
        self.active = False

    def __enter__(self) -> Stabilized:
        return self

    def __exit__(self, *exc: object) -> None:
        self.undo()

    def save_pretrained(self, directory: str | os.PathLike[str], **kwargs: Any) -> Path:
        """Save the pipeline (``pipe.save_pretrained``, plain diffusers files) and the stabilizer's settings
        (``vidfix_stabilize.json``, read by :func:`stabilize_from_pretrained`). Returns the settings file's path.

        Raises:
            ValueError: the corrector cannot be rebuilt from a file (no ``to_dict()``, or stateful: BandAnchor,
                ClosedLoop, TTC); raised before anything is written.
        """
        corrector = corrector_to_dict(self.corrector)
        directory = Path(directory)
        scheduler = self.pipe.scheduler
        scheduler.__dict__["_vidfix_saving"] = True  # asked for: no "correction not saved" warning
        try:
            self.pipe.save_pretrained(directory, **kwargs)
        finally:
            scheduler.__dict__.pop("_vidfix_saving", None)
        settings = self.settings() | {"corrector": corrector}
        path = directory / STABILIZE_CONFIG_NAME
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"type": "vidfix-stabilize", "version": 1, **settings}, indent=2) + "\n")
        os.replace(tmp, path)
        return path

    # -- one pipeline call -----------------------------------------------------------------------------

    def _call(
        self, original: Callable[..., Any], pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if pipe.scheduler is not self._tapped:
            self._retap(pipe)
        self.chunks = [] if self.spec.chunked else [ChunkRecord(0)]
        self.tracker = DriftTracker() if self.track_drift else None
        self._masks, self._finished = [], []
        if self.track_drift:
            args, kwargs = self._with_drift_callback(original, pipe, args, kwargs)
        try:
            out = original(pipe, *args, **kwargs)
        finally:
            if self._gather is not None:
                self._gather.end()
            for record, mask in zip(self.chunks, self._masks):
                record.denoised_frames = skyreels.denoised_frames(mask)
            if not self.spec.chunked:
                self.chunks[0].iterations = int(getattr(pipe, "_num_timesteps", 0) or 0)
        if self.tracker is not None:
            self._record_drift(self.tracker)
        return out

    def _retap(self, pipe: Any) -> None:
        """The user replaced ``pipe.scheduler`` after stabilize(): tap the new one instead of doing nothing."""
        replacement = pipe.scheduler
        warnings.warn(
            f"pipe.scheduler was replaced after stabilize(); vidfix taps the new {type(replacement).__name__} "
            "(undo() restores it)",
            stacklevel=4,
        )
        self._tap(replacement)
        pipe.scheduler = self._tapped

    def _observe(self, event: TapEvent) -> None:
        if not self.chunks:
            self.chunks.append(ChunkRecord(0))
        record = self.chunks[-1]
        record.steps += 1
        if event.corrected:
            record.corrected += 1
            record.max_change = max(record.max_change, float(event.change().abs().max()))
        if self.observer is not None:
            self.observer(event)

    # -- family hooks ----------------------------------------------------------------------------------

    def _prepare_ltx_latents(
        self, original: Callable[..., Any], pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Learn this run's token grid from LTX's ``prepare_latents`` arguments and result."""
        bound = inspect.signature(original).bind(pipe, *args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        layout = self._layout
        assert isinstance(layout, LTXTokens)
        grid = latent_grid(
            int(a["num_frames"]),
            int(a["height"]),
            int(a["width"]),
            temporal_ratio=int(pipe.vae_temporal_compression_ratio),
            spatial_ratio=int(pipe.vae_spatial_compression_ratio),
            patch_size=layout.patch_size,
            patch_size_t=layout.patch_size_t,
        )
        out = original(pipe, *args, **kwargs)
        packed = out[0] if isinstance(out, tuple) else out  # (B, prefix + F*H*W, D)
        prefix = packed.shape[1] - grid[0] * grid[1] * grid[2]
        if prefix < 0:
            raise ValueError(
                f"LTX latents hold {packed.shape[1]} tokens, fewer than the grid {grid} of this run"
            )
        layout.grid, layout.prefix_tokens = grid, prefix
        return out

    def _begin_chunk(
        self, original: Callable[..., Any], pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """SkyReels DF builds one timestep matrix per chunk: a new chunk starts here."""
        out = original(pipe, *args, **kwargs)
        step_matrix, _, update_mask, valid_interval = (
            out  # (iterations, frames) each; (start, end) per iteration
        )
        self._masks.append(update_mask)  # kept by reference: the I2V pipeline edits it in place afterwards
        self.chunks.append(ChunkRecord(len(self.chunks), iterations=len(step_matrix)))
        if self._gather is not None:
            self._gather.begin(skyreels.iteration_frames(update_mask, valid_interval))
        return out

    # -- drift -----------------------------------------------------------------------------------------

    def _with_drift_callback(
        self, original: Callable[..., Any], pipe: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The same call with the user's callback wrapped so the last step of each chunk is observed."""
        sig = inspect.signature(original)
        bound = sig.bind(pipe, *args, **kwargs)
        user = bound.arguments.get("callback_on_step_end")
        carried = getattr(user, "tensor_inputs", None)  # PipelineCallback / MultiPipelineCallbacks carry them
        if carried is not None:
            user_inputs = list(carried)
        else:
            default = sig.parameters["callback_on_step_end_tensor_inputs"].default
            user_inputs = list(bound.arguments.get("callback_on_step_end_tensor_inputs", default) or [])
        bound.arguments["callback_on_step_end"] = _DriftCallback(self, user, user_inputs)
        bound.arguments["callback_on_step_end_tensor_inputs"] = list(dict.fromkeys([*user_inputs, "latents"]))
        return bound.args[1:], bound.kwargs

    def _chunk_finished(self, pipe: Any, step: int, latents: Tensor) -> None:
        if step != getattr(pipe, "_num_timesteps", -1) - 1:
            return
        x = self._layout.to_bcfhw(latents).detach()  # (B, C, F, H, W)
        if self.spec.chunked and self._masks:
            frames = list(skyreels.denoised_frames(self._masks[-1]))
            x = x[:, :, frames]  # (B, C, F', H, W): only what this chunk denoised
        self._finished.append(x.clone())

    def _record_drift(self, tracker: DriftTracker) -> None:
        chunks = [c for c in self._finished if c.shape[2] > 0]
        if len(chunks) > 1:
            for k, chunk in enumerate(chunks):
                tracker(chunk, index=k)
        elif chunks:
            video = chunks[0]
            for k, start in enumerate(range(0, video.shape[2], self.drift_window)):
                tracker(video[:, :, start : start + self.drift_window], index=k)


@dataclass(frozen=True)
class _DriftCallback:
    """``callback_on_step_end`` that runs the user's callback on exactly its inputs, then observes."""

    handle: Stabilized
    user: Any
    user_inputs: list[str]

    def __call__(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> Any:
        result: Any = callback_kwargs
        if self.user is not None:
            result = self.user(pipe, step, timestep, {k: callback_kwargs[k] for k in self.user_inputs})
        latents = result.get("latents", callback_kwargs["latents"]) if isinstance(result, dict) else None
        if latents is None:
            latents = callback_kwargs["latents"]
        self.handle._chunk_finished(pipe, step, latents)
        return result


def _reduce_stabilized(pipe: Any, protocol: int) -> tuple[Any, ...]:
    """Pickle (``torch.save``, ``copy.deepcopy``) a stabilized pipeline as its plain pipeline plus the settings;
    loading stabilizes it again (:func:`stabilizer` gives the new handle)."""
    handle: Stabilized = type(pipe)._vidfix_handle
    if handle.observer is not None:
        warnings.warn("pickling a stabilized pipeline drops its observer (a live callback)", stacklevel=3)
    state = dict(pipe.__dict__)
    if state.get("scheduler") is handle._tapped:
        state["scheduler"] = handle._original_scheduler
    return (_restabilize, (handle._base_class, state, handle.settings()))


def _restabilize(cls: type[Any], state: dict[str, Any], settings: dict[str, Any]) -> Any:
    pipe = object.__new__(cls)
    pipe.__dict__.update(state)
    stabilize(pipe, **settings)
    return pipe


def stabilizer(pipe: Any) -> Stabilized | None:
    """The active :class:`Stabilized` handle of a pipeline (e.g. one loaded with ``torch.load``), or None."""
    return type(pipe).__dict__.get("_vidfix_handle")


def stabilize(
    pipe: Any,
    corrector: Corrector | None = None,
    *,
    calibration: str | os.PathLike[str] | None = None,
    track_drift: bool = False,
    drift_window: int = 1,
    observer: Callable[[TapEvent], None] | None = None,
    check_finite: bool = True,
) -> Stabilized:
    """Correct every scheduler step of a diffusers video pipeline with ``corrector``; the call is unchanged.

    Args:
        pipe: a supported pipeline (see ``SUPPORTED_PIPELINES``) with a supported scheduler
            (``vidfix.SUPPORTED_SCHEDULERS``).
        corrector: e.g. ``DCW(low=...)``, ``EpsScaling(scale=...)``, ``Identity()`` (a no-op that leaves
            the output bit-identical). Coefficients are model-specific: measure them (docs/diffusers.md).
        calibration: instead of ``corrector``, a file written by ``vidfix calibrate --pipeline DIR`` (the
            DCW measured for this pipeline; a file from another pipeline or scheduler is refused).
        track_drift: record per-chunk drift statistics of each call in ``handle.tracker``.
        drift_window: latent frames per tracker entry when a run is one chunk (Wan, LTX, ...).
        observer: called with every tapped step's :class:`vidfix.tap.TapEvent` (debugging, custom stats).
        check_finite: raise ``FloatingPointError`` when a corrected step holds NaN or inf.

    Returns:
        A :class:`Stabilized` handle; ``handle.undo()`` (or leaving a ``with`` block) restores the pipeline.

    Raises:
        TypeError: unsupported pipeline or scheduler (the message lists the supported ones).
        RuntimeError: the pipeline is already stabilized.
        ValueError: a bad option (``drift_window``), or both ``corrector`` and ``calibration``.
    """
    if calibration is not None:  # the measured DCW (vidfix.pipelines.adapters)
        if corrector is not None:
            raise ValueError("give a corrector or calibration=FILE, not both")
        from vidfix.pipelines.adapters import corrector_from_calibration

        corrector = corrector_from_calibration(calibration, pipe)
    if corrector is None:
        raise TypeError("stabilize needs a corrector (e.g. DCW(low=...)) or calibration=FILE")
    active = stabilizer(pipe)
    if active is not None:
        raise RuntimeError(
            f"{type(pipe).__name__} is already stabilized by vidfix ({active!r}); undo() it first"
        )
    _, spec = pipeline_spec(pipe)
    if not isinstance(drift_window, int) or drift_window < 1:
        raise ValueError(f"drift_window must be a positive int, got {drift_window!r}")
    if is_tapped(pipe.scheduler):
        warnings.warn(
            "pipe.scheduler is already tapped; stabilize() replaces that tap with its own", stacklevel=2
        )
    handle = Stabilized(
        pipe,
        corrector,
        spec,
        track_drift=track_drift,
        drift_window=drift_window,
        observer=observer,
        check_finite=check_finite,
    )
    handle._install()
    return handle


def stabilized(pipe: Any, corrector: Corrector | None = None, **options: Any) -> Stabilized:
    """Context-manager spelling of :func:`stabilize` (same arguments):
    ``with stabilized(pipe, dcw) as handle: pipe(...)``."""
    return stabilize(pipe, corrector, **options)


def stabilize_from_pretrained(pipe: Any, directory: str | os.PathLike[str], **overrides: Any) -> Stabilized:
    """Stabilize ``pipe`` (loaded from ``directory``) with the settings :meth:`Stabilized.save_pretrained` wrote.

    ``overrides`` replace saved options (e.g. ``observer=``). Raises ``FileNotFoundError`` / ``ValueError``
    naming the settings file when it is missing or unreadable.
    """
    path = Path(directory) / STABILIZE_CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the folder holds no vidfix stabilizer (Stabilized.save_pretrained)"
        )
    try:
        data = json.loads(path.read_text())
        if data.get("type") != "vidfix-stabilize":
            raise ValueError(f"type is {data.get('type')!r}, not 'vidfix-stabilize'")
        corrector = corrector_from_dict(data["corrector"])
        options = {k: data[k] for k in ("track_drift", "drift_window", "check_finite") if k in data}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path}: not a vidfix stabilizer file ({err})") from err
    return stabilize(pipe, **({"corrector": corrector} | options | overrides))
