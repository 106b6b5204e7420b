/* gemm: the dense int8 products of 1x1 convolutions (and of other dense convs over im2col rows),
 * y[p][o] = requant(bias[o] + sum_i x[p][i] w[o][i]), for a block of pixels at a time. The fast paths (AVX-512
 * VNNI, else AVX2; NEON with sdot, else ARMv8.0) pack the weights at load time into the layout their
 * instruction wants; builds without one report no packing and conv.c keeps its loop.
 * Padded input bytes meet zero weights: they add nothing. */
#include <string.h>
#include "arch.h"
#include "internal.h"

#ifdef MFE_ISA_VNNI
#include "x86.h"
/* Weights as [cout/16][cin/4][16][4] int8 (zero padded), then bias'[cout16] int32. vpdpbusd multiplies
 * unsigned by signed bytes, so x goes in as x + 128 (xor 0x80), and bias' = bias - 128 * sum(w) takes
 * the 128 * sum(w) back off (|bias| + 128 sum|w| fits int32: the load-time proof). Its int32 sums wrap
 * modulo 2^32, so the result is exact whenever the true sum fits int32 (proved at load). The epilogue
 * requantises the accumulators in registers and stores int8 (mfe_rq16_apply). */
static int64_t k4_of(int32_t cin) { return (cin + 3) / 4; }
static int64_t o16_of(int32_t cout) { return (cout + 15) / 16 * 16; }

size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) {
    return (size_t)(o16_of(cout) * k4_of(cin) * 4) + sizeof(int32_t) * (size_t)o16_of(cout);
}

void mfe_gemm_pack(void *dst, const int8_t *w, const int32_t *bias, int32_t cout, int32_t cin, int known) {
    (void)known;  /* vpdpbusd never saturates */
    const int64_t k4 = k4_of(cin), o16 = o16_of(cout);
    int8_t *p = dst;
    int32_t *b = (int32_t *)(p + o16 * k4 * 4);
    memset(dst, 0, mfe_gemm_packed_bytes(cout, cin));
    for (int32_t o = 0; o < cout; o++) {
        int64_t v = bias[o];
        for (int32_t i = 0; i < cin; i++) {
            p[((o / 16 * k4 + i / 4) * 16 + o % 16) * 4 + i % 4] = w[(size_t)o * cin + i];
            v -= 128 * (int64_t)w[(size_t)o * cin + i];
        }
        b[o] = (int32_t)v;  /* |v| <= |bias| + 128 sum|w| <= INT32_MAX */
    }
}

/* The product loop for B (1 or 3) blocks of 16 outputs x R pixels, accumulators in registers (each
 * broadcast feeds B vpdpbusd), left in acc[R][B]. Written with named accumulators: gcc 12 kept half of an
 * array of them on the stack inside the loop. */
#define REP1(M) M(0)
#define REP2(M) M(0) M(1)
#define REP4(M) REP2(M) M(2) M(3)
#define REP8(M) REP4(M) M(4) M(5) M(6) M(7)
#define BIAS1 const __m512i b0 = _mm512_loadu_si512((const void *)bias);
#define BIAS3 BIAS1 const __m512i b1 = _mm512_loadu_si512((const void *)(bias + 16)), b2 = _mm512_loadu_si512((const void *)(bias + 32));
#define WLD1 const __m512i w0 = _mm512_loadu_si512((const void *)(w + k * 64));
#define WLD3 WLD1 const __m512i w1 = _mm512_loadu_si512((const void *)(w + (k4 + k) * 64)), \
                            w2 = _mm512_loadu_si512((const void *)(w + (2 * k4 + k) * 64));
#define DECL1(p) __m512i a##p##_0 = b0;
#define DECL3(p) __m512i a##p##_0 = b0, a##p##_1 = b1, a##p##_2 = b2;
#define XB(p) const __m512i x##p = _mm512_set1_epi32(xu[(size_t)(p) * k4 + k]);
#define STEP1(p) { XB(p) a##p##_0 = _mm512_dpbusd_epi32(a##p##_0, x##p, w0); }
#define STEP3(p) { XB(p) a##p##_0 = _mm512_dpbusd_epi32(a##p##_0, x##p, w0); \
                   a##p##_1 = _mm512_dpbusd_epi32(a##p##_1, x##p, w1); a##p##_2 = _mm512_dpbusd_epi32(a##p##_2, x##p, w2); }
