/* conv2d and linear: int8 x int8 -> int32 accumulate -> requantise to int8 (or int32 logits).
 * Paths: 1x1 stride-1 (the packed GEMM over pixels, gemm.c, requantised in its epilogue), other dense convs
 * (the same GEMM over im2col rows where the build has one: AVX2, VNNI, NEON), depthwise 3x3 (accumulators in
 * registers: AVX-512 or AVX2 rows, dwrows.h; NEON one output pixel at a time), other depthwise (taps
 * vectorised over channels), general direct conv. */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"
#include "x86.h"
#include "neon.h"
#include "dwrows.h"

/* ---- dot product of int8 vectors: the 1x1 / linear inner loop ---- */

MFE_SCALAR_FN int32_t dot_i8__scalar(const int8_t *x, const int8_t *w, int32_t k) {
    int32_t acc = 0;
    for (int32_t i = 0; i < k; i++) acc += (int32_t)x[i] * w[i];
    return acc;
}

#ifdef MFE_ISA_AVX2
static int32_t dot_i8__avx2(const int8_t *x, const int8_t *w, int32_t k) {
    __m256i acc = _mm256_setzero_si256();
    int32_t i = 0;
    for (; i + 16 <= k; i += 16) {  /* int8 -> int16, pairwise multiply-add into int32 lanes: no overflow */
        __m256i a = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x + i)));
        __m256i b = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + i)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
    }
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s) + dot_i8__scalar(x + i, w + i, k - i);
}
#endif

#ifdef MFE_ISA_NEON
static int32_t dot_i8__neon(const int8_t *x, const int8_t *w, int32_t k) {
    int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
    int32_t i = 0;
#ifdef MFE_ISA_DOTPROD
    for (; i + 32 <= k; i += 32) {  /* sdot: four int8 products into each int32 lane, exact */
        acc0 = vdotq_s32(acc0, vld1q_s8(x + i), vld1q_s8(w + i));
        acc1 = vdotq_s32(acc1, vld1q_s8(x + i + 16), vld1q_s8(w + i + 16));
    }
#endif
    for (; i + 16 <= k; i += 16) {  /* int8 x int8 -> int16 (|p| <= 2^14), pairwise-added into int32 lanes */
        int8x16_t a = vld1q_s8(x + i), b = vld1q_s8(w + i);
        acc0 = vpadalq_s16(acc0, vmull_s8(vget_low_s8(a), vget_low_s8(b)));
        acc1 = vpadalq_s16(acc1, vmull_high_s8(a, b));
    }
    if (i + 8 <= k) acc0 = vpadalq_s16(acc0, vmull_s8(vld1_s8(x + i), vld1_s8(w + i))), i += 8;
    return vaddvq_s32(vaddq_s32(acc0, acc1)) + dot_i8__scalar(x + i, w + i, k - i);
}
#endif

#define dot_i8 MFE_KERNEL(dot_i8)

/* ---- depthwise: acc[c] += x[c] * w[c] over one tap, channels contiguous ---- */

MFE_SCALAR_FN void dw_tap__scalar(int32_t *acc, const int8_t *x, const int8_t *w, int32_t c) {
    for (int32_t i = 0; i < c; i++) acc[i] += (int32_t)x[i] * w[i];
}

#ifdef MFE_ISA_AVX2
static void dw_tap__avx2(int32_t *acc, const int8_t *x, const int8_t *w, int32_t c) {
    int32_t i = 0;
    for (; i + 8 <= c; i += 8) {
        __m256i a = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + i)));
        __m256i b = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w + i)));
        __m256i *p = (__m256i *)(acc + i);
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), _mm256_mullo_epi32(a, b)));
    }
    dw_tap__scalar(acc + i, x + i, w + i, c - i);
}
#endif

