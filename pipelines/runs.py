"""Run folders that never lie: resumable generation, one folder per video, checksums, a lock.

A killed run resumes from its last finished chunk and gives a video bit-identical to an uninterrupted run:
each chunk file holds the chunk and everything needed to continue after it. Layout of ``OUT/``::

    manifest.json                    the run's spec and every video: seed, folder, final files with SHA-256
    seed_000005/
        run.json                     spec (sampler config, scheduler, corrector, model), seed, progress,
                                     the SHA-256 of every chunk file and every final file
        .lock                        held by the process writing the folder
        chunks/chunk_0000.safetensors
                                     "chunk" (C, F, H, W) after anchoring; "generator" (the seed's
                                     torch.Generator state after it); "stats" (C, 4) anchoring targets;
                                     "next_context" (C, <= K, H, W) the next chunk's clean context
        start_context.safetensors    "context" (C, K0, H, W), frames before the video (only if given)
        video.safetensors            "video" (C, N, H, W), when complete
        drift.json                   the seed's DriftTracker (one record per chunk), when complete
        video.mp4                    H.264 of the video (RGB or grey videos, when asked for)

Guarantees:

- **Atomic files.** Every file is written under a unique temporary name in its folder and renamed when
  complete, so a kill (SIGKILL, Ctrl-C, out of memory) never leaves half a file under a real name, and two
  processes never share a temporary file. (Files are not fsynced: after a power cut the checksums catch
  what the disk lost.)
- **Checksums.** ``run.json`` records each chunk's and each final file's SHA-256 after the file is in place.
  A resume verifies them: a damaged or missing chunk is named in a :class:`RunRepairWarning` and the video
  is generated again from the last good chunk (bit-identical: each chunk stores the generator state);
  damaged final files are rebuilt from the chunks without a model call. :func:`verify_run` (``vidfix
  verify``) checks a run without changing it.
- **Refusals.** A folder made with a different spec is refused (the error lists the differences) and
  nothing in it is touched; a folder holding a run is refused unless ``resume=True``; a folder another
  process is writing is refused (:class:`RunLockedError`); an unreadable ``run.json`` or ``manifest.json``
  is refused with its name. Every parse error names its file.

Latents are ``(B, C, F, H, W)``; a batch of seeds is ``B`` videos, each with its own generator.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import os
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save_file
from torch import Tensor
from vidfix.pipelines.sampler import (
    ChunkCallback,
    NonFiniteChunkError,
    SamplerConfig,
    SamplerState,
    StepCallback,
    check_denoiser,
    chunk_starts,
    context_before,
    merge_chunk,
    sample_video,
)

from vidfix.bands import Dims
from vidfix.protocols import Corrector, Denoiser
from vidfix.tap import original_class
from vidfix.tracker import DriftTracker

# POSIX advisory locks (flock); elsewhere (Windows) runs are not locked.
fcntl: Any = importlib.import_module("fcntl") if os.name == "posix" else None

__all__ = [
    "FolderReport",
    "RunFolder",
    "RunFolderError",
    "RunLockedError",
    "RunRepairWarning",
    "UnreadableFileError",
    "atomic_path",
    "check_manifest",
    "ensure_writable",
    "file_sha256",
    "generate_videos",
    "load_tensors",
    "load_video",
    "read_json",
    "read_manifest",
    "run_spec",
    "seed_folder",
    "verify_run",
    "write_json_atomic",
    "write_manifest",
]

_RUN_TYPE = "vidfix-run"
_RUN_VERSION = 2
_MANIFEST_TYPE = "vidfix-manifest"
_MANIFEST_VERSION = 2


class RunFolderError(ValueError):
    """An output folder that cannot be used as asked: it holds another run or a different spec, it is
    locked by another process, or one of its files cannot be read (the message names the file)."""


class UnreadableFileError(ValueError):
    """A file that cannot be read or parsed (damaged, truncated, foreign); the message names it."""


class RunLockedError(RunFolderError):
    """Another process is writing the folder."""


class RunRepairWarning(UserWarning):
    """A resume found damaged or missing files (named in the message) and is generating them again."""


def seed_folder(out_dir: str | os.PathLike[str], seed: int) -> Path:
    """The folder of one seed's video: ``out_dir/seed_000005``."""
    return Path(out_dir) / f"seed_{seed:06d}"


