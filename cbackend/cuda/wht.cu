/* wht: FWHT over channels, integer soft/smooth thresholds, FWHT, crop, residual, >> (log2 n + oshift),
 * clamp: one kernel, int8 in and int8 out (cbackend/src/wht.c is the model, numbers and all).
 *
 * Fast kernel (n <= 1024): one warp per 1024 coefficients, i.e. 1024 / n pixels. Each lane holds 32 of
 * them in registers; butterflies along the register bits run in registers, one transpose through shared
 * memory (per warp, 16-byte stores) swaps the lane bits into registers for the other stages, a second
 * transpose swaps them back for the store. Loads and stores are 16 bytes per lane when cin (cout) == n.
 * Arithmetic is fp32 on integers, exact: every value the two transforms make is a signed sum of distinct
 * inputs or thresholded coefficients, bounded by 3 * 128 * n^1.5 <= 12,582,912 < 2^24 for n <= 1024 (the
 * Parseval bound of wht.c), and fp32 adds integers below 2^24 exactly. Thresholds are capped at 2^22 as
 * in wht.c (|z| <= 128 n <= 2^17, so the cap changes nothing). The output step floor(v / 2^s + 1/2) is one
 * fmaf (exact where it matters: see out_byte), a clamp on the float where act_lo/act_hi are narrower
 * than int8, and one saturating float -> int8 conversion rounding down.
 *
 * A per-coefficient scale (scaled layers) is applied in int32 between the transforms: f2i, one multiply-add
 * with the rounding half, an arithmetic shift, i2f. |z| <= 128 n <= 2^17 and |cscale| <= 2^sshift keep
 * the result within |z|, and the loader's check keeps the product inside int32.
 *
 * Generic kernel (n > 1024, up to 2^14): one block per pixel, int32 in a global scratch row, as wht.c. */
#include <stdlib.h>
#include <string.h>
#include "common.cuh"

#define TLEN 256
#define TERMS 3
#define T_CAP (1 << 22)
#define FAST_MAX_N 1024
#define WARPS 4         /* warps per block of the fast kernel */
#define TSTRIDE 36      /* floats per row of a warp's 32 x 32 transpose buffer: 16-byte rows, no bank conflicts */
#define GEN_THREADS 256
#define TREP_LOG2_BYTES 5  /* TREP * 4 bytes between entries */
#define TREP 8          /* copies of the smooth table in shared memory, interleaved: lanes l, l + 8, l + 16,
                         * l + 24 share copy l % 8, whose entries lie in banks l % 8 + {0, 8, 16, 24}, so a
                         * lookup meets at most 4-way bank conflicts (one copy: up to 32-way); 8 KB, which
                         * with 72 registers lets 7 blocks share an SM (16 copies: 16 KB, 6 at most) */

struct wht_args {
    int32_t n, k, cin, cout, smooth, g, residual, shift, lo, hi, scaled, sshift, shalf;  /* shalf = 2^(sshift - 1) or 0 */
    float scale, half, flo, fhi, fres;  /* 2^-shift, 1/2 (0 when shift is 0), lo, hi, 2^k */
};

/* ---- shared with the C code: one coefficient through the threshold (wht.c threshold1) ---- */

__device__ __forceinline__ int32_t threshold1(int32_t z, int32_t t, int32_t smooth, int32_t g, const int32_t *codes) {
    int32_t mag = z < 0 ? -z : z, rem = mag - t > 0 ? mag - t : 0;
    if (!smooth) return z < 0 ? -rem : rem;
    int32_t idx = (mag >> g) < TLEN ? (mag >> g) : TLEN - 1, f = 0, packed = codes[idx];
#pragma unroll
    for (int j = 0; j < TERMS; j++) {  /* f = sum of +-(rem >> e): no multiply */
        int32_t code = (int8_t)(packed >> (8 * j)), v = code ? rem >> ((code < 0 ? -code : code) - 1) : 0;
        f += code < 0 ? -v : v;
    }
    return z < 0 ? -f : f;
}

/* ---- fast kernel ---- */

/* integers below 2^22 in magnitude, exactly, without the conversion unit: 1.5 * 2^23 has ulp 1 */
__device__ __forceinline__ float i2f(int32_t i) { return __int_as_float(i + 0x4B400000) - 12582912.0f; }
__device__ __forceinline__ int32_t f2i(float f) { return __float_as_int(__fadd_rn(f, 12582912.0f)) - 0x4B400000; }

