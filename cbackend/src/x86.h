/* x86 helpers shared by the kernel files (see arch.h): exact requantisation of int32 lanes. */
#ifndef MFE_X86_H
#define MFE_X86_H
#include "arch.h"
#include <string.h>
#include "internal.h"

#ifdef MFE_ISA_AVX512
/* Per-channel requantisation constants for 16 channels, set up once per channel tile and reused for
 * every pixel: int64 lanes for the even channels (the low dword of each qword) and the odd ones. */
typedef struct { __m512i m_e, m_o, r_e, r_o, s_e, s_o, lo, hi; } mfe_rq16;

/* The lanes of a tile of n channels (n < 16: a channel tail). */
static inline __mmask16 mfe_mask16(int32_t n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1); }

/* bias (or NULL): added to the product in int64 before the shift (affine's x * mult + bias) */
static inline mfe_rq16 mfe_rq16_load_bias(const int32_t *mult, const int32_t *shift, const int32_t *bias, int32_t n,
                                          int32_t lo, int32_t hi) {
    const __m512i one = _mm512_set1_epi64(1), low = _mm512_set1_epi64(0xffffffff);
    const __mmask16 k = mfe_mask16(n);
    __m512i m = _mm512_maskz_loadu_epi32(k, mult), s = _mm512_and_si512(_mm512_maskz_loadu_epi32(k, shift), _mm512_set1_epi32(MFE_RQ_MUL32 - 1));
    mfe_rq16 q;
    q.m_e = m, q.m_o = _mm512_srli_epi64(m, 32);
    q.s_e = _mm512_and_si512(s, low), q.s_o = _mm512_srli_epi64(s, 32);
    q.r_e = _mm512_srli_epi64(_mm512_sllv_epi64(one, q.s_e), 1);  /* 2^(s-1), 0 for s = 0 */
    q.r_o = _mm512_srli_epi64(_mm512_sllv_epi64(one, q.s_o), 1);
    if (bias) {  /* even channels: the low dword sign-extended; odd: the high dword */
        __m512i b = _mm512_maskz_loadu_epi32(k, bias);
        q.r_e = _mm512_add_epi64(q.r_e, _mm512_srai_epi64(_mm512_slli_epi64(b, 32), 32));
        q.r_o = _mm512_add_epi64(q.r_o, _mm512_srai_epi64(b, 32));
    }
    q.lo = _mm512_set1_epi64(lo), q.hi = _mm512_set1_epi64(hi);
    return q;
}

static inline mfe_rq16 mfe_rq16_load(const int32_t *mult, const int32_t *shift, int32_t n, int32_t lo, int32_t hi) {
    return mfe_rq16_load_bias(mult, shift, NULL, n, lo, hi);
}

/* A 16-channel tile of a row kernel (depthwise 3x3, hdw): lanes, int32 bias, requantisation constants. */
typedef struct { __mmask16 km; __m512i bias; mfe_rq16 q; } mfe_tile16;

static inline mfe_tile16 mfe_tile16_load(int32_t c0, int32_t c, const int32_t *bias, const int32_t *mult,
                                         const int32_t *shift, int32_t lo, int32_t hi) {
    const int32_t n = c - c0 < 16 ? c - c0 : 16;
    mfe_tile16 t = {mfe_mask16(n), _mm512_maskz_loadu_epi32(mfe_mask16(n), bias + c0), mfe_rq16_load(mult + c0, shift + c0, n, lo, hi)};
    return t;
}

/* clamp(rshift_round(acc * mult (+ bias), shift), lo, hi) of 16 int32 lanes -> 16 int8 (|acc mult + bias| < 2^62;
 * mult may be negative: the odd lanes' high dword goes in sign-extended). */
