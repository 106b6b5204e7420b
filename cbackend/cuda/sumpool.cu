/* sumpool: stride-1 sums over a (cw channels x kh x kw) window with zero padding, then one requantisation
 * (cbackend/src/sumpool.c). One thread per output element; every partial sum is bounded by
 * 128 cw kh kw <= INT32_MAX (checked at load), so any summation order gives the C backend's bytes. */
#include "common.cuh"

#define THREADS 256

struct sumpool_geo {
    int32_t H, W, C, OH, OW, CO, cw, kh, kw, pt, pl, mult, shift, lo, hi;
};

__global__ void sumpool_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long total, sumpool_geo g) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        d_pos at = d_nhwc(i, g.OH, g.OW, g.CO);
        int32_t o = at.c, ox = at.ox, oy = at.oy;
        long long b = at.b;
        const int8_t *xb = x + (size_t)b * g.H * g.W * g.C;
        int32_t s = 0;
        for (int32_t dy = 0; dy < g.kh; dy++) {
            int32_t iy = oy - g.pt + dy;
            if (iy < 0 || iy >= g.H) continue;
            for (int32_t dx = 0; dx < g.kw; dx++) {
                int32_t ix = ox - g.pl + dx;
                if (ix < 0 || ix >= g.W) continue;
                const int8_t *xp = xb + ((size_t)iy * g.W + ix) * g.C + o;
                for (int32_t dc = 0; dc < g.cw; dc++) s += xp[dc];
            }
        }
        y[i] = d_requant(s, g.mult, g.shift, g.lo, g.hi);
    }
}

int cu_prepare_sumpool(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_sumpool(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const int32_t *a = l->cn->nd->a;
    sumpool_geo g = {l->x->h, l->x->w, l->x->c, l->y->h, l->y->w, l->y->c, a[MFE_SUMPOOL_CW], a[MFE_SUMPOOL_KH],
                     a[MFE_SUMPOOL_KW], a[MFE_SUMPOOL_PAD_T], a[MFE_SUMPOOL_PAD_L], a[MFE_SUMPOOL_MULT], a[MFE_SUMPOOL_SHIFT],
                     a[MFE_SUMPOOL_ACT_LO], a[MFE_SUMPOOL_ACT_HI]};
    long long total = (long long)l->n * l->y->h * l->y->w * l->y->c;
    sumpool_kernel<<<cu_blocks(&l->cm->dev, total, THREADS, 32), THREADS, 0, l->stream>>>((const int8_t *)in0, (int8_t *)out, total, g);
    MFE_CU_LAUNCHED("sumpool");
    return MFE_OK;
}
