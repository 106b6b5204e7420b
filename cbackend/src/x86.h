/* x86 helpers shared by the kernel files (see arch.h): exact requantisation of int32 lanes. */
#ifndef MFE_X86_H
#define MFE_X86_H
#include "arch.h"
#include "internal.h"

/* dst[o] = clamp(rshift_round(acc[o] * mult[o], shift[o]), lo, hi): 16 channels per step in int64 lanes
 * (vpmuldq, variable arithmetic shifts), the scalar rule for the tail and for builds without AVX-512. */
static inline void mfe_requant_row__x86(int8_t *dst, const int32_t *acc, const int32_t *mult, const int32_t *shift,
                                        int32_t c, int32_t lo, int32_t hi) {
    int32_t o = 0;
#ifdef MFE_ISA_AVX512
    const __m512i one = _mm512_set1_epi64(1), vlo = _mm512_set1_epi64(lo), vhi = _mm512_set1_epi64(hi);
    for (; o + 16 <= c; o += 16) {
        __m256i half[2];
        for (int h = 0; h < 2; h++) {
            __m512i a = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(acc + o + 8 * h)));
            __m512i m = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(mult + o + 8 * h)));
            __m512i s = _mm512_cvtepi32_epi64(_mm256_loadu_si256((const __m256i *)(shift + o + 8 * h)));
            __m512i rnd = _mm512_srli_epi64(_mm512_sllv_epi64(one, s), 1);  /* 2^(s-1), 0 for s = 0 */
            __m512i v = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(a, m), rnd), s);  /* |a m| < 2^62 */
            half[h] = _mm512_cvtepi64_epi32(_mm512_min_epi64(_mm512_max_epi64(v, vlo), vhi));
        }
        __m512i v32 = _mm512_inserti64x4(_mm512_castsi256_si512(half[0]), half[1], 1);
        _mm_storeu_si128((__m128i *)(dst + o), _mm512_cvtepi32_epi8(v32));
    }
#endif
    for (; o < c; o++) dst[o] = mfe_requant(acc[o], mult[o], shift[o], lo, hi);
}

#endif