#define OUT1(p) acc[p][0] = a##p##_0;
#define OUT3(p) OUT1(p) acc[p][1] = a##p##_1, acc[p][2] = a##p##_2;
#define GEMM_KLOOP(R, B)                                                                                  \
    static __attribute__((noinline, aligned(64))) void kloop_##R##x##B(__m512i acc[R][B], const int32_t *xu, const int8_t *w, \
                                                          const int32_t *bias, int64_t k4) {              \
        BIAS##B                                                                                           \
        REP##R(DECL##B)                                                                                   \
        for (int64_t k = 0; k < k4; k++) {                                                                \
            WLD##B                                                                                        \
            REP##R(STEP##B)                                                                               \
        }                                                                                                 \
        REP##R(OUT##B)                                                                                    \
    }
GEMM_KLOOP(8, 3)
GEMM_KLOOP(8, 1)
GEMM_KLOOP(4, 3)
GEMM_KLOOP(4, 1)
GEMM_KLOOP(2, 3)
GEMM_KLOOP(2, 1)
GEMM_KLOOP(1, 3)
GEMM_KLOOP(1, 1)

/* Then requantise and store the np <= R real pixels. */
#define GEMM_SWEEP(R, B)                                                                               \
    do {                                                                                               \
        __m512i a[R][B];                                                                               \
        kloop_##R##x##B(a, xu, w + ob * k4 * 64, bias + ob * 16, k4);                                 \
        for (int j = 0; j < B; j++) {                                                                  \
            int32_t o0 = (int32_t)(ob + j) * 16, n = cout - o0 < 16 ? cout - o0 : 16;                  \
            mfe_rq16 q = mfe_rq16_load(mult + o0, shift + o0, n, lo, hi);                              \
            __mmask16 km = mfe_mask16(n);                              \
            for (int p = 0; p < R && p < np; p++)                                                      \
                _mm_mask_storeu_epi8(y + (size_t)p * cout + o0, km, mfe_rq16_apply(a[p][j], &q));     \
        }                                                                                              \
    } while (0)

#define GEMM_ALL(R)                                          \
    do {                                                     \
        int64_t ob = 0;                                      \
        for (; ob + 3 <= o16; ob += 3) GEMM_SWEEP(R, 3);     \
        for (; ob < o16; ob++) GEMM_SWEEP(R, 1);             \
    } while (0)

#define GEMM_ROWS 8
int mfe_gemm_block_rows(int32_t cin) { (void)cin; return GEMM_ROWS; }
size_t mfe_gemm_scratch_bytes(int32_t cin) { return (size_t)GEMM_ROWS * k4_of(cin) * 4; }

void mfe_gemm_rows(int8_t *y, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *mult, const int32_t *shift, int32_t lo, int32_t hi) {
    const int64_t k4 = k4_of(cin), o16 = o16_of(cout) / 16;
    const int8_t *w = packed;
    const int32_t *bias = (const int32_t *)(w + o16 * 16 * k4 * 4);
    int32_t *xu = scratch;  /* the rows as unsigned x + 128, zero padded to a multiple of 4 */
    if (cin % 4) memset(xu, 0x80, (size_t)np * k4 * 4);
    for (int p = 0; p < np; p++) memcpy((int8_t *)xu + (size_t)p * k4 * 4, x + (size_t)p * cin, (size_t)cin);
    for (size_t i = 0; i < (size_t)np * k4; i++) xu[i] ^= (int32_t)0x80808080;
    const int rows = np > 4 ? GEMM_ROWS : np > 2 ? 4 : np;  /* a short block runs fewer rows */
    memset(xu + (size_t)np * k4, 0, (size_t)(rows - np) * k4 * 4);  /* spare rows: computed, never stored */
    if (rows == GEMM_ROWS) GEMM_ALL(GEMM_ROWS);
    else if (rows == 4) GEMM_ALL(4);
    else if (rows == 2) GEMM_ALL(2);
    else GEMM_ALL(1);
}
#elif defined(MFE_ISA_AVX2)
#include "x86.h"
/* Two layouts, 32 bytes per block of 8 outputs and k-step either way, chosen at load (a 64-byte header holds
 * which), then bias[cout8] int32:
 *   int16 pairs [cout/8][cin/2][8][2]: inputs sign-extended to int16 pairs; vpmaddwd of a broadcast pair
 *     (x0, x1) with an output's (w0, w1) adds x0 w0 + x1 w1 (|.| <= 2^15) to its int32 lane exactly;
 *   bytes [cout/8][cin/4][8][4]: vpmaddubsw of four broadcast bytes, unsigned, with the signed weights, and
 *     vpmaddwd by ones adds the pairs into int32: half the instructions and weight bytes per product. Its
 *     int16 pair sums saturate, so it runs only where the loader knows they cannot:
 *     MFE_GEMM_X_NONNEG, inputs in [0, 127] (the producer clamps at >= 0, as after ReLU6): at most
 *       2 * 127 * 128 = 32512;
 *     MFE_GEMM_W_NARROW, weights in [-64, 64]: the input goes in as x + 128 (xor 0x80), at most
 *       2 * 255 * 64 = 32640, and bias' = bias - 128 sum(w) takes the 128 sum(w) back off.
 * The load-time proof (|bias| + 128 sum|w| <= INT32_MAX) keeps every partial sum inside int32, bias' too.
 * GEMM_R pixels by B <= 2 blocks of 8 outputs keep their accumulators in registers. A call sweeps every block
 * of outputs over up to 64 pixels, so each block's weights are read from cache once per call rather than once
 * per 8 pixels (the weights of a 4x4x960 layer are 2 MB as int16: beyond L2), with the rows' copy kept near
 * 64 KB. */
