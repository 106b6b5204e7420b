/* wht: FWHT over channels, per-coefficient scale (optional), integer soft/smooth thresholds, FWHT, crop, residual,
 * >> (log2 n + oshift), clamp.
 * Pixels go in blocks of P, transposed to buf[channel][pixel] int32, so every butterfly is a plain
 * vertical add/sub of two rows of P lanes (no shuffles). |values| <= 3 * 128 * n^1.5 < 2^31 (n <= 2^14). */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"

#ifdef MFE_ISA_AVX512
#define P 16  /* pixels per block: a buf row is one vector */
#else
#define P 8
#endif
#define TLEN 256
#define TERMS 3
#define T_CAP (1 << 22)  /* |z| <= 128 n <= 2^21: thresholds above this act the same, and z - T cannot wrap */

/* Row j of a block: rows are P lanes, and every 128 rows skip one row's width, so rows a power of two
 * >= 128 apart never sit a multiple of 4 KiB apart (that aliasing stalls loads behind stores). */
#define ROW(buf, j) ((buf) + ((size_t)(j) + ((size_t)(j) >> 7)) * P)
#define ROWS(n) ((size_t)(n) + ((size_t)(n) >> 7) + 1)

typedef struct {  /* one allocation (the loader frees prep with free()) */
    int32_t codes[TLEN];          /* smooth: the three int8 table codes of a bucket in bytes 0-2 */
    uint8_t terms[TERMS][TLEN];   /* smooth, for byte-permute lookups: shift |code| - 1 (31 for no term), +128 if negative */
    int32_t thresh[];             /* natural order, capped; [0] unused; then, if scaled, n scales in natural order */
} wht_prep;

typedef struct {
    int32_t n, k, cin, cout, smooth, g, residual;
    int32_t shift, lo, hi;  /* output: clamp(rshift_round(v + (x << k if residual), shift), lo, hi) */
    const wht_prep *w;
    const int32_t *scale;   /* NULL: unscaled; else z -> rshift_round(z * scale[c], sshift), |scale| <= 2^sshift */
    int32_t sshift, shalf;  /* shalf = 2^(sshift - 1), 0 for sshift 0 */
} wht_args;

/* ---- portable pieces: transposes, butterfly stages, thresholds ---- */

MFE_SCALAR_FN void load_block(int32_t *buf, const int8_t *x, int32_t cin, int np) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < cin; ch++) ROW(buf, ch)[p] = x[(size_t)p * cin + ch];
}

