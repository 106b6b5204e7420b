/* Host runtime of the CUDA backend: load through the C loader, upload every node's data once, keep
 * device-resident activations laid out by the C memory plan (cbackend/src/runtime.c: per-image offsets,
 * here times the images of one pass), run the graph on the model's stream. */
#include <stdlib.h>
#include <string.h>
#include "common.cuh"
#include "mfe_cuda.h"

extern "C" {
int mfe_cu_blob_item(int32_t op, int32_t j);  /* opinfo.c */
const char *mfe_cu_op_name(int32_t op);
}

#ifndef MFE_CUDA_ARCHS
#define MFE_CUDA_ARCHS "?"
#endif
#define MFE_STR2(x) #x
#define MFE_STR(x) MFE_STR2(x)

#define ARENA_BUDGET ((size_t)2 << 30)  /* images per pass: as many as fit (up to MAX_CHUNK) in this, or in */
#define ARENA_FREE_DIV 4                 /* a quarter of the device memory free at load, if that is less */
#define MAX_CHUNK 65536

static_assert(MFE_OP_CONV2D == 1 && MFE_OP_LINEAR == 2 && MFE_OP_WHT == 3 && MFE_OP_HDW == 4 && MFE_OP_SUMPOOL == 5 &&
              MFE_OP_ADD == 6 && MFE_OP_CLAMP == 7 && MFE_OP_REQUANTIZE == 8 && MFE_OP_AVGPOOL == 9 &&
              MFE_OP_AFFINE == 10 && MFE_OP_COUNT == 11, "op codes changed: update the CUDA tables");

static const cu_prepare_fn PREPARE[MFE_OP_COUNT] = {
    NULL, cu_prepare_conv2d, cu_prepare_linear, cu_prepare_wht, cu_prepare_hdw, cu_prepare_sumpool,
    cu_prepare_add, cu_prepare_clamp, cu_prepare_requantize, cu_prepare_avgpool, cu_prepare_affine,
};
static const cu_launch_fn LAUNCH[MFE_OP_COUNT] = {
    NULL, cu_launch_conv2d, cu_launch_linear, cu_launch_wht, cu_launch_hdw, cu_launch_sumpool,
    cu_launch_add, cu_launch_clamp, cu_launch_requantize, cu_launch_avgpool, cu_launch_affine,
};

size_t cu_params_add(cu_params *p, const void *data, size_t nbytes, int *failed) {
    size_t at = (p->size + 255) & ~(size_t)255;
    if (*failed || nbytes > ((size_t)1 << 40) || at + nbytes > ((size_t)1 << 40)) {
        *failed = 1;
        return 0;
    }
    if (at + nbytes > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < at + nbytes) cap *= 2;
        uint8_t *h = (uint8_t *)realloc(p->host, cap);
        if (!h) {
            *failed = 1;
            return 0;
        }
        p->host = h, p->cap = cap;
    }
    memset(p->host + p->size, 0, at - p->size);
    if (nbytes) memcpy(p->host + at, data, nbytes);
    p->size = at + nbytes;
    return at + 1;
}

/* ---- device facts ---- */

__global__ void probe_kernel(int32_t *out) { out[0] = 1000 + MFE_CUDA_DP4A; }

static int device_count(int32_t *count, char *err, size_t errlen) {
    int c = 0;
    *count = 0;
    cudaError_t e = cudaGetDeviceCount(&c);
    if (e != cudaSuccess) {
        cudaGetLastError();  /* clear it: a later call must not see this as its own failure */
        snprintf(err, errlen, "no CUDA GPU: cudaGetDeviceCount failed: %s (%s%s)", cudaGetErrorString(e), cudaGetErrorName(e),
                 e == cudaErrorInsufficientDriver ? ": no NVIDIA driver, or one older than this library's CUDA " MFE_STR(
                     __CUDACC_VER_MAJOR__) "." MFE_STR(__CUDACC_VER_MINOR__) : "");
        return MFE_EIO;
    }
    if (c <= 0) {
        snprintf(err, errlen, "no CUDA GPU: cudaGetDeviceCount returned 0");
        return MFE_EIO;
    }
    *count = c;
    return MFE_OK;
}