#ifdef MFE_ISA_NEON
static void dw_tap__neon(int32_t *acc, const int8_t *x, const int8_t *w, int32_t c) {
    int32_t i = 0;
    for (; i + 8 <= c; i += 8) {  /* int8 x int8 -> int16 exactly, widened into the int32 accumulators */
        int16x8_t p = vmull_s8(vld1_s8(x + i), vld1_s8(w + i));
        vst1q_s32(acc + i, vaddw_s16(vld1q_s32(acc + i), vget_low_s16(p)));
        vst1q_s32(acc + i + 4, vaddw_high_s16(vld1q_s32(acc + i + 4), p));
    }
    dw_tap__scalar(acc + i, x + i, w + i, c - i);
}
#endif

#define dw_tap MFE_KERNEL(dw_tap)

#ifdef MFE_ISA_NEON
/* What dw9_pixel__neon reads besides the window: the layer's weights [tap][channel] and requantisation. */
typedef struct {
    const int8_t *w;
    const int32_t *bias, *mult, *shift;  /* shift: conv_prep.rq_shift */
    int32_t c, mul32, lo, hi;           /* mul32: every channel marked MFE_RQ_MUL32 */
} dw9_args;

/* A 3x3 depthwise output pixel from its window, 8 channels a step with the accumulators in registers. Two
 * taps share an int16 lane (smull, smlal) before saddw widens them: exact where no weight is -128
 * (conv_prep.dw9), as |x w| <= 128 * 127. */
static void dw9_pixel__neon(int8_t *y, const int8_t *const win[9], const void *ctx) {
    const dw9_args *d = ctx;  /* its fields in locals: y's stores could alias *d, and gcc would reload them */
    const int8_t *w = d->w;
    const int32_t *bias = d->bias, *mult = d->mult, *shift = d->shift, c = d->c, mul32 = d->mul32;
    const int32x4_t vlo = vdupq_n_s32(d->lo), vhi = vdupq_n_s32(d->hi);
    const int8_t *x0 = win[0], *x1 = win[1], *x2 = win[2], *x3 = win[3], *x4 = win[4], *x5 = win[5], *x6 = win[6],
                 *x7 = win[7], *x8 = win[8];  /* the window in locals too */
    int32_t o = 0;
#define DW_X(t) vld1_s8(x##t + o)
#define DW_W(t) vld1_s8(w + (size_t)(t) * c + o)
#define DW_WIDEN(p) a0 = vaddw_s16(a0, vget_low_s16(p)), a1 = vaddw_high_s16(a1, p);
#define DW_PAIR(t, u) { const int16x8_t p = vmlal_s8(vmull_s8(DW_X(t), DW_W(t)), DW_X(u), DW_W(u)); DW_WIDEN(p) }
    for (; o + 8 <= c; o += 8) {
        int32x4_t a0 = vld1q_s32(bias + o), a1 = vld1q_s32(bias + o + 4);
        DW_PAIR(0, 1) DW_PAIR(2, 3) DW_PAIR(4, 5) DW_PAIR(6, 7)
        const int16x8_t p8 = vmull_s8(DW_X(8), DW_W(8));
        DW_WIDEN(p8)
        const mfe_rq8__neon q = mfe_rq8_load__neon(mult + o, shift + o, mul32);
        vst1_s8(y + o, mfe_rq8_apply__neon(a0, a1, &q, vlo, vhi));
    }
#undef DW_PAIR
#undef DW_WIDEN
#undef DW_W
#undef DW_X
    for (; o < c; o++) {
        int32_t acc = bias[o];
        for (int t = 0; t < 9; t++) acc += win[t][o] * w[(size_t)t * c + o];
        y[o] = mfe_requant(acc, mult[o], shift[o] % MFE_RQ_MUL32, d->lo, d->hi);
    }
}
#endif

/* ---- dense (groups 1) without the GEMM (im2col rows past 64 KiB): acc[o] += sum_c x[c] * w[c][o] over one
 * tap, weights packed HWIO at load so each input channel updates a row of outputs (gcc vectorises it) ---- */

