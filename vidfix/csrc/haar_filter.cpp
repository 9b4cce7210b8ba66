// Fused one-level Haar band filter for (B, C, F, H, W) latents (vidfix.kernels, CPU path).
//
// Computes, per (batch, channel, time pair) tile, reading u and v from memory once and writing out once:
//
//     d(f)   = pu[f] u + pv[f] v                       (the difference the correction filters)
//     m      = mean of d over the time pair            (pair_t = 2; pair_t = 1 (2d): m = d)
//     M      = mean of m over each 2x2 (H, W) block
//     out(f) = gu[f] u + gv[f] v + kt[f] m + kb[f] M    (m and M broadcast back to full resolution)
//
// which is base + IDWT(gain * DWT(d)) for the level-1 Haar transform (see vidfix/kernels/__init__.py for the
// derivation and the coefficients). Coefficients vary per (batch, frame); the table coef[b, f, 0..5] holds
// (pu, pv, gu, gv, kt, kb) with element strides (cb, cf) (0 broadcasts). Odd sizes pair the last sample with
// its padding partner: itself (symmetric), the sample before it (reflect) or zero (zero), as pywt does.
//
// Plain C ABI, no torch headers: it compiles in about a second with any C++ compiler and is loaded with
// ctypes. Threads: OpenMP over tiles; inside torch's process the OpenMP runtime is torch's own libgomp.
// Arithmetic in float32 for every storage type (bf16 / fp16 are converted on load, rounded once on store).

#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512BF16__) && defined(__AVX512F__)
#include <immintrin.h>
#define VIDFIX_AVX512BF16 1
#endif

namespace {

enum Mode { kSymmetric = 0, kReflect = 1, kZero = 2 };
enum DType { kF32 = 0, kBF16 = 1, kF16 = 2 };

inline float bits_to_float(uint32_t b) {
    float f;
    std::memcpy(&f, &b, sizeof f);
    return f;
}

inline uint32_t float_to_bits(float f) {
    uint32_t b;
    std::memcpy(&b, &f, sizeof b);
    return b;
}

// Storage types. load: one sample as float; store_n: n floats rounded to the storage type. kDirect: the
// output loop writes floats straight to the output (no staging buffer).
struct F32 {
    using T = float;
    static constexpr bool kDirect = true;
    static inline float load(const T* p, int64_t i) { return p[i]; }
    static inline void store(T* p, int64_t i, float x) { p[i] = x; }
    static void store_n(T* __restrict p, const float* __restrict x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) p[i] = x[i];
    }
};