/* y = clamp(rshift_round(v + (x << k), shift)), pixel-major; res (the layer input) may be NULL */
MFE_SCALAR_FN void store_block(int8_t *y, const int32_t *buf, int np, const wht_args *a, const int8_t *res) {
    for (int p = 0; p < np; p++)
        for (int32_t ch = 0; ch < a->cout; ch++) {
            int64_t v = ROW(buf, ch)[p] + (res ? (int64_t)res[(size_t)p * a->cout + ch] * ((int64_t)1 << a->k) : 0);
            y[(size_t)p * a->cout + ch] = mfe_sat8(mfe_rshift_round(v, a->shift), a->lo, a->hi);
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

/* The step between the transforms for coefficient c: scale, then threshold (DC, c = 0, passes). |z| <= 128 n
 * and |scale| <= 2^sshift, so z * scale + shalf stays inside int32 (the loader checks (128 n + 1) << sshift). */
MFE_SCALAR_FN int32_t threshold1(int32_t z, int32_t c, const wht_args *a) {
    if (a->scale) z = (z * a->scale[c] + a->shalf) >> a->sshift;
    if (!c) return z;
    int32_t t = a->w->thresh[c], mag = z < 0 ? -z : z, rem = mag - t > 0 ? mag - t : 0;
    if (!a->smooth) return z < 0 ? -rem : rem;
    int32_t idx = (mag >> a->g) < TLEN ? (mag >> a->g) : TLEN - 1, f = 0;
    for (int j = 0; j < TERMS; j++) {  /* f = sum of +-(rem >> e): no multiply */
        int32_t code = (int8_t)(a->w->codes[idx] >> (8 * j)), v = code ? rem >> ((code < 0 ? -code : code) - 1) : 0;
        f += code < 0 ? -v : v;
    }
    return z < 0 ? -f : f;
}

MFE_SCALAR_FN void threshold_rows__scalar(int32_t *buf, const wht_args *a) {
    for (int32_t c = 0; c < a->n; c++)
        for (int p = 0; p < P; p++) ROW(buf, c)[p] = threshold1(ROW(buf, c)[p], c, a);
}

#ifdef MFE_ISA_SIMD
#define fwht_stages fwht_stages__simd
#define threshold_rows threshold_rows__simd
#define wht_block wht_block__simd
#else
#define wht_block wht_block__scalar
#define fwht_stages fwht_stages__scalar
#define threshold_rows threshold_rows__scalar
#endif

/* The layer on one block of np <= P pixels, any shape. */
static void wht_generic(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np);

MFE_SCALAR_FN void wht_block__scalar(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    wht_generic(a, buf, x, y, np);
}

#ifdef MFE_ISA_SIMD
/* One vector = one buf row of P lanes (pixels). The pipeline below is written once over these
 * operations; AVX2 rows are __m256i (P = 8), AVX-512 rows __m512i (P = 16), NEON rows a pair of
 * int32x4_t (P = 8: one LDP/STP per row, twice the work per loop step of a single q register). */
#if defined(MFE_ISA_AVX512)
typedef __m512i vec;
#define V_LD(p) _mm512_load_si512((const void *)(p))
#define V_ST(p, v) _mm512_store_si512((void *)(p), (v))
#define V_SET1 _mm512_set1_epi32
#define V_ADD _mm512_add_epi32
#define V_SUB _mm512_sub_epi32
#define V_MAX _mm512_max_epi32
#define V_MIN _mm512_min_epi32
#define V_ABS _mm512_abs_epi32
#define V_SRLV _mm512_srlv_epi32
#define V_SLLI _mm512_slli_epi32
#define V_SRAI _mm512_srai_epi32
#define V_SRL(v, s) _mm512_srl_epi32((v), _mm_cvtsi32_si128(s))
#define V_SRA(v, s) _mm512_sra_epi32((v), _mm_cvtsi32_si128(s))
#define V_MUL _mm512_mullo_epi32
#define V_GATHER(table, idx) _mm512_i32gather_epi32((idx), (table), 4)
static inline __attribute__((unused)) vec V_SIGN(vec a, vec b) {  /* a * sign(b) without a multiply, as AVX2's vpsignd */
    const vec zero = _mm512_setzero_si512();
    a = _mm512_mask_sub_epi32(a, _mm512_cmplt_epi32_mask(b, zero), zero, a);
    return _mm512_maskz_mov_epi32(_mm512_cmpneq_epi32_mask(b, zero), a);
}
#elif defined(MFE_ISA_AVX2)
typedef __m256i vec;
#define V_LD(p) _mm256_load_si256((const __m256i *)(p))
#define V_ST(p, v) _mm256_store_si256((__m256i *)(p), (v))
#define V_SET1 _mm256_set1_epi32
#define V_ADD _mm256_add_epi32
#define V_SUB _mm256_sub_epi32
#define V_MAX _mm256_max_epi32
#define V_MIN _mm256_min_epi32
#define V_ABS _mm256_abs_epi32
#define V_SRLV _mm256_srlv_epi32
#define V_SLLI _mm256_slli_epi32
#define V_SRAI _mm256_srai_epi32
#define V_SRL(v, s) _mm256_srl_epi32((v), _mm_cvtsi32_si128(s))
#define V_SRA(v, s) _mm256_sra_epi32((v), _mm_cvtsi32_si128(s))
#define V_MUL _mm256_mullo_epi32
#define V_GATHER(table, idx) _mm256_i32gather_epi32((table), (idx), 4)
#define V_SIGN _mm256_sign_epi32
#else  /* MFE_ISA_NEON */
typedef struct { int32x4_t lo, hi; } vec;  /* not int32x4x2_t: gcc 12 keeps arrays of those in memory */
#define V_PAIR(l, h) ((vec){(l), (h)})
#define V_MAP1(name, f) static inline vec name(vec a) { return V_PAIR(f(a.lo), f(a.hi)); }
#define V_MAP2(name, f) static inline vec name(vec a, vec b) { return V_PAIR(f(a.lo, b.lo), f(a.hi, b.hi)); }
#define V_LD(p) V_PAIR(vld1q_s32((const int32_t *)(p)), vld1q_s32((const int32_t *)(p) + 4))  /* one LDP */
static inline void v_st(int32_t *p, vec v) { vst1q_s32(p, v.lo), vst1q_s32(p + 4, v.hi); }  /* one STP */
#define V_ST(p, v) v_st((int32_t *)(p), (v))
static inline vec V_SET1(int32_t x) { return V_PAIR(vdupq_n_s32(x), vdupq_n_s32(x)); }
V_MAP2(V_ADD, vaddq_s32)
V_MAP2(V_SUB, vsubq_s32)
V_MAP2(V_MAX, vmaxq_s32)
V_MAP2(V_MIN, vminq_s32)
V_MAP1(V_ABS, vabsq_s32)
static inline int32x4_t srlv1(int32x4_t a, int32x4_t s) {  /* logical right shift by lane counts */
    return vreinterpretq_s32_u32(vshlq_u32(vreinterpretq_u32_s32(a), vnegq_s32(s)));
}
V_MAP2(V_SRLV, srlv1)
static inline vec V_SLLI(vec a, int s) { return V_PAIR(vshlq_s32(a.lo, vdupq_n_s32(s)), vshlq_s32(a.hi, vdupq_n_s32(s))); }
static inline vec V_SRAI(vec a, int s) { return V_PAIR(vshlq_s32(a.lo, vdupq_n_s32(-s)), vshlq_s32(a.hi, vdupq_n_s32(-s))); }
static inline vec V_SRL(vec a, int32_t s) { return V_SRLV(a, V_SET1(s)); }
static inline vec V_SRA(vec a, int32_t s) { return V_PAIR(vshlq_s32(a.lo, vdupq_n_s32(-s)), vshlq_s32(a.hi, vdupq_n_s32(-s))); }
V_MAP2(V_MUL, vmulq_s32)
static inline int32x4_t sign1(int32x4_t a, int32x4_t b) {  /* a * sign(b) without a multiply, as vpsignd */
    int32x4_t neg = vshrq_n_s32(b, 31);
    return vandq_s32(vsubq_s32(veorq_s32(a, neg), neg), vreinterpretq_s32_u32(vtstq_s32(b, b)));
}
V_MAP2(V_SIGN, sign1)
static inline vec V_GATHER(const int32_t *table, vec idx) {  /* no gather in NEON: eight lane loads */
    int32_t i[P];
    V_ST(i, idx);  /* lane indices out through memory */
    int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
    lo = vld1q_lane_s32(table + i[0], lo, 0), hi = vld1q_lane_s32(table + i[4], hi, 0);
    lo = vld1q_lane_s32(table + i[1], lo, 1), hi = vld1q_lane_s32(table + i[5], hi, 1);
    lo = vld1q_lane_s32(table + i[2], lo, 2), hi = vld1q_lane_s32(table + i[6], hi, 2);
    lo = vld1q_lane_s32(table + i[3], lo, 3), hi = vld1q_lane_s32(table + i[7], hi, 3);
    return V_PAIR(lo, hi);
}
#endif

/* Rows j0 .. j0 + SPAN(h) - 1 (j0 a multiple of SPAN(h)) share one skew: they are P lanes apart. */
#define SPAN(h) ((h) < 128 ? (h) : 128)

/* Butterflies across rows held in registers: r[k] is row j + k h, so BFLY(k, k + m) is stage m h.
 * Written out: gcc 12 leaves loop forms rolled for NEON's two-register rows, and r[] in memory. */
#define BFLY(j, k) do { vec u = r[j], v = r[k]; r[j] = V_ADD(u, v), r[k] = V_SUB(u, v); } while (0)
static inline __attribute__((always_inline)) void fwht2(vec r[2]) { BFLY(0, 1); }
static inline __attribute__((always_inline)) void fwht4(vec r[4]) { BFLY(0, 1); BFLY(2, 3); BFLY(0, 2); BFLY(1, 3); }
static inline __attribute__((always_inline)) void fwht8(vec r[8]) {  /* stages h, 2h, 4h across eight rows */
    BFLY(0, 1); BFLY(2, 3); BFLY(4, 5); BFLY(6, 7);
    BFLY(0, 2); BFLY(1, 3); BFLY(4, 6); BFLY(5, 7);
    BFLY(0, 4); BFLY(1, 5); BFLY(2, 6); BFLY(3, 7);
}
static inline __attribute__((always_inline)) void fwht16(vec r[16]) {
    BFLY(0, 1); BFLY(2, 3); BFLY(4, 5); BFLY(6, 7); BFLY(8, 9); BFLY(10, 11); BFLY(12, 13); BFLY(14, 15);
    BFLY(0, 2); BFLY(1, 3); BFLY(4, 6); BFLY(5, 7); BFLY(8, 10); BFLY(9, 11); BFLY(12, 14); BFLY(13, 15);
    BFLY(0, 4); BFLY(1, 5); BFLY(2, 6); BFLY(3, 7); BFLY(8, 12); BFLY(9, 13); BFLY(10, 14); BFLY(11, 15);
    BFLY(0, 8); BFLY(1, 9); BFLY(2, 10); BFLY(3, 11); BFLY(4, 12); BFLY(5, 13); BFLY(6, 14); BFLY(7, 15);
}
#undef BFLY

#ifdef MFE_ISA_AVX512
#define MAX_RADIX 16  /* rows a pass holds in registers: 16 of the 32 zmm */
#else
#define MAX_RADIX 8   /* AVX2: 16 ymm; NEON: a row is two of the 32 q registers */
#endif

/* One pass of log2(R) stages h .. (R/2) h over all n rows, R rows at a time in registers. */
#define FWHT_PASS(R)                                                                                     \
    static void fwht_pass##R(int32_t *buf, int32_t n, int32_t h) {                                      \
        for (int32_t i = 0; i < n; i += R * h)                                                          \
            for (int32_t j = i; j < i + h; j += SPAN(h)) {                                              \
                int32_t *p[R];                                                                          \
                for (int k = 0; k < R; k++) p[k] = ROW(buf, j + k * h);                                 \
                for (int32_t t = 0; t < SPAN(h) * P; t += P) {                                          \
                    vec r[R];                                                                           \
                    for (int k = 0; k < R; k++) r[k] = V_LD(p[k] + t);                                  \
                    fwht##R(r);                                                                         \
                    for (int k = 0; k < R; k++) V_ST(p[k] + t, r[k]);                                   \
                }                                                                                       \
            }                                                                                           \
    }
FWHT_PASS(2)
FWHT_PASS(4)
FWHT_PASS(8)
#if MAX_RADIX >= 16
FWHT_PASS(16)
#endif

/* Stages h = h0, 2 h0, ... < h1 in as few passes over buf as the registers allow. */
static void fwht_stages__simd(int32_t *buf, int32_t n, int32_t h0, int32_t h1) {
    int32_t s = 0;
    while ((h0 << s) < h1) s++;
    for (int32_t h = h0; s > 0;) {
        int r = s >= 7 || s == 4 ? 4 : s >= 3 ? 3 : s;  /* 7 = 4 + 3, 6 = 3 + 3, 5 = 3 + 2 */
        if (MAX_RADIX < 16 && r == 4) r = 3;
        if (r == 4) {
#if MAX_RADIX >= 16
            fwht_pass16(buf, n, h);
#endif
        } else if (r == 3) fwht_pass8(buf, n, h);
        else if (r == 2) fwht_pass4(buf, n, h);
        else fwht_pass2(buf, n, h);
        h <<= r, s -= r;
    }
}

/* threshold1 on a row: scale; then (but DC) soft: max(z - T, 0) + min(z + T, 0); smooth: sign(z) * sum of
 * +-(max(|z| - T, 0) >> e) from the table. `scaled` (a->scale != NULL) is a constant where this is inlined,
 * so unscaled layers pay nothing for the option. */
static inline vec threshold_vec(vec z, int32_t c, const wht_args *a, const int scaled) {
    if (scaled) z = V_SRA(V_ADD(V_MUL(z, V_SET1(a->scale[c])), V_SET1(a->shalf)), a->sshift);
    if (!c) return z;
    const vec zero = V_SET1(0), t = V_SET1(a->w->thresh[c]);
    if (!a->smooth) return V_ADD(V_MAX(V_SUB(z, t), zero), V_MIN(V_ADD(z, t), zero));
    vec mag = V_ABS(z), rem = V_MAX(V_SUB(mag, t), zero), idx = V_MIN(V_SRL(mag, a->g), V_SET1(TLEN - 1)), f = zero;
#if defined(MFE_ISA_AVX512) && defined(__AVX512VBMI__)
    /* no gather: each term's 256-entry byte table is four zmm, looked up with two vpermt2b on the bucket
     * index (its low 7 bits; bytes 1-3 of a lane read entry 0 and are masked off) and a blend on bit 7 */
    const __mmask16 upper = _mm512_test_epi32_mask(idx, V_SET1(128));
    const __m512i *tab = (const __m512i *)a->w->terms, low5 = V_SET1(31), neg = V_SET1(128);
    for (int j = 0; j < TERMS; j++) {
        __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(tab + 4 * j), idx, _mm512_loadu_si512(tab + 4 * j + 1));
        __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(tab + 4 * j + 2), idx, _mm512_loadu_si512(tab + 4 * j + 3));
        __m512i e = _mm512_mask_blend_epi32(upper, lo, hi), term = V_SRLV(rem, _mm512_and_si512(e, low5));
        f = _mm512_mask_sub_epi32(V_ADD(f, term), _mm512_test_epi32_mask(e, neg), f, term);
    }
    return _mm512_mask_sub_epi32(f, _mm512_cmplt_epi32_mask(z, zero), zero, f);  /* z = 0: rem = 0, f = 0 */