#define GEMM_R 4
#define GEMM_HEAD 64
static int64_t k2_of(int32_t cin) { return (cin + 1) / 2; }
static int64_t k4_of(int32_t cin) { return (cin + 3) / 4; }
static int64_t o8_of(int32_t cout) { return (cout + 7) / 8 * 8; }

size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) {  /* the int16 layout: the larger */
    return GEMM_HEAD + (size_t)(o8_of(cout) * k2_of(cin) * 4) + sizeof(int32_t) * (size_t)o8_of(cout);
}

void mfe_gemm_pack(void *dst, const int8_t *w, const int32_t *bias, int32_t cout, int32_t cin, int known) {
    const int u8 = known != MFE_GEMM_ANY;
    const int64_t ks = u8 ? k4_of(cin) : k2_of(cin), per = u8 ? 4 : 2;
    memset(dst, 0, mfe_gemm_packed_bytes(cout, cin));
    *(int32_t *)dst = known;
    int8_t *p8 = (int8_t *)dst + GEMM_HEAD;
    int16_t *p16 = (int16_t *)p8;
    int32_t *b = (int32_t *)(p8 + o8_of(cout) / 8 * ks * 32);
    for (int32_t o = 0; o < cout; o++) {
        int64_t v = bias[o];
        for (int32_t i = 0; i < cin; i++) {
            const size_t at = (size_t)((o / 8 * ks + i / per) * 8 + o % 8) * per + i % per;
            if (u8) p8[at] = w[(size_t)o * cin + i];
            else p16[at] = w[(size_t)o * cin + i];
            if (known == MFE_GEMM_W_NARROW) v -= 128 * (int64_t)w[(size_t)o * cin + i];
        }
        b[o] = (int32_t)v;
    }
}

static inline __attribute__((always_inline)) void kloop(__m256i acc[GEMM_R][2], const int32_t *xp, const int8_t *w,
                                                        const int32_t *bias, int64_t ks, const int B, const int U8) {
    const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    const __m256i b0 = _mm256_loadu_si256((const __m256i *)bias), b1 = B == 2 ? _mm256_loadu_si256((const __m256i *)(bias + 8)) : zero;
    /* named accumulators: gcc 12 kept one of an array of them on the stack, a store-forwarding chain per k-step */
    __m256i a00 = b0, a10 = b0, a20 = b0, a30 = b0, a01 = b1, a11 = b1, a21 = b1, a31 = b1;
#define MAC(a, x, wv) a = _mm256_add_epi32(a, U8 ? _mm256_madd_epi16(_mm256_maddubs_epi16(x, wv), ones) : _mm256_madd_epi16(x, wv))
#define PIX(p) { const __m256i x = _mm256_set1_epi32(xp[(p) * ks + k]); MAC(a##p##0, x, w0); if (B == 2) MAC(a##p##1, x, w1); }
    for (int64_t k = 0; k < ks; k++) {
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(w + k * 32));
        const __m256i w1 = B == 2 ? _mm256_loadu_si256((const __m256i *)(w + (ks + k) * 32)) : zero;
        PIX(0) PIX(1) PIX(2) PIX(3)
    }
