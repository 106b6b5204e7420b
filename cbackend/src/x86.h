/* x86 helpers shared by the kernel files (see arch.h): exact requantisation of int32 lanes. */
#ifndef MFE_X86_H
#define MFE_X86_H
#include "arch.h"
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
    __m512i m = _mm512_maskz_loadu_epi32(k, mult), s = _mm512_maskz_loadu_epi32(k, shift);
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

/* dst[o] = clamp(rshift_round(acc[o] * mult[o], shift[o]), lo, hi): 16 channels per step in int64 lanes
 * (mfe_rq16_apply), the scalar rule for the tail and for builds without AVX-512. */
static inline void mfe_requant_row__x86(int8_t *dst, const int32_t *acc, const int32_t *mult, const int32_t *shift,
                                        int32_t c, int32_t lo, int32_t hi) {
    int32_t o = 0;
#ifdef MFE_ISA_AVX512
    for (; o + 16 <= c; o += 16) {
        mfe_rq16 q = mfe_rq16_load(mult + o, shift + o, 16, lo, hi);
        _mm_storeu_si128((__m128i *)(dst + o), mfe_rq16_apply(_mm512_loadu_si512((const void *)(acc + o)), &q));
    }
#endif
    for (; o < c; o++) dst[o] = mfe_requant(acc[o], mult[o], shift[o], lo, hi);
}

#endif