static int device_info(int32_t device, cu_device *d, char *err, size_t errlen) {
    cudaDeviceProp p;
    MFE_CU_TRY(cudaGetDeviceProperties(&p, device));
    d->id = device, d->sm_count = p.multiProcessorCount, d->cc_major = p.major, d->cc_minor = p.minor;
    d->max_smem_block = (int)p.sharedMemPerBlock;
    snprintf(d->name, sizeof d->name, "%.120s, sm_%d%d, %d SMs", p.name, p.major, p.minor, p.multiProcessorCount);
    if (d->sm_count < 1) d->sm_count = 1;
    return MFE_OK;
}

extern "C" int mfe_cuda_device_count(int32_t *count, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!count) MFE_FAIL(MFE_EARG, "mfe_cuda_device_count: null argument");
    return device_count(count, err, errlen);
}

extern "C" int mfe_cuda_device_name(int32_t device, char *name, size_t len, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!name || !len) MFE_FAIL(MFE_EARG, "mfe_cuda_device_name: null argument");
    int32_t count;
    int rc = device_count(&count, err, errlen);
    if (rc) return rc;
    if (device < 0 || device >= count) MFE_FAIL(MFE_EARG, "CUDA device %d out of range (%d device(s))", device, count);
    cu_device d;
    rc = device_info(device, &d, err, errlen);
    if (rc) return rc;
    snprintf(name, len, "%s", d.name);
    return MFE_OK;
}

extern "C" const char *mfe_cuda_build_info(void) {
    return "CUDA " MFE_STR(__CUDACC_VER_MAJOR__) "." MFE_STR(__CUDACC_VER_MINOR__) ", code for " MFE_CUDA_ARCHS
#ifdef MFE_CUDA_PLAIN
           ", plain int8 dot products (MFE_CUDA_PLAIN)"
#endif
        ;
}

/* ---- load ---- */

extern "C" void mfe_cuda_free(mfe_cuda_model *cm) {
    if (!cm) return;
    if (cm->dev.name[0]) cudaSetDevice(cm->dev.id);
    if (cm->stream) cudaStreamSynchronize(cm->stream);
    cudaFree(cm->params);
    cudaFree(cm->arena);
    cudaFree(cm->input_u8);
    cudaFree(cm->wht_scratch);
    if (cm->stream) cudaStreamDestroy(cm->stream);
    cudaGetLastError();  /* nothing from freeing may leak into the next call's checks */
    free(cm->nodes);
    mfe_free(cm->m);
    free(cm);
}