MFE_SCALAR_FN void conv_tap(int32_t *acc, const int8_t *x, const int8_t *w, int32_t cin, int32_t cout) {
    for (int32_t c = 0; c < cin; c++)
        for (int32_t o = 0; o < cout; o++) acc[o] += (int32_t)x[c] * w[(size_t)c * cout + o];
}
#ifdef MFE_ISA_SIMD
#define MFE_CONV_PACK_DENSE 1  /* SIMD builds pack dense weights for conv_tap */
#else
#define MFE_CONV_PACK_DENSE 0
#endif

/* memcpy for the short runs of im2col rows (a 3x3 window of one channel: 3 bytes) without a call */
static inline void copy_bytes(int8_t *dst, const int8_t *src, size_t n) {
#ifdef MFE_ISA_AVX512
    for (; n >= 64; n -= 64, src += 64, dst += 64) _mm512_storeu_si512((void *)dst, _mm512_loadu_si512((const void *)src));
    const __mmask64 km = n ? ~0ULL >> (64 - n) : 0;
    _mm512_mask_storeu_epi8(dst, km, _mm512_maskz_loadu_epi8(km, src));
#else
    if (n < 16) {  /* fixed-size pieces inline, not a library call per window row */
        if (n & 8) memcpy(dst, src, 8), dst += 8, src += 8;
        if (n & 4) memcpy(dst, src, 4), dst += 4, src += 4;
        if (n & 2) memcpy(dst, src, 2), dst += 2, src += 2;
        if (n & 1) *dst = *src;
        return;
    }
    memcpy(dst, src, n);
#endif
}

/* ---- prepare: shapes, blob sizes, the no-wrap proof, packed depthwise weights ---- */

typedef struct {  /* one allocation (the loader frees prep with free()) */
    int32_t *padsum;  /* pad_value != 0: per [tap][cout] what one padded tap adds, or NULL */
    int8_t *dw;       /* depthwise weights as [tap][channel], or NULL */
    int32_t *dw32;    /* MFE_DW_ROWS, depthwise 3x3 with stride_w 1 or 2: the same as int32 (uint16) w, or NULL */
    int8_t *dense;    /* MFE_CONV_PACK_DENSE, groups 1: weights as [tap][cin][cout] for conv_tap, or NULL */
    void *gemm;       /* 1x1, stride 1, no padding (or im2col): weights packed for mfe_gemm_rows, or NULL */
    int im2col;       /* gemm over im2col rows (dense convs other than 1x1) */
    int32_t *rq_shift;  /* the shifts for the SIMD requantisation, + MFE_RQ_MUL32 where that form is exact */
    int dw9;            /* NEON, depthwise 3x3 without a weight of -128: dw9_pixel__neon */
    int all32;          /* every channel's rq_shift carries MFE_RQ_MUL32 */
    int32_t c16;        /* MFE_DW16, depthwise 3x3 with pad_value 0: channels [0, c16) go 16 at a time */
    void *dw16_taps;    /* their dw16_taps, one per 16 channels (32-byte aligned) */
    int32_t *dw16_rq;   /* their bias, mult and rq_shift in DW16_ORDER, c16 each */
    int32_t data[];   /* the regions above (mfe_prepare_conv2d carves them) */
} conv_prep;

/* The largest |accumulator| of output channel o: |bias| + 128 sum|w| (every input and pad value within 128). */
static int64_t acc_bound(const int8_t *w, const int32_t *bias, int32_t o, int64_t k) {
    int64_t s = mfe_abs64(bias[o]);
    for (int64_t i = 0; i < k; i++) s += 128 * mfe_abs64(w[o * k + i]);
    return s;
}

static int acc_bound_ok(const int8_t *w, const int32_t *bias, int32_t cout, int64_t k, char *err, size_t errlen) {
    for (int32_t o = 0; o < cout; o++) {
        const int64_t s = acc_bound(w, bias, o, k);
        MFE_CHECK(s <= INT32_MAX, "int32 accumulator of channel %d could wrap (bound %lld)", o, (long long)s);
    }
    return MFE_OK;
}