#else
    vec codes = V_GATHER(a->w->codes, idx), one = V_SET1(1);
    for (int j = 0; j < TERMS; j++) {  /* code byte j, sign-extended; a zero code has sign 0: no term */
        vec code = V_SRAI(V_SLLI(codes, 24 - 8 * j), 24);
        f = V_ADD(f, V_SIGN(V_SRLV(rem, V_SUB(V_ABS(code), one)), code));
    }
    return V_SIGN(f, z);
#endif
}

static void threshold_rows__simd(int32_t *buf, const wht_args *a) {
    if (a->scale)
        for (int32_t c = 0; c < a->n; c++) V_ST(ROW(buf, c), threshold_vec(V_LD(ROW(buf, c)), c, a, 1));
    else
        for (int32_t c = 0; c < a->n; c++) V_ST(ROW(buf, c), threshold_vec(V_LD(ROW(buf, c)), c, a, 0));
}

#ifdef MFE_ISA_AVX2
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
#endif

#ifdef MFE_ISA_AVX2
/* Channels c0..c0+7 of 8 pixels (pixel stride cin) -> eight __m256i rows, one per channel. */
static inline __attribute__((unused)) void load8x8(__m256i r[8], const int8_t *x, int32_t cin) {
    for (int j = 0; j < 8; j++) r[j] = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + (size_t)j * cin)));
    transpose8(r);
}

