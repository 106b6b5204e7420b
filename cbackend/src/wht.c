/* wht: FWHT over channels, integer soft/smooth thresholds, FWHT, >> log2 n, crop, residual.
 * Pixels go in blocks of P, transposed to buf[channel][pixel] int32, so every butterfly is a plain
 * vertical add/sub of two rows of P lanes (no shuffles). |values| <= 3 * 128 * n^1.5 < 2^31 (n <= 2^14). */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"

#define P 8  /* pixels per block: buf rows are one AVX2 vector; a 1024-channel block (32 KiB) stays in L1 */
#define TLEN 256
#define TERMS 3
#define T_CAP (1 << 22)  /* |z| <= 128 n <= 2^21: thresholds above this act the same, and z - T cannot wrap */

/* Row j of a block: rows are P lanes, and every 128 rows skip one row's width, so rows a power of two
 * >= 128 apart never sit a multiple of 4 KiB apart (that aliasing stalls loads behind stores). */
#define ROW(buf, j) ((buf) + ((size_t)(j) + ((size_t)(j) >> 7)) * P)
#define ROWS(n) ((size_t)(n) + ((size_t)(n) >> 7) + 1)

typedef struct {
    int32_t *thresh;              /* natural order, capped; [0] unused */
    int32_t shift[TERMS][TLEN];   /* smooth: per term the right shift, and its sign in {-1, 0, +1} */
    int32_t sign[TERMS][TLEN];
} wht_prep;

typedef struct {
    int32_t n, k, cin, cout, smooth, g, residual;
    const wht_prep *w;
} wht_args;

/* ---- portable pieces: transposes, butterfly stages, thresholds ---- */

MFE_SCALAR_FN void load_block(int32_t *buf, const int8_t *x, int32_t cin, int np) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < cin; ch++) ROW(buf, ch)[p] = x[(size_t)p * cin + ch];
}

/* y = sat8(rshift_round(buf, k) + residual), pixel-major; res (the layer input) may be NULL */
MFE_SCALAR_FN void store_block(int8_t *y, const int32_t *buf, int32_t cout, int np, int32_t k, const int8_t *res) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < cout; ch++) {
            int64_t v = mfe_rshift_round(ROW(buf, ch)[p], k) + (res ? res[(size_t)p * cout + ch] : 0);
            y[(size_t)p * cout + ch] = mfe_sat8(v, -128, 127);
        }
}

/* Butterfly stages h = h0, 2 h0, ... < h1 (powers of two), two per pass (radix 4). Stages commute,
 * so a transform may run them in any order. */
MFE_SCALAR_FN void fwht_stages__scalar(int32_t *buf, int32_t n, int32_t h0, int32_t h1) {
    int32_t h = h0;
    for (; 2 * h < h1; h *= 4)
        for (int32_t i = 0; i < n; i += 4 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = ROW(buf, j), *r1 = ROW(buf, j + h), *r2 = ROW(buf, j + 2 * h), *r3 = ROW(buf, j + 3 * h);
                for (int p = 0; p < P; p++) {
                    int32_t a = r0[p] + r1[p], b = r0[p] - r1[p], c = r2[p] + r3[p], d = r2[p] - r3[p];
                    r0[p] = a + c, r1[p] = b + d, r2[p] = a - c, r3[p] = b - d;
                }
            }
    if (h < h1)
        for (int32_t i = 0; i < n; i += 2 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = ROW(buf, j), *r1 = ROW(buf, j + h);
                for (int p = 0; p < P; p++) {
                    int32_t a = r0[p], b = r1[p];
                    r0[p] = a + b, r1[p] = a - b;
                }
            }
}

