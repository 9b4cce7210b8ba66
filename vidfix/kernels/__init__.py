"""Fused level-1 Haar band filter: ``base + IDWT(gain ⊙ DWT(a1 t1 + a2 t2))`` in one pass over memory.

:func:`vidfix.bands.band_filter` dispatches here on its own (``backend="auto"``, Haar, level 1); the eager
path in :mod:`vidfix.bands` stays the readable reference and the test oracle. Latents are ``(B, C, F, H, W)``
(``dims="3d"`` or ``"2d"``) or ``(B, C, H, W)`` frames (``"2d"``).

Derivation. For the level-1 Haar transform every band projection is a local mean: with ``A_t`` the mean over
each time pair and ``A`` the mean over each 2x2x2 block (both broadcast back), the band groups of ``d`` are
``low = A d``, ``spatial = A_t d - A d`` and ``temporal = d - A_t d``, so with group gains ``g``

    W(d) = g_t d + (g_sp - g_t) A_t d + (g_low - g_sp) A d.

With ``m`` the time-pair mean of ``d`` and ``M`` the 2x2 (H, W) block mean of ``m``, and
``d = a1 t1 + a2 t2``,

    out = base + W(d) = gu t1 + gv t2 + U_t[kt m + kb U_hw(M)],
    gu = [base is t1] + g_t a1,   gv = [base is t2] + g_t a2,   kt = g_sp - g_t,   kb = g_low - g_sp,

(``U`` repeats each sample twice). In 2d the time "pair" is a single frame (``m = d``) and ``g_t = g_sp``.
For DCW (:mod:`vidfix.correctors.dcw`) ``t1 = x0``, ``t2 = x``, ``a1 = c0 - 1``, ``a2 = c1``, ``g = lam / c0``
and ``base = x0``. Odd sizes pair the last sample with its ``mode`` padding partner, as the eager path does.
Coefficients and gains may be tensors that vary per (batch, frame) (per-frame timesteps): the kernel reads
a ``(B, F, 6)`` table of ``(a1, a2, gu, gv, kt, kb)``; gains act on the output frame, ``a`` on the input.

Kernels: a Triton kernel on CUDA (:mod:`vidfix.kernels._triton`) and a C++ kernel on the CPU
(:mod:`vidfix.kernels._cpu`, built on first use and cached). Both read ``t1`` and ``t2`` once, write once,
and compute in float32 for float32, bfloat16 and float16 storage (rounded once at the end).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor

__all__ = ["Impl", "fused_band_filter", "supports"]

Impl: TypeAlias = Literal["auto", "cpu", "triton"]
Coef: TypeAlias = "float | Tensor"

_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_MODES = {"symmetric": 0, "reflect": 1, "zero": 2}


def _per_frame(v: Coef, rank: int, B: int, F: int) -> Coef | None:
    """A scalar as float, a tensor as float32 ``(B | 1, F | 1)``; None when it varies over C, H or W."""
    if not isinstance(v, Tensor):
        return float(v)
    if v.numel() == 1:
        return v.reshape(1, 1).float()
    if v.dim() > rank:
        return None
    shape = (1,) * (rank - v.dim()) + tuple(v.shape)
    t = v.reshape(shape)
    frame_axis = 2 if rank == 5 else None
    for ax, n in enumerate(shape):
        if n == 1:
            continue
        if (ax == 0 and n == B) or (ax == frame_axis and n == F):
            continue
        return None
    return t.reshape(shape[0], shape[2] if rank == 5 else 1).float()  # (B | 1, F | 1)


def _table(
    a1: Coef, a2: Coef, gains: Mapping[str, Coef], base_is: tuple[bool, bool], dims: str, device: torch.device
) -> Tensor:
    """The ``(B | 1, F | 1, 6)`` float32 table ``(a1, a2, gu, gv, kt, kb)``."""
    g_low, g_sp = gains.get("low", 0.0), gains.get("spatial", 0.0)
    g_t = gains.get("temporal", 0.0) if dims == "3d" else g_sp
    cols: list[Coef] = [
        a1,
        a2,
        float(base_is[0]) + g_t * a1,
        float(base_is[1]) + g_t * a2,
        g_sp - g_t,
        g_low - g_sp,
    ]
    if not any(isinstance(c, Tensor) for c in cols):
        return _scalar_table(tuple(float(c) for c in cols), device)
    ts = [c if isinstance(c, Tensor) else torch.tensor(c, dtype=torch.float32).reshape(1, 1) for c in cols]
    ts = [t.to(device=device, dtype=torch.float32) for t in ts]
    return torch.stack(torch.broadcast_tensors(*ts), dim=-1).contiguous()  # (B | 1, F | 1, 6)


@functools.lru_cache(maxsize=256)
def _scalar_table(cols: tuple[float, ...], device: torch.device) -> Tensor:
    """A ``(1, 1, 6)`` table, cached: a sampler repeats the same few steps, and on CUDA each new table is a
    host-to-device copy. The kernels only read it."""
    return torch.tensor(cols, dtype=torch.float32).reshape(1, 1, 6).to(device)


def _inner_contiguous(t: Tensor) -> bool:
    return t.stride(-1) == 1 and (t.shape[-2] == 1 or t.stride(-2) == t.shape[-1])


def _plan(
    ref: Tensor,
    gains: Mapping[str, Coef],
    terms: Sequence[tuple[Coef, Tensor]],
    dims: str,
    mode: str,
    base: Tensor | None,
) -> tuple[Tensor, Tensor, tuple[bool, bool], Coef, Coef] | None:
    """``(u, v, base flags, a1, a2)`` when the fused kernels compute this call, else None."""
    if ref.dtype not in _DTYPES or ref.dim() not in (4, 5) or (ref.dim() == 4 and dims != "2d"):
        return None
    if dims not in ("3d", "2d") or mode not in _MODES or not 1 <= len(terms) <= 2:
        return None
    tensors = [t for _, t in terms] + ([base] if base is not None else [])
    for t in tensors:
        if t.shape != ref.shape or t.dtype != ref.dtype or t.device != ref.device or not _inner_contiguous(t):
            return None
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return None  # no autograd through the kernels
    if mode == "reflect":
        paired = ref.shape[-3:] if dims == "3d" else ref.shape[-2:]
        if min(paired) < 2:
            return None  # the eager path raises the error
    (a1, u), (a2, v) = terms[0], terms[-1] if len(terms) == 2 else (0.0, terms[0][1])
    if base is None:
        flags = (False, False)
    elif base is u:
        flags = (True, False)
    elif base is v and len(terms) == 2:
        flags = (False, True)
    elif len(terms) == 1:
        v, a2, flags = base, 0.0, (False, True)  # base rides along as the second input
    else:
        return None  # three distinct tensors
    return u, v, flags, a1, a2


def supports(device: torch.device | str, impl: Impl = "auto") -> bool:
    """Whether a fused kernel can run on ``device`` here (CPU: the library builds; CUDA: Triton imports)."""
    kind = _kind(torch.device(device), impl)
    if kind == "cpu":
        from vidfix.kernels._cpu import library

        return library() is not None
    if kind == "triton":
        try:
            import vidfix.kernels._triton  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def _kind(device: torch.device, impl: Impl) -> str | None:
    if impl != "auto":
        return impl
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        return "triton"
    return None


def fused_band_filter(
    ref: Tensor,
    gains: Mapping[str, Coef],
    terms: Sequence[tuple[Coef, Tensor]],
    *,
    dims: str = "3d",
    mode: str = "symmetric",
    base: Tensor | None = None,
    impl: Impl = "auto",
) -> Tensor | None:
    """``base + IDWT(gain ⊙ DWT(sum a_i t_i))`` (Haar, level 1) by a fused kernel, or None if unsupported.

    Supported: 1 or 2 terms of ``ref``'s shape, dtype (float32, bfloat16, float16) and device; ``base`` None
    or one of the term tensors (or a second tensor beside a single term); coefficients and gains floats or
    tensors varying over (batch, frame) only; the last axis contiguous; no autograd. ``impl="auto"`` picks
    the C++ kernel on the CPU and Triton on CUDA; ``"cpu"`` / ``"triton"`` force one (``"triton"`` on CPU
    tensors runs under ``TRITON_INTERPRET=1``). Arguments are trusted: :func:`vidfix.bands.band_filter`
    validates them first.

    Example:
        >>> x0, x = torch.randn(2, 1, 16, 5, 8, 8).unbind(0)             # (B, C, F, H, W)
        >>> out = fused_band_filter(x0, {"low": 0.1}, [(-0.5, x0), (0.5, x)], base=x0)
        >>> out is None or out.shape == x0.shape
        True
    """
    plan = _plan(ref, gains, terms, dims, mode, base)
    if plan is None:
        return None
    u, v, flags, a1, a2 = plan
    rank = ref.dim()
    B, F = ref.shape[0], ref.shape[2] if rank == 5 else 1
    a1c, a2c = _per_frame(a1, rank, B, F), _per_frame(a2, rank, B, F)
    gc = {k: _per_frame(g, rank, B, F) for k, g in gains.items()}
    if a1c is None or a2c is None or any(g is None for g in gc.values()):
        return None
    kind = _kind(ref.device, impl)
    kernel: Any
    if kind == "cpu":
        from vidfix.kernels._cpu import library

        kernel = library()
        if kernel is None or ref.device.type != "cpu":
            return None
    elif kind == "triton":
        try:
            from vidfix.kernels._triton import launch
        except ImportError:
            return None
        kernel = launch
    else:
        return None
    coef = _table(a1c, a2c, gc, flags, dims, ref.device)  # type: ignore[arg-type]  # gc has no None: returned above
    coef = coef.expand(B, F, 6)  # strides 0 where shared
    out = torch.empty_like(u)
    if rank == 4:  # (B, C, H, W) frames: one frame per (B, C)
        u5, v5, o5 = u.unsqueeze(2), v.unsqueeze(2), out.unsqueeze(2)  # (B, C, 1, H, W)
    else:
        u5, v5, o5 = u, v, out
    kernel(u5, v5, o5, coef, pair_t=2 if dims == "3d" else 1, mode=_MODES[mode])
    return out