static int load(mfe_cuda_model *cm, const void *data, size_t size, int32_t device, char *err, size_t errlen) {
    int32_t count;
    int rc = device_count(&count, err, errlen);
    if (rc) return rc;
    if (device < 0 || device >= count) MFE_FAIL(MFE_EARG, "CUDA device %d out of range (%d device(s))", device, count);
    rc = mfe_load(data, size, &cm->m, err, errlen);  /* every check of docs/format.md, in C */
    if (rc) return rc;
    MFE_CU_TRY(cudaSetDevice(device));
    rc = device_info(device, &cm->dev, err, errlen);
    if (rc) return rc;
    MFE_CU_TRY(cudaStreamCreateWithFlags(&cm->stream, cudaStreamNonBlocking));
    {   /* can this library run kernels on this device at all (a build for another architecture cannot)? */
        int32_t *probe = NULL, got = 0;
        MFE_CU_TRY(cudaMalloc((void **)&probe, sizeof(int32_t)));
        probe_kernel<<<1, 1, 0, cm->stream>>>(probe);
        cudaError_t e = cudaGetLastError();
        if (e == cudaSuccess) e = cudaMemcpyAsync(&got, probe, sizeof got, cudaMemcpyDeviceToHost, cm->stream);
        if (e == cudaSuccess) e = cudaStreamSynchronize(cm->stream);
        cudaFree(probe);
        if (e != cudaSuccess) {
            cudaGetLastError();
            MFE_FAIL(MFE_EIO, "CUDA backend cannot run on %s: %s (%s); build it for this GPU: make cuda CUDA_ARCH=sm_%d%d (%s)",
                     cm->dev.name, cudaGetErrorString(e), cudaGetErrorName(e), cm->dev.cc_major, cm->dev.cc_minor,
                     mfe_cuda_build_info());
        }
        size_t l = strlen(cm->dev.name);
        snprintf(cm->dev.name + l, sizeof cm->dev.name - l, ", %s", got == 1001 ? "dp4a" : "plain int8 dot products");
    }
    const mfe_model *m = cm->m;
    cm->nodes = (cu_node *)calloc((size_t)m->nn, sizeof(cu_node));
    if (!cm->nodes) MFE_FAIL(MFE_ENOMEM, "out of memory");
    cu_params p = {NULL, 0, 0};
    int failed = 0;
    size_t generic_n = 0;
    for (int32_t i = 0; i < m->nn && !failed; i++) {
        cu_node *cn = &cm->nodes[i];
        const mfe_node *nd = &m->nodes[i];
        cn->nd = nd;
        for (int j = 0; j < MFE_MAX_BLOBS; j++) {
            int item = mfe_cu_blob_item(nd->op, j);
            if (item && nd->blob_n[j] > 0) cn->blob_off[j] = cu_params_add(&p, nd->blob[j], (size_t)nd->blob_n[j] * item, &failed);
        }
        rc = failed ? MFE_ENOMEM : PREPARE[nd->op](cm, i, cn, &p, err, errlen);
        if (!rc && failed) rc = MFE_ENOMEM, snprintf(err, errlen, "out of memory");
        if (rc) {
            char why[160];
            snprintf(why, sizeof why, "%.150s", err);
            free(p.host);
            MFE_FAIL(rc, "CUDA backend, node %d (%s): %s", i, mfe_cu_op_name(nd->op), why);
        }
        size_t g = cu_wht_generic_n(cn);
        if (g > generic_n) generic_n = g;
    }
    if (failed) {
        free(p.host);
        MFE_FAIL(MFE_ENOMEM, "out of memory");
    }
    cm->params_bytes = p.size;
    cudaError_t e = cudaMalloc((void **)&cm->params, p.size ? p.size : 1);
    if (e == cudaSuccess && p.size) e = cudaMemcpy(cm->params, p.host, p.size, cudaMemcpyHostToDevice);
    free(p.host);
    if (e != cudaSuccess) {
        cudaGetLastError();
        MFE_FAIL(MFE_EIO, "CUDA: uploading %zu bytes of weights failed: %s", p.size, cudaGetErrorString(e));
    }
    for (int32_t i = 0; i < m->nn; i++) {
        cu_node *cn = &cm->nodes[i];
        for (int j = 0; j < MFE_MAX_BLOBS; j++) cn->blob[j] = cn->blob_off[j] ? cm->params + cn->blob_off[j] - 1 : NULL;
        for (int j = 0; j < MFE_CUDA_MAX_PREP; j++) cn->prep[j] = cn->prep_off[j] ? cm->params + cn->prep_off[j] - 1 : NULL;
    }
    if (generic_n) {
        cm->wht_scratch_rows = cu_wht_rows(&cm->dev), cm->wht_scratch_n = generic_n;
        MFE_CU_TRY(cudaMalloc((void **)&cm->wht_scratch, sizeof(int32_t) * generic_n * cm->wht_scratch_rows));
    }
    size_t budget = ARENA_BUDGET, free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && free_b / ARENA_FREE_DIV < budget) budget = free_b / ARENA_FREE_DIV;
    cudaGetLastError();
    const char *env = getenv("MFE_CUDA_ARENA_BYTES");  /* tests: small passes exercise the chunking */
    if (env && strtoull(env, NULL, 10) > 0) budget = (size_t)strtoull(env, NULL, 10);
    size_t fit = budget / (m->plan_bytes ? m->plan_bytes : 1);
    cm->chunk = fit < 1 ? 1 : fit > MAX_CHUNK ? MAX_CHUNK : (int32_t)fit;
    return MFE_OK;
}

extern "C" int mfe_cuda_load(const void *data, size_t size, int32_t device, mfe_cuda_model **out, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!out || (!data && size)) MFE_FAIL(MFE_EARG, "mfe_cuda_load: null argument");
    *out = NULL;
    mfe_cuda_model *cm = (mfe_cuda_model *)calloc(1, sizeof *cm);
    if (!cm) MFE_FAIL(MFE_ENOMEM, "out of memory");
    int rc = load(cm, data, size, device, err, errlen);
    if (rc) {
        mfe_cuda_free(cm);
        return rc;
    }
    *out = cm;
    return MFE_OK;
}

extern "C" void mfe_cuda_input_shape(const mfe_cuda_model *cm, int32_t hwc[3]) { mfe_input_shape(cm->m, hwc); }
extern "C" void mfe_cuda_output_shape(const mfe_cuda_model *cm, int32_t hwc[3], int32_t *dtype) {
    mfe_output_shape(cm->m, hwc, dtype);
}
extern "C" const char *mfe_cuda_model_device(const mfe_cuda_model *cm) { return cm->dev.name; }
extern "C" int32_t mfe_cuda_max_batch(const mfe_cuda_model *cm) { return cm->chunk; }