MFE_SCALAR_FN int32_t threshold1(int32_t z, int32_t c, const wht_args *a) {
    int32_t t = a->w->thresh[c], mag = z < 0 ? -z : z, rem = mag - t > 0 ? mag - t : 0;
    if (!a->smooth) return z < 0 ? -rem : rem;
    int32_t idx = (mag >> a->g) < TLEN ? (mag >> a->g) : TLEN - 1, f = 0;
    for (int j = 0; j < TERMS; j++) {  /* f = sum of +-(rem >> e): no multiply */
        int32_t v = rem >> a->w->shift[j][idx], s = a->w->sign[j][idx];
        f += s > 0 ? v : s < 0 ? -v : 0;
    }
    return z < 0 ? -f : f;
}

MFE_SCALAR_FN void threshold_rows__scalar(int32_t *buf, const wht_args *a) {
    for (int32_t c = 1; c < a->n; c++)  /* row 0 is DC: passed through */
        for (int p = 0; p < P; p++) ROW(buf, c)[p] = threshold1(ROW(buf, c)[p], c, a);
}

#ifdef MFE_ISA_AVX2
#define fwht_stages fwht_stages__avx2
#define threshold_rows threshold_rows__avx2
#else
#define fwht_stages fwht_stages__scalar
#define threshold_rows threshold_rows__scalar
#endif

/* The layer on one block of np <= P pixels, any shape. */
static void wht_generic(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np);

MFE_SCALAR_FN void wht_block__scalar(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    wht_generic(a, buf, x, y, np);
}

#ifdef MFE_ISA_AVX2
#define LD(p) _mm256_load_si256((const __m256i *)(p))
#define ST(p, v) _mm256_store_si256((__m256i *)(p), (v))

static void fwht_stages__avx2(int32_t *buf, int32_t n, int32_t h0, int32_t h1) {
    int32_t h = h0;
    for (; 2 * h < h1; h *= 4)
        for (int32_t i = 0; i < n; i += 4 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = ROW(buf, j), *r1 = ROW(buf, j + h), *r2 = ROW(buf, j + 2 * h), *r3 = ROW(buf, j + 3 * h);
                __m256i x0 = LD(r0), x1 = LD(r1), x2 = LD(r2), x3 = LD(r3);
                __m256i a = _mm256_add_epi32(x0, x1), b = _mm256_sub_epi32(x0, x1);
                __m256i c = _mm256_add_epi32(x2, x3), d = _mm256_sub_epi32(x2, x3);
                ST(r0, _mm256_add_epi32(a, c)), ST(r1, _mm256_add_epi32(b, d));
                ST(r2, _mm256_sub_epi32(a, c)), ST(r3, _mm256_sub_epi32(b, d));
            }
    if (h < h1)
        for (int32_t i = 0; i < n; i += 2 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = ROW(buf, j), *r1 = ROW(buf, j + h);
                __m256i u = LD(r0), v = LD(r1);
                ST(r0, _mm256_add_epi32(u, v)), ST(r1, _mm256_sub_epi32(u, v));
            }
}

/* soft: max(z - T, 0) + min(z + T, 0); smooth: sign(z) * sum of +-(max(|z| - T, 0) >> e) from the table */
static inline __m256i threshold8(__m256i z, int32_t c, const wht_args *a) {
    const __m256i zero = _mm256_setzero_si256(), t = _mm256_set1_epi32(a->w->thresh[c]);
    if (!a->smooth)
        return _mm256_add_epi32(_mm256_max_epi32(_mm256_sub_epi32(z, t), zero), _mm256_min_epi32(_mm256_add_epi32(z, t), zero));
    __m256i mag = _mm256_abs_epi32(z), rem = _mm256_max_epi32(_mm256_sub_epi32(mag, t), zero);
    __m256i idx = _mm256_min_epi32(_mm256_srl_epi32(mag, _mm_cvtsi32_si128(a->g)), _mm256_set1_epi32(TLEN - 1)), f = zero;
    for (int j = 0; j < TERMS; j++) {
        __m256i sh = _mm256_i32gather_epi32(a->w->shift[j], idx, 4), sg = _mm256_i32gather_epi32(a->w->sign[j], idx, 4);
        f = _mm256_add_epi32(f, _mm256_sign_epi32(_mm256_srlv_epi32(rem, sh), sg));
    }
    return _mm256_sign_epi32(f, z);
}

