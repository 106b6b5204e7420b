/* Depthwise 3x3 row kernels (AVX-512 or AVX2), shared by conv2d's depthwise 3x3 (conv.c) and hdw (hdw.c):
 * channels in lanes, DW_NPIX output pixels at a time with their int32 accumulators in registers across all
 * nine taps, requantised in registers and stored as int8. The two differ only in the tap:
 *   DW_MAC (conv): weights are int32 lanes holding (w, 0) as int16 pairs, so vpmaddwd (vpdpwssd) on a
 *     sign-extended input (x, x < 0 ? -1 : 0) adds exactly x * w; padded taps read pad_value;
 *   DW_MIN (hdw, seed 000's multiplication-free op): inputs shifted left by xshift, then
 *     sign(x) sign(w) min(|x|, |w|) = clamp(x sign(w), -|w|, |w|): a sign flip, a max and a min; padding is 0.
 * A tile is the channels of one vector. On AVX2, conv2d's rows (pad_value 0) take dw16_row for whole tiles of 16
 * channels first (int16 lanes, two kernel rows per vpmaddwd: below), and so does hdw's min op where nine taps
 * fit int16. */
#ifndef MFE_DWROWS_H
#define MFE_DWROWS_H
#include "x86.h"

/* hdw's min op in int16 lanes (hdw.c hdw_i16; here on AVX2, and NEON's hdw_pixel__neon): per tap and channel
 * ([tap][c], natural channel order) a = |w| << ws, -a and m = -(w < 0); per channel the bias plus the number of
 * negative taps; the requantisation. */
typedef struct { const int16_t *a, *na, *m; const int32_t *bias, *mult, *shift; int32_t c; } hdw16_tables;

#if defined(MFE_ISA_AVX512)
#define MFE_DW_ROWS 1
#define DW_LANES 16
#define DW_NPIX 4  /* output pixels per step: accumulators and inputs fit the 32 registers */
typedef __m512i dw_vec;
typedef mfe_tile16 dw_tile;
#define dw_tile_load mfe_tile16_load
static inline dw_vec dw_set1(int32_t v) { return _mm512_set1_epi32(v); }
static inline int dw_full(const dw_tile *t) { return t->km == 0xffff; }
static inline dw_vec dw_load8(const int8_t *p, const dw_tile *t, int full) { return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(t->km, p)); }
static inline dw_vec dw_load32(const int32_t *p, const dw_tile *t) { return _mm512_maskz_loadu_epi32(t->km, p); }
static inline void dw_store(int8_t *y, dw_vec acc, const dw_tile *t) { _mm_mask_storeu_epi8(y, t->km, mfe_rq16_apply(acc, &t->q)); }
#ifdef MFE_ISA_VNNI
#define DPW(acc, x, w) _mm512_dpwssd_epi32((acc), (x), (w))
#else
#define DPW(acc, x, w) _mm512_add_epi32((acc), _mm512_madd_epi16((x), (w)))
#endif
#define dw_add _mm512_add_epi32
#define dw_sub _mm512_sub_epi32
#define dw_min _mm512_min_epi32
#define dw_max _mm512_max_epi32
#define dw_abs _mm512_abs_epi32
static inline dw_vec dw_sll(dw_vec v, int32_t s) { return _mm512_sll_epi32(v, _mm_cvtsi32_si128(s)); }
static inline dw_vec dw_signw(dw_vec x, dw_vec w) {  /* -x where w < 0, else x */
    return _mm512_mask_sub_epi32(x, _mm512_movepi32_mask(w), _mm512_setzero_si512(), x);
}
#elif defined(MFE_ISA_AVX2)
#define MFE_DW_ROWS 1
#define DW_LANES 8
#define DW_NPIX 2  /* 16 registers: four pixels spilled and ran 1.1x slower than two on Zen 3 */
typedef __m256i dw_vec;
typedef mfe_tile8 dw_tile;
#define dw_tile_load mfe_tile8_load
static inline dw_vec dw_set1(int32_t v) { return _mm256_set1_epi32(v); }
static inline int dw_full(const dw_tile *t) { return t->n == DW_LANES; }
static inline dw_vec dw_load8(const int8_t *p, const dw_tile *t, int full) {
    return _mm256_cvtepi8_epi32(full ? _mm_loadl_epi64((const __m128i *)p) : mfe_load8(p, t->n));
}
static inline dw_vec dw_load32(const int32_t *p, const dw_tile *t) { return _mm256_maskload_epi32(p, t->km); }
static inline void dw_store(int8_t *y, dw_vec acc, const dw_tile *t) { mfe_store8(y, mfe_pack8(mfe_rq8_apply(acc, &t->q)), t->n); }
#define DPW(acc, x, w) _mm256_add_epi32((acc), _mm256_madd_epi16((x), (w)))
#define dw_add _mm256_add_epi32
#define dw_sub _mm256_sub_epi32
#define dw_min _mm256_min_epi32
#define dw_max _mm256_max_epi32
#define dw_abs _mm256_abs_epi32
static inline dw_vec dw_sll(dw_vec v, int32_t s) { return _mm256_sll_epi32(v, _mm_cvtsi32_si128(s)); }
static inline dw_vec dw_signw(dw_vec x, dw_vec w) { return _mm256_sign_epi32(x, w); }  /* 0 where w = 0: clamped to 0 anyway */
#else
#define MFE_DW_ROWS 0
#endif