/* Eight channel rows of 8 pixels -> y (pixel stride cout): clamp(rshift_round(v + (x << k), shift)). */
static inline void store8x8(int8_t *y, __m256i r[8], const wht_args *a, const int8_t *res) {
    const __m256i rnd = _mm256_set1_epi32(a->shift ? 1 << (a->shift - 1) : 0);
    const __m128i ss = _mm_cvtsi32_si128(a->shift), ks = _mm_cvtsi32_si128(a->k);
    const __m128i lo = _mm_set1_epi8((char)a->lo), hi = _mm_set1_epi8((char)a->hi);
    transpose8(r);
    for (int j = 0; j < 8; j++) {
        __m256i v = r[j];  /* |v| + |x| 2^k < 2^30: no wrap */
        if (res) v = _mm256_add_epi32(v, _mm256_sll_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(res + (size_t)j * a->cout))), ks));
        v = _mm256_sra_epi32(_mm256_add_epi32(v, rnd), ss);
        __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        __m128i b8 = _mm_min_epi8(_mm_max_epi8(_mm_packs_epi16(w16, w16), lo), hi);  /* saturate, then the clamp */
        _mm_storel_epi64((__m128i *)(y + (size_t)j * a->cout), b8);
    }
}

#if defined(MFE_ISA_AVX512) && defined(__AVX512VBMI__)
static inline __m128i _mm_loadh_epi64_compat(__m128i lo, const int8_t *p) {  /* lo's low 8 bytes, then 8 bytes at p */
    return _mm_castpd_si128(_mm_loadh_pd(_mm_castsi128_pd(lo), (const double *)p));
}

/* Byte transposes with vpermt2b (two sources, 128 bytes): pixel-major 16 pixels x 8 channels <-> channel-major. */
static const uint8_t PIX2CH[64] = {  /* byte c 16 + p of channels 0-3 <- byte 8 p + c (channels 4-7: + 4) */
#define R4(c) 8 * 0 + c, 8 * 1 + c, 8 * 2 + c, 8 * 3 + c, 8 * 4 + c, 8 * 5 + c, 8 * 6 + c, 8 * 7 + c, \
              8 * 8 + c, 8 * 9 + c, 8 * 10 + c, 8 * 11 + c, 8 * 12 + c, 8 * 13 + c, 8 * 14 + c, 8 * 15 + c
    R4(0), R4(1), R4(2), R4(3)
#undef R4
};
static const uint8_t CH2PIX[64] = {  /* byte 8 p + c of pixels 0-7 <- byte 16 c + p (c >= 4: 64 + 16 (c - 4) + p) */
#define P8(p) p, 16 + p, 32 + p, 48 + p, 64 + p, 80 + p, 96 + p, 112 + p
    P8(0), P8(1), P8(2), P8(3), P8(4), P8(5), P8(6), P8(7)
#undef P8
};