int mfe_prepare_conv2d(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int32_t *a = nd->a;
    int32_t g = a[MFE_CONV2D_GROUPS], cout = a[MFE_CONV2D_COUT], kh = a[MFE_CONV2D_KH], kw = a[MFE_CONV2D_KW];
    MFE_CHECK(x->c % g == 0 && cout % g == 0, "groups=%d must divide cin=%d and cout=%d", g, x->c, cout);
    int64_t hp = (int64_t)x->h + a[MFE_CONV2D_PAD_T] + a[MFE_CONV2D_PAD_B], wp = (int64_t)x->w + a[MFE_CONV2D_PAD_L] + a[MFE_CONV2D_PAD_R];
    MFE_CHECK(hp >= kh && wp >= kw, "kernel larger than padded input");
    MFE_CHECK(y->h == (hp - kh) / a[MFE_CONV2D_STRIDE_H] + 1 && y->w == (wp - kw) / a[MFE_CONV2D_STRIDE_W] + 1 && y->c == cout,
              "output shape %dx%dx%d disagrees with the conv geometry", y->h, y->w, y->c);
    int64_t k = (int64_t)kh * kw * (x->c / g);
    MFE_CHECK(nd->blob_n[MFE_CONV2D_B_WEIGHT] == cout * k && nd->blob_n[MFE_CONV2D_B_BIAS] == cout, "weight/bias sizes wrong");
    int rc = mfe_check_requant_blobs(nd, MFE_CONV2D_B_MULT, MFE_CONV2D_B_SHIFT, cout, 1, err, errlen);
    if (rc) return rc;
    rc = acc_bound_ok(nd->blob[MFE_CONV2D_B_WEIGHT], nd->blob[MFE_CONV2D_B_BIAS], cout, k, err, errlen);
    if (rc) return rc;
    nd->scratch = sizeof(int32_t) * (size_t)cout;
    const int32_t taps = kh * kw, pv = a[MFE_CONV2D_PAD_VALUE], depthwise = g == x->c && cout == g;
    size_t n_pad = pv ? (size_t)taps * cout : 0, n_dw = depthwise ? (size_t)taps * cout : 0;
    size_t n_dw32 = MFE_DW_ROWS && depthwise && kh == 3 && kw == 3 && a[MFE_CONV2D_STRIDE_W] <= 2 ? n_dw : 0;
    const int pointwise = taps == 1 && g == 1 && a[MFE_CONV2D_STRIDE_H] == 1 && a[MFE_CONV2D_STRIDE_W] == 1 &&
                          hp == x->h && wp == x->w;
    /* other dense convs: the same GEMM over im2col rows of k = kh kw cin bytes (OHWI weights are [cout][k]) */
    const int im2col = !pointwise && g == 1 && !depthwise && k <= (1 << 16) && mfe_gemm_packed_bytes(cout, (int32_t)k) > 0;
    size_t n_dense = MFE_CONV_PACK_DENSE && g == 1 && !depthwise && !im2col ? (size_t)taps * x->c * cout : 0;
    size_t n_gemm = pointwise || im2col ? mfe_gemm_packed_bytes(cout, (int32_t)k) : 0;
    const int32_t c16 = MFE_DW16 && n_dw32 && !pv ? cout / 16 * 16 : 0;
    size_t n_dw16 = c16 ? (size_t)c16 / 16 * 12 * 32 + 32 : 0;  /* twelve vectors a tile, and room to align */
    conv_prep *p = calloc(1, sizeof *p + sizeof(int32_t) * (n_pad + n_dw32 + cout + 3 * (size_t)c16) + n_dw + n_dense +
                                 n_dw16 + n_gemm + 64);
    if (!p) MFE_FAIL(MFE_ENOMEM, "out of memory");
    nd->prep = p;
    /* the regions: the int32 tables (padsum, dw32, rq_shift, dw16_rq), then dw or dense, dw16_taps, gemm */
    int32_t *at = p->data;
    if (pv) p->padsum = at;
    if (n_dw32) p->dw32 = at + n_pad;
    p->rq_shift = at + n_pad + n_dw32;
    if (c16) p->dw16_rq = p->rq_shift + cout;
    uint8_t *bytes = (uint8_t *)(p->rq_shift + cout + 3 * (size_t)c16);
    if (depthwise) p->dw = (int8_t *)bytes;
    if (n_dense) p->dense = (int8_t *)bytes;
    bytes += n_dw + n_dense;
    if (c16) p->dw16_taps = (void *)(((uintptr_t)bytes + 31) & ~(uintptr_t)31);
    if (n_gemm) p->gemm = (void *)(((uintptr_t)(bytes + n_dw16) + 63) & ~(uintptr_t)63);
    const int8_t *w = nd->blob[MFE_CONV2D_B_WEIGHT];
    const int32_t *bias = nd->blob[MFE_CONV2D_B_BIAS];
    if (n_gemm) {  /* the 1x1 product as a packed GEMM over blocks of pixels */
        int narrow = 1;
        for (int64_t i = 0; i < cout * k && narrow; i++) narrow = w[i] >= -64 && w[i] <= 64;
        /* the input is clamped at >= 0 (padding reads pad_value), or the weights are narrow */
        const int known = x->lo >= 0 && (!im2col || pv >= 0) ? MFE_GEMM_X_NONNEG : narrow ? MFE_GEMM_W_NARROW : MFE_GEMM_ANY;
        mfe_gemm_pack(p->gemm, w, bias, cout, (int32_t)k, known);
        nd->scratch = mfe_gemm_scratch_bytes((int32_t)k) + (im2col ? (size_t)mfe_gemm_block_rows((int32_t)k) * k : 0);
        p->im2col = im2col;
    }
    if (depthwise)  /* repack OHW1 -> HWC so taps run along channels */
        for (int32_t o = 0; o < cout; o++)
            for (int32_t t = 0; t < taps; t++) p->dw[(size_t)t * cout + o] = w[(size_t)o * taps + t];
#ifdef MFE_ISA_NEON
    p->dw9 = depthwise && kh == 3 && kw == 3;
    for (int64_t i = 0; p->dw9 && i < cout * k; i++) p->dw9 = w[i] != -128;
#endif
    if (n_dense)  /* OHWI -> HWIO */
        for (int32_t o = 0; o < cout; o++)
            for (int32_t t = 0; t < taps; t++)
                for (int32_t i = 0; i < x->c; i++) p->dense[((size_t)t * x->c + i) * cout + o] = w[((size_t)o * taps + t) * x->c + i];
    const int32_t *mult = nd->blob[MFE_CONV2D_B_MULT], *shift = nd->blob[MFE_CONV2D_B_SHIFT];
    p->all32 = 1;
    for (int32_t o = 0; o < cout; o++) {  /* acc * mult + 2^(s-1) inside int32 for every acc this channel can hold */
        const int64_t top = acc_bound(w, bias, o, k) * mult[o] + (shift[o] ? (int64_t)1 << (shift[o] - 1) : 0);
        p->rq_shift[o] = shift[o] + (shift[o] <= 31 && top <= INT32_MAX ? MFE_RQ_MUL32 : 0);
        p->all32 &= p->rq_shift[o] >= MFE_RQ_MUL32;
    }
    for (size_t i = 0; i < n_dw32; i++) p->dw32[i] = (uint16_t)p->dw[i];  /* (w, 0) as an int16 pair */
#if MFE_DW16
    if (c16) {  /* per tile of 16 channels, in DW16_ORDER: (w[0][kx], w[1][kx]) and (w[2][kx], 0) pairs; bias, mult, shift */
        p->c16 = c16;
        int16_t *t = p->dw16_taps;
        for (int32_t c0 = 0; c0 < c16; c0 += 16, t += 12 * 16)
            for (int j = 0; j < 16; j++) {
                const int32_t ch = c0 + DW16_ORDER[j], h = j / 8, lane = j % 8;
                const int8_t *wc = w + (size_t)ch * 9;  /* OHW1: [ky][kx] */
                for (int kx = 0; kx < 3; kx++) {
                    int16_t *w01 = t + (kx * 2 + h) * 16, *w2 = t + (6 + kx * 2 + h) * 16;
                    w01[2 * lane] = wc[kx], w01[2 * lane + 1] = wc[3 + kx];
                    w2[2 * lane] = wc[6 + kx], w2[2 * lane + 1] = 0;
                }
                p->dw16_rq[c0 + j] = bias[ch], p->dw16_rq[c16 + c0 + j] = mult[ch];
                p->dw16_rq[2 * c16 + c0 + j] = p->rq_shift[ch];
            }
    }
#endif
    if (pv)  /* a padded tap adds pad_value * sum of its weights; |that| <= 128 * sum|w|: inside the proof */
        for (int32_t o = 0; o < cout; o++)
            for (int32_t t = 0; t < taps; t++)
                for (int32_t i = 0; i < x->c / g; i++) p->padsum[(size_t)t * cout + o] += pv * w[((size_t)o * taps + t) * (x->c / g) + i];
    return MFE_OK;
}