static inline __m128i mfe_rq16_apply(__m512i acc, const mfe_rq16 *q) {
    __m512i e = _mm512_mul_epi32(acc, q->m_e), o = _mm512_mul_epi32(_mm512_srli_epi64(acc, 32), q->m_o);
    e = _mm512_srav_epi64(_mm512_add_epi64(e, q->r_e), q->s_e);
    o = _mm512_srav_epi64(_mm512_add_epi64(o, q->r_o), q->s_o);
    e = _mm512_min_epi64(_mm512_max_epi64(e, q->lo), q->hi);
    o = _mm512_min_epi64(_mm512_max_epi64(o, q->lo), q->hi);
    return _mm512_cvtepi32_epi8(_mm512_mask_blend_epi32(0xaaaa, e, _mm512_slli_epi64(o, 32)));
}
#endif

#ifdef MFE_ISA_AVX2
/* The same for 8 channels in AVX2, which lacks 64-bit arithmetic shifts, min and max. Each tile of channels
 * picks at load time the cheapest exact form its constants allow:
 *   SHIFT (mult 1, no bias: --mulfree): (acc >> s) + bit s-1 of acc, the rounded shift in int32, no multiply;
 *   MUL32 (every shift marked + MFE_RQ_MUL32, see internal.h): (acc * mult + 2^(s-1)) >> s in int32;
 *   HIGH (every s >= 32): the int64 product plus 2^(s-1), its high dword, then >> (s - 32) in int32
 *     (floor(floor(v / 2^32) / 2^(s-32)) = floor(v / 2^s));
 *   WIDE (otherwise): int64 lanes throughout, the shift from xor and a logical shift, clamped in int64. */
enum { MFE_RQ8_SHIFT, MFE_RQ8_MUL32, MFE_RQ8_HIGH, MFE_RQ8_WIDE };
typedef struct {
    __m256i m_e, m_o, r_e, r_o, s_e, s_o, lo64, hi64;  /* int64 lanes: even channels, odd channels */
    __m256i s32, s1, rbit, r32, lo, hi;                /* int32 lanes */
    int mode;
} mfe_rq8;