#undef PIX
#undef MAC
    acc[0][0] = a00, acc[1][0] = a10, acc[2][0] = a20, acc[3][0] = a30;
    acc[0][1] = a01, acc[1][1] = a11, acc[2][1] = a21, acc[3][1] = a31;
}
/* Cache-line aligned: where the linker happened to place the inner loop moved mbv2's int16 GEMM layers by 10%. */
#define GEMM_KLOOP(B, U8)                                                                                        \
    static __attribute__((noinline, aligned(64))) void kloop_##B##_##U8(__m256i acc[GEMM_R][2], const int32_t *xp,          \
                                                           const int8_t *w, const int32_t *bias, int64_t ks) { \
        kloop(acc, xp, w, bias, ks, B, U8);                                                                      \
    }
GEMM_KLOOP(1, 0)
GEMM_KLOOP(2, 0)
GEMM_KLOOP(1, 1)
GEMM_KLOOP(2, 1)

int mfe_gemm_block_rows(int32_t cin) {
    const int64_t rows = (64 << 10) / (4 * k2_of(cin)) / GEMM_R * GEMM_R;
    return rows < 8 ? 8 : rows > 64 ? 64 : (int)rows;
}
size_t mfe_gemm_scratch_bytes(int32_t cin) { return sizeof(int32_t) * (size_t)mfe_gemm_block_rows(cin) * k2_of(cin); }

void mfe_gemm_rows(int8_t *y, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *mult, const int32_t *shift, int32_t lo, int32_t hi) {
    const int known = *(const int32_t *)packed, u8 = known != MFE_GEMM_ANY;
    const int64_t ks = u8 ? k4_of(cin) : k2_of(cin), o8 = o8_of(cout) / 8;
    const int8_t *w = (const int8_t *)packed + GEMM_HEAD;
    const int32_t *bias = (const int32_t *)(w + o8 * ks * 32);
    /* the rows as 4-byte k-steps: bytes (u8, then offset to x + 128 for narrow weights) or sign-extended to int16
     * pairs, zero padded to whole k-steps and to whole GEMM_R blocks */
    int8_t *xs = scratch;
    const int rows = (np + GEMM_R - 1) / GEMM_R * GEMM_R;
    if (u8 && cin % 4 == 0) memcpy(xs, x, (size_t)np * cin);  /* whole k-steps already: one copy, not one per row */
    else for (int p = 0; p < np; p++) {
        const int8_t *xr = x + (size_t)p * cin;
        if (u8) {
            memcpy(xs + (size_t)p * ks * 4, xr, (size_t)cin);
            memset(xs + (size_t)p * ks * 4 + cin, 0, (size_t)(ks * 4 - cin));
            continue;
        }
        int16_t *d = (int16_t *)xs + (size_t)p * ks * 2;
        int32_t i = 0;
        for (; i + 16 <= cin; i += 16) _mm256_storeu_si256((__m256i *)(d + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(xr + i))));
        for (; i + 8 <= cin; i += 8) _mm_storeu_si128((__m128i *)(d + i), _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(xr + i))));
        for (; i < ks * 2; i++) d[i] = i < cin ? xr[i] : 0;
    }
    if (known == MFE_GEMM_W_NARROW)  /* x + 128; the padding bytes too, which meet zero weights */
        for (size_t i = 0; i < (size_t)np * ks; i++) ((int32_t *)xs)[i] ^= (int32_t)0x80808080;
    memset(xs + (size_t)np * ks * 4, 0, (size_t)((rows - np) * ks * 4));
    for (int64_t ob = 0; ob < o8;) {
        const int B = o8 - ob >= 2 ? 2 : 1;
        mfe_rq8 q[2];
        int32_t n[2];
        for (int j = 0; j < B; j++) {
            const int32_t o0 = (int32_t)(ob + j) * 8;
            n[j] = cout - o0 < 8 ? cout - o0 : 8;
            q[j] = mfe_rq8_load(mult + o0, shift + o0, n[j], lo, hi);
        }
        for (int p0 = 0; p0 < np; p0 += GEMM_R) {
            __m256i a[GEMM_R][2];
            const int32_t *xp = (const int32_t *)xs + (size_t)p0 * ks;
            const int8_t *wb = w + ob * ks * 32;
            if (u8) (B == 2 ? kloop_2_1 : kloop_1_1)(a, xp, wb, bias + ob * 8, ks);
            else (B == 2 ? kloop_2_0 : kloop_1_0)(a, xp, wb, bias + ob * 8, ks);
            for (int p = 0; p < GEMM_R && p0 + p < np; p++) {
                int8_t *yp = y + (size_t)(p0 + p) * cout + ob * 8;
                if (B == 2 && n[1] == 8)  /* 16 whole outputs: one store */
                    _mm_storeu_si128((__m128i *)yp, mfe_pack16(mfe_rq8_apply(a[p][0], &q[0]), mfe_rq8_apply(a[p][1], &q[1])));
                else
                    for (int j = 0; j < B; j++) mfe_store8(yp + j * 8, mfe_pack8(mfe_rq8_apply(a[p][j], &q[j])), n[j]);
            }
        }
        ob += B;
    }
}
#elif defined(MFE_ISA_NEON)
#include "neon.h"
/* Weights in blocks of 16 outputs, zero padded to whole k-steps of KSTEP inputs, then bias[cout16] int32,
 * after a 64-byte header; GEMM_R pixels x 16 outputs keep their accumulators in registers and the rows are
 * read in place. The k-loop by instruction set:
 *   sdot (ARMv8.2 dotprod: Orin): [cout/16][cin/4][16][4]; one sdot by lane adds four byte products of a
 *     pixel's four inputs into each of four outputs' int32 lanes, exact;
 *   ARMv8.0 (Cortex-A57: Nano): [cout/16][cin][16]; a k-step broadcasts one input byte of each pixel (ld1r)
 *     against the 16 outputs' weights: smull/smull2 give exact int16 products, and two k-steps share an
 *     int16 lane (smlal) before saddw widens them into the int32 accumulators, half the widening adds of one
 *     product per lane (the A57's second NEON pipe is what runs out). A pair stays inside int16 unless both
 *     products are (-128)(-128): the loader's `known` rules that out (inputs >= 0, or weights within 64),
 *     else the packing does (no weight of -128, which the converter never writes); the header holds how
 *     many products share a lane (2, else 1). */