/* The smooth table for the fast kernel (cu_prepare_wht). Entry i packs term j of wht.c's codes as byte j:
 * the shift a = e + 5 (e = |code| - 1, capped at 18: rem < 2^17 there, so rem >> 18 = 0; code 0 -> e = 18)
 * in bits 0-4 and the term's sign in bits 5-7 (111: negative); byte 3 = the number of negative terms. On
 * R = 32 rem, sign-extending byte j gives s with s & ~31 = 0 or ~31 and s & 31 = a, and
 * (R ^ (s & ~31)) >> a (arithmetic) = rem >> e, or ~(rem >> e) = -(rem >> e) - 1 for a negative term
 * (R's five low zero bits make the xor a complement above them; ceil((r + 1) / 2^e) = floor(r / 2^e) + 1),
 * so f = sum_j t_j + nneg: per term one PRMT, one LOP3, one SHF; no branch, no select. */
__host__ __device__ __forceinline__ uint32_t smooth_entry(int32_t packed) {
    uint32_t w = 0, nneg = 0;
    for (int j = 0; j < TERMS; j++) {
        const int32_t code = (int8_t)(packed >> (8 * j)), e = code ? (code < 0 ? -code : code) - 1 : 18;
        const uint32_t neg = code < 0;
        w |= (((uint32_t)(e < 18 ? e : 18) + 5) | (neg ? 0xE0u : 0u)) << (8 * j), nneg += neg;
    }
    return w | nneg << 24;
}

/* threshold1 (smooth) of the exact integer v (a float), for |v| < 2^17 (fast kernel, every coefficient but
 * DC: 127 * n / 2 + 128 * n / 2 < 2^17 for n <= 1024; DC's result is discarded). tb = 32 T + 0x4B400000
 * (T <= 2^22), gs = min(g + 5, 31), gc = 0x4B400000 >> gs. mi = the bits of M + 32 |v| (exact: 32 |v| <
 * 2^22) = 0x4B400000 + 32 mag, so R = max(mi - tb, 0) = 32 rem, and mi >> gs = gc + (mag >> g): 0x4B400000
 * has 22 low zero bits and 32 mag < 2^22, so the add carries nothing into the bits the shift keeps (gs >= 22:
 * both sides give gc; g >= 17 leaves mag >> g = 0). tab: this lane's table copy (entries TREP words apart). */
/* byte J of w, sign-extended: one PRMT on the GPU (selector: byte J, then its sign replicated) */
template <int J>
__device__ __forceinline__ uint32_t byte_sign(uint32_t w) {
#if defined(__CUDA_ARCH__) && !defined(MFE_CUDA_EMU)
    uint32_t r;
    asm("prmt.b32 %0, %1, 0, %2;" : "=r"(r) : "r"(w), "n"(0x8880 + 0x1110 * J + J));
    return r;
#else
    return (uint32_t)(int32_t)(int8_t)(w >> (8 * J));
#endif
}

/* x, opaque to the compiler (which would otherwise rebuild idx * TREP + lane % TREP in three instructions
 * instead of one LEA onto this lane's base) */
__device__ __forceinline__ int32_t opaque(int32_t x) {
#if defined(__CUDA_ARCH__) && !defined(MFE_CUDA_EMU)
    asm("mov.b32 %0, %1;" : "=r"(x) : "r"(x));
#endif
    return x;
}

/* x, recomputed wherever it is used (asm volatile): keeps a shared-memory read inside the loop */
__device__ __forceinline__ int32_t opaque_each(int32_t x) {
#if defined(__CUDA_ARCH__) && !defined(MFE_CUDA_EMU)
    asm volatile("mov.b32 %0, %1;" : "=r"(x) : "r"(x));
#endif
    return x;
}

__device__ __forceinline__ float smooth1(float v, int32_t tb, int32_t gs, int32_t gc, const uint32_t *tab) {
    const int32_t mi = __float_as_int(fmaf(fabsf(v), 32.0f, 12582912.0f));
    const int32_t d = mi - tb, R = d > 0 ? d : 0, q = (mi >> gs) - gc, idx = q < TLEN - 1 ? q : TLEN - 1;
    const uint32_t w = *(const uint32_t *)((const char *)tab + ((uint32_t)idx << TREP_LOG2_BYTES));
    const uint32_t s0 = byte_sign<0>(w), s1 = byte_sign<1>(w), s2 = byte_sign<2>(w);
    const uint32_t t0 = (uint32_t)((int32_t)((uint32_t)R ^ (s0 & ~31u)) >> (s0 & 31)),
                   t1 = (uint32_t)((int32_t)((uint32_t)R ^ (s1 & ~31u)) >> (s1 & 31)),
                   t2 = (uint32_t)((int32_t)((uint32_t)R ^ (s2 & ~31u)) >> (s2 & 31));
    const uint32_t fb = t0 + t1 + t2 + (w >> 24) + 0x4B400000u;  /* the bits of M + f (|f| < 3 * 2^17) */
    /* z < 0 ? -f : f, as the float's sign bit (f may be negative for an odd table: no copysign) */
    return __int_as_float(__float_as_int(__fsub_rn(__int_as_float((int32_t)fb), 12582912.0f)) ^
                          (__float_as_int(v) & (int32_t)0x80000000));
}