#if MFE_DW_ROWS
enum { DW_MAC, DW_MIN };

typedef struct {
    const int8_t *rows[3];  /* input rows of the three taps, NULL where padding */
    int32_t w_in, cstride, sh, pt, pl, xs;  /* input width, channels; stride and padding (rows, top, left); hdw's xshift */
    int32_t c16;            /* channels [0, c16) are dw16_row's (0: none) */
} dw3_geom;

typedef struct { dw_vec w[9], aw[9], naw[9]; } dw3_taps;  /* DW_MIN: |w| and -|w| too */

/* NPIX output pixels from ox, the channels of tile tl from c0; SW is the stride (1 or 2). INSIDE: every
 * column the pixels read lies inside the row, so only a padded row (NULL) needs the pad value; FULL: a whole
 * vector of channels. Unrolled so that the inputs stay in registers. */
static inline __attribute__((always_inline)) void dw3_pixels(int8_t *y, const dw3_geom *g, int32_t ox, int32_t c0,
                                                              const dw_tile *tl, const dw3_taps *k, dw_vec padv,
                                                              const int OP, const int NPIX, const int SW, const int INSIDE,
                                                              const int FULL) {
    dw_vec acc[DW_NPIX];
    for (int p = 0; p < NPIX; p++) acc[p] = tl->bias;
    const int32_t ix0 = ox * SW - g->pl;
#pragma GCC unroll 3
    for (int ky = 0; ky < 3; ky++) {
        dw_vec xv[3 * 2 + 3];
        const int8_t *row = g->rows[ky];
        if (!row) {
            if (OP == DW_MAC)
                for (int kx = 0; kx < 3; kx++)
                    for (int p = 0; p < NPIX; p++) acc[p] = DPW(acc[p], padv, k->w[ky * 3 + kx]);
            continue;
        }
#pragma GCC unroll 9
        for (int i = 0; i < (NPIX - 1) * SW + 3; i++) {
            int32_t ix = ix0 + i;
            if (INSIDE || (ix >= 0 && ix < g->w_in)) {
                xv[i] = dw_load8(row + (size_t)ix * g->cstride + c0, tl, FULL);
                if (OP == DW_MIN) xv[i] = dw_sll(xv[i], g->xs);
            } else {
                xv[i] = padv;
            }
        }
        for (int kx = 0; kx < 3; kx++) {
            const int t = ky * 3 + kx;
            for (int p = 0; p < NPIX; p++)
                acc[p] = OP == DW_MAC ? DPW(acc[p], xv[p * SW + kx], k->w[t])
                                      : dw_add(acc[p], dw_min(dw_max(dw_signw(xv[p * SW + kx], k->w[t]), k->naw[t]), k->aw[t]));
        }
    }
    for (int p = 0; p < NPIX; p++) dw_store(y + (size_t)(ox + p) * g->cstride + c0, acc[p], tl);
}

/* One output row: every tile of channels. w: per tap, the c channels' int32 weights ((w, 0) pairs for DW_MAC). */
static inline __attribute__((always_inline)) void dw3_row(int8_t *y, const dw3_geom *g, int32_t wout, int32_t c,
                                                           const int32_t *w, const int32_t *bias, const int32_t *mult,
                                                           const int32_t *shift, int32_t pv, int32_t lo, int32_t hi,
                                                           const int OP, const int SW) {
    const dw_vec padv = dw_set1(pv);  /* DW_MAC: as a sign-extended input byte */
    for (int32_t c0 = g->c16; c0 < c; c0 += DW_LANES) {
        const dw_tile tl = dw_tile_load(c0, c, bias, mult, shift, lo, hi);
        dw3_taps k;
        for (int t = 0; t < 9; t++) {
            k.w[t] = dw_load32(w + (size_t)t * c + c0, &tl);
            if (OP == DW_MIN) k.aw[t] = dw_abs(k.w[t]), k.naw[t] = dw_sub(dw_set1(0), k.aw[t]);
        }
        int32_t ox = 0;
        for (; ox + DW_NPIX <= wout; ox += DW_NPIX) {
            const int32_t ix0 = ox * SW - g->pl;
            if (ix0 >= 0 && ix0 + (DW_NPIX - 1) * SW + 3 <= g->w_in && dw_full(&tl))
                dw3_pixels(y, g, ox, c0, &tl, &k, padv, OP, DW_NPIX, SW, 1, 1);
            else dw3_pixels(y, g, ox, c0, &tl, &k, padv, OP, DW_NPIX, SW, 0, 0);
        }
        for (; ox < wout; ox++) dw3_pixels(y, g, ox, c0, &tl, &k, padv, OP, 1, SW, 0, 0);
    }
}

