/* CPU emulation of the CUDA runtime and device intrinsics the backend uses (cbackend/cuda/emu/README in
 * make_emu.py's doc): the same .cu sources, compiled by the host C++ compiler after emu/rewrite.py turns each
 * kernel<<<grid, block, smem, stream>>>(args) into emu::launch(...). A block's threads are fibers on the
 * calling thread, switched at __syncthreads / __syncwarp (both wait for every thread of the block still
 * running: the kernels here never rely on warps passing one another); blocks run one after another, so a
 * kernel's `static` shared arrays belong to one block at a time. Tests the kernels' integer and float
 * arithmetic, indexing, bounds and synchronisation on any machine; not the GPU's compiler or hardware. */
#ifndef MFE_CUDA_EMU_RUNTIME_H
#define MFE_CUDA_EMU_RUNTIME_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
struct uint3 { unsigned x, y, z; };
struct int4 { int x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
static inline int4 make_int4(int a, int b, int c, int d) { return int4{a, b, c, d}; }
static inline float4 make_float4(float a, float b, float c, float d) { return float4{a, b, c, d}; }

typedef int cudaError_t;
enum {
    cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100, cudaErrorInvalidDevice = 101, cudaErrorLaunchFailure = 719
};
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyHostToHost };
#define cudaStreamNonBlocking 1
struct cudaDeviceProp {
    char name[256];
    int multiProcessorCount, major, minor;
    size_t sharedMemPerBlock;
};

namespace emu {
struct thread_ctx {
    uint3 tid, bid;
    dim3 bdim, gdim;
};
extern thread_local thread_ctx ctx;
extern cudaError_t last_error;
extern int sm_count;
void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, const std::function<void()> &body);
void barrier();  /* __syncthreads and __syncwarp: wait until every thread of the block still running waits */
}  // namespace emu

#define threadIdx (emu::ctx.tid)
#define blockIdx (emu::ctx.bid)
#define blockDim (emu::ctx.bdim)
#define gridDim (emu::ctx.gdim)

static inline void __syncthreads() { emu::barrier(); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)mask, emu::barrier(); }

static inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
static inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fadd_rd(float a, float b) {  /* exact in double, then rounded toward -inf */
    double d = (double)a + (double)b;
    float f = (float)d;
    if ((double)f > d) f = nextafterf(f, -INFINITY);
    return f;
}
static inline int __dp4a(int a, int b, int c) {
    unsigned s = (unsigned)c;
    for (int i = 0; i < 4; i++) s += (unsigned)((int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i)));
    return (int)s;
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = (uint64_t)x | ((uint64_t)y << 32);
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
template <typename T> static inline T __ldg(const T *p) { return *p; }

/* runtime API (host memory plays device memory) */
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
template <typename F>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *n, F, int, size_t) {
    *n = 2;
    return cudaSuccess;
}

#ifndef __CUDACC_VER_MAJOR__
#define __CUDACC_VER_MAJOR__ 0
#define __CUDACC_VER_MINOR__ 0
#endif
#endif
