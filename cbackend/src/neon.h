/* NEON helpers shared by the kernel files (aarch64 builds only, see arch.h): exact requantisation of
 * int32 lanes. rshift_round is one SRSHL by -shift (it adds 2^(shift-1) in full precision, then shifts
 * arithmetically: floor((v + 2^(s-1)) / 2^s), and v itself for s = 0), so no lane can wrap. */
#ifndef MFE_NEON_H
#define MFE_NEON_H
#include "arch.h"
#include "internal.h"
#ifdef MFE_ISA_NEON

/* clamp(rshift_round(v, shift), lo, hi) of four int64 lanes (p0: lanes 0-1, p1: lanes 2-3); nshift = -shift. */
static inline int32x4_t mfe_rshift_clamp_s64x4(int64x2_t p0, int64x2_t p1, int32x4_t nshift, int32x4_t lo, int32x4_t hi) {
    p0 = vrshlq_s64(p0, vmovl_s32(vget_low_s32(nshift)));
    p1 = vrshlq_s64(p1, vmovl_high_s32(nshift));
    int32x4_t v = vcombine_s32(vqmovn_s64(p0), vqmovn_s64(p1));  /* saturating: then clamped into int8 */
    return vminq_s32(vmaxq_s32(v, lo), hi);
}

/* clamp(rshift_round(acc * mult, shift), lo, hi) per lane; mult in [0, 2^31), shift in [0, 63]. */
static inline int32x4_t mfe_requant_s32x4(int32x4_t acc, int32x4_t mult, int32x4_t shift, int32x4_t lo, int32x4_t hi) {
    return mfe_rshift_clamp_s64x4(vmull_s32(vget_low_s32(acc), vget_low_s32(mult)), vmull_high_s32(acc, mult),
                                  vnegq_s32(shift), lo, hi);
}

/* Two lanes groups already inside [lo, hi] (a subset of int8) -> eight int8. */
static inline int8x8_t mfe_narrow_s32x8(int32x4_t a, int32x4_t b) {
    return vmovn_s16(vcombine_s16(vmovn_s32(a), vmovn_s32(b)));
}

/* The requantisation of 8 channels, loaded once for many pixels: per-channel mult and -shift from prepared
 * shifts (conv.c's rq_shift, which may carry MFE_RQ_MUL32). mul32: every channel carries it, so
 * acc * mult + 2^(shift-1) fits int32 and one multiply and one rounding shift per four lanes do what the
 * int64 form does with six instructions. */
typedef struct { int32x4_t m0, m1, ns0, ns1; int mul32; } mfe_rq8__neon;

static inline mfe_rq8__neon mfe_rq8_load__neon(const int32_t *mult, const int32_t *shift, int mul32) {
    const int32x4_t low = vdupq_n_s32(MFE_RQ_MUL32 - 1);
    return (mfe_rq8__neon){vld1q_s32(mult), vld1q_s32(mult + 4), vnegq_s32(vandq_s32(vld1q_s32(shift), low)),
                           vnegq_s32(vandq_s32(vld1q_s32(shift + 4), low)), mul32};
}

static inline int8x8_t mfe_rq8_apply__neon(int32x4_t a0, int32x4_t a1, const mfe_rq8__neon *q, int32x4_t lo, int32x4_t hi) {
    if (q->mul32)
        return mfe_narrow_s32x8(vminq_s32(vmaxq_s32(vrshlq_s32(vmulq_s32(a0, q->m0), q->ns0), lo), hi),
                                vminq_s32(vmaxq_s32(vrshlq_s32(vmulq_s32(a1, q->m1), q->ns1), lo), hi));
    return mfe_narrow_s32x8(
        mfe_rshift_clamp_s64x4(vmull_s32(vget_low_s32(a0), vget_low_s32(q->m0)), vmull_high_s32(a0, q->m0), q->ns0, lo, hi),
        mfe_rshift_clamp_s64x4(vmull_s32(vget_low_s32(a1), vget_low_s32(q->m1)), vmull_high_s32(a1, q->m1), q->ns1, lo, hi));
}

/* dst[o] = requant(acc[o], mult[o], shift[o], lo, hi), per-channel parameters. */
static inline void mfe_requant_row__neon(int8_t *dst, const int32_t *acc, const int32_t *mult, const int32_t *shift,
                                         int32_t c, int32_t lo, int32_t hi) {
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    int32_t o = 0;
    for (; o + 8 <= c; o += 8) {
        const mfe_rq8__neon q = mfe_rq8_load__neon(mult + o, shift + o, 0);
        vst1_s8(dst + o, mfe_rq8_apply__neon(vld1q_s32(acc + o), vld1q_s32(acc + o + 4), &q, vlo, vhi));
    }
    for (; o < c; o++) dst[o] = mfe_requant(acc[o], mult[o], shift[o], lo, hi);
}

#endif
#endif