def ensure_writable(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) and check a file can be written there; a clear ``OSError`` if not."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:  # the same kind (permission, not a folder, disk full), with the folder named
        raise type(err)(f"output folder {str(out)!r} is not writable: {err.strerror or err}") from err
    return out


# ---------------------------------------------------------------------------------------------------------
# Files: atomic writes under unique temporary names, checksums, reads that name their file.


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A unique temporary path beside ``path``, renamed onto it when the block succeeds, else removed.

    The temporary name keeps ``path``'s extension (writers that pick a format from it still work).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(
        f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp{path.suffix}"
    )  # umask applies
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(data: Any, path: str | os.PathLike[str]) -> str:
    """Write ``data`` as JSON atomically; returns the file's SHA-256."""
    raw = json.dumps(data, indent=1, allow_nan=False).encode()
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(raw)
    return hashlib.sha256(raw).hexdigest()


def _save_tensors(tensors: dict[str, Tensor], path: Path, metadata: dict[str, str] | None = None) -> str:
    """Write a safetensors file atomically; returns its SHA-256."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
        digest = file_sha256(tmp)
    return digest


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """Parse a JSON file; a damaged or unreadable one is an :class:`UnreadableFileError` naming it."""
    p = Path(path)
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnreadableFileError(f"{p}: damaged {what} (not valid JSON: {err})") from err
    except OSError as err:
        raise UnreadableFileError(f"{p}: cannot read the {what} ({err.strerror or err})") from err


def load_tensors(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a safetensors file, read into memory; a damaged one is an :class:`UnreadableFileError`
    naming it. (Not memory-mapped: a file changed under a mapped tensor would crash the process.)"""
    try:
        return safetensors_load(Path(path).read_bytes())
    except (SafetensorError, OSError, ValueError) as err:
        raise UnreadableFileError(f"{path}: damaged or unreadable safetensors file ({err})") from err


def load_video(folder: str | os.PathLike[str]) -> Tensor:
    """The finished video ``(C, N, H, W)`` of a seed folder."""
    return load_tensors(Path(folder) / "video.safetensors")["video"]


def _remove_temporaries(folder: Path) -> None:
    """Temporary files left by a killed writer (only while holding the folder's lock)."""
    for sub in (folder, folder / "chunks"):
        if sub.is_dir():
            for p in sub.glob(".*.tmp*"):
                p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------
# The spec: what a resume must match.


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


# ---------------------------------------------------------------------------------------------------------
# Locks.


