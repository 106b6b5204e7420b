/* add (residual with rescale), clamp, requantize, affine: element by element over the whole batch. */
#include "arch.h"
#include "internal.h"
#include "neon.h"
#include "x86.h"

#define SPAN 4096  /* elements per OpenMP work item */

/* y = sat(rshift_round(x * ma + z * mb, s), lo, hi) over m elements */
MFE_SCALAR_FN void add_span__scalar(int8_t *y, const int8_t *x, const int8_t *z, int64_t m, int64_t ma, int64_t mb,
                                    int32_t s, int32_t lo, int32_t hi) {
    for (int64_t i = 0; i < m; i++) y[i] = mfe_sat8(mfe_rshift_round(x[i] * ma + z[i] * mb, s), lo, hi);
}

MFE_SCALAR_FN void clamp_span__scalar(int8_t *y, const int8_t *x, int64_t m, int32_t lo, int32_t hi) {
    for (int64_t i = 0; i < m; i++) y[i] = mfe_sat8(x[i], lo, hi);
}

MFE_SCALAR_FN void requant_span__scalar(int8_t *y, const int8_t *x, int64_t m, int32_t mult, int32_t s, int32_t lo, int32_t hi) {
    for (int64_t i = 0; i < m; i++) y[i] = mfe_requant(x[i], mult, s, lo, hi);
}

#ifdef MFE_ISA_NEON
static void add_span__neon(int8_t *y, const int8_t *x, const int8_t *z, int64_t m, int64_t ma, int64_t mb,
                           int32_t s, int32_t lo, int32_t hi) {
    const int32x2_t va = vdup_n_s32((int32_t)ma), vb = vdup_n_s32((int32_t)mb);  /* both in [0, 2^31) */
    const int32x4_t ns = vdupq_n_s32(-s), vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {  /* |x ma + z mb| < 2^39: exact in int64 lanes */
        int16x8_t x16 = vmovl_s8(vld1_s8(x + i)), z16 = vmovl_s8(vld1_s8(z + i));
        int32x4_t r[2];
        for (int h = 0; h < 2; h++) {
            int32x4_t x32 = h ? vmovl_high_s16(x16) : vmovl_s16(vget_low_s16(x16));
            int32x4_t z32 = h ? vmovl_high_s16(z16) : vmovl_s16(vget_low_s16(z16));
            int64x2_t p0 = vmlal_s32(vmull_s32(vget_low_s32(x32), va), vget_low_s32(z32), vb);
            int64x2_t p1 = vmlal_s32(vmull_s32(vget_high_s32(x32), va), vget_high_s32(z32), vb);
            r[h] = mfe_rshift_clamp_s64x4(p0, p1, ns, vlo, vhi);
        }
        vst1_s8(y + i, mfe_narrow_s32x8(r[0], r[1]));
    }
    add_span__scalar(y + i, x + i, z + i, m - i, ma, mb, s, lo, hi);
}

static void clamp_span__neon(int8_t *y, const int8_t *x, int64_t m, int32_t lo, int32_t hi) {
    const int8x16_t vlo = vdupq_n_s8((int8_t)lo), vhi = vdupq_n_s8((int8_t)hi);  /* act_lo/hi are int8 */
    int64_t i = 0;
    for (; i + 16 <= m; i += 16) vst1q_s8(y + i, vminq_s8(vmaxq_s8(vld1q_s8(x + i), vlo), vhi));
    clamp_span__scalar(y + i, x + i, m - i, lo, hi);
}

static void requant_span__neon(int8_t *y, const int8_t *x, int64_t m, int32_t mult, int32_t s, int32_t lo, int32_t hi) {
    const int32x4_t vm = vdupq_n_s32(mult), vs = vdupq_n_s32(s), vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {
        int16x8_t x16 = vmovl_s8(vld1_s8(x + i));
        vst1_s8(y + i, mfe_narrow_s32x8(mfe_requant_s32x4(vmovl_s16(vget_low_s16(x16)), vm, vs, vlo, vhi),
                                        mfe_requant_s32x4(vmovl_high_s16(x16), vm, vs, vlo, vhi)));
    }
    requant_span__scalar(y + i, x + i, m - i, mult, s, lo, hi);
}
#endif

/* one pixel of affine: y[ch] = sat(rshift_round(x[ch] * mult[ch] + bias[ch], shift[ch]), lo, hi) */
MFE_SCALAR_FN void affine_pixel__scalar(int8_t *y, const int8_t *x, const int32_t *mult, const int32_t *bias,
                                        const int32_t *shift, int32_t C, int32_t lo, int32_t hi) {
    for (int32_t ch = 0; ch < C; ch++) y[ch] = mfe_sat8(mfe_rshift_round((int64_t)x[ch] * mult[ch] + bias[ch], shift[ch]), lo, hi);
}