/* Coefficient index (10 bits: pixel-in-block bits above log2 n, channel bits below) of register r in
 * lane l. A layout: r bits 0-3 = index bits 0-3, r bit 4 = index bit 9, lane = bits 4-8 (each lane's
 * registers 0-15 and 16-31 are two 16-byte runs). B layout, after the transpose: the two swap roles. */
__device__ __forceinline__ int32_t idx_a(int32_t lane, int32_t r) { return ((r >> 4) << 9) | (lane << 4) | (r & 15); }
__device__ __forceinline__ int32_t idx_b(int32_t lane, int32_t m) { return ((lane >> 4) << 9) | (m << 4) | (lane & 15); }

template <int RB>
__device__ __forceinline__ void bfly(float v[32]) {  /* butterflies along register bit RB */
#pragma unroll
    for (int r = 0; r < 32; r++)
        if (!(r & (1 << RB))) {
            const float a = v[r], b = v[r | (1 << RB)];
            v[r] = __fadd_rn(a, b), v[r | (1 << RB)] = __fsub_rn(a, b);
        }
}

/* A layout: index bits 0-3 and 9 are register bits 0-4; only bits below log2 n are transform stages */
__device__ __forceinline__ void stages_a(float v[32], int32_t k, bool low3 = true) {  /* low3: bits 0-2 too */
    if (low3 && k > 0) bfly<0>(v);
    if (low3 && k > 1) bfly<1>(v);
    if (low3 && k > 2) bfly<2>(v);
    if (k > 3) bfly<3>(v);
    if (k > 9) bfly<4>(v);
}

/* B layout: index bits 4-8 are register bits 0-4 */
__device__ __forceinline__ void stages_b(float v[32], int32_t k) {
    if (k > 4) bfly<0>(v);
    if (k > 5) bfly<1>(v);
    if (k > 6) bfly<2>(v);
    if (k > 7) bfly<3>(v);
    if (k > 8) bfly<4>(v);
}

