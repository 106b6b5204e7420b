/* hdw: multiplication-free depthwise 3x3 (seed 000), padding 1, stride 1 or 2.
 * op(x, w) = sign(x) sign(w) min(|x|, |w|)  (min)  or  sign(x) sign(w) (|x| + |w|)  (ef):
 * sign flips and min/add only. Channels are contiguous, so taps vectorise across channels. */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"
#include "neon.h"
#include "x86.h"
#include "dwrows.h"

MFE_SCALAR_FN void hdw_tap__scalar(int32_t *acc, const int8_t *x, const int32_t *w, int32_t c, int32_t xs, int32_t ef) {
    for (int32_t i = 0; i < c; i++) {
        int32_t xv = (int32_t)((uint32_t)(int32_t)x[i] << xs), wv = w[i];
        int32_t ax = xv < 0 ? -xv : xv, aw = wv < 0 ? -wv : wv;
        int32_t v = ef ? ax + aw : (ax < aw ? ax : aw);
        if (xv == 0 || wv == 0) v = 0;
        acc[i] += (xv < 0) != (wv < 0) ? -v : v;
    }
}

#ifdef MFE_ISA_AVX2
static void hdw_tap__avx2(int32_t *acc, const int8_t *x, const int32_t *w, int32_t c, int32_t xs, int32_t ef) {
    const __m128i s = _mm_cvtsi32_si128(xs);
    int32_t i = 0;
    for (; i + 8 <= c; i += 8) {
        __m256i xv = _mm256_sll_epi32(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(x + i))), s);
        __m256i wv = _mm256_loadu_si256((const __m256i *)(w + i));
        __m256i ax = _mm256_abs_epi32(xv), aw = _mm256_abs_epi32(wv);
        __m256i v = ef ? _mm256_add_epi32(ax, aw) : _mm256_min_epi32(ax, aw);
        v = _mm256_sign_epi32(_mm256_sign_epi32(v, xv), wv);  /* zero where x or w is zero */
        __m256i *p = (__m256i *)(acc + i);
        _mm256_storeu_si256(p, _mm256_add_epi32(_mm256_loadu_si256(p), v));
    }
    hdw_tap__scalar(acc + i, x + i, w + i, c - i, xs, ef);
}
#endif

#ifdef MFE_ISA_NEON
static void hdw_tap__neon(int32_t *acc, const int8_t *x, const int32_t *w, int32_t c, int32_t xs, int32_t ef) {
    const int32x4_t s = vdupq_n_s32(xs);
    int32_t i = 0;
    for (; i + 8 <= c; i += 8) {
        int16x8_t x16 = vmovl_s8(vld1_s8(x + i));
        for (int h = 0; h < 2; h++) {
            int32x4_t xv = vshlq_s32(h ? vmovl_high_s16(x16) : vmovl_s16(vget_low_s16(x16)), s);
            int32x4_t wv = vld1q_s32(w + i + 4 * h), ax = vabsq_s32(xv), aw = vabsq_s32(wv);
            int32x4_t v = ef ? vaddq_s32(ax, aw) : vminq_s32(ax, aw);
            v = vandq_s32(v, vreinterpretq_s32_u32(vandq_u32(vtstq_s32(xv, xv), vtstq_s32(wv, wv))));  /* 0 if x or w is 0 */
            int32x4_t neg = vshrq_n_s32(veorq_s32(xv, wv), 31);  /* -1 where the signs differ */
            v = vsubq_s32(veorq_s32(v, neg), neg);
            vst1q_s32(acc + i + 4 * h, vaddq_s32(vld1q_s32(acc + i + 4 * h), v));
        }
    }
    hdw_tap__scalar(acc + i, x + i, w + i, c - i, xs, ef);
}
#endif

#define hdw_tap MFE_KERNEL(hdw_tap)

/* The min op in int16 lanes (NEON: hdw_pixel__neon; AVX2: dwrows.h hdw16_row): |op| <= 128 << min(xs, ws), so
 * nine taps (and the xor's -1s below) fit int16 for min(xs, ws) <= 4; x << xs and |w| << ws (shifts <= 7) do too. */
static int hdw_i16(const mfe_node *nd) {
#if defined(MFE_ISA_NEON) || MFE_DW16
    const int32_t xs = nd->a[MFE_HDW_XSHIFT], ws = nd->a[MFE_HDW_WSHIFT];
    return !nd->a[MFE_HDW_OP] && (xs < ws ? xs : ws) <= 4;
#else
    (void)nd;
    return 0;
#endif
}

