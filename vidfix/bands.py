"""Wavelet band transform of video latents.

Latents are ``(B, C, F, H, W)``; frames are ``(B, C, H, W)``. ``dims="3d"`` transforms over (F, H, W)
(8 bands per level: ``aaa`` low, then ``aad ... ddd``; letters name (time, height, width)); ``dims="2d"``
transforms each frame over (H, W) (4 bands per level: ``aa`` low, ``ad, da, dd``), as in the DCW paper.

Two backends: a fast Haar path in plain torch (any float dtype, any device) and ptwt for any pywt wavelet
(ptwt computes in float32/float64; half inputs are upcast). Odd sizes are padded at each level with
``mode`` and cropped back, so ``idwt(dwt(x)) == x``. Bands form three groups that can be weighted apart:
``low`` (the coarsest approximation), ``spatial`` (detail in H or W only) and ``temporal`` (detail in time).

Example:
    >>> x = torch.randn(1, 4, 9, 16, 16)                   # (B, C, F, H, W)
    >>> bands = dwt(x, dims="3d", level=2)
    >>> torch.allclose(idwt(bands), x, atol=1e-5)
    True
    >>> y = band_filter(x, {"low": 1.0, "spatial": 0.0, "temporal": 0.0})   # keep the low band only
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any, Literal, TypeAlias, get_args

import torch
from torch import Tensor

from vidfix._checks import check_choice, check_latents

__all__ = [
    "GROUPS",
    "Backend",
    "Bands",
    "Dims",
    "Gain",
    "Group",
    "PadMode",
    "band_filter",
    "band_group",
    "band_names",
    "dwt",
    "group_components",
    "idwt",
]

Dims: TypeAlias = Literal["3d", "2d"]
Group: TypeAlias = Literal["low", "spatial", "temporal"]
Backend: TypeAlias = Literal["auto", "haar", "ptwt"]
PadMode: TypeAlias = Literal["symmetric", "reflect", "zero"]
Gain: TypeAlias = "float | Tensor"

GROUPS: tuple[Group, ...] = get_args(Group)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def _axes(dims: Dims) -> tuple[int, ...]:
    return (-3, -2, -1) if dims == "3d" else (-2, -1)


def band_names(dims: Dims = "3d") -> tuple[str, ...]:
    """Detail band names of one level: ``aad ... ddd`` (3d, letters = time, height, width) or ``ad, da, dd`` (2d)."""
    check_choice("dims", dims, get_args(Dims))
    n = len(_axes(dims))
    return tuple("".join(p) for p in product("ad", repeat=n))[1:]


def band_group(name: str, dims: Dims = "3d") -> Group:
    """Group of a band name: all-``a`` is ``low``; a ``d`` in time is ``temporal``; else ``spatial``."""
    check_choice("dims", dims, get_args(Dims))
    n = len(_axes(dims))
    if len(name) != n or set(name) - {"a", "d"}:
        allowed = ("a" * n, *band_names(dims))
        raise ValueError(f"unknown band {name!r} for dims={dims!r}; allowed: {', '.join(allowed)}")
    if "d" not in name:
        return "low"
    if dims == "3d" and name[0] == "d":
        return "temporal"
    return "spatial"


@dataclass
class Bands:
    """Wavelet bands of one tensor.

    ``details[0]`` is the coarsest level and ``details[-1]`` the finest (pywt/ptwt order); each maps a band
    name (``"aad"`` ...) to its coefficients. ``sizes[k]`` holds the transformed-axis sizes entering level
    ``k + 1`` (finest first), used to crop padding on the way back.
    """

    low: Tensor
    details: list[dict[str, Tensor]]
    dims: Dims
    wavelet: str
    mode: PadMode
    shape: tuple[int, ...]
    dtype: torch.dtype
    backend: Literal["haar", "ptwt"]
    sizes: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def level(self) -> int:
        return len(self.details)

    def scaled(self, gains: Mapping[Any, Gain]) -> Bands:
        """Bands with each group multiplied by its gain (missing groups keep gain 1)."""
        _check_gain_names(gains)
        g_low = gains.get("low", 1.0)
        details = [
            {k: v * gains.get(band_group(k, self.dims), 1.0) for k, v in level.items()}
            for level in self.details
        ]
        return replace(self, low=self.low * g_low, details=details)


def _check_gain_names(gains: Mapping[Any, Gain]) -> None:
    for name in gains:
        check_choice("band group", name, GROUPS)


# ----------------------------------------------------------------------------------------------------------
# Fast Haar path (plain torch).


def _pad_even(x: Tensor, axes: Sequence[int], mode: PadMode) -> Tensor:
    """Pad each odd axis by one sample on the right (pywt's convention for Haar)."""
    for ax in axes:
        n = x.shape[ax]
        if n % 2 == 0:
            continue
        if mode == "symmetric":
            tail = x.narrow(ax, n - 1, 1)
        elif mode == "reflect":
            if n < 2:
                raise ValueError(f"mode='reflect' needs at least 2 samples along axis {ax}, got {n}")
            tail = x.narrow(ax, n - 2, 1)
        else:  # zero
            tail = torch.zeros_like(x.narrow(ax, 0, 1))
        x = torch.cat([x, tail], dim=ax)
    return x


def _haar_split(x: Tensor, ax: int, mode: PadMode) -> tuple[Tensor, Tensor]:
    """One Haar analysis step along ``ax``: pairs ``(a + b)/sqrt2`` and ``(a - b)/sqrt2``."""
    x = _pad_even(x, (ax,), mode)
    ax = ax % x.dim()
    pairs = x.unflatten(ax, (-1, 2))  # (..., n/2, 2, ...)
    even, odd = pairs.select(ax + 1, 0), pairs.select(ax + 1, 1)
    return torch.add(even, odd).mul_(_INV_SQRT2), torch.sub(even, odd).mul_(_INV_SQRT2)


def _haar_merge(a: Tensor, d: Tensor, ax: int, size: int) -> Tensor:
    """Inverse of :func:`_haar_split`, cropped to ``size`` along ``ax``."""
    ax = ax % a.dim()
    even = torch.add(a, d).mul_(_INV_SQRT2)
    odd = torch.sub(a, d).mul_(_INV_SQRT2)
    x = torch.stack((even, odd), dim=ax + 1).flatten(ax, ax + 1)  # (..., n, ...)
    return x.narrow(ax, 0, size)


def _haar_dwt(
    x: Tensor, dims: Dims, level: int, mode: PadMode
) -> tuple[Tensor, list[dict[str, Tensor]], list[tuple[int, ...]]]:
    axes = _axes(dims)
    low: Tensor = x
    details: list[dict[str, Tensor]] = []
    sizes: list[tuple[int, ...]] = []
    for _ in range(level):
        sizes.append(tuple(low.shape[ax] for ax in axes))
        parts = {"": low}
        for ax in axes:
            parts = {k + s: t for k, v in parts.items() for s, t in zip("ad", _haar_split(v, ax, mode))}
        low = parts.pop("a" * len(axes))
        details.insert(0, parts)
    return low, details, sizes


def _haar_idwt(bands: Bands) -> Tensor:
    axes = _axes(bands.dims)
    n = len(axes)
    low = bands.low
    for level_details, size in zip(bands.details, reversed(bands.sizes)):
        parts = {"a" * n: low, **level_details}
        for i in reversed(range(n)):  # undo the last axis first
            ax = axes[i]
            merged = {}
            for key in {k[:i] for k in parts}:
                merged[key] = _haar_merge(parts[key + "a"], parts[key + "d"], ax, size[i])
            parts = merged
        low = parts[""]
    return low


# ----------------------------------------------------------------------------------------------------------
# ptwt path (any pywt wavelet).

_PTWT_2D_KEYS = ("da", "ad", "dd")  # ptwt/pywt (horizontal, vertical, diagonal) = detail along (H | W | both)


def _ptwt_dwt(
    x: Tensor, dims: Dims, level: int, wavelet: str, mode: PadMode
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    import ptwt

    work = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if dims == "3d":
        coeffs = ptwt.wavedec3(work, wavelet, mode=mode, level=level, axes=(-3, -2, -1))
        return coeffs[0], [dict(c) for c in coeffs[1:]]
    coeffs2 = ptwt.wavedec2(work, wavelet, mode=mode, level=level, axes=(-2, -1))
    return coeffs2[0], [dict(zip(_PTWT_2D_KEYS, c)) for c in coeffs2[1:]]


def _ptwt_idwt(bands: Bands) -> Tensor:
    import ptwt
    from ptwt.constants import WaveletDetailTuple2d

    if bands.dims == "3d":
        x = ptwt.waverec3((bands.low, *bands.details), bands.wavelet, axes=(-3, -2, -1))
    else:
        tuples = [WaveletDetailTuple2d(*(d[k] for k in _PTWT_2D_KEYS)) for d in bands.details]
        x = ptwt.waverec2((bands.low, *tuples), bands.wavelet, axes=(-2, -1))
    for ax, n in zip(_axes(bands.dims), bands.shape[-len(_axes(bands.dims)) :]):
        x = x.narrow(ax, 0, n)
    return x


# ----------------------------------------------------------------------------------------------------------
# Public transform.


def _resolve(
    x: Tensor, dims: Dims, level: int, wavelet: str, backend: Backend, mode: PadMode
) -> Literal["haar", "ptwt"]:
    check_choice("dims", dims, get_args(Dims))
    check_choice("backend", backend, get_args(Backend))
    check_choice("mode", mode, get_args(PadMode))
    check_latents(x, ranks=(5,) if dims == "3d" else (4, 5))
    if not isinstance(level, int) or isinstance(level, bool) or level < 1:
        raise ValueError(f"level must be an int >= 1, got {level!r}")
    if backend == "haar" and wavelet != "haar":
        raise ValueError(
            f"backend='haar' only computes the Haar wavelet, got wavelet={wavelet!r}; use backend='ptwt'"
        )
    if backend == "ptwt" or wavelet != "haar":
        import pywt

        if wavelet not in pywt.wavelist(kind="discrete"):
            raise ValueError(
                f"unknown wavelet {wavelet!r}; allowed: any of pywt.wavelist(kind='discrete'), e.g. 'haar', 'db2', 'sym4'"
            )
        return "ptwt"
    return "haar"


def dwt(
    x: Tensor,
    *,
    dims: Dims = "3d",
    level: int = 1,
    wavelet: str = "haar",
    backend: Backend = "auto",
    mode: PadMode = "symmetric",
) -> Bands:
    """Multi-level wavelet decomposition of ``(B, C, F, H, W)`` latents (or ``(B, C, H, W)`` frames for 2d).

    Args:
        x: latents; ``dims="3d"`` needs rank 5, ``dims="2d"`` takes rank 4 or 5 (per frame).
        dims: ``"3d"`` over (F, H, W) or ``"2d"`` per frame over (H, W).
        level: number of levels, >= 1.
        wavelet: any pywt discrete wavelet; ``"haar"`` runs the fast path under ``backend="auto"``.
        backend: ``"auto"``, ``"haar"`` (plain torch) or ``"ptwt"``.
        mode: padding of odd sizes (and boundaries for longer wavelets).
    """
    used = _resolve(x, dims, level, wavelet, backend, mode)
    if used == "haar":
        low, details, sizes = _haar_dwt(x, dims, level, mode)
    else:
        low, details = _ptwt_dwt(x, dims, level, wavelet, mode)
        sizes = []
    return Bands(low, details, dims, wavelet, mode, tuple(x.shape), x.dtype, used, sizes)


def idwt(bands: Bands) -> Tensor:
    """Inverse of :func:`dwt`: exact reconstruction, cropped to the input shape and cast to its dtype."""
    x = _haar_idwt(bands) if bands.backend == "haar" else _ptwt_idwt(bands)
    return x.to(bands.dtype)


# ----------------------------------------------------------------------------------------------------------
# Band filtering: IDWT(gain ⊙ DWT(x)), the operation every band corrector needs.


def _is_scalar(g: Gain) -> bool:
    return not isinstance(g, Tensor) or g.numel() == 1


def _pair_sum(x: Tensor, ax: int, mode: PadMode) -> Tensor:
    """Sum of neighbouring pairs along ``ax`` (an odd tail pairs with its ``mode`` padding)."""
    ax = ax % x.dim()
    n = x.shape[ax]
    even = n - n % 2
    pairs = x.narrow(ax, 0, even).unflatten(ax, (even // 2, 2))  # (..., n/2, 2, ...)
    if n % 2 == 0:
        return torch.add(pairs.select(ax + 1, 0), pairs.select(ax + 1, 1))
    if mode == "reflect" and n < 2:
        raise ValueError(f"mode='reflect' needs at least 2 samples along axis {ax}, got {n}")
    out = x.new_empty((*x.shape[:ax], even // 2 + 1, *x.shape[ax + 1 :]))
    torch.add(pairs.select(ax + 1, 0), pairs.select(ax + 1, 1), out=out.narrow(ax, 0, even // 2))
    # Size-1 views squeezed: strided ``out=`` ops with size-1 middle dims are very slow on multi-threaded CPU.
    last, tail = x.select(ax, n - 1), out.select(ax, even // 2)
    if mode == "symmetric":
        torch.mul(last, 2, out=tail)
    elif mode == "reflect":
        torch.add(last, x.select(ax, n - 2), out=tail)
    else:
        tail.copy_(last)
    return out


def _pair_sum_terms(terms: Sequence[tuple[float, Tensor]], ax: int, mode: PadMode) -> tuple[Tensor, float]:
    """Pair sums of ``sum_i a_i t_i`` along ``ax`` as ``(u, k)`` with the result ``k * u``.

    The combination is never materialised at full size: ``u = ps(t_0) + (a_1 / a_0) ps(t_1) + ...``
    accumulates the pairs directly and the common factor ``k = a_0`` is applied later, on smaller tensors.
    """
    live = [(a, t) for a, t in terms if a != 0]
    if not live:
        return _pair_sum(terms[0][1], ax, mode).zero_(), 0.0
    k, first = live[0]
    u = _pair_sum(first, ax, mode)
    for a, t in live[1:]:
        u.add_(_pair_sum(t, ax, mode), alpha=a / k)
    return u, k


def _repeat2(x: Tensor, ax: int, n: int) -> Tensor:
    """Each sample twice along ``ax``, cropped to ``n`` (the inverse of pairing, for broadcasting back)."""
    ax = ax % x.dim()
    doubled = x.unsqueeze(ax + 1).expand(*x.shape[: ax + 1], 2, *x.shape[ax + 1 :])
    return doubled.flatten(ax, ax + 1).narrow(ax, 0, n)


def _add_upsampled(base: Tensor, small: Tensor, axes: Sequence[int]) -> Tensor:
    """``base + small`` repeated twice along each of ``axes``, in one pass over ``base``.

    ``small`` is broadcast over the pair dimension of each axis instead of being copied; odd tails (one
    sample left at the end of an axis) are added separately, so every region is one strided add.
    """
    nd = base.dim()
    axes = sorted(ax % nd for ax in axes)
    out = torch.empty_like(base)
    # Each axis splits into its paired part and (if odd) its tail; visit every combination once.
    splits = []
    for ax in axes:
        n = base.shape[ax]
        even = n - n % 2
        parts = [(0, even, 0, even // 2, True)] if even else []
        if n % 2:
            parts.append((even, 1, even // 2, 1, False))
        splits.append(parts)
    for combo in product(*splits):
        b, o, sm = base, out, small
        for ax, (start, length, s_start, s_len, _) in zip(axes, combo):
            b, o, sm = b.narrow(ax, start, length), o.narrow(ax, start, length), sm.narrow(ax, s_start, s_len)
        # Unflatten paired axes into (n/2, 2) and broadcast ``small`` over the 2; squeeze tail axes (size 1:
        # strided ``out=`` ops with size-1 middle dims are pathologically slow on multi-threaded CPU).
        # Last axis first keeps the earlier axis indices valid.
        for ax, (_, length, _, _, paired) in reversed(list(zip(axes, combo))):
            if paired:
                b, o = b.unflatten(ax, (length // 2, 2)), o.unflatten(ax, (length // 2, 2))
                sm = sm.unsqueeze(ax + 1)
            else:
                b, o, sm = b.squeeze(ax), o.squeeze(ax), sm.squeeze(ax)
        torch.add(b, sm, out=o)
    return out


def _haar_filter(
    terms: Sequence[tuple[float, Tensor]],
    g_low: float,
    g_sp: float,
    g_t: float,
    dims: Dims,
    level: int,
    mode: PadMode,
    base: Tensor | None = None,
) -> Tensor:
    """``base + W(sum_i a_i t_i)`` with W = IDWT(gain ⊙ DWT(.)), Haar, scalar group gains, no full transform.

    For Haar the band projections are local means: with ``A_t`` the pairwise mean over time and ``A`` the
    mean over each 2x2x2 block (2x2 in 2d), both broadcast back,
    ``W(d) = g_t d + (g_sp - g_t) A_t d + U[W'(c) - g_sp c]`` with ``c`` the block means (one level coarser)
    and ``W'`` the same filter on ``c`` (``W'(c) = g_low c`` at the last level). Pair sums run over the time
    and height axes first (cheap on contiguous memory), the coarse result is broadcast back along them, and
    the full-resolution work is one pass per input plus one for the output; zero gains skip their terms.
    """
    ref = terms[0][1]
    w = ref.shape[-1]
    st: Tensor | None = None
    if dims == "3d":
        # Time-pair sums of d (half size), then height and width pairs: block sums (1/8 size).
        st, k = _pair_sum_terms(terms, -3, mode)
        c = _pair_sum(_pair_sum(st, -2, mode), -1, mode)
        c_scale = k / 8.0  # block means = c_scale * c
    else:
        hs, k = _pair_sum_terms(terms, -2, mode)
        c = _pair_sum(hs, -1, mode)
        c_scale = k / 4.0
    # Coarse correction: recursion on the block means, or the low gain at the last level.
    if level > 1:
        means = c.mul_(c_scale)
        coarse = _haar_filter([(1.0, means)], g_low, g_sp, g_t, dims, level - 1, mode)
        if g_sp != 0:
            coarse = coarse.sub_(means, alpha=g_sp)
    else:
        coarse = c.mul_(c_scale * (g_low - g_sp))
    up = _repeat2(coarse, -1, w)  # width restored; time and height are broadcast in the final add
    # Full resolution: base + g_full d, then the coarser terms added in one broadcast pass.
    g_full = g_t if dims == "3d" else g_sp
    out = base
    if g_full != 0:
        for a, t in terms:
            if a == 0:
                continue
            if out is None:
                out = t * (a * g_full)
            elif out is base:
                out = torch.add(out, t, alpha=a * g_full)
            else:
                out = out.add_(t, alpha=a * g_full)
    if out is None:
        out = torch.zeros_like(ref)
    if dims == "3d" and g_sp != g_t:
        assert st is not None
        # (g_sp - g_t) A_t d lives at half time resolution: join it with the coarse term there.
        half = _add_upsampled(st.mul_(0.5 * (g_sp - g_t) * k), up, (-2,))
        return _add_upsampled(out, half, (-3,))
    return _add_upsampled(out, up, (-3, -2) if dims == "3d" else (-2,))


def _generic_filter(
    x: Tensor,
    gains: Mapping[Any, Gain],
    dims: Dims,
    level: int,
    wavelet: str,
    backend: Backend,
    mode: PadMode,
) -> Tensor:
    bands = dwt(x, dims=dims, level=level, wavelet=wavelet, backend=backend, mode=mode)
    full = {g: gains.get(g, 0.0) for g in GROUPS}
    return idwt(bands.scaled(full))


def group_components(
    x: Tensor,
    *,
    dims: Dims = "3d",
    level: int = 1,
    wavelet: str = "haar",
    backend: Backend = "auto",
    mode: PadMode = "symmetric",
) -> dict[Group, Tensor]:
    """Split ``x`` into one tensor per band group; they sum back to ``x`` (``temporal`` only for 3d)."""
    groups = GROUPS if dims == "3d" else ("low", "spatial")
    return {
        g: band_filter(
            x,
            {h: float(h == g) for h in GROUPS},
            dims=dims,
            level=level,
            wavelet=wavelet,
            backend=backend,
            mode=mode,
        )
        for g in groups
    }


def band_filter(
    x: Tensor,
    gains: Mapping[Any, Gain],
    *,
    dims: Dims = "3d",
    level: int = 1,
    wavelet: str = "haar",
    backend: Backend = "auto",
    mode: PadMode = "symmetric",
    terms: Sequence[tuple[Gain, Tensor]] | None = None,
    base: Tensor | None = None,
) -> Tensor:
    """``IDWT(gain ⊙ DWT(x))``: multiply each band group by its gain and transform back.

    Groups missing from ``gains`` get gain 0, so ``band_filter(x, {"low": 1})`` is the low-pass part of ``x``.
    A gain may be a tensor broadcastable to ``x`` (per-frame or per-token gains): then each group's
    component is weighted element-wise after the inverse transform. ``terms`` lets the fast path filter a
    linear combination ``sum a_i t_i`` without materialising it (``x`` is then only the reference tensor;
    a coefficient may be a tensor broadcastable to ``x``, e.g. per frame), and ``base`` is added to the
    result in the same final pass (``base + W(x)``).

    With ``backend="auto"``, the Haar wavelet and ``level=1``, the call runs as one fused kernel where
    :func:`vidfix.kernels.fused_band_filter` supports it (C++ on the CPU, Triton on CUDA; float32, bfloat16,
    float16; 1-2 terms with ``base`` one of them; per-(batch, frame) tensors), else on the eager path below,
    which is also the reference (``backend="haar"`` forces it).
    """
    _check_gain_names(gains)
    used = _resolve(x, dims, level, wavelet, backend, mode)
    if terms is None:
        terms = [(1.0, x)]
    if used == "haar" and backend == "auto" and level == 1:
        from vidfix.kernels import fused_band_filter

        fused = fused_band_filter(x, gains, terms, dims=dims, mode=mode, base=base)
        if fused is not None:
            return fused
    if any(isinstance(a, Tensor) for a, _ in terms):  # tensor coefficients: build the combination first
        terms = [(1.0, _combine(terms))]
    if not all(_is_scalar(g) for g in gains.values()):
        comps = group_components(
            _combine(terms), dims=dims, level=level, wavelet=wavelet, backend=backend, mode=mode
        )
        out = torch.zeros_like(x) if base is None else base.clone()
        for g, comp in comps.items():
            gain = gains.get(g, 0.0)
            out = out.add_(comp * gain) if _is_scalar(gain) else out.add_(comp.mul(gain))
        return out
    scalar: dict[str, float] = {k: float(gains.get(k, 0.0)) for k in GROUPS}
    if dims == "2d":
        scalar["temporal"] = scalar["spatial"]
    if used == "haar":
        low, sp, tm = scalar["low"], scalar["spatial"], scalar["temporal"]
        floats = [(float(a), t) for a, t in terms]  # scalars by now
        return _haar_filter(floats, low, sp, tm, dims, level, mode, base)
    out = _generic_filter(_combine(terms), scalar, dims, level, wavelet, backend, mode)
    return out if base is None else out.add_(base)


def _combine(terms: Sequence[tuple[Gain, Tensor]]) -> Tensor:
    out = None
    for a, t in terms:
        if out is None:
            out = t * a
        elif isinstance(a, Tensor):
            out = out.add_(t * a)
        else:
            out = out.add_(t, alpha=a)
    assert out is not None
    return out