#define GEMM_R 4
#define GEMM_HEAD 64
#ifdef MFE_ISA_DOTPROD
#define KSTEP 4
#else
#define KSTEP 2
#endif
static int64_t blocks16_of(int32_t cout) { return (cout + 15) / 16; }  /* blocks of 16 outputs */
static int64_t kpad_of(int32_t cin) { return (cin + KSTEP - 1) / KSTEP * KSTEP; }

size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) {
    return GEMM_HEAD + (size_t)(blocks16_of(cout) * 16 * kpad_of(cin)) + sizeof(int32_t) * (size_t)blocks16_of(cout) * 16;
}

void mfe_gemm_pack(void *dst, const int8_t *w, const int32_t *bias, int32_t cout, int32_t cin, int known) {
    const int64_t kp = kpad_of(cin);
    int pairs = 2;
    for (int64_t i = 0; KSTEP == 2 && known == MFE_GEMM_ANY && i < (int64_t)cout * cin; i++)
        if (w[i] == -128) pairs = 1;
    memset(dst, 0, mfe_gemm_packed_bytes(cout, cin));
    *(int32_t *)dst = pairs;
    int8_t *p = (int8_t *)dst + GEMM_HEAD;
    int32_t *b = (int32_t *)(p + blocks16_of(cout) * 16 * kp);
    for (int32_t o = 0; o < cout; o++) {
        int8_t *blk = p + o / 16 * 16 * kp;
        for (int32_t i = 0; i < cin; i++)
            blk[KSTEP == 4 ? (i / 4 * 16 + o % 16) * 4 + i % 4 : i * 16 + o % 16] = w[(size_t)o * cin + i];
        b[o] = bias[o];
    }
}

/* The requantisation of a block of n <= 16 outputs, applied in the k-loop's registers. */
typedef struct { mfe_rq8__neon q[2]; int32x4_t lo, hi; int32_t n; } gemm_out;