/* v (lane l, register r) <- v (lane r, register l), through this warp's 32 x TSTRIDE floats */
__device__ __forceinline__ void transpose(float v[32], float *s, int32_t lane) {
    float4 *row = (float4 *)(s + lane * TSTRIDE);
#pragma unroll
    for (int q = 0; q < 8; q++) row[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    __syncwarp();
#pragma unroll
    for (int r = 0; r < 32; r++) v[r] = s[r * TSTRIDE + lane];
    __syncwarp();
}

/* 16 int8 in a 16-byte word -> 16 floats */
__device__ __forceinline__ void unpack16(const int4 w, float *v) {
    const int32_t ws[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
    for (int q = 0; q < 4; q++)
#pragma unroll
        for (int j = 0; j < 4; j++) v[4 * q + j] = i2f((int32_t)(int8_t)(ws[q] >> (8 * j)));
}

#if MFE_CUDA_DP4A
/* 16 int8 -> the 4-point transforms (index bits 0 and 1) of each group of four, as floats: one __dp4a
 * per output against a row of H4 as +-1 bytes, accumulating onto 1.5 * 2^23 so the int32 result is the
 * float's bit pattern (|sum| <= 512 < 2^22), then one subtraction. */
__device__ __forceinline__ void h4x4(const int4 w, float *v) {
    const int32_t ws[4] = {w.x, w.y, w.z, w.w};
    const int32_t row[4] = {0x01010101, (int32_t)0xFF01FF01u, (int32_t)0xFFFF0101u, 0x01FFFF01};  /* H4, byte b = column b */
#pragma unroll
    for (int q = 0; q < 4; q++)
#pragma unroll
        for (int m = 0; m < 4; m++) v[4 * q + m] = __int_as_float(__dp4a(ws[q], row[m], 0x4B400000));
}

/* The stage of index bit 2 on values still offset by M = 1.5 * 2^23 (h4x4's): u - v = (M + u) - (M + v),
 * u + v = ((M + u) - 2M) + (M + v); every intermediate is an integer below 2^24 in magnitude: exact. */
__device__ __forceinline__ void bfly2_offset(float v[32]) {
#pragma unroll
    for (int r = 0; r < 32; r++)
        if (!(r & 4)) {
            const float a = v[r], b = v[r | 4];
            v[r] = __fadd_rn(__fsub_rn(a, 25165824.0f), b), v[r | 4] = __fsub_rn(a, b);
        }
}
#endif

/* The two 16-byte runs of lane `lane` in block `blk` when cin == n (16 <= n): run j starts at byte
 * 512 j + 16 lane of the block's 1024 contiguous bytes and lies in one pixel. */
__device__ __forceinline__ void load_runs(const int8_t *__restrict__ x, long long blk, int32_t lane, int32_t k,
                                          long long npix, int4 &r0, int4 &r1) {
    const long long p0 = blk << (10 - k);
    const int32_t o0 = 16 * lane, o1 = 512 + 16 * lane;
    const int4 zero = make_int4(0, 0, 0, 0);
    r0 = p0 + (o0 >> k) < npix ? __ldg((const int4 *)(x + (blk << 10) + o0)) : zero;
    r1 = p0 + (o1 >> k) < npix ? __ldg((const int4 *)(x + (blk << 10) + o1)) : zero;
}

/* A layout, element by element: pixel p0 + (i >> k), channel i & (n - 1), zero past cin or npix */
/* pixels of block blk that exist (the last block may be short), in 0..1024 */
__device__ __forceinline__ int32_t pixels_in(long long blk, int32_t k, long long npix) {
    const long long left = npix - (blk << (10 - k));
    return left < (1 << (10 - k)) ? (int32_t)left : 1 << (10 - k);
}

__device__ __forceinline__ void load_bytes(const int8_t *__restrict__ x, long long blk, int32_t lane, const wht_args &a,
                                           long long npix, float v[32]) {
    const int8_t *xb = x + (size_t)(blk << (10 - a.k)) * a.cin;
    const int32_t np = pixels_in(blk, a.k, npix);
#pragma unroll
    for (int r = 0; r < 32; r++) {  /* offsets below 2^10 * 2^10: 32-bit */
        const int32_t i = idx_a(lane, r), e = i & (a.n - 1), q = i >> a.k;
        v[r] = q < np && e < a.cin ? i2f(xb[q * a.cin + e]) : 0.0f;
    }
}

/* floor(t) saturated to [-128, 127]; on the GPU one conversion instruction (F2I.S8.FLOOR) */
__device__ __forceinline__ int32_t floor_sat8(float t) {
#if defined(__CUDA_ARCH__) && !defined(MFE_CUDA_EMU)
    int32_t r;
    asm("cvt.rmi.sat.s8.f32 %0, %1;" : "=r"(r) : "f"(t));
    return r;
#else
    t = floorf(t);
    return t < -128.0f ? -128 : t > 127.0f ? 127 : (int32_t)t;
#endif
}

/* floor(v / 2^s + 1/2) clamped to [lo, hi] (its low byte is the int8 result). The fmaf rounds once; its
 * floor is still exact: an integer N + 1 can only be reached from below if the spacing of floats near it
 * exceeds 2^(1-s), i.e. |N + 1| >= 2^(24-s); but |v| + 2^(s-1) < 2^24 (|v| < 12.72e6 with the residual),
 * so for s <= 22 every |result| < 2^(24-s), and for s >= 23 the result lies in (-1, 2], whose integers
 * are met exactly. With s = 0 the half is 0 and v passes unchanged. CLAMP: [lo, hi] is narrower than
 * int8's range, so the float is clamped first (the conversion saturates to int8 by itself). */
template <bool CLAMP>
__device__ __forceinline__ int32_t out_byte(float v, const wht_args &a) {
    float t = fmaf(v, a.scale, a.half);
    if (CLAMP) t = fminf(fmaxf(t, a.flo), a.fhi);
    return floor_sat8(t);
}

__device__ __forceinline__ int32_t pack4(int32_t b0, int32_t b1, int32_t b2, int32_t b3) {
    return (int32_t)__byte_perm(__byte_perm((uint32_t)b0, (uint32_t)b1, 0x0040), __byte_perm((uint32_t)b2, (uint32_t)b3, 0x0040),
                                0x5410);
}

/* The A layout's 32 values of block blk -> int8 outputs: 16-byte stores where cout == n, else bytes */
template <bool VOUT, bool CLAMP>
__device__ __forceinline__ void store_out(const float v[32], int8_t *__restrict__ y, long long blk, int32_t lane,
                                          const wht_args &a, long long npix) {
    const long long p0 = blk << (10 - a.k);
    if (VOUT) {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const int32_t o = 512 * j + 16 * lane;
            if (p0 + (o >> a.k) < npix) {
                int32_t w[4];
#pragma unroll
                for (int q = 0; q < 4; q++) {
                    const float *u = v + 16 * j + 4 * q;
                    w[q] = pack4(out_byte<CLAMP>(u[0], a), out_byte<CLAMP>(u[1], a), out_byte<CLAMP>(u[2], a),
                                 out_byte<CLAMP>(u[3], a));
                }
                *(int4 *)(y + (blk << 10) + o) = make_int4(w[0], w[1], w[2], w[3]);
            }
        }
    } else {
        int8_t *yb = y + (size_t)p0 * a.cout;
        const int32_t np = pixels_in(blk, a.k, npix);
#pragma unroll
        for (int r = 0; r < 32; r++) {
            const int32_t i = idx_a(lane, r), e = i & (a.n - 1), q = i >> a.k;
            if (q < np && e < a.cout) yb[q * a.cout + e] = (int8_t)out_byte<CLAMP>(v[r], a);
        }
    }
}

/* K10: n = 1024 (one pixel per warp, every stage runs): the compiler sees k = 10 and drops the branches.
 * Smooth K10 is held to 7 blocks' registers (72, no spills; unbounded it takes 96); soft K10 needs 71-79.
 * SCALED: the scales' 4 KB of shared memory leave room for 6 blocks, so 6 blocks' registers. */
template <bool VIN, bool VOUT, bool SMOOTH, bool RES, bool K10, bool SCALED>
__global__ void __launch_bounds__(32 * WARPS, SMOOTH && K10 ? (SCALED ? 6 : 7) : 1)
    wht_fast(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long npix, const wht_args a_,
             const int32_t *__restrict__ thresh, const int32_t *__restrict__ gcodes, const int32_t *__restrict__ cscale) {
    wht_args a = a_;
    if (K10) a.k = 10, a.n = 1024;
    __shared__ __align__(16) float tbuf[WARPS][32 * TSTRIDE];
    __shared__ __align__(16) float tsh[32 * 32];
    __shared__ __align__(16) int32_t csh[SCALED ? 32 * 32 : 4];  /* the scales, laid out as tsh (DC's too) */
    __shared__ uint32_t table[SMOOTH ? TLEN * TREP : 1];  /* smooth: entry i's copy for lane l at TREP i + l % TREP */
    const int32_t lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    float *s = tbuf[warp];
    if (SMOOTH)  /* the __syncthreads below covers it */
        for (int32_t i = threadIdx.x; i < TLEN * TREP; i += blockDim.x) table[i] = (uint32_t)gcodes[i / TREP];
    const uint32_t *tlane = (const uint32_t *)((const char *)table + (SMOOTH ? opaque(lane % TREP * 4) : 0));
    /* The thresholds in the B layout (the threshold step's), the same for every warp, once per block in
     * shared memory: lane l's T for register m at float4 (m / 4) * 32 + l, element m % 4 (conflict-free
     * LDS.128), read back every pixel (8 LDS.128) instead of held in 32 registers: 71-72 registers instead
     * of 95-96, 7 blocks per SM instead of 5. Soft: T as a float (T <= 2^22: exact); DC has T = 0, which
     * soft passes unchanged (z - clamp(z, -0, 0)). Smooth: the int32 bits of 32 T + 0x4B400000 (see
     * smooth1); DC is selected back below. */
    for (int32_t i = threadIdx.x; i < 32 * 32; i += blockDim.x) {
        const int32_t l = (i >> 2) & 31, m = ((i >> 7) << 2) | (i & 3), e = idx_b(l, m) & (a.n - 1);
        const int32_t t = e ? thresh[e] : 0;
        tsh[i] = SMOOTH ? __int_as_float(t * 32 + 0x4B400000) : (float)t;
        if (SCALED) csh[i] = cscale[e];
    }
    __syncthreads();
    const int32_t gs = a.g + 5 < 31 ? a.g + 5 : 31, gc = 0x4B400000 >> gs;  /* smooth: see smooth1 */
    const long long nblk = (npix + (1 << (10 - a.k)) - 1) >> (10 - a.k);
    const long long stride = (long long)gridDim.x * WARPS;
    long long blk = (long long)blockIdx.x * WARPS + warp;
    int4 c0 = make_int4(0, 0, 0, 0), c1 = c0;
    if (VIN && blk < nblk) load_runs(x, blk, lane, a.k, npix, c0, c1);
    for (; blk < nblk; blk += stride) {
        float v[32];
        if (VIN) {
            int4 n0 = make_int4(0, 0, 0, 0), n1 = n0;
            if (blk + stride < nblk) load_runs(x, blk + stride, lane, a.k, npix, n0, n1);  /* next block in flight */
#if MFE_CUDA_DP4A
            h4x4(c0, v), h4x4(c1, v + 16);  /* stages of index bits 0 and 1, offset by M */
            bfly2_offset(v);                /* bit 2, and the offset gone (k >= 4 on this path) */
#else
            unpack16(c0, v), unpack16(c1, v + 16);
#endif
            c0 = n0, c1 = n1;
        } else {
            load_bytes(x, blk, lane, a, npix, v);
        }
        stages_a(v, a.k, !(VIN && MFE_CUDA_DP4A));
        transpose(v, s, lane);
        stages_b(v, a.k);
        {
            const int32_t row = opaque_each(lane);  /* re-read every block: not hoisted */
            const float4 *trow = (const float4 *)tsh + row;
            const int4 *crow = (const int4 *)csh + row;
#pragma unroll
            for (int q = 0; q < 8; q++) {
                const float4 t4 = trow[32 * q];
                const float tq[4] = {t4.x, t4.y, t4.z, t4.w};
                int4 c4 = make_int4(0, 0, 0, 0);
                if (SCALED) c4 = crow[32 * q];
                const int32_t cq[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int m = 4 * q + j;
                    if (SCALED) v[m] = i2f((f2i(v[m]) * cq[j] + a.shalf) >> a.sshift);
                    if (SMOOTH) {
                        const float u = smooth1(v[m], __float_as_int(tq[j]), gs, gc, tlane);
                        v[m] = (idx_b(lane, m) & (a.n - 1)) == 0 ? v[m] : u;
                    } else {
                        v[m] = __fsub_rn(v[m], fminf(fmaxf(v[m], -tq[j]), tq[j]));
                    }
                }
            }
        }
        stages_b(v, a.k);
        transpose(v, s, lane);
        stages_a(v, a.k);
        if (RES) {  /* + x << k (cin == cout) */
            float xr[32];
            if (VIN) {
                int4 r0, r1;
                load_runs(x, blk, lane, a.k, npix, r0, r1);
                unpack16(r0, xr), unpack16(r1, xr + 16);
            } else {
                load_bytes(x, blk, lane, a, npix, xr);
            }
#pragma unroll
            for (int r = 0; r < 32; r++) v[r] = fmaf(xr[r], a.fres, v[r]);  /* exact: integers below 2^24 */
        }
        if (a.lo == -128 && a.hi == 127) store_out<VOUT, false>(v, y, blk, lane, a, npix);
        else store_out<VOUT, true>(v, y, blk, lane, a, npix);
    }
}

/* ---- generic kernel: one block per pixel, int32 rows in global scratch (n up to 2^14) ---- */

__device__ void fwht_block(int32_t *buf, int32_t n) {
    for (int32_t h = 1; h < n; h *= 2) {
        for (int32_t j = threadIdx.x; j < n / 2; j += blockDim.x) {
            const int32_t i = ((j & ~(h - 1)) << 1) | (j & (h - 1));
            const int32_t u = buf[i], w = buf[i + h];
            buf[i] = u + w, buf[i + h] = u - w;
        }
        __syncthreads();
    }
}

__global__ void __launch_bounds__(GEN_THREADS) wht_generic(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long npix,
                                                           const wht_args a, const int32_t *__restrict__ thresh,
                                                           const int32_t *__restrict__ codes, const int32_t *__restrict__ cscale,
                                                           int32_t *__restrict__ scratch) {
    int32_t *buf = scratch + (size_t)blockIdx.x * a.n;
    for (long long p = blockIdx.x; p < npix; p += gridDim.x) {
        const int8_t *xp = x + (size_t)p * a.cin;
        for (int32_t i = threadIdx.x; i < a.n; i += blockDim.x) buf[i] = i < a.cin ? xp[i] : 0;
        __syncthreads();
        fwht_block(buf, a.n);
        for (int32_t c = threadIdx.x; c < a.n; c += blockDim.x) {  /* wht.c threshold1: scale, then all but DC */
            int32_t z = buf[c];
            if (cscale) z = (z * cscale[c] + a.shalf) >> a.sshift;  /* |z * cscale| + shalf < 2^31: the loader's check */
            buf[c] = c ? threshold1(z, thresh[c], a.smooth, a.g, codes) : z;
        }
        __syncthreads();
        fwht_block(buf, a.n);
        for (int32_t c = threadIdx.x; c < a.cout; c += blockDim.x) {
            long long v = buf[c] + (a.residual ? (long long)xp[c] * (1LL << a.k) : 0);
            y[(size_t)p * a.cout + c] = d_sat8(d_rshift_round(v, a.shift), a.lo, a.hi);
        }
        __syncthreads();  /* the row is rewritten by the next pixel */
    }
}

/* ---- host ---- */

size_t cu_wht_rows(const cu_device *d) { return (size_t)d->sm_count * 4; }

size_t cu_wht_generic_n(const cu_node *cn) {
    return cn->nd->op == MFE_OP_WHT && cn->iarg[0] ? (size_t)cn->nd->a[MFE_WHT_N] : 0;
}

int cu_prepare_wht(const mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen) {
    const mfe_node *nd = cn->nd;
    const int32_t n = nd->a[MFE_WHT_N], smooth = nd->a[MFE_WHT_MODE], scaled = nd->a[MFE_WHT_SCALED];
    const char *force = getenv("MFE_CUDA_WHT_GENERIC");  /* tests: run the generic kernel for every n */
    (void)cm, (void)node;
    int32_t k = 0;
    while ((1 << k) < n) k++;
    const size_t words = (size_t)n * (scaled ? 2 : 1) + 2 * TLEN;  /* thresholds, codes, gcodes, scales */
    int32_t *t = (int32_t *)calloc(words, sizeof(int32_t)), *codes = t + n, *gcodes = codes + TLEN, *sc = gcodes + TLEN;
    if (!t) MFE_FAIL(MFE_ENOMEM, "out of memory");
    const int32_t *src = (const int32_t *)nd->blob[MFE_WHT_B_THRESH], *ssrc = (const int32_t *)nd->blob[MFE_WHT_B_CSCALE];
    for (int32_t s = 0; s < n; s++) {  /* walsh (sequency) s -> natural row bitrev(gray(s)) */
        int32_t gray = s ^ (s >> 1), nat = 0;
        for (int32_t b = 0; b < k; b++) nat |= ((gray >> b) & 1) << (k - 1 - b);
        t[nd->a[MFE_WHT_ORDER] ? nat : s] = src[s] < T_CAP ? src[s] : T_CAP;
        if (scaled) sc[nd->a[MFE_WHT_ORDER] ? nat : s] = ssrc[s];
    }
    const int8_t *tab = (const int8_t *)nd->blob[MFE_WHT_B_TABLE];
    for (int j = 0; smooth && j < TERMS; j++)
        for (int i = 0; i < TLEN; i++) codes[i] |= (int32_t)((uint32_t)(uint8_t)tab[j * TLEN + i] << (8 * j));
    for (int i = 0; smooth && i < TLEN; i++) gcodes[i] = (int32_t)smooth_entry(codes[i]);  /* the fast kernel's */
    int failed = 0;
    cn->prep_off[0] = cu_params_add(p, t, sizeof(int32_t) * words, &failed);
    free(t);
    if (failed) MFE_FAIL(MFE_ENOMEM, "out of memory");
    cn->iarg[0] = n > FAST_MAX_N || (force && force[0] == '1');  /* generic kernel */
    cn->iarg[1] = k;
    return MFE_OK;
}

/* t: the prepared words (thresholds, codes, gcodes, scales: cu_prepare_wht) */
template <bool VIN, bool VOUT, bool SMOOTH, bool RES, bool K10, bool SCALED>
static int launch_fast(const cu_launch *l, const int8_t *x, int8_t *y, long long npix, const wht_args &a, const int32_t *t,
                       char *err, size_t errlen) {
    int per_sm = 0;
    MFE_CU_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, wht_fast<VIN, VOUT, SMOOTH, RES, K10, SCALED>, 32 * WARPS, 0));
    const long long blocks = ((npix + (1 << (10 - a.k)) - 1) >> (10 - a.k)), grid = (blocks + WARPS - 1) / WARPS;
    long long cap = (long long)l->cm->dev.sm_count * (per_sm > 0 ? per_sm : 1);
    wht_fast<VIN, VOUT, SMOOTH, RES, K10, SCALED><<<(unsigned)(grid < cap ? grid : cap), 32 * WARPS, 0, l->stream>>>(
        x, y, npix, a, t, t + a.n + TLEN, t + a.n + 2 * TLEN);
    MFE_CU_LAUNCHED("wht (fast)");
    return MFE_OK;
}

