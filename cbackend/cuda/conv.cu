/* conv2d and linear: int8 x int8 -> int32 accumulate -> requantise to int8 (or int32 logits).
 *
 * Depthwise (groups == cin == cout): one thread per output element over the taps, channels contiguous.
 * Everything else (dense, grouped, 1x1, strided, padded, and linear as a 1x1 conv over a 1x1 image of
 * H*W*C channels) is an implicit GEMM per group: rows are output pixels, columns output channels, and
 * k = (ky * kw + kx) * cin_g + c runs over the OHWI weight layout; padded taps read pad_value. Weights are
 * repacked once at load to [cout][K4] int8 (K rounded up to 4 with zeros) so each 32-bit word holds four
 * k; tiles of 64 pixels x 64 channels x 32 k go through shared memory, each thread accumulating 4 x 4
 * outputs with __dp4a (sm_61+) or the plain four-product path (sm_53). The int32 sums wrap like the
 * hardware, so every order gives the exact sum the loader proved fits in int32. */
#include <stdlib.h>
#include <string.h>
#include "common.cuh"

#define THREADS 256
#define BM 64      /* output pixels per tile */
#define BN 64      /* output channels per tile */
#define BKW 8      /* k words (4 k each) per tile step */
#define LDS_PAD 68 /* shared row stride in words: conflict-free stores, 16-byte aligned int4 reads */

struct gemm_geo {
    int32_t H, W, C;                /* input per image */
    int32_t OH, OW, cout;           /* output per image */
    int32_t kh, kw, sh, sw, pt, pl;
    int32_t cig, cog, K, K4w;       /* per group: input channels, output channels, k count, words per weight row */
    int32_t pv_word, pv;            /* pad_value replicated into four bytes, and as an int */
    int32_t lo, hi, out_i32;
    long long P;                    /* output pixels of the batch */
};

enum { GATHER_BYTES, GATHER_WORDS, GATHER_POINTWISE };

/* The four bytes A[p][4kw .. 4kw+3] of output pixel p (image b, row oy, column ox) in group g.
 * WORDS: cin_g % 4 == 0 and C % 4 == 0, so the four k share one tap and one aligned 32-bit load;
 * POINTWISE: also a 1x1 kernel, stride 1, no padding: A is the input itself, row p. */
template <int GATHER>
__device__ __forceinline__ int32_t a_word(const int8_t *__restrict__ x, const gemm_geo &g, int32_t grp, long long p, long long b,
                                          int32_t oy, int32_t ox, int32_t kword) {
    const int32_t k0 = 4 * kword;
    if (GATHER == GATHER_POINTWISE)
        return k0 < g.K ? *(const int32_t *)(x + (size_t)p * g.C + (size_t)grp * g.cig + k0) : 0;
    if (GATHER == GATHER_WORDS) {
        if (k0 >= g.K) return 0;
        int32_t tap = k0 / g.cig, c = k0 - tap * g.cig, ky = tap / g.kw, kx = tap - ky * g.kw;
        int32_t iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
        if (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) return g.pv_word;
        return *(const int32_t *)(x + (((size_t)b * g.H + iy) * g.W + ix) * g.C + (size_t)grp * g.cig + c);
    }
    uint32_t w = 0;
    for (int32_t j = 0; j < 4; j++) {
        int32_t k = k0 + j, v = 0;
        if (k < g.K) {
            int32_t tap = k / g.cig, c = k - tap * g.cig, ky = tap / g.kw, kx = tap - ky * g.kw;
            int32_t iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx;
            v = (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) ? g.pv
                : x[(((size_t)b * g.H + iy) * g.W + ix) * g.C + (size_t)grp * g.cig + c];
        }
        w |= (uint32_t)(uint8_t)(int8_t)v << (8 * j);
    }
    return (int32_t)w;
}