typedef struct {  /* one allocation (the loader frees prep with free()) */
    int32_t *w;          /* 9 x C: the weights widened and shifted once, for taps that load int32 lanes */
    hdw16_tables t;      /* hdw_i16 (t.bias != NULL): the int16 tables, in data[] too */
    int32_t xshift, lo, hi;  /* and the rest of what NEON's pixels read */
    int32_t data[];
} hdw_prep;

#ifdef MFE_ISA_NEON
/* One output pixel from its window (zeros where it leaves the input), 8 channels a step: sign(w) clamp(x << xs,
 * -a, a) as clamp(...) ^ m, which is -v - 1 where w < 0; the bias holds the 1s back. */
static void hdw_pixel__neon(int8_t *y, const int8_t *const win[9], const void *ctx) {
    const hdw_prep *t = ctx;  /* its fields in locals: y's stores could alias *t, and gcc would reload them */
    const int16_t *ta = t->t.a, *tna = t->t.na, *tm = t->t.m;
    const int32_t *bias = t->t.bias, *mult = t->t.mult, *shift = t->t.shift, c = t->t.c;
    const int32x4_t vlo = vdupq_n_s32(t->lo), vhi = vdupq_n_s32(t->hi);
    const int16x8_t sh = vdupq_n_s16((int16_t)t->xshift);
    const int8_t *x0 = win[0], *x1 = win[1], *x2 = win[2], *x3 = win[3], *x4 = win[4], *x5 = win[5], *x6 = win[6],
                 *x7 = win[7], *x8 = win[8];
    int32_t o = 0;
#define HDW_TAP(k) {                                                                                          \
        const size_t at = (size_t)(k) * c + o;                                                               \
        const int16x8_t v = vminq_s16(vmaxq_s16(vshlq_s16(vmovl_s8(vld1_s8(x##k + o)), sh), vld1q_s16(tna + at)), \
                                      vld1q_s16(ta + at));                                                 \
        acc = vaddq_s16(acc, veorq_s16(v, vld1q_s16(tm + at))); }
    for (; o + 8 <= c; o += 8) {
        int16x8_t acc = vdupq_n_s16(0);
        HDW_TAP(0) HDW_TAP(1) HDW_TAP(2) HDW_TAP(3) HDW_TAP(4) HDW_TAP(5) HDW_TAP(6) HDW_TAP(7) HDW_TAP(8)
        const mfe_rq8__neon q = mfe_rq8_load__neon(mult + o, shift + o, 0);
        vst1_s8(y + o, mfe_rq8_apply__neon(vaddw_s16(vld1q_s32(bias + o), vget_low_s16(acc)),
                                           vaddw_high_s16(vld1q_s32(bias + o + 4), acc), &q, vlo, vhi));
    }
#undef HDW_TAP
    for (; o < c; o++) {
        int32_t acc = bias[o];
        for (int k = 0; k < 9; k++) {
            const int32_t v = (int32_t)((uint32_t)(int32_t)win[k][o] << t->xshift), a = ta[(size_t)k * c + o];
            acc += (v < -a ? -a : v > a ? a : v) ^ tm[(size_t)k * c + o];
        }
        y[o] = mfe_requant(acc, mult[o], shift[o], t->lo, t->hi);
    }
}
#endif

MFE_SCALAR_FN void hdw_requant__scalar(int8_t *dst, const int32_t *acc, const int32_t *mult, const int32_t *shift,
                                       int32_t c, int32_t lo, int32_t hi) {
    for (int32_t i = 0; i < c; i++) dst[i] = mfe_requant(acc[i], mult[i], shift[i], lo, hi);
}

#define hdw_requant MFE_KERNEL(hdw_requant)
#define hdw_requant__neon mfe_requant_row__neon
#define hdw_requant__avx2 mfe_requant_row__x86

int mfe_prepare_hdw(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int32_t s = nd->a[MFE_HDW_STRIDE], c = x->c;
    MFE_CHECK(y->h == (x->h - 1) / s + 1 && y->w == (x->w - 1) / s + 1 && y->c == c, "output shape disagrees");
    MFE_CHECK(nd->blob_n[MFE_HDW_B_WEIGHT] == 9 * (int64_t)c && nd->blob_n[MFE_HDW_B_BIAS] == c, "weight/bias sizes wrong");
    int rc = mfe_check_requant_blobs(nd, MFE_HDW_B_MULT, MFE_HDW_B_SHIFT, c, 1, err, errlen);
    if (rc) return rc;
    const int32_t *bias = nd->blob[MFE_HDW_B_BIAS];
    for (int32_t i = 0; i < c; i++) {
        int64_t bound = 9 * ((128LL << nd->a[MFE_HDW_XSHIFT]) + (128LL << nd->a[MFE_HDW_WSHIFT])) + mfe_abs64(bias[i]);
        MFE_CHECK(bound <= INT32_MAX, "int32 accumulator of channel %d could wrap", i);
    }
    const int i16 = hdw_i16(nd);
    hdw_prep *p = malloc(sizeof *p + (sizeof(int32_t) * 9 + (i16 ? sizeof(int32_t) + 27 * sizeof(int16_t) : 0)) * (size_t)c);
    if (!p) MFE_FAIL(MFE_ENOMEM, "out of memory");
    nd->prep = p;
    p->w = p->data;
    p->xshift = nd->a[MFE_HDW_XSHIFT], p->lo = nd->a[MFE_HDW_ACT_LO], p->hi = nd->a[MFE_HDW_ACT_HI];
    const int8_t *src = nd->blob[MFE_HDW_B_WEIGHT];
    const int32_t ws = nd->a[MFE_HDW_WSHIFT];
    for (int32_t i = 0; i < 9 * c; i++) p->w[i] = (int32_t)((uint32_t)(int32_t)src[i] << ws);
    p->t = (hdw16_tables){NULL, NULL, NULL, NULL, nd->blob[MFE_HDW_B_MULT], nd->blob[MFE_HDW_B_SHIFT], c};
    if (i16) {
        int32_t *b = p->w + 9 * (size_t)c;
        int16_t *a = (int16_t *)(b + c), *na = a + 9 * (size_t)c, *m = na + 9 * (size_t)c;
        for (int32_t i = 0; i < c; i++) b[i] = bias[i];
        for (int32_t i = 0; i < 9 * c; i++) {
            a[i] = (int16_t)(mfe_abs64(src[i]) << ws), na[i] = (int16_t)-a[i], m[i] = (int16_t)-(src[i] < 0);
            b[i % c] -= m[i];
        }
        p->t.a = a, p->t.na = na, p->t.m = m, p->t.bias = b;
    }
    nd->scratch = sizeof(int32_t) * (size_t)c;
    return MFE_OK;
}

void mfe_run_hdw(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const mfe_tensor *X = c->x, *Y = c->y;
    const int32_t C = X->c, s = nd->a[MFE_HDW_STRIDE], xs = nd->a[MFE_HDW_XSHIFT], ef = nd->a[MFE_HDW_OP];
    const int32_t lo = nd->a[MFE_HDW_ACT_LO], hi = nd->a[MFE_HDW_ACT_HI];
    const hdw_prep *p = nd->prep;
    const int32_t *w = p->w, *bias = nd->blob[MFE_HDW_B_BIAS];
    const int32_t *mult = nd->blob[MFE_HDW_B_MULT], *shift = nd->blob[MFE_HDW_B_SHIFT];
    const int64_t rows = (int64_t)c->n * Y->h;
#if MFE_DW_ROWS
    if (!ef) {  /* the min op by rows (dwrows.h), accumulators in registers; zero padding adds nothing */
        const dw3_geom geo = {{NULL, NULL, NULL}, X->w, C, s, 1, 1, xs, p->t.bias ? C / 16 * 16 : 0};
        MFE_PARALLEL_FOR(c->threads, r, rows, {
            if (s == 1) dw3_row_at(X, Y, in0, out, r, geo, w, bias, mult, shift, 0, lo, hi, &p->t, DW_MIN, 1);
            else dw3_row_at(X, Y, in0, out, r, geo, w, bias, mult, shift, 0, lo, hi, &p->t, DW_MIN, 2);
        });
        return;
    }
#endif
#ifdef MFE_ISA_NEON
    if (p->t.bias) {  /* hdw_i16 */
        const mfe_win9 geo = {s, s, 1, 1, 0};
        MFE_PARALLEL_FOR(c->threads, r, rows, { mfe_window9_row(c, in0, out, r, geo, hdw_pixel__neon, p); });
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
            memcpy(acc, bias, sizeof(int32_t) * (size_t)C);
            for (int32_t ky = 0; ky < 3; ky++) {
                int32_t iy = oy * s - 1 + ky;
                if (iy < 0 || iy >= X->h) continue;
                for (int32_t kx = 0; kx < 3; kx++) {
                    int32_t ix = ox * s - 1 + kx;
                    if (ix >= 0 && ix < X->w)
                        hdw_tap(acc, xb + ((size_t)iy * X->w + ix) * C, w + (size_t)(ky * 3 + kx) * C, C, xs, ef);
                }
            }
            hdw_requant(yr + (size_t)ox * C, acc, mult, shift, C, lo, hi);
        }
    });
}
