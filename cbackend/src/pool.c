/* avgpool: global average pooling as an int32 sum over H x W and one requantisation per channel. */
#include "arch.h"
#include "internal.h"
#include "neon.h"
#include "x86.h"

/* y[ch] = requant(sum over hw pixels of x[p * C + ch]), ch in [c0, C): one image */
MFE_SCALAR_FN void avgpool_image__scalar(int8_t *y, const int8_t *x, int32_t c0, int32_t C, int32_t hw, const int32_t *a) {
    for (int32_t ch = c0; ch < C; ch++) {
        int32_t s = 0;
        for (int32_t p = 0; p < hw; p++) s += x[(size_t)p * C + ch];
        y[ch] = mfe_requant(s, a[MFE_AVGPOOL_MULT], a[MFE_AVGPOOL_SHIFT], a[MFE_AVGPOOL_ACT_LO], a[MFE_AVGPOOL_ACT_HI]);
    }
}

#ifdef MFE_ISA_NEON
static void avgpool_image__neon(int8_t *y, const int8_t *x, int32_t c0, int32_t C, int32_t hw, const int32_t *a) {
    const int32x4_t vm = vdupq_n_s32(a[MFE_AVGPOOL_MULT]), vs = vdupq_n_s32(a[MFE_AVGPOOL_SHIFT]);
    const int32x4_t vlo = vdupq_n_s32(a[MFE_AVGPOOL_ACT_LO]), vhi = vdupq_n_s32(a[MFE_AVGPOOL_ACT_HI]);
    int32_t ch = c0;
    for (; ch + 8 <= C; ch += 8) {  /* eight channels summed down the pixels */
        int32x4_t lo = vdupq_n_s32(0), hi = vdupq_n_s32(0);
        for (int32_t p = 0; p < hw; p++) {
            int16x8_t v = vmovl_s8(vld1_s8(x + (size_t)p * C + ch));
            lo = vaddw_s16(lo, vget_low_s16(v)), hi = vaddw_high_s16(hi, v);
        }
        vst1_s8(y + ch, mfe_narrow_s32x8(mfe_requant_s32x4(lo, vm, vs, vlo, vhi), mfe_requant_s32x4(hi, vm, vs, vlo, vhi)));
    }
    avgpool_image__scalar(y, x, ch, C, hw, a);
}
#endif

#ifdef MFE_ISA_AVX2
static void avgpool_image__avx2(int8_t *y, const int8_t *x, int32_t c0, int32_t C, int32_t hw, const int32_t *a) {
    const mfe_rq8 q = mfe_rq8_uniform(a[MFE_AVGPOOL_MULT], a[MFE_AVGPOOL_SHIFT], a[MFE_AVGPOOL_ACT_LO], a[MFE_AVGPOOL_ACT_HI]);
    int32_t ch = c0;
    for (; ch + 16 <= C; ch += 16) {  /* sixteen channels summed down the pixels in int32 lanes */
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int32_t p = 0; p < hw; p++) {
            const __m128i v = _mm_loadu_si128((const __m128i *)(x + (size_t)p * C + ch));
            lo = _mm256_add_epi32(lo, _mm256_cvtepi8_epi32(v)), hi = _mm256_add_epi32(hi, _mm256_cvtepi8_epi32(_mm_srli_si128(v, 8)));
        }
        _mm_storeu_si128((__m128i *)(y + ch), mfe_pack16(mfe_rq8_apply(lo, &q), mfe_rq8_apply(hi, &q)));
    }
    avgpool_image__scalar(y, x, ch, C, hw, a);
}
#endif

#define avgpool_image MFE_KERNEL(avgpool_image)

int mfe_prepare_avgpool(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    MFE_CHECK(y->h == 1 && y->w == 1 && y->c == x->c, "output shape must be 1x1x%d", x->c);
    MFE_CHECK(128LL * x->h * x->w <= INT32_MAX, "int32 sum could wrap");
    return MFE_OK;
}

void mfe_run_avgpool(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t *a = c->nd->a, C = c->x->c, hw = c->x->h * c->x->w;
    for (int32_t b = 0; b < c->n; b++) {
        avgpool_image((int8_t *)out + (size_t)b * C, (const int8_t *)in0 + (size_t)b * c->x->bytes, 0, C, hw, a);
    }
}