#if defined(MFE_ISA_AVX2) && !defined(MFE_ISA_AVX512)
#define MFE_DW16 1
/* conv2d's depthwise 3x3 (pad_value 0), 16 channels a step in int16 lanes: kernel rows 0 and 1 pair up in one
 * vpmaddwd ((x0, x1) . (w0, w1) per channel), row 2 pairs with zero, and each input column is widened and
 * paired once for the pixels that read it (both at stride 1, the middle one at stride 2). vpunpck{l,h}wd put channels 0-3, 8-11 in one vector and 4-7,
 * 12-15 in the other (their int32 lanes); vpackssdw of the two, per 128-bit lane, gives natural order
 * again. So the tables below (conv.c) hold each tile's weights, bias, mult and shift in that order. */
static const int8_t DW16_ORDER[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};  /* slot -> channel */
typedef struct { __m256i w01[3][2], w2[3][2]; } dw16_taps;  /* per kx and half: (w[0][kx], w[1][kx]), (w[2][kx], 0) */
typedef struct { const dw16_taps *taps; const int32_t *bias, *mult, *shift; } dw16_tables;  /* in DW16_ORDER */

static inline __attribute__((always_inline)) __m256i dw16_load(const int8_t *row, int in, int32_t ix, int32_t cstride,
                                                               int32_t c0) {
    return row && in ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(row + (size_t)ix * cstride + c0)))
                     : _mm256_setzero_si256();  /* padding: pad_value 0 adds nothing */
}

/* NPIX (1 or 2) pixels from ox at stride SW; columns outside the row read zeros (pad_value 0). */
static inline __attribute__((always_inline)) void dw16_pixels(int8_t *y, const dw3_geom *g, int32_t ox, int32_t c0,
                                                               const dw16_taps *k, const __m256i bias[2],
                                                               const mfe_rq8 q[2], const int NPIX, const int SW) {
    const __m256i zero = _mm256_setzero_si256();
    __m256i acc[2][2] = {{bias[0], bias[1]}, {bias[0], bias[1]}};
    for (int i = 0; i < (NPIX - 1) * SW + 3; i++) {  /* column ox SW - pl + i */
        const int32_t ix = ox * SW - g->pl + i;
        const int in = ix >= 0 && ix < g->w_in;
        const __m256i r0 = dw16_load(g->rows[0], in, ix, g->cstride, c0), r1 = dw16_load(g->rows[1], in, ix, g->cstride, c0);
        const __m256i r2 = dw16_load(g->rows[2], in, ix, g->cstride, c0);
        const __m256i v[2][2] = {{_mm256_unpacklo_epi16(r0, r1), _mm256_unpackhi_epi16(r0, r1)},
                                 {_mm256_unpacklo_epi16(r2, zero), _mm256_unpackhi_epi16(r2, zero)}};
        for (int p = 0; p < NPIX; p++) {
            const int kx = i - p * SW;
            if (kx < 0 || kx > 2) continue;
            for (int h = 0; h < 2; h++)
                acc[p][h] = _mm256_add_epi32(acc[p][h], _mm256_add_epi32(_mm256_madd_epi16(v[0][h], k->w01[kx][h]),
                                                                         _mm256_madd_epi16(v[1][h], k->w2[kx][h])));
        }
    }
    for (int p = 0; p < NPIX; p++) {
        const __m256i w = _mm256_packs_epi32(mfe_rq8_apply(acc[p][0], &q[0]), mfe_rq8_apply(acc[p][1], &q[1]));
        const __m256i b = _mm256_permute4x64_epi64(_mm256_packs_epi16(w, w), 0x08);  /* channels 0-7, 8-15 */
        _mm_storeu_si128((__m128i *)(y + (size_t)(ox + p) * g->cstride + c0), _mm256_castsi256_si128(b));
    }
}

/* hdw's min op 16 channels a step in int16 lanes (hdw.c hdw_i16: nine taps fit int16): sign(w) clamp(x << xs,
 * -a, a) as clamp(...) ^ m, m = -(w < 0), whose -1s the loader put back into the bias. */