MFE_SCALAR_FN void requant_row__scalar(int8_t *dst, const int32_t *acc, const mfe_node *nd, int32_t c, int32_t lo, int32_t hi) {
    const int32_t *mult = nd->blob[MFE_CONV2D_B_MULT], *shift = nd->blob[MFE_CONV2D_B_SHIFT];
    for (int32_t o = 0; o < c; o++) dst[o] = mfe_requant(acc[o], mult[o], shift[o], lo, hi);
}

#ifdef MFE_ISA_NEON
static void requant_row__neon(int8_t *dst, const int32_t *acc, const mfe_node *nd, int32_t c, int32_t lo, int32_t hi) {
    mfe_requant_row__neon(dst, acc, nd->blob[MFE_CONV2D_B_MULT], nd->blob[MFE_CONV2D_B_SHIFT], c, lo, hi);
}
#endif

#ifdef MFE_ISA_AVX2
static void requant_row__avx2(int8_t *dst, const int32_t *acc, const mfe_node *nd, int32_t c, int32_t lo, int32_t hi) {
    mfe_requant_row__x86(dst, acc, nd->blob[MFE_CONV2D_B_MULT], nd->blob[MFE_CONV2D_B_SHIFT], c, lo, hi);
}
#endif

#define requant_row MFE_KERNEL(requant_row)