template <bool VIN, bool VOUT, bool K10, bool SCALED>
static int launch_fast3(const cu_launch *l, const int8_t *x, int8_t *y, long long npix, const wht_args &a, const int32_t *t,
                        char *err, size_t errlen) {
    if (a.smooth)
        return a.residual ? launch_fast<VIN, VOUT, true, true, K10, SCALED>(l, x, y, npix, a, t, err, errlen)
                          : launch_fast<VIN, VOUT, true, false, K10, SCALED>(l, x, y, npix, a, t, err, errlen);
    return a.residual ? launch_fast<VIN, VOUT, false, true, K10, SCALED>(l, x, y, npix, a, t, err, errlen)
                      : launch_fast<VIN, VOUT, false, false, K10, SCALED>(l, x, y, npix, a, t, err, errlen);
}

template <bool VIN, bool VOUT, bool K10>
static int launch_fast2(const cu_launch *l, const int8_t *x, int8_t *y, long long npix, const wht_args &a, const int32_t *t,
                        char *err, size_t errlen) {
    return a.scaled ? launch_fast3<VIN, VOUT, K10, true>(l, x, y, npix, a, t, err, errlen)
                    : launch_fast3<VIN, VOUT, K10, false>(l, x, y, npix, a, t, err, errlen);
}

