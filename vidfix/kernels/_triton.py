"""CUDA path of the fused Haar filter: a Triton kernel (the same arithmetic as ``csrc/haar_filter.cpp``).

One program handles one (batch, channel, time pair) and a tile of ``BLOCK_H x BLOCK_W`` 2x2 blocks. It loads
each 2x2 block's four samples as four stride-2 tiles (quadrants; together they read each cache line once)
for both frames of the pair, forms the
time-pair means ``m`` per quadrant and the block mean ``M`` from them, and writes both frames: one read of
``u`` and ``v``, one write. Odd sizes pair the last sample with its padding partner (symmetric: itself,
reflect: the one before, zero: weight 0); padded positions are never written.

The kernel is made with ``triton.jit`` on first use, once per interpreter setting, so tests can run it on
the CPU under ``TRITON_INTERPRET=1`` (Triton's own switch) in a process that imported this module before.
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

__all__ = ["launch"]


def _haar_filter_body(
    u_ptr, v_ptr, o_ptr, coef_ptr,
    C, F, H, W, n_pairs,
    su_b, su_c, su_f, su_h, sv_b, sv_c, sv_f, sv_h, so_b, so_c, so_f, so_h,
    cb, cf,
    PAIR_T: tl.constexpr, MODE: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):  # fmt: skip
    # Written out by hand (no lists, no tuple indexing, no helper functions): plain Triton only. Loops over
    # the pair's frames are static (unrolled), their branches compile-time.
    pid = tl.program_id(0)  # (b, c, time pair)
    p = pid % n_pairs
    bc = pid // n_pairs
    b = (bc // C).to(tl.int64)
    c = (bc % C).to(tl.int64)
    f0 = p * PAIR_T
    # Padding partner of an odd tail: symmetric = itself, reflect = the one before, zero = weight 0.
    if MODE == 1:
        shift = 2
    else:
        shift = 1
    if MODE == 2:
        wpad = 0.0
    else:
        wpad = 1.0

    # Coefficients (pu, pv, gu, gv, kt, kb) of the pair's first frame; m = a0 u0 + b0 v0 (+ a1 u1 + b1 v1).
    k0 = coef_ptr + b * cb + f0 * cf
    a0 = tl.load(k0)
    b0 = tl.load(k0 + 1)
    f1_real = f0 + 1 < F
    if PAIR_T == 2:
        f1 = tl.where(f1_real, f0 + 1, F - shift)
        wt = tl.where(f1_real, 1.0, wpad)
        k1 = coef_ptr + b * cb + f1 * cf
        a1 = 0.5 * wt * tl.load(k1)
        b1 = 0.5 * wt * tl.load(k1 + 1)
        a0 = 0.5 * a0
        b0 = 0.5 * b0

    # Row / column pair indices of this tile; the second of a pair may be a padding partner.
    i = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    j = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    r0 = 2 * i
    c0 = 2 * j
    r1_real = r0 + 1 < H
    c1_real = c0 + 1 < W
    r1 = tl.where(r1_real, r0 + 1, H - shift)
    c1 = tl.where(c1_real, c0 + 1, W - shift)
    wr = tl.where(r1_real, 1.0, wpad)[:, None]
    wc = tl.where(c1_real, 1.0, wpad)[None, :]
    inside = (r0 < H)[:, None] & (c0 < W)[None, :]
    keep00 = inside
    keep01 = inside & c1_real[None, :]
    keep10 = inside & r1_real[:, None]
    keep11 = keep10 & c1_real[None, :]
    # Element offsets (within a frame) of the four quadrants.
    ou00 = r0[:, None] * su_h + c0[None, :]
    ou01 = r0[:, None] * su_h + c1[None, :]
    ou10 = r1[:, None] * su_h + c0[None, :]
    ou11 = r1[:, None] * su_h + c1[None, :]
    ov00 = r0[:, None] * sv_h + c0[None, :]
    ov01 = r0[:, None] * sv_h + c1[None, :]
    ov10 = r1[:, None] * sv_h + c0[None, :]
    ov11 = r1[:, None] * sv_h + c1[None, :]
    oo00 = r0[:, None] * so_h + c0[None, :]
    oo01 = r0[:, None] * so_h + c1[None, :]
    oo10 = r1[:, None] * so_h + c0[None, :]
    oo11 = r1[:, None] * so_h + c1[None, :]
    u0 = u_ptr + b * su_b + c * su_c + f0 * su_f
    v0 = v_ptr + b * sv_b + c * sv_c + f0 * sv_f
    o0 = o_ptr + b * so_b + c * so_c + f0 * so_f

    # Frame f0, and the time-pair means m per quadrant.
    u00 = tl.load(u0 + ou00, mask=inside, other=0.0).to(tl.float32)
    u01 = tl.load(u0 + ou01, mask=inside, other=0.0).to(tl.float32)
    u10 = tl.load(u0 + ou10, mask=inside, other=0.0).to(tl.float32)
    u11 = tl.load(u0 + ou11, mask=inside, other=0.0).to(tl.float32)
    v00 = tl.load(v0 + ov00, mask=inside, other=0.0).to(tl.float32)
    v01 = tl.load(v0 + ov01, mask=inside, other=0.0).to(tl.float32)
    v10 = tl.load(v0 + ov10, mask=inside, other=0.0).to(tl.float32)
    v11 = tl.load(v0 + ov11, mask=inside, other=0.0).to(tl.float32)
    m00 = a0 * u00 + b0 * v00
    m01 = a0 * u01 + b0 * v01
    m10 = a0 * u10 + b0 * v10
    m11 = a0 * u11 + b0 * v11
    if PAIR_T == 2:
        u1 = u_ptr + b * su_b + c * su_c + f1 * su_f
        v1 = v_ptr + b * sv_b + c * sv_c + f1 * sv_f
        x00 = tl.load(u1 + ou00, mask=inside, other=0.0).to(tl.float32)
        x01 = tl.load(u1 + ou01, mask=inside, other=0.0).to(tl.float32)
        x10 = tl.load(u1 + ou10, mask=inside, other=0.0).to(tl.float32)
        x11 = tl.load(u1 + ou11, mask=inside, other=0.0).to(tl.float32)
        y00 = tl.load(v1 + ov00, mask=inside, other=0.0).to(tl.float32)
        y01 = tl.load(v1 + ov01, mask=inside, other=0.0).to(tl.float32)
        y10 = tl.load(v1 + ov10, mask=inside, other=0.0).to(tl.float32)
        y11 = tl.load(v1 + ov11, mask=inside, other=0.0).to(tl.float32)
        m00 += a1 * x00 + b1 * y00
        m01 += a1 * x01 + b1 * y01
        m10 += a1 * x10 + b1 * y10
        m11 += a1 * x11 + b1 * y11
    big = 0.25 * (m00 + wc * m01 + wr * (m10 + wc * m11))  # 2x2 block mean of m

    # Write frame f0, then frame f0 + 1 when it exists (then it is f1, whose samples are loaded).
    ty = o_ptr.dtype.element_ty
    for fi in tl.static_range(PAIR_T):
        if fi == 0:
            kf = k0
            real = f0 < F
            p00 = u00
            p01 = u01
            p10 = u10
            p11 = u11
            q00 = v00
            q01 = v01
            q10 = v10
            q11 = v11
        else:
            kf = coef_ptr + b * cb + (f0 + 1) * cf
            real = f1_real
            p00 = x00
            p01 = x01
            p10 = x10
            p11 = x11
            q00 = y00
            q01 = y01
            q10 = y10
            q11 = y11
        gu = tl.load(kf + 2, mask=real, other=0.0)
        gv = tl.load(kf + 3, mask=real, other=0.0)
        kt = tl.load(kf + 4, mask=real, other=0.0)
        kb = tl.load(kf + 5, mask=real, other=0.0)
        tb = kb * big
        w00 = gu * p00 + gv * q00 + kt * m00 + tb
        w01 = gu * p01 + gv * q01 + kt * m01 + tb
        w10 = gu * p10 + gv * q10 + kt * m10 + tb
        w11 = gu * p11 + gv * q11 + kt * m11 + tb
        if OUT_BF16:
            # Round to nearest even by hand (NaN kept): the same bits on a GPU and under TRITON_INTERPRET,
            # whose float32 -> bfloat16 cast truncates.
            b00 = w00.to(tl.uint32, bitcast=True)
            b01 = w01.to(tl.uint32, bitcast=True)
            b10 = w10.to(tl.uint32, bitcast=True)
            b11 = w11.to(tl.uint32, bitcast=True)
            w00 = tl.where(w00 != w00, 0x7FC0, (b00 + 0x7FFF + ((b00 >> 16) & 1)) >> 16)
            w01 = tl.where(w01 != w01, 0x7FC0, (b01 + 0x7FFF + ((b01 >> 16) & 1)) >> 16)
            w10 = tl.where(w10 != w10, 0x7FC0, (b10 + 0x7FFF + ((b10 >> 16) & 1)) >> 16)
            w11 = tl.where(w11 != w11, 0x7FC0, (b11 + 0x7FFF + ((b11 >> 16) & 1)) >> 16)
            w00 = w00.to(tl.uint16).to(tl.bfloat16, bitcast=True)
            w01 = w01.to(tl.uint16).to(tl.bfloat16, bitcast=True)
            w10 = w10.to(tl.uint16).to(tl.bfloat16, bitcast=True)
            w11 = w11.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        of = o0 + fi * so_f
        tl.store(of + oo00, w00.to(ty), mask=keep00 & real)
        tl.store(of + oo01, w01.to(ty), mask=keep01 & real)
        tl.store(of + oo10, w10.to(ty), mask=keep10 & real)
        tl.store(of + oo11, w11.to(ty), mask=keep11 & real)


_kernels: dict[bool, Any] = {}


def _kernel() -> Any:
    interpret = bool(triton.knobs.runtime.interpret)
    if interpret not in _kernels:
        _kernels[interpret] = triton.jit(_haar_filter_body)
    return _kernels[interpret]


def _block(n: int, cap: int) -> int:
    return max(2, min(cap, triton.next_power_of_2(n)))


def launch(
    u: torch.Tensor, v: torch.Tensor, out: torch.Tensor, coef: torch.Tensor, *, pair_t: int, mode: int
) -> None:
    """Run the kernel on ``(B, C, F, H, W)`` tensors whose last axis is contiguous (CUDA, or any device
    under ``TRITON_INTERPRET=1``)."""
    B, C, F, H, W = u.shape
    n_pairs = (F + pair_t - 1) // pair_t
    bh, bw = _block((H + 1) // 2, 8), _block((W + 1) // 2, 64)
    grid = (B * C * n_pairs, triton.cdiv((H + 1) // 2, bh), triton.cdiv((W + 1) // 2, bw))
    _kernel()[grid](
        u, v, out, coef,
        C, F, H, W, n_pairs,
        *u.stride()[:4], *v.stride()[:4], *out.stride()[:4],
        coef.stride(0), coef.stride(1),
        PAIR_T=pair_t, MODE=mode, OUT_BF16=out.dtype == torch.bfloat16, BLOCK_H=bh, BLOCK_W=bw,
    )  # fmt: skip