/* ---- run ---- */

/* Buffers for `want` images per pass (grow only; the plan itself was made once, at load). */
static int reserve(mfe_cuda_model *cm, int32_t want, char *err, size_t errlen) {
    if (want <= cm->cap) return MFE_OK;
    const mfe_model *m = cm->m;
    cudaFree(cm->arena);
    cudaFree(cm->input_u8);
    cm->arena = cm->input_u8 = NULL, cm->cap = 0;
    size_t arena = m->plan_bytes * (size_t)want, in = m->t[m->input].bytes * (size_t)want;
    cudaError_t e = cudaMalloc((void **)&cm->arena, arena + 256);
    if (e == cudaSuccess) e = cudaMalloc((void **)&cm->input_u8, in + 256);
    if (e != cudaSuccess) {
        cudaGetLastError();
        cudaFree(cm->arena);
        cm->arena = NULL;
        MFE_FAIL(MFE_EIO, "CUDA: cannot allocate %zu bytes of activations for %d image(s) per pass: %s", arena + in, want,
                 cudaGetErrorString(e));
    }
    cm->cap = want;
    return MFE_OK;
}

static uint8_t *tensor_at(const mfe_cuda_model *cm, int32_t id) {
    return cm->arena + cm->m->t[id].offset * (size_t)cm->cap;
}

static int run_nodes(mfe_cuda_model *cm, int32_t nb, char *err, size_t errlen) {
    const mfe_model *m = cm->m;
    for (int32_t k = 0; k < m->nn; k++) {
        const cu_node *cn = &cm->nodes[k];
        const mfe_node *nd = cn->nd;
        cu_launch l = {cm, cn, &m->t[nd->in[0]], nd->n_in > 1 ? &m->t[nd->in[1]] : NULL, &m->t[nd->out], nb, cm->stream};
        int rc = LAUNCH[nd->op](&l, tensor_at(cm, nd->in[0]), nd->n_in > 1 ? tensor_at(cm, nd->in[1]) : NULL,
                                tensor_at(cm, nd->out), err, errlen);
        if (rc) {
            char why[200];
            snprintf(why, sizeof why, "%.190s", err);
            MFE_FAIL(rc, "node %d (%s): %s", k, mfe_cu_op_name(nd->op), why);
        }
    }
    return MFE_OK;
}

static int upload_input(mfe_cuda_model *cm, const uint8_t *input, int32_t nb, char *err, size_t errlen) {
    const mfe_tensor *ti = &cm->m->t[cm->m->input];
    size_t bytes = (size_t)nb * ti->bytes;
    MFE_CU_TRY(cudaMemcpyAsync(cm->input_u8, input, bytes, cudaMemcpyHostToDevice, cm->stream));
    return cu_quantize_input(cm, cm->input_u8, (int8_t *)tensor_at(cm, cm->m->input), bytes, err, errlen);
}

extern "C" int mfe_cuda_run(mfe_cuda_model *cm, const uint8_t *input, int32_t n, void *output, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!cm || (n > 0 && (!input || !output))) MFE_FAIL(MFE_EARG, "mfe_cuda_run: null argument");
    if (n < 0) MFE_FAIL(MFE_EARG, "bad batch %d", n);
    if (n == 0) return MFE_OK;
    MFE_CU_TRY(cudaSetDevice(cm->dev.id));
    int rc = reserve(cm, n < cm->chunk ? n : cm->chunk, err, errlen);
    if (rc) return rc;
    const mfe_model *m = cm->m;
    const mfe_tensor *ti = &m->t[m->input], *to = &m->t[m->output];
    for (int64_t b0 = 0; b0 < n; b0 += cm->cap) {
        int32_t nb = n - b0 < cm->cap ? (int32_t)(n - b0) : cm->cap;
        rc = upload_input(cm, input + (size_t)b0 * ti->bytes, nb, err, errlen);
        if (!rc) rc = run_nodes(cm, nb, err, errlen);
        if (rc) {
            cudaStreamSynchronize(cm->stream);
            cudaGetLastError();
            return rc;
        }
        MFE_CU_TRY(cudaMemcpyAsync((uint8_t *)output + (size_t)b0 * to->bytes, tensor_at(cm, m->output), (size_t)nb * to->bytes,
                                   cudaMemcpyDeviceToHost, cm->stream));
    }
    MFE_CU_TRY(cudaStreamSynchronize(cm->stream));  /* also reports faults of the kernels above */
    MFE_CU_TRY(cudaGetLastError());
    return MFE_OK;
}