/* blockIdx.x: 64-pixel tile; blockIdx.y: (group - group0) * column tiles + column tile */
template <int GATHER>
__global__ void __launch_bounds__(THREADS) gemm_kernel(const int8_t *__restrict__ x, const int32_t *__restrict__ w4,
                                                       const int32_t *__restrict__ bias, const int32_t *__restrict__ mult,
                                                       const int32_t *__restrict__ shift, void *__restrict__ y, gemm_geo g,
                                                       int32_t group0, int32_t ntiles) {
    __shared__ __align__(16) int32_t As[BKW][LDS_PAD];
    __shared__ __align__(16) int32_t Bs[BKW][LDS_PAD];
    const int32_t t = threadIdx.x, tx = t % 16, ty = t / 16;
    const int32_t grp = group0 + blockIdx.y / ntiles, n0 = (blockIdx.y % ntiles) * BN;
    const long long p0 = (long long)blockIdx.x * BM;

    /* the two tile rows this thread loads: pixel m = t / 8 (+ 32), word kw = t % 8 */
    const int32_t lkw = t % BKW;
    long long lp[2], lb[2];
    int32_t loy[2], lox[2];
    bool lin[2];
    for (int32_t j = 0; j < 2; j++) {
        long long p = p0 + t / BKW + 32 * j;
        lin[j] = p < g.P, lp[j] = p;
        long long q = lin[j] ? p : 0;
        lox[j] = (int32_t)(q % g.OW);
        q /= g.OW;
        loy[j] = (int32_t)(q % g.OH);
        lb[j] = q / g.OH;
    }
    const int32_t *wrow[2];
    bool win[2];
    for (int32_t j = 0; j < 2; j++) {
        int32_t o = n0 + t / BKW + 32 * j;
        win[j] = o < g.cog;
        wrow[j] = w4 + (size_t)(grp * g.cog + (win[j] ? o : 0)) * g.K4w;
    }

    int32_t acc[4][4];
    for (int32_t j = 0; j < 4; j++) {
        int32_t o = n0 + tx * 4 + j;
        int32_t bv = o < g.cog ? bias[grp * g.cog + o] : 0;
        for (int32_t i = 0; i < 4; i++) acc[i][j] = bv;
    }

    for (int32_t kw0 = 0; kw0 < g.K4w; kw0 += BKW) {
        const int32_t kword = kw0 + lkw;
        for (int32_t j = 0; j < 2; j++) {
            As[lkw][t / BKW + 32 * j] = lin[j] ? a_word<GATHER>(x, g, grp, lp[j], lb[j], loy[j], lox[j], kword) : 0;
            Bs[lkw][t / BKW + 32 * j] = win[j] && kword < g.K4w ? wrow[j][kword] : 0;
        }
        __syncthreads();
#pragma unroll
        for (int32_t kk = 0; kk < BKW; kk++) {
            const int4 av = *(const int4 *)&As[kk][ty * 4];
            const int4 bv = *(const int4 *)&Bs[kk][tx * 4];
            const int32_t a[4] = {av.x, av.y, av.z, av.w}, bb[4] = {bv.x, bv.y, bv.z, bv.w};
#pragma unroll
            for (int32_t i = 0; i < 4; i++)
#pragma unroll
                for (int32_t j = 0; j < 4; j++) acc[i][j] = d_dot4(a[i], bb[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int32_t i = 0; i < 4; i++) {
        const long long p = p0 + ty * 4 + i;
#pragma unroll
        for (int32_t j = 0; j < 4; j++) {
            const int32_t o = n0 + tx * 4 + j, oc = grp * g.cog + o;
            if (p < g.P && o < g.cog) {
                size_t at = (size_t)p * g.cout + oc;
                if (g.out_i32) ((int32_t *)y)[at] = acc[i][j];
                else ((int8_t *)y)[at] = d_requant(acc[i][j], mult[oc], shift[oc], g.lo, g.hi);
            }
        }
    }
}

/* Weights [cout][K] int8 -> [cout][K4] int8 (zero padded to whole 32-bit words): one parameter array. */
static size_t pack_weights(const int8_t *w, int32_t cout, int64_t K, cu_params *p, int *failed) {
    int64_t K4 = (K + 3) / 4 * 4;
    int8_t *buf = (int8_t *)calloc((size_t)cout * (size_t)K4, 1);
    if (!buf) {
        *failed = 1;
        return 0;
    }
    for (int32_t o = 0; o < cout; o++) memcpy(buf + (size_t)o * K4, w + (size_t)o * K, (size_t)K);
    size_t off = cu_params_add(p, buf, (size_t)cout * (size_t)K4, failed);
    free(buf);
    return off;
}

static int launch_gemm(const cu_launch *l, const void *in0, void *out, gemm_geo g, int32_t groups, const int32_t *mult,
                       const int32_t *shift, char *err, size_t errlen) {
    const cu_node *cn = l->cn;
    g.P = (long long)l->n * g.OH * g.OW;
    const long long mtiles = (g.P + BM - 1) / BM;
    const int32_t ntiles = (g.cog + BN - 1) / BN;
    if (mtiles > 0x7fffffffLL) MFE_FAIL(MFE_EARG, "batch too large for one launch (%lld pixel tiles)", mtiles);
    const bool word = g.cig % 4 == 0 && g.C % 4 == 0;
    const bool pointwise = word && g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.pt == 0 && g.pl == 0 &&
                           g.OH == g.H && g.OW == g.W;
    const int32_t per_launch = 65535 / ntiles > 0 ? 65535 / ntiles : 1;  /* gridDim.y <= 65535 */
    for (int32_t g0 = 0; g0 < groups; g0 += per_launch) {
        int32_t ng = groups - g0 < per_launch ? groups - g0 : per_launch;
        dim3 grid((unsigned)mtiles, (unsigned)(ng * ntiles));
        const int8_t *xin = (const int8_t *)in0;
        const int32_t *w4 = (const int32_t *)cn->prep[0], *bias = (const int32_t *)cn->blob[1];
        if (pointwise)
            gemm_kernel<GATHER_POINTWISE><<<grid, THREADS, 0, l->stream>>>(xin, w4, bias, mult, shift, out, g, g0, ntiles);
        else if (word)
            gemm_kernel<GATHER_WORDS><<<grid, THREADS, 0, l->stream>>>(xin, w4, bias, mult, shift, out, g, g0, ntiles);
        else
            gemm_kernel<GATHER_BYTES><<<grid, THREADS, 0, l->stream>>>(xin, w4, bias, mult, shift, out, g, g0, ntiles);
        MFE_CU_LAUNCHED(pointwise ? "conv gemm (1x1)" : word ? "conv gemm (words)" : "conv gemm (bytes)");
    }
    return MFE_OK;
}

/* ---- depthwise: acc[c] = bias[c] + sum over taps x * w, weights repacked [tap][c] ---- */

struct dw_geo {
    int32_t H, W, C, OH, OW, kh, kw, sh, sw, pt, pl, pv, lo, hi;
};

__global__ void dw_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long total, dw_geo g,
                          const int8_t *__restrict__ w, const int32_t *__restrict__ bias, const int32_t *__restrict__ mult,
                          const int32_t *__restrict__ shift) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        d_pos at = d_nhwc(i, g.OH, g.OW, g.C);
        int32_t c = at.c, ox = at.ox, oy = at.oy;
        long long b = at.b;
        const int8_t *xb = x + (size_t)b * g.H * g.W * g.C + c;
        int32_t acc = bias[c];
        for (int32_t ky = 0; ky < g.kh; ky++) {
            int32_t iy = oy * g.sh - g.pt + ky;
            for (int32_t kx = 0; kx < g.kw; kx++) {
                int32_t ix = ox * g.sw - g.pl + kx;
                int32_t v = (iy < 0 || iy >= g.H || ix < 0 || ix >= g.W) ? g.pv : xb[((size_t)iy * g.W + ix) * g.C];
                acc += v * w[(ky * g.kw + kx) * (size_t)g.C + c];
            }
        }
        y[i] = d_requant(acc, mult[c], shift[c], g.lo, g.hi);
    }
}