class _Lock:
    """An exclusive advisory lock on a file (``flock``), released by the kernel when the process dies."""

    def __init__(self, path: Path, what: str) -> None:
        self.path, self.what = path, what
        self._file: Any = None

    def acquire(self, *, wait: bool = False) -> None:
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunLockedError(
                f"{self.what} is being written by another vidfix process ({holder}); wait for it to finish "
                "or choose another output folder; nothing was changed"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        self._file = f

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing releases the flock
            self._file = None

    def probe(self) -> None:
        """Raise :class:`RunLockedError` now if another process holds the lock (does not keep it)."""
        if self.path.exists():
            self.acquire()
            self.release()


# ---------------------------------------------------------------------------------------------------------
# One seed's folder.


@dataclass(frozen=True)
class FolderReport:
    """What :meth:`RunFolder.check` found.

    Attributes:
        folder: the seed folder.
        seed: its seed (None when ``run.json`` is unreadable).
        num_chunks: chunks the video has (0 for runs without chunk checkpoints).
        chunks_ok: the leading chunks whose files match their recorded checksum (a resume keeps these).
        complete: ``run.json`` says the video is finished and every final file matches its checksum.
        problems: one line per damaged or missing file, naming it.
    """

    folder: Path
    seed: int | None
    num_chunks: int
    chunks_ok: int
    complete: bool
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


class RunFolder:
    """The folder of one seed's video: checkpoints, resume state and final outputs, with checksums.

    Use as a context manager (or :meth:`open` / :meth:`close`): opening claims the folder (lock, spec check).
    """

    def __init__(
        self, path: str | os.PathLike[str], seed: int, spec: dict[str, Any], *, num_chunks: int | None = None
    ) -> None:
        self.path, self.seed, self.spec = Path(path), int(seed), spec
        if num_chunks is None:
            num_chunks = len(chunk_starts(SamplerConfig(**spec["sampler"]))) if "sampler" in spec else 0
        self.num_chunks = num_chunks
        self._lock = _Lock(self.path / ".lock", str(self.path))
        self._record: dict[str, Any] = {}

    @property
    def run_json(self) -> Path:
        return self.path / "run.json"

    @property
    def video_path(self) -> Path:
        return self.path / "video.safetensors"

    @property
    def drift_path(self) -> Path:
        return self.path / "drift.json"

    @property
    def mp4_path(self) -> Path:
        return self.path / "video.mp4"

    def chunk_path(self, index: int) -> Path:
        return self.path / "chunks" / f"chunk_{index:04d}.safetensors"

    def exists(self) -> bool:
        return self.run_json.exists()

    # -- reading and checking ---------------------------------------------------------------------------

    def read(self) -> dict[str, Any]:
        """``run.json``, checked to be a vidfix run of this format (else a :class:`RunFolderError` naming it)."""
        try:
            data = read_json(self.run_json, "run file")
        except UnreadableFileError as err:
            raise RunFolderError(
                f"{err}; it cannot be resumed safely: delete {self.path} to generate this video again, or "
                "choose another output folder"
            ) from err
        if not isinstance(data, dict) or data.get("type") != _RUN_TYPE:
            raise RunFolderError(f"{self.run_json} is not a vidfix run file; choose another output folder")
        if data.get("version") != _RUN_VERSION:
            raise RunFolderError(
                f"{self.run_json} was written by another vidfix version (run format {data.get('version')!r}, "
                f"this one reads {_RUN_VERSION}); choose another output folder"
            )
        return data

    def check(self) -> FolderReport:
        """Verify every recorded file against its checksum; changes nothing."""
        try:
            data = self.read()
        except (RunFolderError, UnreadableFileError) as err:
            return FolderReport(self.path, None, 0, 0, False, (str(err),))
        problems: list[str] = []

        def bad(name: str, sha: str | None) -> str | None:
            p = self.path / name
            if not p.is_file():
                return f"{name}: missing"
            if sha is None or file_sha256(p) != sha:
                return f"{name}: damaged (its checksum differs from run.json)"
            return None

        ctx_sha = data.get("start_context")
        if ctx_sha is not None and (msg := bad("start_context.safetensors", ctx_sha)):
            problems.append(msg)
        chunks_ok = 0
        for k, sha in enumerate(data.get("chunks", [])):
            msg = bad(str(self.chunk_path(k).relative_to(self.path)), sha)
            if msg:
                problems.append(msg)
                break  # the chunks after a damaged one are generated again anyway
            chunks_ok += 1
        if problems and ctx_sha is not None and problems[0].startswith("start_context"):
            chunks_ok = 0
        complete = bool(data.get("complete"))
        if complete:
            for name, sha in dict(data.get("files", {})).items():
                if msg := bad(name, sha):
                    problems.append(msg)
            complete = not problems
        return FolderReport(
            self.path, data.get("seed"), int(data.get("num_chunks", 0)), chunks_ok, complete, tuple(problems)
        )

    # -- claiming ---------------------------------------------------------------------------------------

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self, *, resume: bool) -> FolderReport | None:
        """Claim the folder: lock it, refuse another run's folder (or any run without ``resume``), else start it.

        Returns the :class:`FolderReport` of a resumed folder (its damaged files were named in a
        :class:`RunRepairWarning`), or None for a new one.
        """
        self._lock.acquire()
        try:
            return self._claim(resume=resume)
        except BaseException:
            self.close()
            raise

    def _claim(self, *, resume: bool) -> FolderReport | None:
        if self.exists():
            data = self.read()
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
            _remove_temporaries(self.path)
            report = self.check()
            for problem in report.problems:
                warnings.warn(RunRepairWarning(f"{self.path}: {problem}; generating it again"), stacklevel=3)
            self._record = data
            if not report.complete:  # forget what is damaged or unfinished (kept chunks stay recorded)
                self._record |= {
                    "chunks": data.get("chunks", [])[: report.chunks_ok],
                    "chunks_done": report.chunks_ok,
                    "files": {},
                    "complete": False,
                }
                if report.problems:
                    write_json_atomic(self._record, self.run_json)
            return report
        if self.path.exists() and any(p.name != ".lock" for p in self.path.iterdir()):
            raise RunFolderError(
                f"{self.path} exists and is not empty but holds no vidfix run; choose another output folder"
            )
        ensure_writable(self.path)
        self._record = {
            "type": _RUN_TYPE, "version": _RUN_VERSION, "seed": self.seed, "spec": self.spec,
            "num_chunks": self.num_chunks, "chunks_done": 0, "chunks": [], "start_context": None,
            "files": {}, "complete": False,
        }  # fmt: skip
        write_json_atomic(self._record, self.run_json)
        return None

    def close(self) -> None:
        """Release the folder's lock."""
        self._lock.release()

    def is_complete(self) -> bool:
        """Finished, with every final file intact."""
        return self.exists() and self.check().complete

    # -- writing ----------------------------------------------------------------------------------------

    def _commit(self, **changes: Any) -> None:
        self._record |= changes
        write_json_atomic(self._record, self.run_json)

    def save_start_context(self, context: Tensor) -> None:
        """``context`` ``(C, K0, H, W)``: the clean frames before the video."""
        sha = _save_tensors({"context": context}, self.path / "start_context.safetensors")
        self._commit(start_context=sha)

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
        sha = _save_tensors(tensors, self.chunk_path(index), {"index": str(index), "start": str(start)})
        chunks = [*self._record.get("chunks", [])[:index], sha]
        self._commit(chunks=chunks, chunks_done=index + 1)

    def load_state(self, *, start_context: Tensor | None = None) -> SamplerState | None:
        """The state after the last intact chunk (batch of one), or None when there is none.

        Only chunks whose checksum matches are read (a resume's :meth:`open` dropped the rest). The chunks
        are merged again and the stored context of the next chunk is checked against the result.
        ``start_context`` ``(C, K0, H, W)``: the frames before the video, when the run has them.
        """
        cfg = SamplerConfig(**self.spec["sampler"])
        starts = chunk_starts(cfg)
        kept = len(self._record.get("chunks", []))
        saved = [load_tensors(self.chunk_path(k)) for k in range(min(kept, len(starts)))]
        if not saved:
            return None
        prefix = start_context[None] if start_context is not None else None
        chunks = tuple(s["chunk"][None] for s in saved)  # each (1, C, F, H, W)
        expected = saved[-1].get("next_context")
        if expected is not None:
            base = chunks[0].new_zeros(1, cfg.channels, 0, cfg.height, cfg.width)
            video = base
            for k, c in enumerate(chunks):
                video = merge_chunk(video, c, starts[k])
            got = context_before(
                prefix if prefix is not None else base, video, starts[len(chunks)], cfg.context_frames
            )
            if got is None or not torch.equal(got[0], expected):
                raise RunFolderError(
                    f"{self.chunk_path(len(chunks) - 1)}: inconsistent with the chunks before it (the context of "
                    f"chunk {len(chunks)} differs); delete {self.path} to generate the video again"
                )
        return SamplerState(chunks, (saved[-1]["generator"],), saved[-1]["stats"][None], prefix)

    def finish(self, video: Tensor, tracker: DriftTracker, *, fps: float | None = None) -> None:
        """Write the finished video ``(C, N, H, W)``, its drift JSON and (with ``fps``, RGB or grey videos)
        its .mp4; record their checksums and mark the run complete."""
        files = {
            "video.safetensors": _save_tensors({"video": video}, self.video_path, {"seed": str(self.seed)})
        }
        files |= self._mp4(video, fps)
        self.finish_files(files, tracker)

    def _mp4(self, video: Tensor, fps: float | None) -> dict[str, str]:
        if fps is None or video.shape[0] not in (1, 3):
            return {}
        from vidfix.pipelines.video import write_mp4

        write_mp4(self.mp4_path, video, fps=fps)
        return {"video.mp4": file_sha256(self.mp4_path)}

    def add_mp4(self, fps: float) -> None:
        """Give a finished run that has none its .mp4 (a resume that now asks for one)."""
        files = dict(self._record.get("files", {}))
        if self._record.get("complete") and "video.mp4" not in files:
            if added := self._mp4(load_video(self.path), fps):
                self._commit(files=files | added)

    def finish_files(
        self, files: Mapping[str, str], tracker: DriftTracker, *, info: dict[str, Any] | None = None
    ) -> None:
        """Record final files already in the folder (``name -> SHA-256``), write the drift JSON, mark complete.

        ``info``: JSON-able facts about the result kept in ``run.json`` (e.g. what the corrector did).
        """
        done = dict(files) | {"drift.json": write_json_atomic(tracker.to_dict(), self.drift_path)}
        self._commit(
            chunks_done=len(self._record.get("chunks", [])), files=done, complete=True, info=info or {}
        )

    def record(self, *, seconds: float, resumed: int, kept: bool = False) -> dict[str, Any]:
        """This folder's entry in ``manifest.json`` (and in :func:`generate_videos`' result); ``kept``: an intact
        video found by a resume, not generated now."""
        files = dict((self._record or self.read()).get("files", {}))
        return {
            "seed": self.seed,
            "folder": str(self.path),
            "video": str(self.video_path),
            "drift": str(self.drift_path),
            "chunks": self.num_chunks,
            "resumed_chunks": resumed,
            "seconds": round(seconds, 3),
            "files": files,
            "kept": kept,
        } | ({"mp4": str(self.mp4_path)} if "video.mp4" in files else {})


