/* add, clamp, requantize, affine and the input quantisation: element by element over the whole batch,
 * grid-stride, the arithmetic of cbackend/src/elementwise.c (int64 where the C code widens). */
#include "common.cuh"

#define THREADS 256

static const int32_t *i32(const void *p) { return (const int32_t *)p; }

__global__ void quantize_kernel(const uint8_t *__restrict__ u, int8_t *__restrict__ x, size_t count, int32_t zp) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        int32_t v = (int32_t)u[i] - zp;
        x[i] = (int8_t)(v < -128 ? -128 : v > 127 ? 127 : v);
    }
}

int cu_quantize_input(const mfe_cuda_model *cm, const uint8_t *u, int8_t *x, size_t count, char *err, size_t errlen) {
    quantize_kernel<<<cu_blocks(&cm->dev, (long long)count, THREADS, 32), THREADS, 0, cm->stream>>>(u, x, count, cm->m->zero_point);
    MFE_CU_LAUNCHED("quantize_input");
    return MFE_OK;
}

/* ---- add: y = sat(rshift_round(x * ma + z * mb, s)); |x ma + z mb| < 2^39 ---- */

__global__ void add_kernel(const int8_t *__restrict__ x, const int8_t *__restrict__ z, int8_t *__restrict__ y, size_t count,
                           long long ma, long long mb, int32_t s, int32_t lo, int32_t hi) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] = d_sat8(d_rshift_round(x[i] * ma + z[i] * mb, s), lo, hi);
}

int cu_prepare_add(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_add(const cu_launch *l, const void *in0, const void *in1, void *out, char *err, size_t errlen) {
    const int32_t *a = l->cn->nd->a;
    size_t count = (size_t)l->n * l->y->bytes;
    add_kernel<<<cu_blocks(&l->cm->dev, (long long)count, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (const int8_t *)in1, (int8_t *)out, count, a[MFE_ADD_MULT_A], a[MFE_ADD_MULT_B], a[MFE_ADD_SHIFT],
        a[MFE_ADD_ACT_LO], a[MFE_ADD_ACT_HI]);
    MFE_CU_LAUNCHED("add");
    return MFE_OK;
}

/* ---- clamp ---- */

__global__ void clamp_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, size_t count, int32_t lo, int32_t hi) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] = d_sat8(x[i], lo, hi);
}

int cu_prepare_clamp(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_clamp(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const int32_t *a = l->cn->nd->a;
    size_t count = (size_t)l->n * l->y->bytes;
    clamp_kernel<<<cu_blocks(&l->cm->dev, (long long)count, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (int8_t *)out, count, a[MFE_CLAMP_ACT_LO], a[MFE_CLAMP_ACT_HI]);
    MFE_CU_LAUNCHED("clamp");
    return MFE_OK;
}

/* ---- requantize: int8 -> int8 rescale ---- */

__global__ void requant_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, size_t count, int32_t mult, int32_t s,
                               int32_t lo, int32_t hi) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x)
        y[i] = d_requant(x[i], mult, s, lo, hi);
}

int cu_prepare_requantize(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_requantize(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const int32_t *a = l->cn->nd->a;
    size_t count = (size_t)l->n * l->y->bytes;
    requant_kernel<<<cu_blocks(&l->cm->dev, (long long)count, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (int8_t *)out, count, a[MFE_REQUANTIZE_MULT], a[MFE_REQUANTIZE_SHIFT], a[MFE_REQUANTIZE_ACT_LO],
        a[MFE_REQUANTIZE_ACT_HI]);
    MFE_CU_LAUNCHED("requantize");
    return MFE_OK;
}

/* ---- affine: y[c] = sat(rshift_round(x * mult[c] + bias[c], shift[c])) in int64 ---- */

__global__ void affine_kernel(const int8_t *__restrict__ x, int8_t *__restrict__ y, size_t count, int32_t C,
                              const int32_t *__restrict__ mult, const int32_t *__restrict__ bias,
                              const int32_t *__restrict__ shift, int32_t lo, int32_t hi) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (size_t)gridDim.x * blockDim.x) {
        int32_t c = (int32_t)(i % (size_t)C);
        y[i] = d_sat8(d_rshift_round((long long)x[i] * mult[c] + bias[c], shift[c]), lo, hi);
    }
}

int cu_prepare_affine(const mfe_cuda_model *, int32_t, cu_node *, cu_params *, char *, size_t) { return MFE_OK; }

int cu_launch_affine(const cu_launch *l, const void *in0, const void *, void *out, char *err, size_t errlen) {
    const mfe_node *nd = l->cn->nd;
    size_t count = (size_t)l->n * l->y->bytes;
    affine_kernel<<<cu_blocks(&l->cm->dev, (long long)count, THREADS, 32), THREADS, 0, l->stream>>>(
        (const int8_t *)in0, (int8_t *)out, count, l->y->c, i32(l->cn->blob[MFE_AFFINE_B_MULT]),
        i32(l->cn->blob[MFE_AFFINE_B_BIAS]), i32(l->cn->blob[MFE_AFFINE_B_SHIFT]), nd->a[MFE_AFFINE_ACT_LO],
        nd->a[MFE_AFFINE_ACT_HI]);
    MFE_CU_LAUNCHED("affine");
    return MFE_OK;
}