/* The lanes of n < 8 channels (loads past a tail must not touch memory). */
static inline __m256i mfe_mask8(int32_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* bias (or NULL): added to the product in int64 before the shift (affine's x * mult + bias) */
static inline mfe_rq8 mfe_rq8_load_bias(const int32_t *mult, const int32_t *shift, const int32_t *bias, int32_t n,
                                        int32_t lo, int32_t hi) {
    const __m256i one = _mm256_set1_epi64x(1), low = _mm256_set1_epi64x(0xffffffff), k = mfe_mask8(n);
    __m256i m = _mm256_maskload_epi32(mult, k), s = _mm256_maskload_epi32(shift, k);
    const __m256i idle = _mm256_andnot_si256(k, _mm256_set1_epi32(-1));  /* lanes past n satisfy every test */
    const int unit = bias == NULL && _mm256_movemask_ps(_mm256_castsi256_ps(
                                         _mm256_or_si256(_mm256_cmpeq_epi32(m, _mm256_set1_epi32(1)), idle))) == 0xff;
    const int mul32 = bias == NULL && _mm256_movemask_ps(_mm256_castsi256_ps(
                                          _mm256_or_si256(_mm256_cmpgt_epi32(s, _mm256_set1_epi32(MFE_RQ_MUL32 - 1)), idle))) == 0xff;
    s = _mm256_and_si256(s, _mm256_set1_epi32(MFE_RQ_MUL32 - 1));
    const int high = _mm256_movemask_ps(_mm256_castsi256_ps(
                         _mm256_or_si256(_mm256_cmpgt_epi32(s, _mm256_set1_epi32(31)), idle))) == 0xff;
    mfe_rq8 q;
    q.mode = unit ? MFE_RQ8_SHIFT : mul32 ? MFE_RQ8_MUL32 : high ? MFE_RQ8_HIGH : MFE_RQ8_WIDE;
    q.m_e = m, q.m_o = _mm256_srli_epi64(m, 32);
    q.s_e = _mm256_and_si256(s, low), q.s_o = _mm256_srli_epi64(s, 32);
    q.r_e = _mm256_srli_epi64(_mm256_sllv_epi64(one, q.s_e), 1);  /* 2^(s-1), 0 for s = 0 */
    q.r_o = _mm256_srli_epi64(_mm256_sllv_epi64(one, q.s_o), 1);
    if (bias) {  /* each channel's int32 with its sign dword above it: even channels, then odd */
        const __m256i b = _mm256_maskload_epi32(bias, k), sign = _mm256_srai_epi32(b, 31);
        q.r_e = _mm256_add_epi64(q.r_e, _mm256_blend_epi32(b, _mm256_slli_epi64(sign, 32), 0xaa));
        q.r_o = _mm256_add_epi64(q.r_o, _mm256_blend_epi32(_mm256_srli_epi64(b, 32), sign, 0xaa));
    }
    const __m256i pos = _mm256_cmpgt_epi32(s, _mm256_setzero_si256());
    q.s32 = q.mode == MFE_RQ8_HIGH ? _mm256_sub_epi32(s, _mm256_set1_epi32(32)) : s;
    q.s1 = _mm256_sub_epi32(s, _mm256_and_si256(pos, _mm256_set1_epi32(1)));  /* s - 1, 0 for s = 0 */
    q.rbit = _mm256_and_si256(pos, _mm256_set1_epi32(1));
    q.r32 = _mm256_srli_epi32(_mm256_sllv_epi32(_mm256_set1_epi32(1), s), 1);  /* MUL32: 2^(s-1), 0 for s = 0 */
    q.lo64 = _mm256_set1_epi64x(lo), q.hi64 = _mm256_set1_epi64x(hi);
    q.lo = _mm256_set1_epi32(lo), q.hi = _mm256_set1_epi32(hi);
    return q;
}

static inline mfe_rq8 mfe_rq8_load(const int32_t *mult, const int32_t *shift, int32_t n, int32_t lo, int32_t hi) {
    return mfe_rq8_load_bias(mult, shift, NULL, n, lo, hi);
}

/* A tile of a row kernel (depthwise 3x3): n channels (lanes km), int32 bias, requantisation constants. */
typedef struct { int32_t n; __m256i km, bias; mfe_rq8 q; } mfe_tile8;

static inline mfe_tile8 mfe_tile8_load(int32_t c0, int32_t c, const int32_t *bias, const int32_t *mult,
                                       const int32_t *shift, int32_t lo, int32_t hi) {
    const int32_t n = c - c0 < 8 ? c - c0 : 8;
    mfe_tile8 t = {n, mfe_mask8(n), _mm256_maskload_epi32(bias + c0, mfe_mask8(n)), mfe_rq8_load(mult + c0, shift + c0, n, lo, hi)};
    return t;
}

/* floor(v / 2^s) of int64 lanes: for v < 0, ~v = -v - 1 >= 0 shifts logically and ~ maps it back */
static inline __m256i mfe_sra64(__m256i v, __m256i s) {
    const __m256i neg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(v, neg), s), neg);
}

static inline __m256i mfe_clamp64(__m256i v, __m256i lo, __m256i hi) {
    v = _mm256_blendv_epi8(v, lo, _mm256_cmpgt_epi64(lo, v));
    return _mm256_blendv_epi8(v, hi, _mm256_cmpgt_epi64(v, hi));
}

/* The same constants for one (mult, shift) on every lane: per-tensor requantisation. */
static inline mfe_rq8 mfe_rq8_uniform(int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    const int32_t m[8] = {mult, mult, mult, mult, mult, mult, mult, mult};
    const int32_t s[8] = {shift, shift, shift, shift, shift, shift, shift, shift};
    return mfe_rq8_load(m, s, 8, lo, hi);
}

/* clamp(rshift_round(v (+ bias), shift), lo, hi) of int64 products: e holds the even channels, o the odd;
 * as 8 int32 lanes */
static inline __m256i mfe_rq8_wide(__m256i e, __m256i o, const mfe_rq8 *q) {
    e = mfe_clamp64(mfe_sra64(_mm256_add_epi64(e, q->r_e), q->s_e), q->lo64, q->hi64);
    o = mfe_clamp64(mfe_sra64(_mm256_add_epi64(o, q->r_o), q->s_o), q->lo64, q->hi64);
    return _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xaa);
}