#ifdef MFE_ISA_NEON
static void affine_pixel__neon(int8_t *y, const int8_t *x, const int32_t *mult, const int32_t *bias,
                               const int32_t *shift, int32_t C, int32_t lo, int32_t hi) {
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    int32_t ch = 0;
    for (; ch + 8 <= C; ch += 8) {  /* |x mult + bias| < 2^39: exact in int64 lanes */
        int16x8_t x16 = vmovl_s8(vld1_s8(x + ch));
        int32x4_t r[2];
        for (int h = 0; h < 2; h++) {
            int32x4_t x32 = h ? vmovl_high_s16(x16) : vmovl_s16(vget_low_s16(x16));
            int32x4_t m = vld1q_s32(mult + ch + 4 * h), b = vld1q_s32(bias + ch + 4 * h);
            int64x2_t p0 = vaddw_s32(vmull_s32(vget_low_s32(x32), vget_low_s32(m)), vget_low_s32(b));
            int64x2_t p1 = vaddw_high_s32(vmull_high_s32(x32, m), b);
            r[h] = mfe_rshift_clamp_s64x4(p0, p1, vnegq_s32(vld1q_s32(shift + ch + 4 * h)), vlo, vhi);
        }
        vst1_s8(y + ch, mfe_narrow_s32x8(r[0], r[1]));
    }
    affine_pixel__scalar(y + ch, x + ch, mult + ch, bias + ch, shift + ch, C - ch, lo, hi);
}
#endif

/* affine over np pixels: per-channel constants set up once per tile of 16 (AVX-512) or 8 (AVX2) channels */
MFE_SCALAR_FN void affine_pixels__scalar(int8_t *y, const int8_t *x, int64_t np, const int32_t *mult, const int32_t *bias,
                                         const int32_t *shift, int32_t C, int32_t lo, int32_t hi) {
    for (int64_t p = 0; p < np; p++) affine_pixel__scalar(y + p * C, x + p * C, mult, bias, shift, C, lo, hi);
}

#ifdef MFE_ISA_NEON
static void affine_pixels__neon(int8_t *y, const int8_t *x, int64_t np, const int32_t *mult, const int32_t *bias,
                                const int32_t *shift, int32_t C, int32_t lo, int32_t hi) {
    for (int64_t p = 0; p < np; p++) affine_pixel__neon(y + p * C, x + p * C, mult, bias, shift, C, lo, hi);
}
#endif

#ifdef MFE_ISA_AVX2
static void add_span__avx2(int8_t *y, const int8_t *x, const int8_t *z, int64_t m, int64_t ma, int64_t mb,
                           int32_t s, int32_t lo, int32_t hi) {
    const mfe_rq8 q = mfe_rq8_uniform(1, s, lo, hi);
    const __m256i va = _mm256_set1_epi64x(ma), vb = _mm256_set1_epi64x(mb);  /* both in [0, 2^31) */
    int64_t i = 0;
    for (; i + 8 <= m; i += 8) {  /* |x ma + z mb| < 2^39: exact in int64 lanes, even elements then odd */
        const __m256i x32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + i)));
        const __m256i z32 = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(z + i)));
        const __m256i e = _mm256_add_epi64(_mm256_mul_epi32(x32, va), _mm256_mul_epi32(z32, vb));
        const __m256i o = _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x32, 32), va),
                                           _mm256_mul_epi32(_mm256_srli_epi64(z32, 32), vb));
        _mm_storel_epi64((__m128i *)(y + i), mfe_pack8(mfe_rq8_wide(e, o, &q)));
    }
    add_span__scalar(y + i, x + i, z + i, m - i, ma, mb, s, lo, hi);
}

static void clamp_span__avx2(int8_t *y, const int8_t *x, int64_t m, int32_t lo, int32_t hi) {
    const __m256i vlo = _mm256_set1_epi8((int8_t)lo), vhi = _mm256_set1_epi8((int8_t)hi);  /* act_lo/hi are int8 */
    int64_t i = 0;
    for (; i + 32 <= m; i += 32)
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_min_epi8(_mm256_max_epi8(_mm256_loadu_si256((const __m256i *)(x + i)), vlo), vhi));
    clamp_span__scalar(y + i, x + i, m - i, lo, hi);
}

static void requant_span__avx2(int8_t *y, const int8_t *x, int64_t m, int32_t mult, int32_t s, int32_t lo, int32_t hi) {
    const mfe_rq8 q = mfe_rq8_uniform(mult, s, lo, hi);
    int64_t i = 0;
    for (; i + 8 <= m; i += 8)
        _mm_storel_epi64((__m128i *)(y + i), mfe_pack8(mfe_rq8_apply(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + i))), &q)));
    requant_span__scalar(y + i, x + i, m - i, mult, s, lo, hi);
}