void mfe_run_conv2d(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const mfe_tensor *X = c->x, *Y = c->y;
    const int32_t *a = nd->a, *bias = nd->blob[MFE_CONV2D_B_BIAS];
    const int8_t *w = nd->blob[MFE_CONV2D_B_WEIGHT];
    const int32_t g = a[MFE_CONV2D_GROUPS], cout = Y->c, cin_g = X->c / g, cout_g = cout / g;
    const int32_t kh = a[MFE_CONV2D_KH], kw = a[MFE_CONV2D_KW], sh = a[MFE_CONV2D_STRIDE_H], sw = a[MFE_CONV2D_STRIDE_W];
    const int32_t pt = a[MFE_CONV2D_PAD_T], pl = a[MFE_CONV2D_PAD_L], lo = a[MFE_CONV2D_ACT_LO], hi = a[MFE_CONV2D_ACT_HI];
    const conv_prep *prep = nd->prep;
    if (prep->gemm) {
        const int32_t k = kh * kw * X->c;
        const int64_t pixels = (int64_t)c->n * Y->h * Y->w, share = ((pixels + c->threads - 1) / c->threads + 3) / 4 * 4;
        const int32_t block = share < mfe_gemm_block_rows(k) ? (int32_t)share : mfe_gemm_block_rows(k);  /* every thread gets work */
        const int64_t blocks = (pixels + block - 1) / block;
        MFE_PARALLEL_FOR(c->threads, b, blocks, {
            int64_t p0 = b * block;
            int np = pixels - p0 < block ? (int)(pixels - p0) : block;
            uint8_t *scratch = MFE_SCRATCH(c);
            const int8_t *rows = (const int8_t *)in0 + p0 * X->c;
            if (prep->im2col) {  /* each output pixel's window as one row of k bytes, padding = pad_value */
                int8_t *col = (int8_t *)scratch + mfe_gemm_scratch_bytes(k);
                const int64_t img0 = p0 / ((int64_t)Y->h * Y->w);
                int32_t oy = (int32_t)(p0 / Y->w % Y->h), ox = (int32_t)(p0 % Y->w);
                const int8_t *xb = (const int8_t *)in0 + img0 * X->bytes;
                for (int q = 0; q < np; q++) {
                    for (int32_t ky = 0; ky < kh; ky++) {
                        const int32_t iy = oy * sh - pt + ky, ix0 = ox * sw - pl;
                        int8_t *dst = col + (size_t)q * k + (size_t)ky * kw * X->c;
                        if (iy >= 0 && iy < X->h && ix0 >= 0 && ix0 + kw <= X->w)  /* the window row lies inside */
                            copy_bytes(dst, xb + ((size_t)iy * X->w + ix0) * X->c, (size_t)kw * X->c);
                        else
                            for (int32_t kx = 0; kx < kw; kx++) {
                                const int32_t ix = ix0 + kx;
                                if (iy < 0 || iy >= X->h || ix < 0 || ix >= X->w) memset(dst + (size_t)kx * X->c, a[MFE_CONV2D_PAD_VALUE], (size_t)X->c);
                                else copy_bytes(dst + (size_t)kx * X->c, xb + ((size_t)iy * X->w + ix) * X->c, (size_t)X->c);
                            }
                    }
                    if (++ox == Y->w && (ox = 0, ++oy == Y->h)) oy = 0, xb += X->bytes;  /* the next pixel */
                }
                rows = col;
            }
            mfe_gemm_rows((int8_t *)out + p0 * cout, scratch, rows, np, k, prep->gemm,
                          cout, nd->blob[MFE_CONV2D_B_MULT], prep->rq_shift, lo, hi);
        });
        return;
    }
    const int64_t rows = (int64_t)c->n * Y->h;
#ifdef MFE_ISA_NEON
    if (prep->dw9) {
        const dw9_args d = {prep->dw, bias, nd->blob[MFE_CONV2D_B_MULT], prep->rq_shift, cout, prep->all32, lo, hi};
        const mfe_win9 geo = {sh, sw, pt, pl, a[MFE_CONV2D_PAD_VALUE]};
        MFE_PARALLEL_FOR(c->threads, r, rows, { mfe_window9_row(c, in0, out, r, geo, dw9_pixel__neon, &d); });
        return;
    }
#endif
#if MFE_DW_ROWS
    if (prep->dw32) {
        const int32_t *mult = nd->blob[MFE_CONV2D_B_MULT], *shift = prep->rq_shift, pv = a[MFE_CONV2D_PAD_VALUE];
        const dw3_geom geo = {{NULL, NULL, NULL}, X->w, cout, sh, pt, pl, 0, prep->c16};
#if MFE_DW16
        dw16_tables t16 = {NULL, NULL, NULL, NULL};  /* (no offsets from a NULL dw16_rq where c16 is 0) */
        if (prep->c16)
            t16 = (dw16_tables){prep->dw16_taps, prep->dw16_rq, prep->dw16_rq + prep->c16, prep->dw16_rq + 2 * prep->c16};
        const void *dw16 = &t16;
#else
        const void *dw16 = NULL;
#endif
        MFE_PARALLEL_FOR(c->threads, r, rows, {
            if (sw == 1) dw3_row_at(X, Y, in0, out, r, geo, prep->dw32, bias, mult, shift, pv, lo, hi, dw16, DW_MAC, 1);
            else dw3_row_at(X, Y, in0, out, r, geo, prep->dw32, bias, mult, shift, pv, lo, hi, dw16, DW_MAC, 2);
        });
        return;
    }
#endif
    MFE_PARALLEL_FOR(c->threads, r, rows, {
        int32_t *acc = (int32_t *)MFE_SCRATCH(c);
        mfe_row row = mfe_row_at(X, Y, in0, out, r);
        const int8_t *xb = row.x;
        int8_t *yr = row.y;
        const int32_t oy = row.oy;
        for (int32_t ox = 0; ox < Y->w; ox++) {
            memcpy(acc, bias, sizeof(int32_t) * (size_t)cout);
            for (int32_t ky = 0; ky < kh; ky++) {
                int32_t iy = oy * sh - pt + ky;
                for (int32_t kx = 0; kx < kw; kx++) {
                    int32_t ix = ox * sw - pl + kx, tap = ky * kw + kx;
                    if (iy < 0 || iy >= X->h || ix < 0 || ix >= X->w) {
                        if (prep->padsum)
                            for (int32_t o = 0; o < cout; o++) acc[o] += prep->padsum[(size_t)tap * cout + o];
                        continue;
                    }
                    const int8_t *xp = xb + ((size_t)iy * X->w + ix) * X->c;
                    if (prep->dw) {
                        dw_tap(acc, xp, prep->dw + (size_t)tap * cout, cout);
                        continue;
                    }
                    if (prep->dense) {
                        conv_tap(acc, xp, prep->dense + (size_t)tap * X->c * cout, X->c, cout);
                        continue;
                    }
                    for (int32_t o = 0; o < cout; o++)
                        acc[o] += dot_i8(xp + (o / cout_g) * cin_g, w + (((size_t)o * kh + ky) * kw + kx) * cin_g, cin_g);
                }
            }
            requant_row(yr + (size_t)ox * cout, acc, nd, cout, lo, hi);
        }
    });
}

