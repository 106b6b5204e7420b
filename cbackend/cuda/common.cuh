/* Shared pieces of the CUDA backend: the C model structures (parsed and validated by the C loader,
 * cbackend/src/model.c), per-node device state, the integer helpers every kernel mirrors from
 * cbackend/src/internal.h, and error checking that turns CUDA failures into messages.
 *
 * Source rules (the Jetson Nano builds this with CUDA 10.2 for sm_53): C++14, no cooperative groups,
 * no __reduce_*, no cuda::std; __dp4a only under MFE_CUDA_DP4A (sm_61+), with a plain path beside it. */
#ifndef MFE_CUDA_COMMON_CUH
#define MFE_CUDA_COMMON_CUH
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

extern "C" {
#include "internal.h"
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 610 && !defined(MFE_CUDA_PLAIN)
#define MFE_CUDA_DP4A 1  /* four int8 products and an int32 add in one instruction */
#else
#define MFE_CUDA_DP4A 0
#endif

#define MFE_CUDA_MAX_PREP 4  /* device arrays a node's prepared data may hold */

/* One node as the device sees it: the C node (attributes, host blobs), device copies of its blobs and
 * of the data its family prepared at load (repacked weights, natural-order thresholds, ...). */
struct cu_node {
    const mfe_node *nd;
    const void *blob[MFE_MAX_BLOBS];      /* device copies of the file's blobs (NULL when empty) */
    const void *prep[MFE_CUDA_MAX_PREP];  /* device arrays made by the family's prepare */
    size_t blob_off[MFE_MAX_BLOBS], prep_off[MFE_CUDA_MAX_PREP];  /* offsets in the parameter block + 1; 0: none */
    int32_t iarg[8];                      /* family-specific scalars worked out at load */
};

/* What a family's host code sees when it launches one node over n images. */
struct cu_launch {
    const struct mfe_cuda_model *cm;
    const cu_node *cn;
    const mfe_tensor *x, *x2, *y;
    int32_t n;
    cudaStream_t stream;
};

/* Host-side parameter block: every node's device data in one allocation, filled at load. */
struct cu_params {
    uint8_t *host;
    size_t size, cap;
};

/* Appends nbytes (256-byte aligned) and returns offset + 1 (0 means "no data"), or 0 on failure with
 * *failed set. */
size_t cu_params_add(cu_params *p, const void *data, size_t nbytes, int *failed);

typedef int (*cu_prepare_fn)(const struct mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen);
typedef int (*cu_launch_fn)(const cu_launch *l, const void *in0, const void *in1, void *out, char *err, size_t errlen);

/* Device facts the families size their grids by. */
struct cu_device {
    int id, sm_count, cc_major, cc_minor, max_smem_block;
    char name[256];
};

struct mfe_cuda_model {
    mfe_model *m;                 /* the C loader's model: validated tensors, nodes, the per-image memory plan */
    cu_device dev;
    cudaStream_t stream;
    cu_node *nodes;
    uint8_t *params;              /* device: every node's blobs and prepared data */
    size_t params_bytes;
    uint8_t *arena;               /* device: plan_bytes * cap images, tensors at offset * cap */
    uint8_t *input_u8;            /* device: cap images of uint8 pixels */
    int32_t cap, chunk;           /* images the buffers hold now; most images per pass */
    int32_t *wht_scratch;         /* device: int32 rows of the generic WHT kernel (n > 1024) */
    size_t wht_scratch_rows, wht_scratch_n;
};

/* ---- errors: every CUDA call is checked; kernels are launched through MFE_CU_LAUNCHED ---- */

#define MFE_CU_TRY(call)                                                                                  \
    do {                                                                                                  \
        cudaError_t e_ = (call);                                                                          \
        if (e_ != cudaSuccess) {                                                                          \
            snprintf(err, errlen, "CUDA error in %s: %s (%s)", #call, cudaGetErrorString(e_), cudaGetErrorName(e_)); \
            return MFE_EIO;                                                                               \
        }                                                                                                 \
    } while (0)

/* After a <<<>>> launch: a bad configuration or a sticky error from earlier work shows up here. */
#define MFE_CU_LAUNCHED(what)                                                                             \
    do {                                                                                                  \
        cudaError_t e_ = cudaGetLastError();                                                              \
        if (e_ != cudaSuccess) {                                                                          \
            snprintf(err, errlen, "CUDA kernel %s failed to launch: %s (%s)", (what), cudaGetErrorString(e_), cudaGetErrorName(e_)); \
            return MFE_EIO;                                                                               \
        }                                                                                                 \
    } while (0)

/* Blocks for a grid-stride kernel over `work` items of `per_block` each, capped near what fills the device. */
static inline unsigned cu_blocks(const cu_device *d, long long work, int per_block, int blocks_per_sm) {
    long long b = (work + per_block - 1) / per_block, cap = (long long)d->sm_count * blocks_per_sm;
    if (b < 1) b = 1;
    return (unsigned)(b < cap ? b : cap);
}

/* ---- the integer rules, mirrored from cbackend/src/internal.h ---- */

/* Flat output index i over NHWC [n, OH, OW, C] (C fastest) -> image b, row oy, column ox, channel c. */
struct d_pos {
    long long b;
    int32_t oy, ox, c;
};
__device__ __forceinline__ d_pos d_nhwc(long long i, int32_t OH, int32_t OW, int32_t C) {
    d_pos r;
    long long p = i / C;
    r.c = (int32_t)(i - p * C);
    r.ox = (int32_t)(p % OW);
    long long q = p / OW;
    r.oy = (int32_t)(q % OH);
    r.b = q / OH;
    return r;
}

__device__ __forceinline__ int8_t d_sat8(long long v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

/* floor((v + 2^(s-1)) / 2^s), exact for s == 0 (s in 0..63; |v| < 2^62 where callers use it) */
__device__ __forceinline__ long long d_rshift_round(long long v, int32_t s) {
    return s ? (v + (1LL << (s - 1))) >> s : v;
}

/* int32 accumulator -> int8: clamp(rshift_round(acc * mult, shift), lo, hi), |acc * mult| < 2^62 */
__device__ __forceinline__ int8_t d_requant(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    return d_sat8(d_rshift_round((long long)acc * mult, shift), lo, hi);
}

/* acc + the four int8 x int8 products of a and b's bytes. The int32 sum wraps like the hardware's dp4a,
 * so both give the exact result wherever the true sum fits int32 (the loader proves it does). */
__device__ __forceinline__ int32_t d_dot4(int32_t a, int32_t b, int32_t acc) {
#if MFE_CUDA_DP4A
    return __dp4a(a, b, acc);
#else
    uint32_t s = (uint32_t)acc;
    s += (uint32_t)((int32_t)(int8_t)a * (int32_t)(int8_t)b);
    s += (uint32_t)((int32_t)(int8_t)(a >> 8) * (int32_t)(int8_t)(b >> 8));
    s += (uint32_t)((int32_t)(int8_t)(a >> 16) * (int32_t)(int8_t)(b >> 16));
    s += (uint32_t)((a >> 24) * (b >> 24));
    return (int32_t)s;
#endif
}

/* Family entry points (one .cu file each). */
#define MFE_CU_DECLARE(op)                                                                                \
    int cu_prepare_##op(const mfe_cuda_model *cm, int32_t node, cu_node *cn, cu_params *p, char *err, size_t errlen); \
    int cu_launch_##op(const cu_launch *l, const void *in0, const void *in1, void *out, char *err, size_t errlen);
MFE_CU_DECLARE(conv2d)
MFE_CU_DECLARE(linear)
MFE_CU_DECLARE(wht)
MFE_CU_DECLARE(hdw)
MFE_CU_DECLARE(sumpool)
MFE_CU_DECLARE(add)
MFE_CU_DECLARE(clamp)
MFE_CU_DECLARE(requantize)
MFE_CU_DECLARE(avgpool)
MFE_CU_DECLARE(affine)

/* uint8 pixels -> the int8 input tensor: clamp(u - zero_point, -128, 127) */
int cu_quantize_input(const mfe_cuda_model *cm, const uint8_t *u, int8_t *x, size_t count, char *err, size_t errlen);

/* The transform size n of a wht node that runs the generic kernel (n > 1024), else 0: the runtime sizes
 * one int32 scratch of cu_wht_rows(dev) rows of the largest such n. */
size_t cu_wht_generic_n(const cu_node *cn);
size_t cu_wht_rows(const cu_device *d);

#endif
