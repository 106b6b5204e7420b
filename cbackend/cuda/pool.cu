/* avgpool: global average pooling as an int32 sum over H x W and one requantisation per channel
 * (cbackend/src/pool.c). One thread per (image, channel): neighbouring threads read neighbouring bytes. */
#include "common.cuh"

#define THREADS 256

__global__ void avgpool_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, long long total, int32_t C, int32_t hw,
                               size_t img_bytes, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        long long b = i / C;
        int32_t c = (int32_t)(i - b * C);
        const int8_t *p = x + (size_t)b * img_bytes + c;
        int32_t s = 0;  /* |s| <= 128 * hw <= INT32_MAX (checked at load) */
        for (int32_t q = 0; q < hw; q++) s += p[(size_t)q * C];
        y[i] = d_requant(s, mult, shift, lo, hi);
    }
}

int cu_prepare_avgpool(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_avgpool(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const int32_t *a = l->cn->nd->a, C = l->x->c;
    long long total = (long long)l->n * C;
    avgpool_kernel<<<cu_blocks(&l->cm->dev, total, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (int8_t *)out, total, C, l->x->h * l->x->w, l->x->bytes, a[MFE_AVGPOOL_MULT],
        a[MFE_AVGPOOL_SHIFT], a[MFE_AVGPOOL_ACT_LO], a[MFE_AVGPOOL_ACT_HI]);
    MFE_CU_LAUNCHED("avgpool");
    return MFE_OK;
}