/* ---- linear: one dot product per output over the flattened NHWC input ---- */

int mfe_prepare_linear(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    int32_t cout = nd->a[MFE_LINEAR_COUT];
    int64_t k = (int64_t)x->h * x->w * x->c;
    MFE_CHECK(y->h == 1 && y->w == 1 && y->c == cout, "output shape must be 1x1x%d", cout);
    MFE_CHECK(nd->blob_n[MFE_LINEAR_B_WEIGHT] == cout * k && nd->blob_n[MFE_LINEAR_B_BIAS] == cout, "weight/bias sizes wrong");
    int rc = mfe_check_requant_blobs(nd, MFE_LINEAR_B_MULT, MFE_LINEAR_B_SHIFT, cout, y->dtype == MFE_DT_INT8, err, errlen);
    return rc ? rc : acc_bound_ok(nd->blob[MFE_LINEAR_B_WEIGHT], nd->blob[MFE_LINEAR_B_BIAS], cout, k, err, errlen);
}

void mfe_run_linear(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const int32_t cout = c->y->c, k = (int32_t)c->x->bytes, lo = nd->a[MFE_LINEAR_ACT_LO], hi = nd->a[MFE_LINEAR_ACT_HI];
    const int8_t *w = nd->blob[MFE_LINEAR_B_WEIGHT];
    const int32_t *bias = nd->blob[MFE_LINEAR_B_BIAS], *mult = nd->blob[MFE_LINEAR_B_MULT], *shift = nd->blob[MFE_LINEAR_B_SHIFT];
    const int64_t total = (int64_t)c->n * cout;
    MFE_PARALLEL_FOR(c->threads, i, total, {
        int64_t b = i / cout;
        int32_t o = (int32_t)(i % cout);
        int32_t acc = bias[o] + dot_i8((const int8_t *)in0 + b * k, w + (size_t)o * k, k);
        if (c->y->dtype == MFE_DT_INT32) ((int32_t *)out)[i] = acc;
        else ((int8_t *)out)[i] = mfe_requant(acc, mult[o], shift[o], lo, hi);
    });
}