/* clamp(rshift_round(acc * mult (+ bias), shift), lo, hi) of 8 int32 lanes, as int32 lanes */
static inline __m256i mfe_rq8_apply(__m256i acc, const mfe_rq8 *q) {
    __m256i v;
    if (q->mode == MFE_RQ8_SHIFT) {  /* (acc + 2^(s-1)) >> s without the add that could wrap */
        v = _mm256_add_epi32(_mm256_srav_epi32(acc, q->s32), _mm256_and_si256(_mm256_srav_epi32(acc, q->s1), q->rbit));
    } else if (q->mode == MFE_RQ8_MUL32) {
        v = _mm256_srav_epi32(_mm256_add_epi32(_mm256_mullo_epi32(acc, q->m_e), q->r32), q->s32);
    } else {
        const __m256i e = _mm256_mul_epi32(acc, q->m_e), o = _mm256_mul_epi32(_mm256_srli_epi64(acc, 32), q->m_o);
        if (q->mode == MFE_RQ8_WIDE) return mfe_rq8_wide(e, o, q);
        v = _mm256_blend_epi32(_mm256_srli_epi64(_mm256_add_epi64(e, q->r_e), 32), _mm256_add_epi64(o, q->r_o), 0xaa);
        v = _mm256_srav_epi32(v, q->s32);  /* |v / 2^32| < 2^30 */
    }
    return _mm256_min_epi32(_mm256_max_epi32(v, q->lo), q->hi);
}

/* two vectors of 8 int32 lanes inside int8 -> their 16 bytes, a's then b's: three shuffles */
static inline __m128i mfe_pack16(__m256i a, __m256i b) {
    const __m256i w = _mm256_packs_epi32(a, b), v = _mm256_packs_epi16(w, w);  /* dwords a0-3 b0-3 . . | a4-7 b4-7 . . */
    return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 4, 1, 5, 0, 4, 1, 5)));
}

/* one vector: its 8 bytes in the low half */
static inline __m128i mfe_pack8(__m256i v) { return mfe_pack16(v, v); }

/* the first n <= 8 bytes at src (no read past them), zero above */
static inline __m128i mfe_load8(const int8_t *src, int32_t n) {
    if (n == 8) return _mm_loadl_epi64((const __m128i *)src);
    int8_t t[16] = {0};
    memcpy(t, src, (size_t)n);
    return _mm_loadu_si128((const __m128i *)t);
}

/* store the first n <= 8 bytes of v */
static inline void mfe_store8(int8_t *dst, __m128i v, int32_t n) {
    if (n == 8) _mm_storel_epi64((__m128i *)dst, v);
    else {
        int8_t t[16];
        _mm_storeu_si128((__m128i *)t, v);
        memcpy(dst, t, (size_t)n);
    }
}
#endif

/* dst[o] = clamp(rshift_round(acc[o] * mult[o], shift[o]), lo, hi): 16 channels per step in int64 lanes
 * (mfe_rq16_apply), then 8 (mfe_rq8_apply), the scalar rule for the tail. */
static inline void mfe_requant_row__x86(int8_t *dst, const int32_t *acc, const int32_t *mult, const int32_t *shift,
                                        int32_t c, int32_t lo, int32_t hi) {
    int32_t o = 0;
#ifdef MFE_ISA_AVX512
    for (; o + 16 <= c; o += 16) {
        mfe_rq16 q = mfe_rq16_load(mult + o, shift + o, 16, lo, hi);
        _mm_storeu_si128((__m128i *)(dst + o), mfe_rq16_apply(_mm512_loadu_si512((const void *)(acc + o)), &q));
    }
#endif
#ifdef MFE_ISA_AVX2
    for (; o + 8 <= c; o += 8) {
        mfe_rq8 q = mfe_rq8_load(mult + o, shift + o, 8, lo, hi);
        _mm_storel_epi64((__m128i *)(dst + o), mfe_pack8(mfe_rq8_apply(_mm256_loadu_si256((const __m256i *)(acc + o)), &q)));
    }
#endif
    for (; o < c; o++) dst[o] = mfe_requant(acc[o], mult[o], shift[o], lo, hi);
}

#endif