static inline void store16(int8_t *y, int32x4_t a0, int32x4_t a1, int32x4_t a2, int32x4_t a3, const gemm_out *o) {
    const int8x16_t v = vcombine_s8(mfe_rq8_apply__neon(a0, a1, &o->q[0], o->lo, o->hi),
                                    mfe_rq8_apply__neon(a2, a3, &o->q[1], o->lo, o->hi));
    if (o->n == 16) {
        vst1q_s8(y, v);
        return;
    }
    int8_t t[16];
    vst1q_s8(t, v);
    memcpy(y, t, (size_t)o->n);
}

/* Accumulators named, not an array: gcc keeps arrays of them in memory. */
#define NREP(M) M(0) M(1) M(2) M(3)
#define NDECL(p) int32x4_t a##p##0 = b0, a##p##1 = b1, a##p##2 = b2, a##p##3 = b3;
#define NOUT(p) if (yr[p]) store16(yr[p], a##p##0, a##p##1, a##p##2, a##p##3, o);
#ifdef MFE_ISA_DOTPROD
/* k-step j (0-3) of a 16-input chunk: four weight registers (4 outputs x 4 inputs each) against lane j of
 * every pixel's chunk */
#define DDOT(p, j) a##p##0 = vdotq_laneq_s32(a##p##0, w0, xv##p, j), a##p##1 = vdotq_laneq_s32(a##p##1, w1, xv##p, j), \
                   a##p##2 = vdotq_laneq_s32(a##p##2, w2, xv##p, j), a##p##3 = vdotq_laneq_s32(a##p##3, w3, xv##p, j);
#define DSTEP(j) {                                                                                              \
        const int8x16_t w0 = vld1q_s8(w + 64 * (j)), w1 = vld1q_s8(w + 64 * (j) + 16), w2 = vld1q_s8(w + 64 * (j) + 32), \
                        w3 = vld1q_s8(w + 64 * (j) + 48);                                                       \
        DDOT(0, j) DDOT(1, j) DDOT(2, j) DDOT(3, j) }
#define DLOAD(p) xv##p = vld1q_s8(x##p + k);

static __attribute__((noinline)) void kloop16(int8_t *const yr[GEMM_R], const int8_t *const xr[GEMM_R], const int8_t *w,
                                              const int32_t *bias, int32_t cin, int pairs, const gemm_out *o) {
    (void)pairs;
    const int8_t *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
    const int32x4_t b0 = vld1q_s32(bias), b1 = vld1q_s32(bias + 4), b2 = vld1q_s32(bias + 8), b3 = vld1q_s32(bias + 12);
    NREP(NDECL)
    int8x16_t xv0, xv1, xv2, xv3;
    int32_t k = 0;
    for (; k + 16 <= cin; k += 16, w += 256) {
        NREP(DLOAD)
        DSTEP(0) DSTEP(1) DSTEP(2) DSTEP(3)
    }
    if (k < cin) {  /* the last inputs, zero padded to a whole chunk; only its k-steps that hold inputs run */
        int8_t t[GEMM_R][16] = {{0}};
        for (int p = 0; p < GEMM_R; p++) memcpy(t[p], xr[p] + k, (size_t)(cin - k));
        xv0 = vld1q_s8(t[0]), xv1 = vld1q_s8(t[1]), xv2 = vld1q_s8(t[2]), xv3 = vld1q_s8(t[3]);
        const int32_t steps = (cin - k + 3) / 4;
        DSTEP(0)
        if (steps > 1) DSTEP(1)
        if (steps > 2) DSTEP(2)
        if (steps > 3) DSTEP(3)
    }
    NREP(NOUT)
}
#else
/* **p++ in all 16 lanes: one ld1r that steps the pointer. gcc makes vld1q_dup_s8 in this loop an ldrsb and
 * a dup from a general register, two instructions, the second on a NEON pipe. */
static inline int8x16_t ld1r_next(const int8_t **p) {
    int8x16_t v;
    __asm__("ld1r {%0.16b}, [%1], #1" : "=w"(v), "+r"(*p) : "m"(**p));
    return v;
}

#define NWIDEN(p, t0, t1) a##p##0 = vaddw_s16(a##p##0, vget_low_s16(t0)), a##p##1 = vaddw_high_s16(a##p##1, t0), \
                          a##p##2 = vaddw_s16(a##p##2, vget_low_s16(t1)), a##p##3 = vaddw_high_s16(a##p##3, t1);