int cu_prepare_conv2d(const mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen) {
    const mfe_node *nd = cn->nd;
    const mfe_tensor *x = &cm->m->t[nd->in[0]];
    const int32_t *a = nd->a, g = a[MFE_CONV2D_GROUPS], cout = a[MFE_CONV2D_COUT];
    const int32_t taps = a[MFE_CONV2D_KH] * a[MFE_CONV2D_KW], depthwise = g == x->c && cout == g;
    const int8_t *w = (const int8_t *)nd->blob[MFE_CONV2D_B_WEIGHT];
    int failed = 0;
    (void)node;
    cn->iarg[0] = depthwise;
    if (depthwise) {  /* OHW1 -> [tap][channel] so taps read along channels */
        int8_t *dw = (int8_t *)malloc((size_t)taps * cout);
        if (!dw) MFE_FAIL(MFE_ENOMEM, "out of memory");
        for (int32_t o = 0; o < cout; o++)
            for (int32_t t = 0; t < taps; t++) dw[(size_t)t * cout + o] = w[(size_t)o * taps + t];
        cn->prep_off[0] = cu_params_add(p, dw, (size_t)taps * cout, &failed);
        free(dw);
    } else {
        int64_t K = (int64_t)taps * (x->c / g);
        if (K > 0x7ffffff0) MFE_FAIL(MFE_EFORMAT, "kernel of %lld values per output is too large", (long long)K);
        cn->prep_off[0] = pack_weights(w, cout, K, p, &failed);
    }
    if (failed) MFE_FAIL(MFE_ENOMEM, "out of memory");
    return MFE_OK;
}