static void threshold_rows__avx2(int32_t *buf, const wht_args *a) {
    for (int32_t c = 1; c < a->n; c++) ST(ROW(buf, c), threshold8(LD(ROW(buf, c)), c, a));
}

static inline void transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++)
            u[i + j] = _mm256_unpacklo_epi64(t[i + j], t[i + j + 2]), u[i + j + 2] = _mm256_unpackhi_epi64(t[i + j], t[i + j + 2]);
    const int order[4] = {0, 2, 1, 3};  /* u[0..3]: rows 0-3 of columns 0,2,1,3; u[4..7]: rows 4-7 */
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[order[i]], u[4 + order[i]], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[order[i]], u[4 + order[i]], 0x31);
    }
}

static inline void fwht8(__m256i r[8]) {  /* stages 1, 2, 4 across eight rows held in registers */
    for (int h = 1; h < 8; h *= 2)
        for (int i = 0; i < 8; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                __m256i u = r[j], v = r[j + h];
                r[j] = _mm256_add_epi32(u, v), r[j + h] = _mm256_sub_epi32(u, v);
            }
}

/* Full blocks with channels in multiples of 8: stages 1-4 ride on the transposes, and the top stage
 * of both transforms is fused with the thresholds, so buf is swept 2 log4(n/16) + 3 times, not ~12. */
static void wht_fused(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y) {
    const int32_t n = a->n, half = n / 2;
    for (int32_t c = a->cin; c < n; c++) memset(ROW(buf, c), 0, sizeof(int32_t) * P);
    for (int32_t c0 = 0; c0 < a->cin; c0 += 8) {
        __m256i r[8];
        for (int j = 0; j < 8; j++) r[j] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + (size_t)j * a->cin + c0)));
        transpose8(r);
        fwht8(r);
        for (int j = 0; j < 8; j++) ST(ROW(buf, c0 + j), r[j]);
    }
    fwht_stages__avx2(buf, n, 8, half);
    for (int32_t j = 0; j < half; j++) {  /* top stage, thresholds, top stage of the second transform */
        int32_t *r0 = ROW(buf, j), *r1 = ROW(buf, j + half);
        __m256i u = LD(r0), v = LD(r1), z0 = _mm256_add_epi32(u, v), z1 = threshold8(_mm256_sub_epi32(u, v), j + half, a);
        if (j) z0 = threshold8(z0, j, a);
        ST(r0, _mm256_add_epi32(z0, z1)), ST(r1, _mm256_sub_epi32(z0, z1));
    }
    fwht_stages__avx2(buf, n, 8, half);
    const __m256i rnd = _mm256_set1_epi32(1 << (a->k - 1));
    const __m128i ks = _mm_cvtsi32_si128(a->k);
    for (int32_t c0 = 0; c0 < a->cout; c0 += 8) {
        __m256i r[8];
        for (int j = 0; j < 8; j++) r[j] = LD(ROW(buf, c0 + j));
        fwht8(r);
        transpose8(r);
        for (int j = 0; j < 8; j++) {
            size_t at = (size_t)j * a->cout + c0;
            __m256i v = _mm256_sra_epi32(_mm256_add_epi32(r[j], rnd), ks);  /* |value| < 2^30: no wrap */
            if (a->residual) v = _mm256_add_epi32(v, _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + at))));
            __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            _mm_storel_epi64((__m128i *)(y + at), _mm_packs_epi16(w16, w16));  /* saturating: the int8 clamp */
        }
    }
}

static void wht_block__avx2(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    if (np == P && a->cin % 8 == 0 && a->cout % 8 == 0 && a->n >= 16) wht_fused(a, buf, x, y);
    else wht_generic(a, buf, x, y, np);
}
#endif

