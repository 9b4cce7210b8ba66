"""CPU path of the fused Haar filter: ``vidfix/csrc/haar_filter.cpp`` built once, cached, loaded with ctypes.

The source is plain C++ with a C ABI (no torch headers), so a build takes about a second instead of the
minute a torch extension spends parsing torch's headers, and needs no ninja. It is compiled on first use with
the system C++ compiler (``$CXX``, else ``c++``, ``g++`` or ``clang++``; OpenMP and ``-march=native`` when the
compiler takes them) into torch's extensions cache (``$TORCH_EXTENSIONS_DIR``, else
``~/.cache/torch_extensions``), under a name that hashes the source, the flags and the CPU, so a new
version or another machine builds its own copy. The library is written to a temporary name and renamed into
place, so processes that build at the same time never load a half-written file. Threads: OpenMP, sized by
``torch.get_num_threads()``; inside torch's process the OpenMP runtime is torch's own.

Anything that goes wrong (no compiler, a failed build, a library that does not load) makes :func:`library`
return None after one warning; the caller then runs the eager path.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

__all__ = ["ABI", "CpuKernel", "build", "cache_dir", "library"]

ABI = 1  # must match vidfix_haar_filter_abi() in the source
_SOURCE = "haar_filter.cpp"
_FLAG_SETS: tuple[tuple[str, ...], ...] = (
    ("-O3", "-march=native", "-fopenmp"),
    ("-O3", "-fopenmp"),
    ("-O3",),
)
_BASE_FLAGS = ("-shared", "-fPIC", "-std=c++17", "-fno-math-errno")
_DTYPES = {torch.float32: 0, torch.bfloat16: 1, torch.float16: 2}


@dataclass(frozen=True)
class CpuKernel:
    """The loaded library: its path and the C entry point."""

    path: Path
    fn: Any  # the ctypes function vidfix_haar_filter

    def __call__(
        self,
        u: torch.Tensor,
        v: torch.Tensor,
        out: torch.Tensor,
        coef: torch.Tensor,
        *,
        pair_t: int,
        mode: int,
    ) -> None:
        """Run the kernel on ``(B, C, F, H, W)`` tensors whose last axis is contiguous (see the C source)."""
        i64 = ctypes.c_int64
        rc = self.fn(
            _DTYPES[u.dtype],
            u.data_ptr(),
            v.data_ptr(),
            out.data_ptr(),
            (i64 * 5)(*u.shape),
            (i64 * 4)(*u.stride()[:4]),
            (i64 * 4)(*v.stride()[:4]),
            (i64 * 4)(*out.stride()[:4]),
            coef.data_ptr(),
            coef.stride(0),
            coef.stride(1),
            pair_t,
            mode,
            torch.get_num_threads(),
        )
        if rc != 0:
            raise RuntimeError(f"vidfix haar_filter kernel rejected its arguments (code {rc})")


def cache_dir() -> Path:
    """Torch's extensions cache (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) / ``vidfix``."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "torch_extensions"
    )
    return Path(root) / "vidfix"


def _compiler() -> str | None:
    cxx = os.environ.get("CXX")
    if cxx and shutil.which(cxx):
        return cxx
    for name in ("c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    return None


def _source() -> bytes:
    return resources.files("vidfix").joinpath("csrc", _SOURCE).read_bytes()


def _key(source: bytes, compiler: str, flags: tuple[str, ...]) -> str:
    h = hashlib.sha256(source)
    for part in (compiler, *flags, platform.machine(), torch.backends.cpu.get_cpu_capability(), str(ABI)):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def build(directory: Path | None = None) -> Path:
    """Compile the library into ``directory`` (default :func:`cache_dir`) unless it is there; return its path.

    Raises:
        RuntimeError: no C++ compiler, or every flag set failed (the compiler's last error is included).
    """
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (set $CXX or install g++ / clang++)")
    source = _source()
    directory = cache_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    errors = []
    for flags in _FLAG_SETS:
        target = directory / f"haar_filter_{_key(source, compiler, flags)}.so"
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            src = Path(tmp) / _SOURCE
            src.write_bytes(source)
            lib = Path(tmp) / "lib.so"
            cmd = [compiler, *_BASE_FLAGS, *flags, str(src), "-o", str(lib)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                os.replace(lib, target)  # atomic: a concurrent builder never sees a partial file
                return target
            errors.append(f"{' '.join(cmd)}:\n{done.stderr.strip()[-1500:]}")
    raise RuntimeError("C++ build failed:\n" + "\n".join(errors))


def _load(path: Path) -> CpuKernel:
    lib = ctypes.CDLL(str(path))
    if lib.vidfix_haar_filter_abi() != ABI:
        raise RuntimeError(f"{path} has ABI {lib.vidfix_haar_filter_abi()}, expected {ABI}")
    fn = lib.vidfix_haar_filter
    p, i64p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
    fn.argtypes = [ctypes.c_int, p, p, p, i64p, i64p, i64p, i64p, p, ctypes.c_int64, ctypes.c_int64,
                   ctypes.c_int, ctypes.c_int, ctypes.c_int]  # fmt: skip
    fn.restype = ctypes.c_int
    return CpuKernel(path, fn)


_lock = threading.Lock()
_state: dict[str, CpuKernel | None] = {}


def library() -> CpuKernel | None:
    """The loaded kernel, built on first use; None (after one warning) when it cannot be built or loaded."""
    if "lib" in _state:
        return _state["lib"]
    with _lock:
        if "lib" not in _state:
            try:
                _state["lib"] = _load(build())
            except (OSError, RuntimeError, AttributeError, subprocess.SubprocessError) as err:
                warnings.warn(
                    f"vidfix: the fused CPU band filter is unavailable, using the eager path ({err})",
                    RuntimeWarning,
                    stacklevel=3,
                )
                _state["lib"] = None
    return _state["lib"]