/* Channels c0..c0+7 of 16 pixels (pixel stride cin) -> eight rows of 16 int32 lanes. */
static inline void load_group(vec r[8], const int8_t *x, int32_t cin) {
    __m128i q[8];
    for (int i = 0; i < 8; i++)  /* pixels 2i, 2i + 1 */
        q[i] = _mm_loadh_epi64_compat(_mm_loadl_epi64((const __m128i *)(x + (size_t)(2 * i) * cin)), x + (size_t)(2 * i + 1) * cin);
    __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(q[1], q[0])), _mm256_set_m128i(q[3], q[2]), 1);
    __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(q[5], q[4])), _mm256_set_m128i(q[7], q[6]), 1);
    const __m512i idx = _mm512_loadu_si512((const void *)PIX2CH), four = _mm512_set1_epi8(4);
    __m512i a = _mm512_permutex2var_epi8(lo, idx, hi), b = _mm512_permutex2var_epi8(lo, _mm512_add_epi8(idx, four), hi);
    r[0] = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(a)), r[4] = _mm512_cvtepi8_epi32(_mm512_castsi512_si128(b));
    r[1] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(a, 1)), r[5] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(b, 1));
    r[2] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(a, 2)), r[6] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(b, 2));
    r[3] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(a, 3)), r[7] = _mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(b, 3));
}

/* Eight channel rows of 16 pixels -> y (pixel stride cout): clamp(rshift_round(v, shift)), rounded and
 * shifted in int32 as store8x8 does, saturated to int8 (vpmovsdb), clamped, transposed by bytes.
 * A residual takes store8x8's route (it joins before the shift). */
static inline void store_group_vbmi(int8_t *y, vec r[8], const wht_args *a) {
    const __m512i rnd = _mm512_set1_epi32(a->shift ? 1 << (a->shift - 1) : 0);
    const __m128i ss = _mm_cvtsi32_si128(a->shift);
    __m128i c[8];
    for (int j = 0; j < 8; j++) c[j] = _mm512_cvtsepi32_epi8(_mm512_sra_epi32(_mm512_add_epi32(r[j], rnd), ss));
    __m512i lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(c[1], c[0])), _mm256_set_m128i(c[3], c[2]), 1);
    __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(c[5], c[4])), _mm256_set_m128i(c[7], c[6]), 1);
    const __m512i vlo = _mm512_set1_epi8((char)a->lo), vhi = _mm512_set1_epi8((char)a->hi);
    lo = _mm512_min_epi8(_mm512_max_epi8(lo, vlo), vhi), hi = _mm512_min_epi8(_mm512_max_epi8(hi, vlo), vhi);
    const __m512i idx = _mm512_loadu_si512((const void *)CH2PIX), eight = _mm512_set1_epi8(8);
    const __m512i p0 = _mm512_permutex2var_epi8(lo, idx, hi), p1 = _mm512_permutex2var_epi8(lo, _mm512_add_epi8(idx, eight), hi);
    /* 128-bit lane l: pixels 2l, 2l + 1 (p0) and 8 + 2l, 9 + 2l (p1); the lane number must be an immediate */
#define STORE_LANE(l)                                                                                  \
    do {                                                                                               \
        __m128i u = _mm512_extracti32x4_epi32(p0, l), v = _mm512_extracti32x4_epi32(p1, l);            \
        _mm_storel_epi64((__m128i *)(y + (size_t)(2 * (l)) * a->cout), u);                             \
        _mm_storeh_pd((double *)(y + (size_t)(2 * (l) + 1) * a->cout), _mm_castsi128_pd(u));           \
        _mm_storel_epi64((__m128i *)(y + (size_t)(8 + 2 * (l)) * a->cout), v);                         \
        _mm_storeh_pd((double *)(y + (size_t)(9 + 2 * (l)) * a->cout), _mm_castsi128_pd(v));          \
    } while (0)
    STORE_LANE(0); STORE_LANE(1); STORE_LANE(2); STORE_LANE(3);
#undef STORE_LANE
}
#else
static inline void load_group(vec r[8], const int8_t *x, int32_t cin) {
#ifdef MFE_ISA_AVX512
    __m256i lo[8], hi[8];
    load8x8(lo, x, cin), load8x8(hi, x + (size_t)8 * cin, cin);
    for (int j = 0; j < 8; j++) r[j] = _mm512_inserti64x4(_mm512_castsi256_si512(lo[j]), hi[j], 1);
#else
    load8x8(r, x, cin);
#endif
}

#endif