int cu_launch_wht(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const cu_node *cn = l->cn;
    const mfe_node *nd = cn->nd;
    wht_args a;
    a.n = nd->a[MFE_WHT_N], a.k = cn->iarg[1], a.cin = l->x->c, a.cout = l->y->c, a.smooth = nd->a[MFE_WHT_MODE];
    a.g = nd->a[MFE_WHT_TSHIFT], a.residual = nd->a[MFE_WHT_RESIDUAL], a.shift = a.k + nd->a[MFE_WHT_OSHIFT];
    a.lo = nd->a[MFE_WHT_ACT_LO], a.hi = nd->a[MFE_WHT_ACT_HI];
    a.scaled = nd->a[MFE_WHT_SCALED], a.sshift = nd->a[MFE_WHT_SSHIFT], a.shalf = a.sshift ? 1 << (a.sshift - 1) : 0;
    a.scale = ldexpf(1.0f, -a.shift), a.half = a.shift ? 0.5f : 0.0f, a.flo = (float)a.lo, a.fhi = (float)a.hi;
    a.fres = ldexpf(1.0f, a.k);
    const long long npix = (long long)l->n * l->x->h * l->x->w;
    const int8_t *x = (const int8_t *)in0;
    int8_t *y = (int8_t *)out;
    const int32_t *t = (const int32_t *)cn->prep[0];
    if (cn->iarg[0]) {
        const mfe_cuda_model *cm = l->cm;
        if (!cm->wht_scratch || (size_t)a.n > cm->wht_scratch_n) MFE_FAIL(MFE_EARG, "wht scratch missing");
        long long grid = npix < (long long)cm->wht_scratch_rows ? npix : (long long)cm->wht_scratch_rows;
        const int32_t *cscale = a.scaled ? t + a.n + 2 * TLEN : NULL;
        wht_generic<<<(unsigned)(grid > 0 ? grid : 1), GEN_THREADS, 0, l->stream>>>(x, y, npix, a, t, t + a.n, cscale,
                                                                                    cm->wht_scratch);
        MFE_CU_LAUNCHED("wht (generic)");
        return MFE_OK;
    }
    const bool vin = a.cin == a.n && a.n >= 16, vout = a.cout == a.n && a.n >= 16;
    if (vin && vout && a.n == 1024) return launch_fast2<true, true, true>(l, x, y, npix, a, t, err, errlen);
    if (vin && vout) return launch_fast2<true, true, false>(l, x, y, npix, a, t, err, errlen);
    if (vin) return launch_fast2<true, false, false>(l, x, y, npix, a, t, err, errlen);
    if (vout) return launch_fast2<false, true, false>(l, x, y, npix, a, t, err, errlen);
    return launch_fast2<false, false, false>(l, x, y, npix, a, t, err, errlen);
}
