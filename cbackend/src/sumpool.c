/* sumpool: stride-1 sums over a (cw channels x kh x kw) window, adds only (seed 001). Per output row:
 * column sums over kh rows and cw channels, then a horizontal sum over kw; zero padding spatially. */
#include <stdlib.h>
#include <string.h>
#include "arch.h"
#include "internal.h"
#include "neon.h"

/* cp[o] += xp[o] + ... + xp[o + cw - 1], o < co: one input pixel into the column sums */
MFE_SCALAR_FN void sumpool_cols__scalar(int32_t *cp, const int8_t *xp, int32_t co, int32_t cw) {
    for (int32_t o = 0; o < co; o++)
        for (int32_t dc = 0; dc < cw; dc++) cp[o] += xp[o + dc];
}

/* y[o] = requant(col[o] + col[co + o] + ... (kw columns)), o < co: one output pixel */
MFE_SCALAR_FN void sumpool_out__scalar(int8_t *y, const int32_t *col, int32_t co, int32_t kw,
                                       int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    for (int32_t o = 0; o < co; o++) {
        int32_t s = 0;
        for (int32_t dx = 0; dx < kw; dx++) s += col[(size_t)dx * co + o];
        y[o] = mfe_requant(s, mult, shift, lo, hi);
    }
}

#ifdef MFE_ISA_NEON
static void sumpool_cols__neon(int32_t *cp, const int8_t *xp, int32_t co, int32_t cw) {
    int32_t o = 0;
    for (; o + 8 <= co; o += 8) {  /* eight outputs at a time; xp[o + 7 + cw - 1] is still inside the pixel */
        int32x4_t a = vld1q_s32(cp + o), b = vld1q_s32(cp + o + 4);
        for (int32_t dc = 0; dc < cw; dc++) {
            int16x8_t v = vmovl_s8(vld1_s8(xp + o + dc));
            a = vaddw_s16(a, vget_low_s16(v)), b = vaddw_high_s16(b, v);
        }
        vst1q_s32(cp + o, a), vst1q_s32(cp + o + 4, b);
    }
    for (; o < co; o++) {  /* the last outputs: sum along the channel window, 16 at a time */
        int32x4_t a = vdupq_n_s32(0);
        int32_t dc = 0, s = 0;
        for (; dc + 16 <= cw; dc += 16) a = vpadalq_s16(a, vpaddlq_s8(vld1q_s8(xp + o + dc)));
        for (; dc < cw; dc++) s += xp[o + dc];
        cp[o] += s + vaddvq_s32(a);
    }
}

static void sumpool_out__neon(int8_t *y, const int32_t *col, int32_t co, int32_t kw,
                              int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    const int32x4_t vm = vdupq_n_s32(mult), vs = vdupq_n_s32(shift), vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    int32_t o = 0;
    for (; o + 8 <= co; o += 8) {
        int32x4_t a = vld1q_s32(col + o), b = vld1q_s32(col + o + 4);
        for (int32_t dx = 1; dx < kw; dx++)
            a = vaddq_s32(a, vld1q_s32(col + (size_t)dx * co + o)), b = vaddq_s32(b, vld1q_s32(col + (size_t)dx * co + o + 4));
        vst1_s8(y + o, mfe_narrow_s32x8(mfe_requant_s32x4(a, vm, vs, vlo, vhi), mfe_requant_s32x4(b, vm, vs, vlo, vhi)));
    }
    for (; o < co; o++) {
        int32_t s = 0;
        for (int32_t dx = 0; dx < kw; dx++) s += col[(size_t)dx * co + o];
        y[o] = mfe_requant(s, mult, shift, lo, hi);
    }
}
#endif

#define sumpool_cols MFE_KERNEL_NEON(sumpool_cols)
#define sumpool_out MFE_KERNEL_NEON(sumpool_out)

int mfe_prepare_sumpool(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int32_t *a = nd->a;
    int64_t wp = (int64_t)x->w + a[MFE_SUMPOOL_PAD_L] + a[MFE_SUMPOOL_PAD_R];
    int64_t ho = (int64_t)x->h + a[MFE_SUMPOOL_PAD_T] + a[MFE_SUMPOOL_PAD_B] - a[MFE_SUMPOOL_KH] + 1;
    MFE_CHECK(y->h == ho && y->w == wp - a[MFE_SUMPOOL_KW] + 1 && y->c == (int64_t)x->c - a[MFE_SUMPOOL_CW] + 1 && y->c > 0,
              "output shape disagrees with the window");
    MFE_CHECK(128LL * a[MFE_SUMPOOL_CW] * a[MFE_SUMPOOL_KH] * a[MFE_SUMPOOL_KW] <= INT32_MAX, "int32 sum could wrap");
    nd->scratch = sizeof(int32_t) * (size_t)wp * y->c;
    return MFE_OK;
}

void mfe_run_sumpool(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t *a = c->nd->a;
    const mfe_tensor *X = c->x, *Y = c->y;
    const int32_t cw = a[MFE_SUMPOOL_CW], kh = a[MFE_SUMPOOL_KH], kw = a[MFE_SUMPOOL_KW];
    const int32_t pt = a[MFE_SUMPOOL_PAD_T], pl = a[MFE_SUMPOOL_PAD_L], co = Y->c;
    const int32_t wp = X->w + pl + a[MFE_SUMPOOL_PAD_R];
    const int32_t mult = a[MFE_SUMPOOL_MULT], shift = a[MFE_SUMPOOL_SHIFT], lo = a[MFE_SUMPOOL_ACT_LO], hi = a[MFE_SUMPOOL_ACT_HI];
    const int64_t rows = (int64_t)c->n * Y->h;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        int32_t *col = (int32_t *)MFE_SCRATCH(c);
        mfe_row row = mfe_row_at(X, Y, in0, out, r);
        const int8_t *xb = row.x;
        int8_t *yr = row.y;
        const int32_t oy = row.oy;
        memset(col, 0, sizeof(int32_t) * (size_t)wp * co);
        for (int32_t dy = 0; dy < kh; dy++) {
            int32_t iy = oy - pt + dy;
            if (iy < 0 || iy >= X->h) continue;
            for (int32_t ix = 0; ix < X->w; ix++) {
                const int8_t *xp = xb + ((size_t)iy * X->w + ix) * X->c;
                sumpool_cols(col + (size_t)(ix + pl) * co, xp, co, cw);
            }
        }
        for (int32_t ox = 0; ox < Y->w; ox++)
            sumpool_out(yr + (size_t)ox * co, col + (size_t)ox * co, co, kw, mult, shift, lo, hi);
    }
}