static inline void store_group(int8_t *y, vec r[8], const wht_args *a, const int8_t *res) {
#if defined(MFE_ISA_AVX512) && defined(__AVX512VBMI__)
    if (!res) {
        store_group_vbmi(y, r, a);
        return;
    }
#endif
#ifdef MFE_ISA_AVX512
    __m256i lo[8], hi[8];
    for (int j = 0; j < 8; j++) lo[j] = _mm512_castsi512_si256(r[j]), hi[j] = _mm512_extracti64x4_epi64(r[j], 1);
    store8x8(y, lo, a, res), store8x8(y + (size_t)8 * a->cout, hi, a, res ? res + (size_t)8 * a->cout : NULL);
#else
    store8x8(y, r, a, res);
#endif
}
#else  /* MFE_ISA_NEON: eight channels x eight pixels through 8x8 TRN transposes */
static inline __attribute__((always_inline)) void load_group(vec r[8], const int8_t *x, int32_t cin) {
    int8x8_t p[8];
    for (int j = 0; j < 8; j++) p[j] = vld1_s8(x + (size_t)j * cin);  /* pixel j, channels 0-7 */
    int8x8x2_t t[4];
    for (int i = 0; i < 4; i++) t[i] = vtrn_s8(p[2 * i], p[2 * i + 1]);
    int16x4x2_t u[4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            u[2 * i + j] = vtrn_s16(vreinterpret_s16_s8(t[2 * i].val[j]), vreinterpret_s16_s8(t[2 * i + 1].val[j]));
    /* u[0]: channels 0,4 / 2,6 of pixels 0-3; u[1]: 1,5 / 3,7; u[2], u[3]: the same for pixels 4-7 */
    const int src[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};  /* channel c (and c + 4): u[src][half] */
    for (int c = 0; c < 4; c++) {
        int32x2x2_t v = vtrn_s32(vreinterpret_s32_s16(u[src[c][0]].val[src[c][1]]),
                                 vreinterpret_s32_s16(u[2 + src[c][0]].val[src[c][1]]));
        for (int h = 0; h < 2; h++) {
            int16x8_t w = vmovl_s8(vreinterpret_s8_s32(v.val[h]));
            r[c + 4 * h] = V_PAIR(vmovl_s16(vget_low_s16(w)), vmovl_high_s16(w));
        }
    }
}

/* y = clamp(rshift_round(v + (x << k), shift)): the residual joins in int32 (transposed like the input),
 * SRSHL rounds in full precision, and the saturating narrows give the int8 range before the clamp. */
static inline void store_group(int8_t *y, vec r[8], const wht_args *a, const int8_t *res) {
    const int32_t cout = a->cout;
    const int32x4_t ns = vdupq_n_s32(-a->shift), ks = vdupq_n_s32(a->k);
    const int8x8_t clo = vdup_n_s8((int8_t)a->lo), chi = vdup_n_s8((int8_t)a->hi);
    if (res) {
        vec x[8];
        load_group(x, res, cout);
        for (int j = 0; j < 8; j++)
            r[j] = V_PAIR(vaddq_s32(r[j].lo, vshlq_s32(x[j].lo, ks)), vaddq_s32(r[j].hi, vshlq_s32(x[j].hi, ks)));
    }
    int16x8_t c[8];
    for (int j = 0; j < 8; j++)
        c[j] = vqmovn_high_s32(vqmovn_s32(vrshlq_s32(r[j].lo, ns)), vrshlq_s32(r[j].hi, ns));
    int16x8x2_t t16[4];
    for (int i = 0; i < 4; i++) t16[i] = vtrnq_s16(c[2 * i], c[2 * i + 1]);
    int32x4x2_t e[4];  /* e[0]: pixels 0,4 / 2,6 of channels 0-3; e[1]: 1,5 / 3,7; e[2], e[3]: channels 4-7 */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            e[2 * i + j] = vtrnq_s32(vreinterpretq_s32_s16(t16[2 * i].val[j]), vreinterpretq_s32_s16(t16[2 * i + 1].val[j]));
    const int src[4][2] = {{0, 0}, {1, 0}, {0, 1}, {1, 1}};  /* pixel p (and p + 4): e[src][half] */
    for (int p = 0; p < 4; p++) {
        int64x2_t lo = vreinterpretq_s64_s32(e[src[p][0]].val[src[p][1]]), hi = vreinterpretq_s64_s32(e[2 + src[p][0]].val[src[p][1]]);
        int16x8_t px[2] = {vreinterpretq_s16_s64(vtrn1q_s64(lo, hi)), vreinterpretq_s16_s64(vtrn2q_s64(lo, hi))};
        for (int h = 0; h < 2; h++) {
            size_t off = (size_t)(p + 4 * h) * cout;
            vst1_s8(y + off, vmin_s8(vmax_s8(vqmovn_s16(px[h]), clo), chi));
        }
    }
}
#endif

/* Smallest power of two >= c, at least 8 (a group of fwht8), at most n. */
static int32_t span_of(int32_t c, int32_t n) {
    int32_t m = 8;
    while (m < c) m *= 2;
    return m < n ? m : n;
}

/* Coefficient c of H_n x for an x that is zero past cin, read without transforming zeros: either x's
 * first m rows transformed at m (H_n x repeats them: row j of H_n restricted to the first m columns is
 * row j mod m of H_m), or, for cin just past n/2, the lower half transformed at n/2 and the rows past
 * n/2 at hm: coefficient c is lo[c mod n/2] + hi[c mod hm] below n/2 and lo - hi above (same identity). */
typedef struct { const int32_t *buf; int32_t m, half, hm; } coef_src;  /* hm = 0: no split */

static inline vec coef(const coef_src *s, int32_t c) {
    if (!s->hm) return V_LD(ROW(s->buf, c & (s->m - 1)));
    const vec lo = V_LD(ROW(s->buf, c & (s->half - 1))), hi = V_LD(ROW(s->buf, s->half + (c & (s->hm - 1))));
    return c & s->half ? V_SUB(lo, hi) : V_ADD(lo, hi);
}

static inline vec thresholded(const coef_src *s, int32_t c, const wht_args *a, const int scaled) {
    return threshold_vec(coef(s, c), c, a, scaled);
}

/* Rows past n/2 that a split (above) needs: the span of those past n/2, when that is under n/2 (else 0). */
static int32_t split_span(int32_t c, int32_t n) {
    const int32_t m = c > n / 2 ? span_of(c - n / 2, n / 2) : n / 2;
    return m < n / 2 ? m : 0;
}

/* Full blocks with channels in multiples of 8: stages 1-4 ride on the transposes. With cin and cout
 * near n, the top three stages of both transforms are fused with the thresholds (one pass with eight
 * rows in registers), and the other stages run in passes of up to MAX_RADIX rows: n = 1024 sweeps buf
 * 4 times (load, stages 8-64, top, stages 64-8, store) where radix 2 would take 16. Fewer channels than n
 * take shortcuts, exact in integers:
 *   in:  only the rows of x that can be nonzero are transformed (coef_src above);
 *   out: the first m_out = span_of(cout) outputs of H_n z' are H_{m_out} applied to z' folded modulo
 *        m_out (sum over the n / m_out blocks), by the same identity transposed; for cout just past n/2,
 *        the lower half is H_{n/2}(z'_lo + z'_hi) and the rest H_{n/2}(z'_lo - z'_hi), folded likewise.
 * Every folded or partial sum is a signed sum of a subset of the |z'| terms: inside the same bound. */
static inline __attribute__((always_inline)) void wht_fused_(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y,
                                                             const int scaled) {
    const int32_t n = a->n, half = n / 2, m_in = span_of(a->cin, n), m_out = span_of(a->cout, n);
    const coef_src src = {buf, m_in, half, m_in == n ? split_span(a->cin, n) : 0};
    const int32_t m_up = m_out == n ? split_span(a->cout, n) : 0;  /* > 0: the split output */
    const int shortcut = m_in < n || m_out < n || src.hm || m_up;
    const int32_t rows_in = src.hm ? half + src.hm : shortcut ? m_in : n;  /* the rows the first transform reads */
    vec r[8];
    for (int32_t c = a->cin; c < rows_in; c++) memset(ROW(buf, c), 0, sizeof(int32_t) * P);
    for (int32_t c0 = 0; c0 < a->cin; c0 += 8) {
        if (c0 % 64 == 0)  /* the next block's input, a cache line per pixel, while this one computes */
            for (int p = 0; p < P; p++) __builtin_prefetch(x + (size_t)(P + p) * a->cin + c0, 0, 2);
        load_group(r, x + c0, a->cin);
        fwht8(r);
        for (int j = 0; j < 8; j++) V_ST(ROW(buf, c0 + j), r[j]);
    }
    int32_t *z = buf;  /* the rows the second transform reads */
    if (!shortcut && n >= 64) {  /* the top three stages of both transforms around the thresholds, in registers */
        const int32_t h = n / 8;
        fwht_stages__simd(buf, n, 8, h);
        for (int32_t j0 = 0; j0 < h; j0 += SPAN(h)) {
            int32_t *p[8];
            for (int k = 0; k < 8; k++) p[k] = ROW(buf, j0 + k * h);
            for (int32_t j = j0, t = 0; j < j0 + SPAN(h); j++, t += P) {
                for (int k = 0; k < 8; k++) r[k] = V_LD(p[k] + t);
                fwht8(r);
#pragma GCC unroll 8
                for (int k = 0; k < 8; k++) r[k] = threshold_vec(r[k], j + k * h, a, scaled);
                fwht8(r);
                for (int k = 0; k < 8; k++) V_ST(p[k] + t, r[k]);
            }
        }
        fwht_stages__simd(buf, n, 8, h);
    } else if (!shortcut) {
        fwht_stages__simd(buf, n, 8, half);
        for (int32_t j0 = 0; j0 < half; j0 += SPAN(half)) {  /* top stage, thresholds, top stage of the second transform */
            int32_t *r0 = ROW(buf, j0), *r1 = ROW(buf, j0 + half);
            for (int32_t j = j0; j < j0 + SPAN(half); j++, r0 += P, r1 += P) {
                const vec u = V_LD(r0), v = V_LD(r1), z0 = threshold_vec(V_ADD(u, v), j, a, scaled),
                          z1 = threshold_vec(V_SUB(u, v), j + half, a, scaled);
                V_ST(r0, V_ADD(z0, z1)), V_ST(r1, V_SUB(z0, z1));
            }
        }
        fwht_stages__simd(buf, n, 8, half);
    } else {
        z = buf + ROWS(n) * P;  /* a second block buffer */
        if (src.hm) {
            fwht_stages__simd(buf, half, 8, half);
            fwht_stages__simd(ROW(buf, half), src.hm, 8, src.hm);  /* a sub-buffer: half is a multiple of 128, or all rows are below 128 */
        } else {
            fwht_stages__simd(buf, m_in, 8, m_in);
        }
        if (m_up) {
            for (int32_t i = 0; i < m_up; i++) {
                vec acc = V_SET1(0);
                for (int32_t j = i; j < half; j += m_up) {
                    const vec u = thresholded(&src, j, a, scaled), v = thresholded(&src, j + half, a, scaled);
                    V_ST(ROW(z, j), V_ADD(u, v));
                    acc = V_ADD(acc, V_SUB(u, v));
                }
                V_ST(ROW(z, half + i), acc);
            }
            fwht_stages__simd(z, half, 8, half);
            fwht_stages__simd(ROW(z, half), m_up, 8, m_up);
        } else {
            for (int32_t j = 0; j < m_out; j++) {
                vec acc = thresholded(&src, j, a, scaled);
                for (int32_t c = j + m_out; c < n; c += m_out) acc = V_ADD(acc, thresholded(&src, c, a, scaled));
                V_ST(ROW(z, j), acc);
            }
            fwht_stages__simd(z, m_out, 8, m_out);
        }
    }
    for (int32_t c0 = 0; c0 < a->cout; c0 += 8) {
        for (int j = 0; j < 8; j++) r[j] = V_LD(ROW(z, c0 + j));
        fwht8(r);
        store_group(y + c0, r, a, a->residual ? x + c0 : NULL);
    }
}

static void wht_fused(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y) {
    if (a->scale) wht_fused_(a, buf, x, y, 1);
    else wht_fused_(a, buf, x, y, 0);
}

/* Short blocks (the last pixels) go through the fused path too, from zero-padded copies. */
static void wht_block__simd(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    if (a->cin % 8 || a->cout % 8 || a->n < 16) {
        wht_generic(a, buf, x, y, np);
        return;
    }
    if (np == P) {
        wht_fused(a, buf, x, y);
        return;
    }
    int8_t *xp = (int8_t *)(buf + 2 * ROWS(a->n) * P), *yp = xp + (size_t)P * a->cin;
    memcpy(xp, x, (size_t)np * a->cin);
    memset(xp + (size_t)np * a->cin, 0, (size_t)(P - np) * a->cin);
    wht_fused(a, buf, xp, yp);
    memcpy(y, yp, (size_t)np * a->cout);
}
#endif

static void wht_generic(const wht_args *a, int32_t *buf, const int8_t *x, int8_t *y, int np) {
    if (np < P) memset(buf, 0, sizeof(int32_t) * ROWS(a->n) * P);  /* idle lanes stay zero: no overflow */
    else for (int32_t c = a->cin; c < a->n; c++) memset(ROW(buf, c), 0, sizeof(int32_t) * P);
    load_block(buf, x, a->cin, np);
    fwht_stages(buf, a->n, 1, a->n);
    threshold_rows(buf, a);
    fwht_stages(buf, a->n, 1, a->n);
    store_block(y, buf, np, a, a->residual ? x : NULL);
}

int mfe_prepare_wht(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int32_t n = nd->a[MFE_WHT_N], cout = nd->a[MFE_WHT_COUT], smooth = nd->a[MFE_WHT_MODE];
    MFE_CHECK((n & (n - 1)) == 0 && n >= x->c && n >= cout, "n=%d must be a power of two >= cin, cout", n);
    MFE_CHECK(!nd->a[MFE_WHT_RESIDUAL] || x->c == cout, "residual wht needs cin == cout");
    MFE_CHECK(y->h == x->h && y->w == x->w && y->c == cout, "output shape disagrees");
    const int32_t scaled = nd->a[MFE_WHT_SCALED], sshift = nd->a[MFE_WHT_SSHIFT];
    MFE_CHECK(nd->blob_n[MFE_WHT_B_THRESH] == n && nd->blob_n[MFE_WHT_B_TABLE] == (smooth ? TERMS * TLEN : 0) &&
              nd->blob_n[MFE_WHT_B_CSCALE] == (scaled ? n : 0), "threshold/table/scale sizes wrong");
    MFE_CHECK(!scaled || ((int64_t)128 * n + 1) << sshift <= INT32_MAX,
              "sshift=%d lets z * scale (|z| <= 128 n) leave int32", sshift);
    const int32_t *sc = nd->blob[MFE_WHT_B_CSCALE];
    for (int32_t s = 0; scaled && s < n; s++)
        MFE_CHECK(sc[s] >= -(1 << sshift) && sc[s] <= 1 << sshift, "cscale outside [-2^sshift, 2^sshift] (sshift=%d)",
                  sshift);
    wht_prep *w = calloc(1, sizeof *w + sizeof(int32_t) * (size_t)n * (scaled ? 2 : 1));
    if (!w) MFE_FAIL(MFE_ENOMEM, "out of memory");
    nd->prep = w;  /* freed with the model, also when a check below fails */
    const int32_t *t = nd->blob[MFE_WHT_B_THRESH];
    int32_t k = 0;
    while ((1 << k) < n) k++;
    MFE_CHECK(k + nd->a[MFE_WHT_OSHIFT] >= 0 && k + nd->a[MFE_WHT_OSHIFT] <= 31,
              "output shift log2(n) + oshift = %d outside [0, 31]", k + nd->a[MFE_WHT_OSHIFT]);
    for (int32_t s = 0; s < n; s++) {  /* walsh (sequency) s -> natural row bitrev(gray(s)) */
        int32_t gray = s ^ (s >> 1), nat = 0;
        for (int32_t b = 0; b < k; b++) nat |= ((gray >> b) & 1) << (k - 1 - b);
        w->thresh[nd->a[MFE_WHT_ORDER] ? nat : s] = t[s] < T_CAP ? t[s] : T_CAP;
        if (scaled) w->thresh[n + (nd->a[MFE_WHT_ORDER] ? nat : s)] = sc[s];
    }
    const int8_t *codes = nd->blob[MFE_WHT_B_TABLE];
    for (int j = 0; smooth && j < TERMS; j++)
        for (int i = 0; i < TLEN; i++) {
            const int32_t code = codes[j * TLEN + i];  /* in [-32, 32]: rem >> 31 is 0 for rem < 2^31, as no term */
            w->codes[i] |= (int32_t)((uint32_t)(uint8_t)code << (8 * j));
            w->terms[j][i] = (uint8_t)(code ? (code < 0 ? -code : code) - 1 + (code < 0 ? 128 : 0) : 31);
        }
    /* |z'| <= 3|z| (|scale| <= 2^sshift) and ||z||_1 <= 128 n^1.5: bounded by 3 * 2^7 * 2^21 < 2^31 for n <= 2^14 */
    /* two block buffers (wht_fused), then zero-padded input and output pixels of a short block */
    nd->scratch = 2 * sizeof(int32_t) * ROWS(n) * P + (size_t)P * (x->c + cout);
    return MFE_OK;
}

void mfe_run_wht(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const wht_prep *w = nd->prep;
    const int32_t sshift = nd->a[MFE_WHT_SSHIFT];
    wht_args a = {nd->a[MFE_WHT_N], 0, c->x->c, c->y->c, nd->a[MFE_WHT_MODE], nd->a[MFE_WHT_TSHIFT],
                  nd->a[MFE_WHT_RESIDUAL], 0, nd->a[MFE_WHT_ACT_LO], nd->a[MFE_WHT_ACT_HI], w,
                  nd->a[MFE_WHT_SCALED] ? w->thresh + nd->a[MFE_WHT_N] : NULL, sshift, sshift ? 1 << (sshift - 1) : 0};
    while ((1 << a.k) < a.n) a.k++;
    a.shift = a.k + nd->a[MFE_WHT_OSHIFT];
    const int64_t pixels = (int64_t)c->n * c->x->h * c->x->w, blocks = (pixels + P - 1) / P;
    MFE_PARALLEL_FOR(c->threads, bl, blocks, {
        int64_t p0 = bl * P;
        int np = pixels - p0 < P ? (int)(pixels - p0) : P;
        wht_block(&a, (int32_t *)MFE_SCRATCH(c), (const int8_t *)in0 + p0 * a.cin, (int8_t *)out + p0 * a.cout, np);
    });
}