#define NPAIR(p) {                                                                                              \
        const int8x16_t xa = ld1r_next(&x##p), xb = ld1r_next(&x##p);                                           \
        const int16x8_t t0 = vmlal_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(xa)), vget_low_s8(w1), vget_low_s8(xb)); \
        const int16x8_t t1 = vmlal_high_s8(vmull_high_s8(w0, xa), w1, xb);                                       \
        NWIDEN(p, t0, t1) }
#define NSINGLE(p) {                                                                                               \
        const int8x16_t xa = ld1r_next(&x##p);                                                                  \
        const int16x8_t t0 = vmull_s8(vget_low_s8(w0), vget_low_s8(xa)), t1 = vmull_high_s8(w0, xa);            \
        NWIDEN(p, t0, t1) }

static __attribute__((noinline)) void kloop16(int8_t *const yr[GEMM_R], const int8_t *const xr[GEMM_R], const int8_t *w,
                                              const int32_t *bias, int32_t cin, int pairs, const gemm_out *o) {
    const int8_t *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
    const int32x4_t b0 = vld1q_s32(bias), b1 = vld1q_s32(bias + 4), b2 = vld1q_s32(bias + 8), b3 = vld1q_s32(bias + 12);
    NREP(NDECL)
    int32_t k = 0;
    if (pairs == 2)
        for (; k + 2 <= cin; k += 2, w += 32) {
            const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
            NREP(NPAIR)
        }
    for (; k < cin; k++, w += 16) {
        const int8x16_t w0 = vld1q_s8(w);
        NREP(NSINGLE)
    }
    NREP(NOUT)
}
#endif
#undef NREP
#undef NDECL
#undef NOUT
#undef DDOT
#undef DSTEP
#undef DLOAD
#undef NWIDEN
#undef NPAIR
#undef NSINGLE

int mfe_gemm_block_rows(int32_t cin) {  /* about 16 KB of rows, swept once per block of outputs */
    const int32_t rows = (16 << 10) / (cin > 0 ? cin : 1) / GEMM_R * GEMM_R;
    return rows < 8 ? 8 : rows > 64 ? 64 : rows;
}
size_t mfe_gemm_scratch_bytes(int32_t cin) { (void)cin; return 0; }

void mfe_gemm_rows(int8_t *y, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *mult, const int32_t *shift, int32_t lo, int32_t hi) {
    (void)scratch;
    const int pairs = *(const int32_t *)packed;
    const int64_t kp = kpad_of(cin), blocks = blocks16_of(cout);
    const int8_t *w = (const int8_t *)packed + GEMM_HEAD;
    const int32_t *bias = (const int32_t *)(w + blocks * 16 * kp);
    const int32x4_t vlo = vdupq_n_s32(lo), vhi = vdupq_n_s32(hi);
    for (int64_t ob = 0; ob < blocks; ob++) {
        const int32_t o0 = (int32_t)ob * 16, n = cout - o0 < 16 ? cout - o0 : 16;
        int32_t m[16] = {0}, s[16] = {0};  /* this block's requantisation, zero past cout */
        int mul32 = 1;
        for (int32_t j = 0; j < n; j++) {
            m[j] = mult[o0 + j], s[j] = shift[o0 + j];
            mul32 &= shift[o0 + j] >= MFE_RQ_MUL32;
        }
        const gemm_out out = {{mfe_rq8_load__neon(m, s, mul32), mfe_rq8_load__neon(m + 8, s + 8, mul32)}, vlo, vhi, n};
        for (int p0 = 0; p0 < np; p0 += GEMM_R) {
            const int8_t *xr[GEMM_R];  /* spare rows repeat the last one: computed, never stored */
            int8_t *yr[GEMM_R];
            for (int p = 0; p < GEMM_R; p++) {
                xr[p] = x + (size_t)(p0 + p < np ? p0 + p : np - 1) * cin;
                yr[p] = p0 + p < np ? y + (size_t)(p0 + p) * cout + o0 : NULL;
            }
            kloop16(yr, xr, w + ob * 16 * kp, bias + o0, cin, pairs, &out);
        }
    }
}
#else
int mfe_gemm_block_rows(int32_t cin) { return 8; }
size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin) { return 0; }
void mfe_gemm_pack(void *dst, const int8_t *w, const int32_t *bias, int32_t cout, int32_t cin, int known) {}
size_t mfe_gemm_scratch_bytes(int32_t cin) { return 0; }
void mfe_gemm_rows(int8_t *y, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *mult, const int32_t *shift, int32_t lo, int32_t hi) {}
#endif
