/* wht: FWHT over channels, integer soft/smooth thresholds, FWHT, >> log2 n, crop, residual.
 * Pixels go in blocks of P, transposed to buf[channel][pixel] int32, so every butterfly is a plain
 * vertical add/sub of two rows of P lanes (no shuffles). |values| <= 3 * 128 * n^1.5 < 2^31 (n <= 2^14). */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"

#define P 16  /* pixels per block: one buf row is 64 bytes, two AVX2 vectors */
#define TLEN 256
#define TERMS 3
#define T_CAP (1 << 22)  /* |z| <= 128 n <= 2^21: thresholds above this act the same, and z - T cannot wrap */

typedef struct {
    int32_t *thresh;              /* natural order, capped; [0] unused */
    int32_t shift[TERMS][TLEN];   /* smooth: per term the right shift, and its sign in {-1, 0, +1} */
    int32_t sign[TERMS][TLEN];
} wht_prep;

/* ---- FWHT on buf[n][P]: two stages per pass (radix 4) to halve memory traffic ---- */

MFE_SCALAR_FN void fwht_block__scalar(int32_t *buf, int32_t n) {
    int32_t h = 1;
    for (; 2 * h < n; h *= 4)
        for (int32_t i = 0; i < n; i += 4 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = buf + (size_t)j * P, *r1 = r0 + (size_t)h * P, *r2 = r1 + (size_t)h * P, *r3 = r2 + (size_t)h * P;
                for (int p = 0; p < P; p++) {
                    int32_t a = r0[p] + r1[p], b = r0[p] - r1[p], c = r2[p] + r3[p], d = r2[p] - r3[p];
                    r0[p] = a + c, r1[p] = b + d, r2[p] = a - c, r3[p] = b - d;
                }
            }
    if (h < n)  /* odd log2 n: one radix-2 stage left */
        for (int32_t j = 0; j < h; j++) {
            int32_t *r0 = buf + (size_t)j * P, *r1 = r0 + (size_t)h * P;
            for (int p = 0; p < P; p++) {
                int32_t a = r0[p], b = r1[p];
                r0[p] = a + b, r1[p] = a - b;
            }
        }
}

/* ---- transposes between pixel-major int8 and buf[channel][pixel] int32 ---- */

MFE_SCALAR_FN void load_block__scalar(int32_t *buf, const int8_t *x, int32_t cin, int np) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < cin; ch++) buf[(size_t)ch * P + p] = x[(size_t)p * cin + ch];
}

/* y = sat8(rshift_round(buf, k) + residual), pixel-major; res (the layer input) may be NULL */
MFE_SCALAR_FN void store_block__scalar(int8_t *y, const int32_t *buf, int32_t cout, int np, int32_t k, const int8_t *res) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < cout; ch++) {
            int64_t v = mfe_rshift_round(buf[(size_t)ch * P + p], k) + (res ? res[(size_t)p * cout + ch] : 0);
            y[(size_t)p * cout + ch] = mfe_sat8(v, -128, 127);
        }
}

MFE_SCALAR_FN void soft_block__scalar(int32_t *buf, int32_t n, const int32_t *t) {
    for (int32_t c = 1; c < n; c++) {
        int32_t *r = buf + (size_t)c * P, tc = t[c];
        for (int p = 0; p < P; p++) {  /* sign(z) max(|z| - T, 0) = max(z - T, 0) + min(z + T, 0) */
            int32_t u = r[p] - tc, v = r[p] + tc;
            r[p] = (u > 0 ? u : 0) + (v < 0 ? v : 0);
        }
    }
}

MFE_SCALAR_FN void smooth_block__scalar(int32_t *buf, int32_t n, const wht_prep *w, int32_t g) {
    for (int32_t c = 1; c < n; c++) {
        int32_t *r = buf + (size_t)c * P, tc = w->thresh[c];
        for (int p = 0; p < P; p++) {
            int32_t z = r[p], mag = z < 0 ? -z : z, rem = mag - tc > 0 ? mag - tc : 0;
            int32_t idx = (mag >> g) < TLEN ? (mag >> g) : TLEN - 1, f = 0;
            for (int j = 0; j < TERMS; j++) {
                int32_t t = rem >> w->shift[j][idx], s = w->sign[j][idx];
                f += s > 0 ? t : s < 0 ? -t : 0;
            }
            r[p] = z < 0 ? -f : f;
        }
    }
}