# ---------------------------------------------------------------------------------------------------------
# The whole output folder: manifest and verification.


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``OUT/manifest.json`` (None when absent); a damaged or foreign one is a :class:`RunFolderError`."""
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        return None
    data = read_json(path, "manifest")
    if (
        not isinstance(data, dict)
        or data.get("type") != _MANIFEST_TYPE
        or not isinstance(data.get("videos"), list)
    ):
        raise RunFolderError(
            f"{path} is not a vidfix manifest (expected an object of type {_MANIFEST_TYPE!r} with a list of "
            "videos); choose another output folder"
        )
    if data.get("version") != _MANIFEST_VERSION:
        raise RunFolderError(
            f"{path} was written by another vidfix version (manifest format {data.get('version')!r}, this one "
            f"reads {_MANIFEST_VERSION}); choose another output folder"
        )
    return data


def check_manifest(out_dir: str | os.PathLike[str], spec: dict[str, Any]) -> None:
    """Refuse an output folder whose manifest describes a run with a different spec (before any work)."""
    old = read_manifest(out_dir)
    if old is not None and old.get("spec") != spec:
        diff = _diff(old.get("spec"), spec)
        raise RunFolderError(
            f"{Path(out_dir) / 'manifest.json'} describes a run with a different config; use another output "
            "folder (or the same options to resume or extend it); nothing was changed.\n  "
            + "\n  ".join(diff)
        )


def write_manifest(
    out_dir: str | os.PathLike[str],
    spec: dict[str, Any],
    records: Sequence[dict[str, Any]],
    *,
    processes: int = 1,
) -> Path:
    """Merge ``records`` (one per video, by seed) into ``OUT/manifest.json``, under a lock, atomically."""
    out = Path(out_dir)
    lock = _Lock(out / ".manifest.lock", str(out / "manifest.json"))
    lock.acquire(wait=True)  # short: other writers of the same folder wait their turn
    try:
        old = read_manifest(out)
        by_seed = {int(v["seed"]): v for v in (old or {}).get("videos", [])} | {
            int(r["seed"]): r for r in records
        }
        manifest = {
            "type": _MANIFEST_TYPE,
            "version": _MANIFEST_VERSION,
            "spec": spec,
            "processes": processes,
            "videos": [by_seed[s] for s in sorted(by_seed)],
        }
        write_json_atomic(_jsonable(manifest), out / "manifest.json")
    finally:
        lock.release()
    return out / "manifest.json"


def verify_run(path: str | os.PathLike[str], *, spec: dict[str, Any] | None = None) -> list[FolderReport]:
    """Check a run without changing it: every seed folder's chunks and final files against their checksums,
    and the manifest's checksums against the folders. ``path``: an output folder or one seed folder.

    Returns one report per seed folder (the manifest's own problems go into the report of the folder they
    concern, or a report for the output folder itself).

    Raises:
        RunFolderError: ``path`` holds no vidfix run.
    """
    root = Path(path)
    if (root / "run.json").is_file():
        return [RunFolder(root, 0, {}).check()]
    if not root.is_dir():
        raise RunFolderError(
            f"{root} is not a folder; pass a vidfix output folder or one of its seed folders"
        )
    folders = sorted(p for p in root.glob("seed_*") if p.is_dir())
    manifest_problem: list[str] = []
    listed: dict[str, dict[str, Any]] = {}
    try:
        manifest = read_manifest(root)
    except (RunFolderError, UnreadableFileError) as err:
        manifest, manifest_problem = None, [str(err)]
    if manifest is not None:
        listed = {Path(v.get("folder", "")).name: v for v in manifest["videos"]}
        if spec is not None and manifest.get("spec") != spec:
            manifest_problem.append("manifest.json: describes a run with a different config")
    if not folders and manifest is None and not manifest_problem:
        raise RunFolderError(f"{root} holds no vidfix run (no manifest.json, run.json or seed_* folders)")
    reports = []
    for folder in folders:
        r = RunFolder(folder, 0, {}).check()
        extra = []
        entry = listed.pop(folder.name, None)
        if entry is not None and r.complete:
            for name, sha in dict(entry.get("files", {})).items():
                if (folder / name).is_file() and file_sha256(folder / name) != sha:
                    extra.append(f"{name}: differs from the checksum in manifest.json")
        if extra:
            r = FolderReport(r.folder, r.seed, r.num_chunks, r.chunks_ok, False, r.problems + tuple(extra))
        reports.append(r)
    for name in sorted(listed):
        manifest_problem.append(f"{name}: listed in manifest.json but missing")
    if manifest_problem:
        reports.append(FolderReport(root, None, 0, 0, False, tuple(manifest_problem)))
    return reports


# ---------------------------------------------------------------------------------------------------------
# Generation.


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
    fps: float | None = None,
) -> list[dict[str, Any]]:
    """Generate one video per seed into ``out_dir/seed_XXXXXX/``, checkpointing every chunk; resumable.

    Seeds are processed in batches of ``batch_size`` in the given order; each video's noise comes from
    ``torch.Generator().manual_seed(seed)`` (CPU), so a video depends only on its seed and the spec.

    Args:
        denoiser, scheduler, config, corrector: as in :func:`sample_video`.
        seeds: the videos to make.
        out_dir: output folder (created; must be writable).
        resume: continue the runs found there (bit-identical to an uninterrupted run); complete seeds whose
            files are intact are kept as they are; damaged files are named (:class:`RunRepairWarning`) and
            generated again. Without it, a seed folder that already holds a run is refused.
        batch_size: videos per model call.
        model: JSON-able description of the model (part of the spec a resume must match).
        device, dtype: where the latents live.
        start_context: ``fn(seeds) -> (B, C, K0, H, W)`` clean frames before each video, or None.
        callback, on_chunk: per-step and per-chunk callbacks, passed on to :func:`sample_video`.
        progress: ``progress(done_steps, total_steps)`` over all seeds of this call.
        tracker_dims: band transform of each seed's :class:`DriftTracker`.
        fps: also write ``video.mp4`` at this frame rate (RGB or grey videos in [-1, 1]); None: no .mp4.

    Returns:
        One record per seed: ``seed, folder, video, drift, frames, chunks, resumed_chunks, seconds, files``
        (``files``: each final file's SHA-256), and ``mp4`` when written.

    Raises:
        OSError: the output folder is not writable.
        RunFolderError: a seed folder holds another run or a run with a different spec, or one of its files
            cannot be read; :class:`RunLockedError`: another process is writing one of the folders.
        NonFiniteChunkError: a chunk went NaN/inf; the message names the chunk, seeds and folders (the
            finished chunks stay there).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    seeds = [int(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct, got {seeds}")
    check_denoiser(denoiser, config)  # sizes the model cannot take: refused before any folder is touched
    ensure_writable(out_dir)
    for s in seeds:  # refuse at once, before any work, if another process is writing one of the folders
        _Lock(seed_folder(out_dir, s) / ".lock", str(seed_folder(out_dir, s))).probe()
    extra_callbacks = [on_chunk] if callable(on_chunk) else list(on_chunk)
    starts = chunk_starts(config)
    steps_total = len(seeds) * len(starts) * config.num_steps
    steps_before = 0
    records: list[dict[str, Any]] = []

    for i in range(0, len(seeds), batch_size):
        batch = seeds[i : i + batch_size]
        ctx = start_context(batch) if start_context is not None else None
        spec = run_spec(config, scheduler, corrector, model=model, dtype=dtype, start_context=ctx)
        with contextlib.ExitStack() as stack:
            folders = [RunFolder(seed_folder(out_dir, s), s, spec) for s in batch]
            reports = []
            for f in folders:  # claim every folder of the batch before any work
                reports.append(f.open(resume=resume))
                stack.callback(f.close)
            todo = [b for b, r in enumerate(reports) if r is None or not r.complete]
            for b, f in enumerate(folders):
                if b not in todo:
                    if fps is not None:
                        f.add_mp4(fps)
                    records.append(
                        f.record(seconds=0.0, resumed=len(starts), kept=True) | {"frames": config.num_frames}
                    )
            # Videos resumed at the same chunk run together.
            groups: dict[int, list[tuple[int, SamplerState | None]]] = {}
            for b in todo:
                st = folders[b].load_state(start_context=None if ctx is None else ctx[b])
                groups.setdefault(0 if st is None else st.next_chunk, []).append((b, st))
            for done_chunks, members in sorted(groups.items()):
                idx = [b for b, _ in members]
                t0 = time.perf_counter()
                gens = [torch.Generator().manual_seed(batch[b]) for b in idx]
                states = [st for _, st in members if st is not None]
                state = SamplerState.stack(states) if done_chunks else None
                group_ctx = None if ctx is None else ctx[idx]
                if ctx is not None and not done_chunks:
                    for b in idx:
                        folders[b].save_start_context(ctx[b])
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
                    folders[b].finish(video[j], trackers[j], fps=fps)
                    rec = folders[b].record(seconds=seconds / len(idx), resumed=done_chunks)
                    records.append(rec | {"frames": config.num_frames})
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
            if state.stats is None:
                raise RuntimeError("the sampler handed on a chunk without anchoring statistics")
            folder.write_chunk(
                index, start, chunk[j], generator_state=state.generator_states[j], stats=state.stats[j],
                next_context=next_context,
            )  # fmt: skip

    return write


def _offset_progress(
    progress: Callable[[int, int], None], base: int, videos: int, total: int
) -> Callable[[int, int], None]:
    """A group's ``(done batch steps, _)`` as ``(done video steps over the whole call, total)``."""
    return lambda done, _: progress(base + done * videos, total)
