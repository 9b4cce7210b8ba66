"""Persistent, resumable generation of many seeds: one folder per video, one checkpoint per finished chunk.

A killed run resumes from its last finished chunk and gives a video bit-identical to an uninterrupted run:
each chunk file holds the chunk and everything needed to continue after it. Layout of
``out_dir/seed_000005/``::

    run.json                         spec (sampler config, scheduler, corrector, model), seed, progress
    chunks/chunk_0000.safetensors    "chunk" (C, F, H, W) after anchoring; "generator" (the seed's
                                     torch.Generator state after it); "stats" (C, 4) anchoring targets;
                                     "next_context" (C, <= K, H, W) the next chunk's clean context;
                                     metadata: index, start
    start_context.safetensors        "context" (C, K0, H, W), frames before the video (only if given)
    video.safetensors                "video" (C, N, H, W), when complete
    drift.json                       the seed's DriftTracker (one record per chunk), when complete

Files are written to a temporary name and renamed, so a kill never leaves half a file. A folder made
with a different spec is refused (the error lists the differences) and nothing in it is touched; a
folder that already holds a run is refused unless ``resume=True``.

Latents are ``(B, C, F, H, W)``; a batch of seeds is ``B`` videos, each with its own generator.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from vidfix.pipelines.sampler import (
    ChunkCallback,
    NonFiniteChunkError,
    SamplerConfig,
    SamplerState,
    StepCallback,
    chunk_starts,
    context_before,
    merge_chunk,
    sample_video,
)

from vidfix.bands import Dims
from vidfix.protocols import Corrector, Denoiser
from vidfix.tap import original_class
from vidfix.tracker import DriftTracker

__all__ = [
    "RunFolder",
    "RunFolderError",
    "ensure_writable",
    "generate_videos",
    "load_video",
    "run_spec",
    "seed_folder",
]

_RUN_TYPE = "vidfix-run"


class RunFolderError(ValueError):
    """An output folder that cannot be used as asked (holds another run, or a different spec)."""


def seed_folder(out_dir: str | os.PathLike[str], seed: int) -> Path:
    """The folder of one seed's video: ``out_dir/seed_000005``."""
    return Path(out_dir) / f"seed_{seed:06d}"


def ensure_writable(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) and check a file can be written there; a clear ``OSError`` if not."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".vidfix_write_probe_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise OSError(f"output folder {str(out)!r} is not writable: {err.strerror or err}") from err
    return out


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _describe(obj: Any) -> Any:
    if obj is None:
        return None
    to_dict = getattr(obj, "to_dict", None)
    return to_dict() if callable(to_dict) else repr(obj)