#ifdef MFE_ISA_AVX2
#define LANES 8
static void fwht_block__avx2(int32_t *buf, int32_t n) {
    int32_t h = 1;
    for (; 2 * h < n; h *= 4)
        for (int32_t i = 0; i < n; i += 4 * h)
            for (int32_t j = i; j < i + h; j++) {
                int32_t *r0 = buf + (size_t)j * P, *r1 = r0 + (size_t)h * P, *r2 = r1 + (size_t)h * P, *r3 = r2 + (size_t)h * P;
                for (int p = 0; p < P; p += LANES) {
                    __m256i x0 = _mm256_load_si256((__m256i *)(r0 + p)), x1 = _mm256_load_si256((__m256i *)(r1 + p));
                    __m256i x2 = _mm256_load_si256((__m256i *)(r2 + p)), x3 = _mm256_load_si256((__m256i *)(r3 + p));
                    __m256i a = _mm256_add_epi32(x0, x1), b = _mm256_sub_epi32(x0, x1);
                    __m256i c = _mm256_add_epi32(x2, x3), d = _mm256_sub_epi32(x2, x3);
                    _mm256_store_si256((__m256i *)(r0 + p), _mm256_add_epi32(a, c));
                    _mm256_store_si256((__m256i *)(r1 + p), _mm256_add_epi32(b, d));
                    _mm256_store_si256((__m256i *)(r2 + p), _mm256_sub_epi32(a, c));
                    _mm256_store_si256((__m256i *)(r3 + p), _mm256_sub_epi32(b, d));
                }
            }
    if (h < n)
        for (int32_t j = 0; j < h; j++)
            for (int p = 0; p < P; p += LANES) {
                __m256i *q0 = (__m256i *)(buf + (size_t)j * P + p), *q1 = (__m256i *)(buf + (size_t)(j + h) * P + p);
                __m256i a = _mm256_load_si256(q0), b = _mm256_load_si256(q1);
                _mm256_store_si256(q0, _mm256_add_epi32(a, b));
                _mm256_store_si256(q1, _mm256_sub_epi32(a, b));
            }
}

static inline void transpose8(__m256i r[8]) {
    __m256i t[8], u[8];
    for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4)
        for (int j = 0; j < 2; j++)
            u[i + j] = _mm256_unpacklo_epi64(t[i + j], t[i + j + 2]), u[i + j + 2] = _mm256_unpackhi_epi64(t[i + j], t[i + j + 2]);
    /* u[0..3] rows 0-3 of columns (0,2,1,3) and u[4..7] rows 4-7; stitch 128-bit halves */
    const int order[4] = {0, 2, 1, 3};
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2x128_si256(u[order[i]], u[4 + order[i]], 0x20);
        r[i + 4] = _mm256_permute2x128_si256(u[order[i]], u[4 + order[i]], 0x31);
    }
}

static void load_block__avx2(int32_t *buf, const int8_t *x, int32_t cin, int np) {
    if (np < P || cin % 8) { load_block__scalar(buf, x, cin, np); return; }
    for (int32_t c0 = 0; c0 < cin; c0 += 8)
        for (int p0 = 0; p0 < P; p0 += 8) {
            __m256i r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + (size_t)(p0 + j) * cin + c0)));
            transpose8(r);
            for (int j = 0; j < 8; j++) _mm256_store_si256((__m256i *)(buf + (size_t)(c0 + j) * P + p0), r[j]);
        }
}

static void store_block__avx2(int8_t *y, const int32_t *buf, int32_t cout, int np, int32_t k, const int8_t *res) {
    if (np < P || cout % 8) { store_block__scalar(y, buf, cout, np, k, res); return; }
    const __m256i half = _mm256_set1_epi32(1 << (k - 1));
    const __m128i ks = _mm_cvtsi32_si128(k);
    for (int32_t c0 = 0; c0 < cout; c0 += 8)
        for (int p0 = 0; p0 < P; p0 += 8) {
            __m256i r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_load_si256((const __m256i *)(buf + (size_t)(c0 + j) * P + p0));
            transpose8(r);
            for (int j = 0; j < 8; j++) {
                size_t at = (size_t)(p0 + j) * cout + c0;
                __m256i v = _mm256_sra_epi32(_mm256_add_epi32(r[j], half), ks);  /* |buf| < 2^30: no wrap */
                if (res) v = _mm256_add_epi32(v, _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(res + at))));
                __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                _mm_storel_epi64((__m128i *)(y + at), _mm_packs_epi16(w16, w16));  /* saturating: the int8 clamp */
            }
        }
}