int cu_launch_conv2d(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const cu_node *cn = l->cn;
    const int32_t *a = cn->nd->a;
    const mfe_tensor *X = l->x, *Y = l->y;
    const int32_t *mult = (const int32_t *)cn->blob[MFE_CONV2D_B_MULT], *shift = (const int32_t *)cn->blob[MFE_CONV2D_B_SHIFT];
    const int32_t pv = a[MFE_CONV2D_PAD_VALUE];
    if (cn->iarg[0]) {
        dw_geo g = {X->h, X->w, X->c, Y->h, Y->w, a[MFE_CONV2D_KH], a[MFE_CONV2D_KW], a[MFE_CONV2D_STRIDE_H],
                    a[MFE_CONV2D_STRIDE_W], a[MFE_CONV2D_PAD_T], a[MFE_CONV2D_PAD_L], pv, a[MFE_CONV2D_ACT_LO], a[MFE_CONV2D_ACT_HI]};
        long long total = (long long)l->n * Y->h * Y->w * Y->c;
        dw_kernel<<<cu_blocks(&l->cm->dev, total, THREADS, 32), THREADS, 0, l->stream>>>(
            (const int8_t *)in0, (int8_t *)out, total, g, (const int8_t *)cn->prep[0], (const int32_t *)cn->blob[MFE_CONV2D_B_BIAS],
            mult, shift);
        MFE_CU_LAUNCHED("depthwise conv");
        return MFE_OK;
    }
    const int32_t groups = a[MFE_CONV2D_GROUPS], kh = a[MFE_CONV2D_KH], kw = a[MFE_CONV2D_KW], cig = X->c / groups;
    const int32_t K = kh * kw * cig;  /* <= 225 * 2^28 / groups; checked to fit at load */
    const uint32_t pvb = (uint8_t)(int8_t)pv;
    gemm_geo g = {X->h, X->w, X->c, Y->h, Y->w, Y->c, kh, kw, a[MFE_CONV2D_STRIDE_H], a[MFE_CONV2D_STRIDE_W],
                  a[MFE_CONV2D_PAD_T], a[MFE_CONV2D_PAD_L], cig, Y->c / groups, K, (K + 3) / 4,
                  (int32_t)(pvb | pvb << 8 | pvb << 16 | pvb << 24), pv, a[MFE_CONV2D_ACT_LO], a[MFE_CONV2D_ACT_HI], 0, 0};
    return launch_gemm(l, in0, out, g, groups, mult, shift, err, errlen);
}

/* ---- linear: a 1x1 conv over a 1x1 image whose channels are the flattened NHWC input ---- */

int cu_prepare_linear(const mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen) {
    const mfe_node *nd = cn->nd;
    const mfe_tensor *x = &cm->m->t[nd->in[0]];
    int64_t K = (int64_t)x->h * x->w * x->c;
    int failed = 0;
    (void)node;
    if (K > 0x7ffffff0) MFE_FAIL(MFE_EFORMAT, "linear input of %lld values is too large", (long long)K);
    cn->prep_off[0] = pack_weights((const int8_t *)nd->blob[MFE_LINEAR_B_WEIGHT], nd->a[MFE_LINEAR_COUT], K, p, &failed);
    if (failed) MFE_FAIL(MFE_ENOMEM, "out of memory");
    return MFE_OK;
}

int cu_launch_linear(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const cu_node *cn = l->cn;
    const int32_t *a = cn->nd->a, K = (int32_t)l->x->bytes, cout = l->y->c;
    gemm_geo g = {1, 1, K, 1, 1, cout, 1, 1, 1, 1, 0, 0, K, cout, K, (K + 3) / 4, 0, 0,
                  a[MFE_LINEAR_ACT_LO], a[MFE_LINEAR_ACT_HI], l->y->dtype == MFE_DT_INT32, 0};
    return launch_gemm(l, in0, out, g, 1, (const int32_t *)cn->blob[MFE_LINEAR_B_MULT],
                       (const int32_t *)cn->blob[MFE_LINEAR_B_SHIFT], err, errlen);
}