struct BF16 {
    using T = uint16_t;
    static constexpr bool kDirect = false;
    static inline float load(const T* p, int64_t i) { return bits_to_float(static_cast<uint32_t>(p[i]) << 16); }
    static inline uint16_t round(float x) {
        // Round to nearest even; a NaN stays a (quiet) NaN. Branch-free, so loops vectorise.
        const uint32_t b = float_to_bits(x);
        const uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
        const uint32_t nan = (b >> 16) | 0x40u;
        return static_cast<uint16_t>((b & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
    }
    static void store_n(T* __restrict p, const float* __restrict x, int64_t n) {
        int64_t i = 0;
#ifdef VIDFIX_AVX512BF16
        // One instruction per 16 samples: round to nearest even (it flushes float32 denormals, below 1.2e-38,
        // to zero).
        for (; i + 16 <= n; i += 16) {
            const __m256bh r = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
            std::memcpy(p + i, &r, sizeof r);
        }
#endif
        for (; i < n; ++i) p[i] = round(x[i]);
    }
};

struct F16 {
    using T = _Float16;
    static constexpr bool kDirect = false;
    static inline float load(const T* p, int64_t i) { return static_cast<float>(p[i]); }
    static void store_n(T* __restrict p, const float* __restrict x, int64_t n) {
        for (int64_t i = 0; i < n; ++i) p[i] = static_cast<_Float16>(x[i]);
    }
};

// Partner of the last sample of an odd axis of length n (index and weight), for a pair starting at i.
inline void partner(int64_t i, int64_t n, int mode, int64_t* j, float* w) {
    if (i + 1 < n) {
        *j = i + 1;
        *w = 1.0f;
    } else if (mode == kSymmetric) {
        *j = n - 1;
        *w = 1.0f;
    } else if (mode == kReflect) {
        *j = n - 2;
        *w = 1.0f;
    } else {
        *j = n - 1;  // any valid index; weight 0
        *w = 0.0f;
    }
}

struct Args {
    const void* u;
    const void* v;
    void* out;
    int64_t B, C, F, H, W;
    int64_t su[4], sv[4], so[4];  // element strides of (B, C, F, H); W is contiguous
    const float* coef;
    int64_t cb, cf;
    int pair_t, mode;
};

// out = gu u + gv v + e over n samples (e = kt m + kb up, the frame's coarse terms).
template <typename L>
inline void out_rows(typename L::T* __restrict o, const typename L::T* __restrict u,
                     const typename L::T* __restrict v, const float* __restrict e, float* __restrict stage,
                     int64_t n, float gu, float gv) {
    if constexpr (L::kDirect) {
#pragma GCC ivdep
        for (int64_t i = 0; i < n; ++i) o[i] = gu * L::load(u, i) + gv * L::load(v, i) + e[i];
    } else {
#pragma GCC ivdep
        for (int64_t i = 0; i < n; ++i) stage[i] = gu * L::load(u, i) + gv * L::load(v, i) + e[i];
        L::store_n(o, stage, n);
    }
}

// Coarse terms of one row pair: e = kt m + kb M with M the 2x2 block mean of rows ma, mb (mb: the second
// row, or the weighted padding partner), repeated over the pair; eb may be a scratch row (padding).
inline void coarse_rows(const float* __restrict ma, const float* __restrict mb, float* __restrict ea,
                        float* __restrict eb, int64_t W, float kt, float kb, int64_t wlast, float wwt) {
    const float q = 0.25f * kb;
    for (int64_t w = 0; w + 1 < W; w += 2) {
        const float s = q * (ma[w] + ma[w + 1] + mb[w] + mb[w + 1]);
        ea[w] = kt * ma[w] + s;
        ea[w + 1] = kt * ma[w + 1] + s;
        eb[w] = kt * mb[w] + s;
        eb[w + 1] = kt * mb[w + 1] + s;
    }
    if (W % 2) {
        const float s = q * (ma[W - 1] + wwt * ma[wlast] + mb[W - 1] + wwt * mb[wlast]);
        ea[W - 1] = kt * ma[W - 1] + s;
        eb[W - 1] = kt * mb[W - 1] + s;
    }
}

// Rows per chunk: an even number of rows of about kChunkBytes per input row block (at least one row pair),
// processed as flat loops (the rows of a frame are contiguous). Small chunks keep the four input blocks and
// the float scratch rows in L1: measured on the Wan-480p latent, 1 KB ran 25-30% faster than 4 KB.
constexpr int64_t kChunkBytes = 1024;
constexpr int64_t kGrain = 32768;

// One (b, c, time pair) tile; NF = frames per tile (2 in 3d, 1 in 2d). Per chunk of rows: (A) the time-pair
// mean m of d, (B) the coarse terms e = kt m + kb M of each output frame (M: 2x2 block means of m, repeated;
// one e when both frames share kt and kb), (C) out = gu u + gv v + e for the frames that exist. A padding
// partner (second frame of an odd F, last row of an odd H, last column of an odd W) is read with its
// weight and never written. Scratch (rows_per_chunk + 1 rows each): m, e0, e1, stage.
template <typename L, int NF>
void tile(const Args& a, int64_t b, int64_t c, int64_t p, float* scratch, int64_t rows_per_chunk) {
    using T = typename L::T;
    const int64_t H = a.H, W = a.W;
    const int64_t cap = (rows_per_chunk + 1) * W;
    float* __restrict m = scratch;
    float* __restrict e0 = scratch + cap;
    float* __restrict e1 = scratch + 2 * cap;
    float* __restrict stage = scratch + 3 * cap;

    const int64_t f0 = p * NF;
    int64_t f1 = f0;
    float wt = 0.0f;
    if (NF == 2) partner(f0, a.F, a.mode, &f1, &wt);
    const bool f1_real = NF == 2 && f0 + 1 < a.F;
    const float* k0 = a.coef + b * a.cb + f0 * a.cf;
    const float* k1 = a.coef + b * a.cb + f1 * a.cf;
    // m = A0 u(f0) + B0 v(f0) + A1 u(f1) + B1 v(f1)
    const float h = NF == 2 ? 0.5f : 1.0f;
    const float A0 = h * k0[0], B0 = h * k0[1], A1 = h * wt * k1[0], B1 = h * wt * k1[1];
    const float gu0 = k0[2], gv0 = k0[3], kt0 = k0[4], kb0 = k0[5];
    const float gu1 = k1[2], gv1 = k1[3], kt1 = k1[4], kb1 = k1[5];
    const bool own_e1 = f1_real && (kt1 != kt0 || kb1 != kb0);
    const float* ef1 = own_e1 ? e1 : e0;

    const T* u = static_cast<const T*>(a.u) + b * a.su[0] + c * a.su[1];
    const T* v = static_cast<const T*>(a.v) + b * a.sv[0] + c * a.sv[1];
    T* o = static_cast<T*>(a.out) + b * a.so[0] + c * a.so[1];
    int64_t wlast = 0;
    float wwt = 0.0f;
    if (W % 2) partner(W - 1, W, a.mode, &wlast, &wwt);

    for (int64_t r_begin = 0; r_begin < H; r_begin += rows_per_chunk) {
        const int64_t rows = r_begin + rows_per_chunk <= H ? rows_per_chunk : H - r_begin;
        const int64_t n = rows * W;
        const T* __restrict u0 = u + f0 * a.su[2] + r_begin * a.su[3];
        const T* __restrict v0 = v + f0 * a.sv[2] + r_begin * a.sv[3];
        const T* __restrict u1 = u + f1 * a.su[2] + r_begin * a.su[3];
        const T* __restrict v1 = v + f1 * a.sv[2] + r_begin * a.sv[3];
        // (A) time-pair means; for an odd H the last row's (weighted) partner row goes after the chunk.
        if (NF == 2) {
#pragma GCC ivdep
            for (int64_t i = 0; i < n; ++i)
                m[i] = A0 * L::load(u0, i) + B0 * L::load(v0, i) + A1 * L::load(u1, i) + B1 * L::load(v1, i);
        } else {
#pragma GCC ivdep
            for (int64_t i = 0; i < n; ++i) m[i] = A0 * L::load(u0, i) + B0 * L::load(v0, i);
        }
        if (rows % 2) {
            int64_t rp;
            float wr;
            partner(H - 1, H, a.mode, &rp, &wr);
            float* __restrict mp = m + n;
            const int64_t off = (rp - r_begin) * W;  // may point before the chunk (reflect): same frame
            for (int64_t w = 0; w < W; ++w) {
                float d = A0 * L::load(u0, off + w) + B0 * L::load(v0, off + w);
                if (NF == 2) d += A1 * L::load(u1, off + w) + B1 * L::load(v1, off + w);
                mp[w] = wr * d;
            }
        }
        // (B) coarse terms per row pair (a padding row's terms land in the unused row after the chunk).
        for (int64_t r = 0; r < rows; r += 2) {
            const float* ma = m + r * W;
            const float* mb = m + (r + 1) * W;
            coarse_rows(ma, mb, e0 + r * W, e0 + (r + 1) * W, W, kt0, kb0, wlast, wwt);
            if (own_e1) coarse_rows(ma, mb, e1 + r * W, e1 + (r + 1) * W, W, kt1, kb1, wlast, wwt);
        }
        // (C) outputs (through the staging buffer for half-precision storage).
        T* __restrict o0 = o + f0 * a.so[2] + r_begin * a.so[3];
        out_rows<L>(o0, u0, v0, e0, stage, n, gu0, gv0);
        if (f1_real) {
            T* __restrict o1 = o + (f0 + 1) * a.so[2] + r_begin * a.so[3];
            out_rows<L>(o1, u1, v1, ef1, stage, n, gu1, gv1);
        }
    }
}

template <typename L>
void run(const Args& a, int num_threads) {
    const int64_t pairs = (a.F + a.pair_t - 1) / a.pair_t;
    const int64_t tiles = a.B * a.C * pairs;
    int64_t rows_per_chunk = 2 * (kChunkBytes / static_cast<int64_t>(sizeof(typename L::T)) / (2 * a.W));
    if (rows_per_chunk < 2) rows_per_chunk = 2;
    // At least kGrain samples per thread (torch's grain size): small calls stay on one thread.
    const int64_t by_work = a.B * a.C * a.F * a.H * a.W / kGrain;
    if (num_threads > by_work) num_threads = by_work > 1 ? static_cast<int>(by_work) : 1;
    if (num_threads > tiles) num_threads = static_cast<int>(tiles);
#pragma omp parallel num_threads(num_threads) if (num_threads > 1)
    {
        // m, e0, e1 and the output staging buffer, rows_per_chunk + 1 rows each.
        std::vector<float> buf(4 * static_cast<size_t>((rows_per_chunk + 1) * a.W));
#pragma omp for schedule(static)
        for (int64_t t = 0; t < tiles; ++t) {
            const int64_t p = t % pairs;
            const int64_t bc = t / pairs;
            if (a.pair_t == 2)
                tile<L, 2>(a, bc / a.C, bc % a.C, p, buf.data(), rows_per_chunk);
            else
                tile<L, 1>(a, bc / a.C, bc % a.C, p, buf.data(), rows_per_chunk);
        }
    }
}

}  // namespace

extern "C" {

// ABI version: vidfix checks it after loading, so a stale cached library is never called with new arguments.
int vidfix_haar_filter_abi(void) { return 1; }

// Returns 0 on success, 1 on bad arguments.
int vidfix_haar_filter(int dtype, const void* u, const void* v, void* out, const int64_t* size,
                       const int64_t* su, const int64_t* sv, const int64_t* so, const float* coef, int64_t cb,
                       int64_t cf, int pair_t, int mode, int num_threads) {
    if (pair_t != 1 && pair_t != 2) return 1;
    if (mode < kSymmetric || mode > kZero) return 1;
    Args a;
    a.u = u;
    a.v = v;
    a.out = out;
    a.B = size[0];
    a.C = size[1];
    a.F = size[2];
    a.H = size[3];
    a.W = size[4];
    for (int i = 0; i < 4; ++i) {
        a.su[i] = su[i];
        a.sv[i] = sv[i];
        a.so[i] = so[i];
    }
    a.coef = coef;
    a.cb = cb;
    a.cf = cf;
    a.pair_t = pair_t;
    a.mode = mode;
    if (num_threads < 1) num_threads = 1;
    switch (dtype) {
        case kF32: run<F32>(a, num_threads); return 0;
        case kBF16: run<BF16>(a, num_threads); return 0;
        case kF16: run<F16>(a, num_threads); return 0;
        default: return 1;
    }
}

}  // extern "C"