static void soft_block__avx2(int32_t *buf, int32_t n, const int32_t *t) {
    const __m256i zero = _mm256_setzero_si256();
    for (int32_t c = 1; c < n; c++) {
        __m256i tc = _mm256_set1_epi32(t[c]);
        for (int p = 0; p < P; p += LANES) {
            __m256i *q = (__m256i *)(buf + (size_t)c * P + p), z = _mm256_load_si256(q);
            __m256i u = _mm256_max_epi32(_mm256_sub_epi32(z, tc), zero), v = _mm256_min_epi32(_mm256_add_epi32(z, tc), zero);
            _mm256_store_si256(q, _mm256_add_epi32(u, v));
        }
    }
}

static void smooth_block__avx2(int32_t *buf, int32_t n, const wht_prep *w, int32_t g) {
    const __m256i zero = _mm256_setzero_si256(), top = _mm256_set1_epi32(TLEN - 1);
    const __m128i gs = _mm_cvtsi32_si128(g);
    for (int32_t c = 1; c < n; c++) {
        __m256i tc = _mm256_set1_epi32(w->thresh[c]);
        for (int p = 0; p < P; p += LANES) {
            __m256i *q = (__m256i *)(buf + (size_t)c * P + p), z = _mm256_load_si256(q);
            __m256i mag = _mm256_abs_epi32(z), rem = _mm256_max_epi32(_mm256_sub_epi32(mag, tc), zero);
            __m256i idx = _mm256_min_epi32(_mm256_srl_epi32(mag, gs), top), f = zero;
            for (int j = 0; j < TERMS; j++) {
                __m256i sh = _mm256_i32gather_epi32(w->shift[j], idx, 4), sg = _mm256_i32gather_epi32(w->sign[j], idx, 4);
                f = _mm256_add_epi32(f, _mm256_sign_epi32(_mm256_srlv_epi32(rem, sh), sg));
            }
            _mm256_store_si256(q, _mm256_sign_epi32(f, z));
        }
    }
}
#endif

#define load_block MFE_KERNEL(load_block)
#define store_block MFE_KERNEL(store_block)
#define fwht_block MFE_KERNEL(fwht_block)
#define soft_block MFE_KERNEL(soft_block)
#define smooth_block MFE_KERNEL(smooth_block)

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
    nd->scratch = sizeof(int32_t) * (size_t)n * P;
    return MFE_OK;
}

void mfe_run_wht(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const wht_prep *w = nd->prep;
    const int32_t n = nd->a[MFE_WHT_N], cin = c->x->c, cout = c->y->c, smooth = nd->a[MFE_WHT_MODE];
    const int32_t res = nd->a[MFE_WHT_RESIDUAL], g = nd->a[MFE_WHT_TSHIFT];
    int32_t k = 0;
    while ((1 << k) < n) k++;
    const int64_t pixels = (int64_t)c->n * c->x->h * c->x->w, blocks = (pixels + P - 1) / P;
    const int8_t *x = in0;
    int8_t *y = out;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t bl = 0; bl < blocks; bl++) {
        int32_t *buf = (int32_t *)MFE_SCRATCH(c);
        int64_t p0 = bl * P;
        int np = pixels - p0 < P ? (int)(pixels - p0) : P;
        if (np < P) memset(buf, 0, sizeof(int32_t) * (size_t)cin * P);  /* idle lanes stay zero: no overflow */
        memset(buf + (size_t)cin * P, 0, sizeof(int32_t) * (size_t)(n - cin) * P);
        load_block(buf, x + p0 * cin, cin, np);
        fwht_block(buf, n);
        if (smooth) smooth_block(buf, n, w, g);
        else soft_block(buf, n, w->thresh);
        fwht_block(buf, n);
        store_block(y + p0 * cout, buf, cout, np, k, res ? x + p0 * cin : NULL);
    }
}