/* ---- timing helpers for benchmarks/cuda.py ---- */

static int time_loop(cudaStream_t s, int32_t warmup, int32_t reps, float *times, char *err, size_t errlen,
                     int (*body)(void *ctx, char *err, size_t errlen), void *ctx) {
    cudaEvent_t a, b;
    MFE_CU_TRY(cudaEventCreate(&a));
    cudaError_t e = cudaEventCreate(&b);
    if (e != cudaSuccess) {
        cudaEventDestroy(a);
        MFE_CU_TRY(e);
    }
    int rc = MFE_OK;
    for (int32_t r = -warmup; r < reps && !rc; r++) {
        e = cudaEventRecord(a, s);
        if (e == cudaSuccess && (rc = body(ctx, err, errlen)) == MFE_OK) {
            e = cudaEventRecord(b, s);
            if (e == cudaSuccess) e = cudaEventSynchronize(b);
            float ms = 0;
            if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, a, b);
            if (e == cudaSuccess && r >= 0) times[r] = ms;
        }
        if (e != cudaSuccess && !rc) {
            snprintf(err, errlen, "CUDA error while timing: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
            rc = MFE_EIO;
        }
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return rc;
}

struct graph_ctx { mfe_cuda_model *cm; int32_t n; };

static int graph_body(void *ctx, char *err, size_t errlen) {
    graph_ctx *g = (graph_ctx *)ctx;
    return run_nodes(g->cm, g->n, err, errlen);
}

extern "C" int mfe_cuda_time_graph(mfe_cuda_model *cm, const uint8_t *input, int32_t n, int32_t warmup, int32_t reps,
                                   float *times, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!cm || !input || !times || n < 1 || reps < 1 || warmup < 0) MFE_FAIL(MFE_EARG, "mfe_cuda_time_graph: bad argument");
    if (n > cm->chunk) MFE_FAIL(MFE_EARG, "batch %d is over the %d images of one pass", n, cm->chunk);
    MFE_CU_TRY(cudaSetDevice(cm->dev.id));
    int rc = reserve(cm, n, err, errlen);
    if (!rc) rc = upload_input(cm, input, n, err, errlen);
    if (rc) return rc;
    graph_ctx g = {cm, n};
    rc = time_loop(cm->stream, warmup, reps, times, err, errlen, graph_body, &g);
    cudaStreamSynchronize(cm->stream);
    if (!rc) MFE_CU_TRY(cudaGetLastError());
    return rc;
}

struct copy_ctx { void *dst; const void *src; size_t bytes; cudaStream_t s; };

static int copy_body(void *ctx, char *err, size_t errlen) {
    copy_ctx *c = (copy_ctx *)ctx;
    MFE_CU_TRY(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, c->s));
    return MFE_OK;
}

extern "C" int mfe_cuda_time_copy(int32_t device, size_t bytes, int32_t warmup, int32_t reps, float *times, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!times || !bytes || reps < 1 || warmup < 0) MFE_FAIL(MFE_EARG, "mfe_cuda_time_copy: bad argument");
    int32_t count;
    int rc = device_count(&count, err, errlen);
    if (rc) return rc;
    if (device < 0 || device >= count) MFE_FAIL(MFE_EARG, "CUDA device %d out of range", device);
    MFE_CU_TRY(cudaSetDevice(device));
    copy_ctx c = {NULL, NULL, bytes, NULL};
    void *src = NULL;
    cudaError_t e = cudaStreamCreateWithFlags(&c.s, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaMalloc(&src, bytes);
    if (e == cudaSuccess) e = cudaMalloc(&c.dst, bytes);
    if (e == cudaSuccess) e = cudaMemsetAsync(src, 0x5a, bytes, c.s);
    if (e == cudaSuccess) {
        c.src = src;
        rc = time_loop(c.s, warmup, reps, times, err, errlen, copy_body, &c);
    } else {
        snprintf(err, errlen, "CUDA: copy benchmark setup failed: %s", cudaGetErrorString(e));
        rc = MFE_EIO;
    }
    if (c.s) cudaStreamSynchronize(c.s);
    cudaFree(src);
    cudaFree(c.dst);
    if (c.s) cudaStreamDestroy(c.s);
    cudaGetLastError();
    return rc;
}
