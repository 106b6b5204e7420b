/* hdw: multiplication-free depthwise 3x3, padding 1, stride 1 or 2 (cbackend/src/hdw.c, hdw_tap__scalar).
 * One thread per output element; weights widened and shifted once at load, as the C prepare does. */
#include <stdlib.h>
#include "common.cuh"

#define THREADS 256

struct hdw_geo {
    int32_t H, W, C, OH, OW, stride, xs, ef, lo, hi;
};

__global__ void hdw_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long total, hdw_geo g,
                           const int32_t *__restrict__ w, const int32_t *__restrict__ bias, const int32_t *__restrict__ mult,
                           const int32_t *__restrict__ shift) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        d_pos at = d_nhwc(i, g.OH, g.OW, g.C);
        int32_t c = at.c, ox = at.ox, oy = at.oy;
        long long b = at.b;
        const int8_t *xb = x + (size_t)b * g.H * g.W * g.C;
        int32_t acc = bias[c];
        for (int32_t ky = 0; ky < 3; ky++) {
            int32_t iy = oy * g.stride - 1 + ky;
            if (iy < 0 || iy >= g.H) continue;
            for (int32_t kx = 0; kx < 3; kx++) {
                int32_t ix = ox * g.stride - 1 + kx;
                if (ix < 0 || ix >= g.W) continue;  /* zero padding adds nothing */
                int32_t xv = (int32_t)((uint32_t)(int32_t)xb[((size_t)iy * g.W + ix) * g.C + c] << g.xs);
                int32_t wv = w[(ky * 3 + kx) * (size_t)g.C + c];
                int32_t ax = xv < 0 ? -xv : xv, aw = wv < 0 ? -wv : wv;
                int32_t v = g.ef ? ax + aw : (ax < aw ? ax : aw);
                if (xv == 0 || wv == 0) v = 0;
                acc += (xv < 0) != (wv < 0) ? -v : v;
            }
        }
        y[i] = d_requant(acc, mult[c], shift[c], g.lo, g.hi);
    }
}

int cu_prepare_hdw(const mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen) {
    const mfe_node *nd = cn->nd;
    const int32_t C = cm->m->t[nd->in[0]].c, ws = nd->a[MFE_HDW_WSHIFT];
    int32_t *w = (int32_t *)malloc(sizeof(int32_t) * 9 * (size_t)C);
    if (!w) MFE_FAIL(MFE_ENOMEM, "out of memory");
    const int8_t *src = (const int8_t *)nd->blob[MFE_HDW_B_WEIGHT];
    for (int32_t i = 0; i < 9 * C; i++) w[i] = (int32_t)((uint32_t)(int32_t)src[i] << ws);
    int failed = 0;
    cn->prep_off[0] = cu_params_add(p, w, sizeof(int32_t) * 9 * (size_t)C, &failed);
    free(w);
    (void)node;
    if (failed) MFE_FAIL(MFE_ENOMEM, "out of memory");
    return MFE_OK;
}

int cu_launch_hdw(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const mfe_node *nd = l->cn->nd;
    hdw_geo g = {l->x->h, l->x->w, l->x->c, l->y->h, l->y->w, nd->a[MFE_HDW_STRIDE], nd->a[MFE_HDW_XSHIFT], nd->a[MFE_HDW_OP],
                 nd->a[MFE_HDW_ACT_LO], nd->a[MFE_HDW_ACT_HI]};
    long long total = (long long)l->n * l->y->h * l->y->w * l->y->c;
    hdw_kernel<<<cu_blocks(&l->cm->dev, total, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (int8_t *)out, total, g, (const int32_t *)l->cn->prep[0], (const int32_t *)l->cn->blob[MFE_HDW_B_BIAS],
        (const int32_t *)l->cn->blob[MFE_HDW_B_MULT], (const int32_t *)l->cn->blob[MFE_HDW_B_SHIFT]);
    MFE_CU_LAUNCHED("hdw");
    return MFE_OK;
}