static void wht_generic(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    if (np < P) memset(buf, 0, sizeof(int32_t) * ROWS(a->n) * P);  /* idle lanes stay zero: no overflow */
    else for (int32_t c = a->cin; c < a->n; c++) memset(ROW(buf, c), 0, sizeof(int32_t) * P);
    load_block(buf, x, a->cin, np);
    fwht_stages(buf, a->n, 1, a->n);
    threshold_rows(buf, a);
    fwht_stages(buf, a->n, 1, a->n);
    store_block(y, buf, a->cout, np, a->k, a->residual ? x : NULL);
}

#define wht_block MFE_KERNEL(wht_block)

int mfe_prepare_wht(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int32_t n = nd->a[MFE_WHT_N], cout = nd->a[MFE_WHT_COUT], smooth = nd->a[MFE_WHT_MODE];
    MFE_CHECK((n & (n - 1)) == 0 && n >= x->c && n >= cout, "n=%d must be a power of two >= cin, cout", n);
    MFE_CHECK(!nd->a[MFE_WHT_RESIDUAL] || x->c == cout, "residual wht needs cin == cout");
    MFE_CHECK(y->h == x->h && y->w == x->w && y->c == cout, "output shape disagrees");
    MFE_CHECK(nd->blob_n[MFE_WHT_B_THRESH] == n && nd->blob_n[MFE_WHT_B_TABLE] == (smooth ? TERMS * TLEN : 0),
              "threshold/table sizes wrong");
    wht_prep *w = calloc(1, sizeof *w);
    if (!w || !(w->thresh = malloc(sizeof(int32_t) * (size_t)n))) { free(w); MFE_FAIL(MFE_ENOMEM, "out of memory"); }
    const int32_t *t = nd->blob[MFE_WHT_B_THRESH];
    int32_t k = 0;
    while ((1 << k) < n) k++;
    for (int32_t s = 0; s < n; s++) {  /* walsh (sequency) s -> natural row bitrev(gray(s)) */
        int32_t gray = s ^ (s >> 1), nat = 0;
        for (int32_t b = 0; b < k; b++) nat |= ((gray >> b) & 1) << (k - 1 - b);
        w->thresh[nd->a[MFE_WHT_ORDER] ? nat : s] = t[s] < T_CAP ? t[s] : T_CAP;
    }
    const int8_t *codes = nd->blob[MFE_WHT_B_TABLE];
    for (int j = 0; smooth && j < TERMS; j++)
        for (int i = 0; i < TLEN; i++) {
            int32_t cd = codes[j * TLEN + i];
            w->sign[j][i] = (cd > 0) - (cd < 0);
            w->shift[j][i] = cd ? (cd < 0 ? -cd : cd) - 1 : 0;
        }
    /* |z'| <= 3|z| and ||z||_1 <= 128 n^1.5: bounded by 3 * 2^7 * 2^21 < 2^31 for n <= 2^14 */
    nd->prep = w;
    nd->scratch = sizeof(int32_t) * ROWS(n) * P;
    return MFE_OK;
}

void mfe_run_wht(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    wht_args a = {nd->a[MFE_WHT_N], 0, c->x->c, c->y->c, nd->a[MFE_WHT_MODE], nd->a[MFE_WHT_TSHIFT],
                  nd->a[MFE_WHT_RESIDUAL], nd->prep};
    while ((1 << a.k) < a.n) a.k++;
    const int64_t pixels = (int64_t)c->n * c->x->h * c->x->w, blocks = (pixels + P - 1) / P;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t bl = 0; bl < blocks; bl++) {
        int64_t p0 = bl * P;
        int np = pixels - p0 < P ? (int)(pixels - p0) : P;
        wht_block(&a, (int32_t *)MFE_SCRATCH(c), (const int8_t *)in0 + p0 * a.cin, (int8_t *)out + p0 * a.cout, np);
    }
}