static void affine_pixels__avx2(int8_t *y, const int8_t *x, int64_t np, const int32_t *mult, const int32_t *bias,
                                const int32_t *shift, int32_t C, int32_t lo, int32_t hi) {
#ifdef MFE_ISA_AVX512
    for (int32_t c0 = 0; c0 < C; c0 += 16) {  /* |x mult + bias| < 2^39: exact in int64 lanes */
        const int32_t n = C - c0 < 16 ? C - c0 : 16;
        const __mmask16 km = mfe_mask16(n);
        const mfe_rq16 q = mfe_rq16_load_bias(mult + c0, shift + c0, bias + c0, n, lo, hi);
        for (int64_t p = 0; p < np; p++)
            _mm_mask_storeu_epi8(y + p * C + c0, km,
                                 mfe_rq16_apply(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(km, x + p * C + c0)), &q));
    }
#else
    for (int32_t c0 = 0; c0 < C; c0 += 8) {
        const int32_t n = C - c0 < 8 ? C - c0 : 8;
        const mfe_rq8 q = mfe_rq8_load_bias(mult + c0, shift + c0, bias + c0, n, lo, hi);
        for (int64_t p = 0; p < np; p++)
            mfe_store8(y + p * C + c0, mfe_pack8(mfe_rq8_apply(_mm256_cvtepi8_epi32(mfe_load8(x + p * C + c0, n)), &q)), n);
    }
#endif
}
#endif

#define affine_pixels MFE_KERNEL(affine_pixels)
#define add_span MFE_KERNEL(add_span)
#define clamp_span MFE_KERNEL(clamp_span)
#define requant_span MFE_KERNEL(requant_span)

static int same_shape(const mfe_model *m, const mfe_node *nd) {
    for (int j = 0; j < nd->n_in; j++) {
        const mfe_tensor *x = &m->t[nd->in[j]], *y = &m->t[nd->out];
        if (x->h != y->h || x->w != y->w || x->c != y->c) return 0;
    }
    return 1;
}

int mfe_prepare_add(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_add(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    const int32_t *a = c->nd->a;
    const int64_t ma = a[MFE_ADD_MULT_A], mb = a[MFE_ADD_MULT_B];
    const int32_t s = a[MFE_ADD_SHIFT], lo = a[MFE_ADD_ACT_LO], hi = a[MFE_ADD_ACT_HI];
    const int8_t *x = in0, *z = in1;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes, spans = (total + SPAN - 1) / SPAN;
    MFE_PARALLEL_FOR(c->threads, k, spans, {
        int64_t i = k * SPAN;
        add_span(y + i, x + i, z + i, total - i < SPAN ? total - i : SPAN, ma, mb, s, lo, hi);
    });
}

int mfe_prepare_clamp(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_clamp(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t lo = c->nd->a[MFE_CLAMP_ACT_LO], hi = c->nd->a[MFE_CLAMP_ACT_HI];
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes;
    clamp_span(y, x, total, lo, hi);
}

int mfe_prepare_requantize(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_requantize(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t *a = c->nd->a;
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes;
    requant_span(y, x, total, a[MFE_REQUANTIZE_MULT], a[MFE_REQUANTIZE_SHIFT], a[MFE_REQUANTIZE_ACT_LO], a[MFE_REQUANTIZE_ACT_HI]);
}

#define AFFINE_PIXELS 64  /* pixels per task: the per-channel constants are reused across them */

int mfe_prepare_affine(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const int64_t c = m->t[nd->out].c;
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    MFE_CHECK(nd->blob_n[MFE_AFFINE_B_MULT] == c && nd->blob_n[MFE_AFFINE_B_BIAS] == c && nd->blob_n[MFE_AFFINE_B_SHIFT] == c,
              "mult/bias/shift must hold %lld values", (long long)c);
    return MFE_OK;
}

void mfe_run_affine(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const int32_t C = c->y->c, lo = nd->a[MFE_AFFINE_ACT_LO], hi = nd->a[MFE_AFFINE_ACT_HI];
    const int32_t *mult = nd->blob[MFE_AFFINE_B_MULT], *bias = nd->blob[MFE_AFFINE_B_BIAS], *shift = nd->blob[MFE_AFFINE_B_SHIFT];
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t pixels = (int64_t)c->n * c->y->h * c->y->w, blocks = (pixels + AFFINE_PIXELS - 1) / AFFINE_PIXELS;
    MFE_PARALLEL_FOR(c->threads, b, blocks, {
        const int64_t p0 = b * AFFINE_PIXELS, np = pixels - p0 < AFFINE_PIXELS ? pixels - p0 : AFFINE_PIXELS;
        affine_pixels(y + p0 * C, x + p0 * C, np, mult, bias, shift, C, lo, hi);
    });
}