static inline __attribute__((always_inline)) void hdw16_pixels(int8_t *y, const dw3_geom *g, int32_t ox, int32_t c0,
                                                                const hdw16_tables *t, const __m256i bias[2],
                                                                const mfe_rq8 q[2], const int NPIX, const int SW) {
    const __m128i xs = _mm_cvtsi32_si128(g->xs);
    __m256i acc[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int i = 0; i < (NPIX - 1) * SW + 3; i++) {  /* column ox SW - pl + i; outside the row: zeros */
        const int32_t ix = ox * SW - g->pl + i;
        const int in = ix >= 0 && ix < g->w_in;
        __m256i r[3];
        for (int ky = 0; ky < 3; ky++) r[ky] = _mm256_sll_epi16(dw16_load(g->rows[ky], in, ix, g->cstride, c0), xs);
        for (int p = 0; p < NPIX; p++) {
            const int kx = i - p * SW;
            if (kx < 0 || kx > 2) continue;
            for (int ky = 0; ky < 3; ky++) {
                const size_t at = (size_t)(ky * 3 + kx) * t->c + c0;
                const __m256i v = _mm256_min_epi16(_mm256_max_epi16(r[ky], _mm256_loadu_si256((const __m256i *)(t->na + at))),
                                                   _mm256_loadu_si256((const __m256i *)(t->a + at)));
                acc[p] = _mm256_add_epi16(acc[p], _mm256_xor_si256(v, _mm256_loadu_si256((const __m256i *)(t->m + at))));
            }
        }
    }
    for (int p = 0; p < NPIX; p++) {
        const __m256i lo = _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(acc[p])), bias[0]);
        const __m256i hi = _mm256_add_epi32(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(acc[p], 1)), bias[1]);
        _mm_storeu_si128((__m128i *)(y + (size_t)(ox + p) * g->cstride + c0),
                         mfe_pack16(mfe_rq8_apply(lo, &q[0]), mfe_rq8_apply(hi, &q[1])));
    }
}

/* The first g->c16 channels of one output row, 16 at a time (OP: dw16_pixels' or hdw16_pixels' tables in t);
 * dw3_row does the rest. */
static inline void dw16_row(int8_t *y, const dw3_geom *g, int32_t wout, const void *t, int32_t lo, int32_t hi,
                            const int OP, const int SW) {
    const dw16_tables *mac = t;
    const hdw16_tables *mn = t;
    const int32_t *bias = OP == DW_MAC ? mac->bias : mn->bias, *mult = OP == DW_MAC ? mac->mult : mn->mult;
    const int32_t *shift = OP == DW_MAC ? mac->shift : mn->shift;
    for (int32_t c0 = 0; c0 < g->c16; c0 += 16) {
        const __m256i b[2] = {_mm256_loadu_si256((const __m256i *)(bias + c0)), _mm256_loadu_si256((const __m256i *)(bias + c0 + 8))};
        const mfe_rq8 q[2] = {mfe_rq8_load(mult + c0, shift + c0, 8, lo, hi), mfe_rq8_load(mult + c0 + 8, shift + c0 + 8, 8, lo, hi)};
#define PIXELS16(NPIX) (OP == DW_MAC ? dw16_pixels(y, g, ox, c0, mac->taps + c0 / 16, b, q, NPIX, SW) \
                                    : hdw16_pixels(y, g, ox, c0, mn, b, q, NPIX, SW))
        int32_t ox = 0;
        for (; ox + 2 <= wout; ox += 2) PIXELS16(2);
        if (ox < wout) PIXELS16(1);
#undef PIXELS16
    }
}
#endif

/* Output row r of the batch: the input rows of its taps, then dw16_row (t: its tables, where geo.c16 > 0) and
 * dw3_row. */
static inline __attribute__((always_inline)) void dw3_row_at(const mfe_tensor *X, const mfe_tensor *Y, const void *in,
                                                              void *out, int64_t r, dw3_geom geo, const int32_t *w,
                                                              const int32_t *bias, const int32_t *mult, const int32_t *shift,
                                                              int32_t pv, int32_t lo, int32_t hi, const void *t,
                                                              const int OP, const int SW) {
    const mfe_row row = mfe_row_at(X, Y, in, out, r);
    for (int ky = 0; ky < 3; ky++) {
        const int32_t iy = row.oy * geo.sh - geo.pt + ky;
        geo.rows[ky] = iy >= 0 && iy < X->h ? row.x + (size_t)iy * X->w * X->c : NULL;
    }
#if MFE_DW16
    if (geo.c16) dw16_row(row.y, &geo, Y->w, t, lo, hi, OP, SW);
#else
    (void)t;
#endif
    dw3_row(row.y, &geo, Y->w, Y->c, w, bias, mult, shift, pv, lo, hi, OP, SW);
}

#endif
#ifndef MFE_DW16
#define MFE_DW16 0
#endif
#endif
