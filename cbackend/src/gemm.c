/* gemm: the dense int8 products of 1x1 convolutions, acc[p][o] = bias[o] + sum_i x[p][i] w[o][i],
 * for up to GEMM_ROWS pixels at a time. The fast path packs the weights at load time into the
 * layout the instruction wants; builds without one report no packing and conv.c keeps its loop. */
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

void mfe_gemm_rows(int32_t *acc, const int8_t *x, int np, int32_t cin, const void *packed, int32_t cout,
                   const int32_t *bias) {
    const int64_t k4 = k4_of(cin), o16 = o16_of(cout);
    const int8_t *w = packed;
    const int32_t *wsum = (const int32_t *)(w + o16 * k4 * 4);
    const int8_t *row[MFE_GEMM_ROWS];
    for (int p = 0; p < MFE_GEMM_ROWS; p++) row[p] = x + (size_t)(p < np ? p : np - 1) * cin;  /* spare rows repeat */
    const __m512i flip = _mm512_set1_epi32((int32_t)0x80808080);
    for (int64_t ob = 0; ob < o16 / 16; ob++) {
        __m512i a[MFE_GEMM_ROWS];
        for (int p = 0; p < MFE_GEMM_ROWS; p++) a[p] = _mm512_setzero_si512();
        const int8_t *wb = w + ob * k4 * 64;
        for (int64_t k = 0; k < k4; k++) {
            __m512i wv = _mm512_loadu_si512((const void *)(wb + k * 64));
            for (int p = 0; p < MFE_GEMM_ROWS; p++) {  /* reads up to 3 bytes past a row: zero weights */
                int32_t four;
                memcpy(&four, row[p] + 4 * k, 4);
                a[p] = _mm512_dpbusd_epi32(a[p], _mm512_xor_si512(_mm512_set1_epi32(four), flip), wv);
            }
        }
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512((const void *)(wsum + ob * 16)), 7);
        int32_t lanes[16];
        int32_t n = cout - (int32_t)ob * 16 < 16 ? cout - (int32_t)ob * 16 : 16;
        for (int p = 0; p < np; p++) {
            _mm512_storeu_si512((void *)lanes, _mm512_sub_epi32(a[p], corr));
            for (int32_t j = 0; j < n; j++) acc[(size_t)p * cout + ob * 16 + j] = lanes[j] + bias[ob * 16 + j];
        }
    }
}
#else
size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) { return 0; }
void mfe_gemm_pack(void *dst, const int8_t *w, int32_t cout, int32_t cin) {}
void mfe_gemm_rows(int32_t *acc, const int8_t *x, int np, int32_t cin, const void *packed, int32_t cout,
                   const int32_t *bias) {}
#endif
