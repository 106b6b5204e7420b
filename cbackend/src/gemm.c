/* gemm: the dense int8 products of 1x1 convolutions, acc[p][o] = bias[o] + sum_i x[p][i] w[o][i],
 * for up to GEMM_ROWS pixels at a time. The fast path packs the weights at load time into the
 * layout the instruction wants; builds without one report no packing and conv.c keeps its loop.
 * Padded input bytes meet zero weights: they add nothing. */
#include <string.h>
#include "arch.h"
#include "internal.h"

#ifdef MFE_ISA_VNNI
/* Weights as [cout/16][cin/4][16][4] int8 (zero padded), then wsum[cout16] int32. vpdpbusd multiplies
 * unsigned by signed bytes, so x goes in as x + 128 (xor 0x80) and 128 * sum(w) comes back off. Its
 * int32 sums wrap modulo 2^32, so the result is exact whenever the true sum fits int32 (proved at load). */
static int64_t k4_of(int32_t cin) { return (cin + 3) / 4; }
static int64_t o16_of(int32_t cout) { return (cout + 15) / 16 * 16; }

size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) {
    return (size_t)(o16_of(cout) * k4_of(cin) * 4) + sizeof(int32_t) * (size_t)o16_of(cout);
}

void mfe_gemm_pack(void *dst, const int8_t *w, int32_t cout, int32_t cin) {
    const int64_t k4 = k4_of(cin), o16 = o16_of(cout);
    int8_t *p = dst;
    int32_t *wsum = (int32_t *)(p + o16 * k4 * 4);
    memset(dst, 0, mfe_gemm_packed_bytes(cout, cin));
    for (int32_t o = 0; o < cout; o++)
        for (int32_t i = 0; i < cin; i++) {
            p[((o / 16 * k4 + i / 4) * 16 + o % 16) * 4 + i % 4] = w[(size_t)o * cin + i];
            wsum[o] += w[(size_t)o * cin + i];
        }
}

/* Accumulators for B blocks of 16 outputs x MFE_GEMM_ROWS pixels; each broadcast feeds B vpdpbusd. */
#define GEMM_SWEEP(B)                                                                                  \
    do {                                                                                               \
        __m512i a[MFE_GEMM_ROWS][B];                                                                   \
        for (int p = 0; p < MFE_GEMM_ROWS; p++)                                                        \
            for (int j = 0; j < B; j++) a[p][j] = _mm512_setzero_si512();                              \
        for (int64_t k = 0; k < k4; k++) {                                                             \
            __m512i wv[B];                                                                             \
            for (int j = 0; j < B; j++) wv[j] = _mm512_loadu_si512((const void *)(w + ((ob + j) * k4 + k) * 64)); \
            for (int p = 0; p < MFE_GEMM_ROWS; p++) {                                                  \
                __m512i xb = _mm512_set1_epi32(xu[(size_t)p * k4 + k]);                                \
                for (int j = 0; j < B; j++) a[p][j] = _mm512_dpbusd_epi32(a[p][j], xb, wv[j]);        \
            }                                                                                          \
        }                                                                                              \
        for (int j = 0; j < B; j++) {                                                                  \
            int64_t o0 = (ob + j) * 16;                                                                \
            int32_t lanes[16], n = cout - o0 < 16 ? (int32_t)(cout - o0) : 16;                         \
            __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(wsum + o0)), 7);        \
            for (int p = 0; p < np; p++) {                                                             \
                _mm512_storeu_si512((void *)lanes, _mm512_sub_epi32(a[p][j], corr));                   \
                for (int32_t i = 0; i < n; i++) acc[(size_t)p * cout + o0 + i] = lanes[i] + bias[o0 + i]; \
            }                                                                                          \
        }                                                                                              \
    } while (0)

size_t mfe_gemm_scratch_bytes(int32_t cin) { return (size_t)MFE_GEMM_ROWS * k4_of(cin) * 4; }

void mfe_gemm_rows(int32_t *acc, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *bias) {
    const int64_t k4 = k4_of(cin), o16 = o16_of(cout) / 16;
    const int8_t *w = packed;
    const int32_t *wsum = (const int32_t *)(w + o16 * 16 * k4 * 4);
    int32_t *xu = scratch;  /* the rows as unsigned x + 128, zero padded to a multiple of 4, spare rows zero */
    memset(xu, 0x80, mfe_gemm_scratch_bytes(cin));
    for (int p = 0; p < np; p++) memcpy((int8_t *)xu + (size_t)p * k4 * 4, x + (size_t)p * cin, (size_t)cin);
    for (size_t i = 0; i < (size_t)MFE_GEMM_ROWS * k4; i++) xu[i] ^= (int32_t)0x80808080;
    int64_t ob = 0;
    for (; ob + 3 <= o16; ob += 3) GEMM_SWEEP(3);
    for (; ob < o16; ob++) GEMM_SWEEP(1);
}
#else
size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) { return 0; }
void mfe_gemm_pack(void *dst, const int8_t *w, int32_t cout, int32_t cin) {}
size_t mfe_gemm_scratch_bytes(int32_t cin) { return 0; }
void mfe_gemm_rows(int32_t *acc, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *bias) {}
#endif