def run_spec(
    config: SamplerConfig,
    scheduler: Any,
    corrector: Corrector | None,
    *,
    model: Any = None,
    dtype: torch.dtype = torch.float32,
    start_context: Tensor | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON identity of a run (everything but the seed): a resume must match it exactly."""
    sched_cfg = {k: v for k, v in json.loads(scheduler.to_json_string()).items() if not k.startswith("_")}
    ctx_hash = None
    if start_context is not None:
        ctx_hash = hashlib.sha256(
            start_context.detach().float().cpu().contiguous().numpy().tobytes()
        ).hexdigest()
    spec = {
        "sampler": asdict(config),
        "scheduler": {"class": original_class(scheduler).__name__, "config": sched_cfg},
        "corrector": _describe(corrector),
        "model": model,
        "dtype": str(dtype).removeprefix("torch."),
        "start_context_sha256": ctx_hash,
    }
    return _jsonable(spec | (extra or {}))


def _diff(old: Any, new: Any, path: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            out += _diff(old.get(k, "<absent>"), new.get(k, "<absent>"), f"{path}.{k}" if path else str(k))
        return out
    return [] if old == new else [f"{path}: {old!r} in the folder, {new!r} now"]


def _save_atomic(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _write_json_atomic(data: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


class RunFolder:
    """The folder of one seed's video: checkpoints, resume state and final outputs."""

    def __init__(self, path: str | os.PathLike[str], seed: int, spec: dict[str, Any]) -> None:
        self.path, self.seed, self.spec = Path(path), int(seed), spec

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def video_path(self) -> Path:
        return self.path / "video.safetensors"

    @property
    def drift_path(self) -> Path:
        return self.path / "drift.json"

    def chunk_path(self, index: int) -> Path:
        return self.path / "chunks" / f"chunk_{index:04d}.safetensors"

    def exists(self) -> bool:
        return self.run_json.exists()

    def is_complete(self) -> bool:
        return (
            self.exists()
            and bool(json.loads(self.run_json.read_text()).get("complete"))
            and self.video_path.exists()
        )

    def open(self, *, resume: bool) -> None:
        """Claim the folder: refuse another run's folder (or any run without ``resume``); else start it."""
        if self.exists():
            data = json.loads(self.run_json.read_text())
            if data.get("type") != _RUN_TYPE:
                raise RunFolderError(
                    f"{self.run_json} is not a vidfix run file; choose another output folder"
                )
            if not resume:
                raise RunFolderError(
                    f"{self.path} already holds a vidfix run (seed {data.get('seed')}); pass resume=True "
                    "(--resume) to continue it, or choose another output folder; nothing was changed"
                )
            diff = _diff(data.get("spec"), self.spec)
            if data.get("seed") != self.seed:
                diff.insert(0, f"seed: {data.get('seed')!r} in the folder, {self.seed!r} now")
            if diff:
                raise RunFolderError(
                    f"cannot resume {self.path}: it was made with a different config; nothing was changed.\n  "
                    + "\n  ".join(diff)
                )
            return
        if self.path.exists() and any(self.path.iterdir()):
            raise RunFolderError(
                f"{self.path} exists and is not empty but holds no vidfix run; choose another output folder"
            )
        ensure_writable(self.path / "chunks")
        self._write_run_json(chunks_done=0, complete=False)

    def _write_run_json(self, *, chunks_done: int, complete: bool) -> None:
        _write_json_atomic(
            {"type": _RUN_TYPE, "version": 1, "seed": self.seed, "spec": self.spec, "chunks_done": chunks_done,
             "num_chunks": len(chunk_starts(SamplerConfig(**self.spec["sampler"]))), "complete": complete},
            self.run_json,
        )  # fmt: skip

    def save_start_context(self, context: Tensor) -> None:
        """``context`` ``(C, K0, H, W)``: the clean frames before the video."""
        _save_atomic({"context": context}, self.path / "start_context.safetensors")

    def write_chunk(
        self,
        index: int,
        start: int,
        chunk: Tensor,
        *,
        generator_state: Tensor,
        stats: Tensor,
        next_context: Tensor | None,
    ) -> None:
        """Checkpoint one finished chunk ``(C, F, H, W)`` with the state to continue after it."""
        tensors = {"chunk": chunk, "generator": generator_state, "stats": stats}
        if next_context is not None:
            tensors["next_context"] = next_context
        _save_atomic(tensors, self.chunk_path(index), {"index": str(index), "start": str(start)})
        self._write_run_json(chunks_done=index + 1, complete=False)

    def load_state(self) -> SamplerState | None:
        """The state after the last finished chunk (batch of one), or None when no chunk is finished.

        The chunks are merged again and the stored context of the next chunk is checked against the result,
        so a damaged or foreign chunk file is caught here rather than in a wrong video.
        """
        cfg = SamplerConfig(**self.spec["sampler"])
        starts = chunk_starts(cfg)
        saved: list[dict[str, Tensor]] = []
        while len(saved) < len(starts) and self.chunk_path(len(saved)).exists():
            saved.append(_load(self.chunk_path(len(saved))))
        if not saved:
            return None
        ctx_path = self.path / "start_context.safetensors"
        start_context = _load(ctx_path)["context"][None] if ctx_path.exists() else None
        chunks = tuple(s["chunk"][None] for s in saved)  # each (1, C, F, H, W)
        expected = saved[-1].get("next_context")
        if expected is not None:
            prefix = (
                start_context
                if start_context is not None
                else chunks[0].new_zeros(1, cfg.channels, 0, cfg.height, cfg.width)
            )
            video = chunks[0].new_zeros(1, cfg.channels, 0, cfg.height, cfg.width)
            for k, c in enumerate(chunks):
                video = merge_chunk(video, c, starts[k])
            got = context_before(prefix, video, starts[len(chunks)], cfg.context_frames)
            if got is None or not torch.equal(got[0], expected):
                raise RunFolderError(
                    f"{self.path}: chunk files are inconsistent (context of chunk {len(chunks)} differs)"
                )
        return SamplerState(chunks, (saved[-1]["generator"],), saved[-1]["stats"][None], start_context)

    def finish(self, video: Tensor, tracker: DriftTracker) -> None:
        """Write the finished video ``(C, N, H, W)`` and its drift JSON; mark the run complete."""
        _save_atomic({"video": video}, self.video_path, {"seed": str(self.seed)})
        tracker.to_json(self.drift_path)
        self._write_run_json(chunks_done=len(tracker.records), complete=True)


def load_video(folder: str | os.PathLike[str]) -> Tensor:
    """The finished video ``(C, N, H, W)`` of a seed folder."""
    return _load(Path(folder) / "video.safetensors")["video"]


def generate_videos(
    denoiser: Denoiser,
    scheduler: Any,
    config: SamplerConfig,
    seeds: Sequence[int],
    *,
    out_dir: str | os.PathLike[str],
    corrector: Corrector | None = None,
    resume: bool = False,
    batch_size: int = 1,
    model: Any = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    start_context: Callable[[Sequence[int]], Tensor | None] | None = None,
    callback: StepCallback | None = None,
    on_chunk: ChunkCallback | Sequence[ChunkCallback] = (),
    progress: Callable[[int, int], None] | None = None,
    tracker_dims: Dims = "3d",
) -> list[dict[str, Any]]:
    """Generate one video per seed into ``out_dir/seed_XXXXXX/``, checkpointing every chunk; resumable.

    Seeds are processed in batches of ``batch_size`` in the given order; each video's noise comes from
    ``torch.Generator().manual_seed(seed)`` (CPU), so a video depends only on its seed and the spec.

    Args:
        denoiser, scheduler, config, corrector: as in :func:`sample_video`.
        seeds: the videos to make.
        out_dir: output folder (created; must be writable).
        resume: continue the runs found there (bit-identical to an uninterrupted run); complete seeds are
            kept as they are. Without it, a seed folder that already holds a run is refused.
        batch_size: videos per model call.
        model: JSON-able description of the model (part of the spec a resume must match).
        device, dtype: where the latents live.
        start_context: ``fn(seeds) -> (B, C, K0, H, W)`` clean frames before each video, or None.
        callback, on_chunk: per-step and per-chunk callbacks, passed on to :func:`sample_video`.
        progress: ``progress(done_steps, total_steps)`` over all seeds of this call.
        tracker_dims: band transform of each seed's :class:`DriftTracker`.

    Returns:
        One record per seed: ``seed, folder, video, drift, frames, chunks, resumed_chunks, seconds``.

    Raises:
        OSError: the output folder is not writable.
        RunFolderError: a seed folder holds another run or a run with a different spec.
        NonFiniteChunkError: a chunk went NaN/inf; the message names the chunk, seeds and folders (the
            finished chunks stay there).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    ensure_writable(out_dir)
    extra_callbacks = [on_chunk] if callable(on_chunk) else list(on_chunk)
    starts = chunk_starts(config)
    steps_total = len(seeds) * len(starts) * config.num_steps
    steps_before = 0
    records: list[dict[str, Any]] = []

    for i in range(0, len(seeds), batch_size):
        batch = seeds[i : i + batch_size]
        ctx = start_context(batch) if start_context is not None else None
        spec = run_spec(config, scheduler, corrector, model=model, dtype=dtype, start_context=ctx)
        folders = [RunFolder(seed_folder(out_dir, s), s, spec) for s in batch]
        for f in folders:  # claim every folder of the batch before any work
            f.open(resume=resume)
        todo = [b for b, f in enumerate(folders) if not f.is_complete()]
        for b, f in enumerate(folders):
            if b not in todo:
                records.append(_record(f, config, seconds=0.0, resumed=len(starts)))
        # Videos resumed at the same chunk run together.
        groups: dict[int, list[tuple[int, SamplerState | None]]] = {}
        for b in todo:
            st = folders[b].load_state() if resume else None
            groups.setdefault(0 if st is None else st.next_chunk, []).append((b, st))
        for done_chunks, members in sorted(groups.items()):
            idx = [b for b, _ in members]
            t0 = time.perf_counter()
            gens = [torch.Generator().manual_seed(batch[b]) for b in idx]
            state = SamplerState.stack([st for _, st in members]) if done_chunks else None  # type: ignore[misc]
            group_ctx = None if ctx is None else ctx[idx]
            if group_ctx is not None and not done_chunks:
                for b in idx:
                    folders[b].save_start_context(ctx[b])  # type: ignore[index]
            trackers = [DriftTracker(dims=tracker_dims) for _ in idx]
            writer = _writer([folders[b] for b in idx], trackers, config, group_ctx)
            base = steps_before  # sample_video counts the resumed chunks' steps as done
            steps_before += len(starts) * config.num_steps * len(idx)
            prog = None if progress is None else _offset_progress(progress, base, len(idx), steps_total)
            try:
                video = sample_video(
                    denoiser, scheduler, config, generators=gens, corrector=corrector, context=group_ctx,
                    callback=callback, on_chunk=[writer, *extra_callbacks], state=state, device=device,
                    dtype=dtype, progress=prog,
                )  # fmt: skip
            except NonFiniteChunkError as err:
                bad = [batch[idx[j]] for j in err.items]
                raise NonFiniteChunkError(
                    f"{err} (seeds {bad}); the finished chunks are kept in "
                    + ", ".join(str(folders[idx[j]].path / "chunks") for j in err.items),
                    chunk=err.chunk,
                    items=err.items,
                    video=err.video,
                ) from err
            seconds = time.perf_counter() - t0
            for j, b in enumerate(idx):
                folders[b].finish(video[j], trackers[j])
                records.append(_record(folders[b], config, seconds=seconds / len(idx), resumed=done_chunks))
    return records


def _writer(
    folders: list[RunFolder],
    trackers: list[DriftTracker],
    config: SamplerConfig,
    start_context: Tensor | None,
) -> ChunkCallback:
    """Per-chunk callback: track each video's drift and checkpoint it (restored chunks are only tracked)."""
    starts = chunk_starts(config)

    def write(
        chunk: Tensor, *, index: int, start: int, video: Tensor, state: SamplerState, restored: bool
    ) -> None:
        for j, (folder, tracker) in enumerate(zip(folders, trackers)):
            tracker(chunk[j : j + 1], index=index)
            if restored:
                continue
            next_context = None
            if index + 1 < len(starts):
                prefix = (
                    start_context[j : j + 1].to(video) if start_context is not None
                    else video.new_zeros(1, config.channels, 0, config.height, config.width)
                )  # fmt: skip
                nc = context_before(prefix, video[j : j + 1], starts[index + 1], config.context_frames)
                next_context = None if nc is None else nc[0]
            folder.write_chunk(
                index, start, chunk[j], generator_state=state.generator_states[j], stats=state.stats[j],  # type: ignore[index]
                next_context=next_context,
            )  # fmt: skip

    return write  # type: ignore[return-value]


def _offset_progress(
    progress: Callable[[int, int], None], base: int, videos: int, total: int
) -> Callable[[int, int], None]:
    """A group's ``(done batch steps, _)`` as ``(done video steps over the whole call, total)``."""
    return lambda done, _: progress(base + done * videos, total)


def _record(folder: RunFolder, config: SamplerConfig, *, seconds: float, resumed: int) -> dict[str, Any]:
    return {
        "seed": folder.seed,
        "folder": str(folder.path),
        "video": str(folder.video_path),
        "drift": str(folder.drift_path),
        "frames": config.num_frames,
        "chunks": len(chunk_starts(config)),
        "resumed_chunks": resumed,
        "seconds": round(seconds, 3),
    }
