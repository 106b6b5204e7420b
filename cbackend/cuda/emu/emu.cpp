/* CPU emulation of the CUDA runtime (see cuda_runtime.h beside this file). */
#include <setjmp.h>
#include <ucontext.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

#include "cuda_runtime.h"

namespace emu {
thread_local thread_ctx ctx;
cudaError_t last_error = cudaSuccess;
int sm_count = 2;

/* Fibers: made with makecontext, switched with _setjmp/_longjmp (no system call per switch). */
struct fiber {
    jmp_buf jb;
    ucontext_t uc;
    char *stack;  /* kept for later launches (never freed: the pool only grows to the largest block) */
    int state;    /* 0 runnable, 1 waiting at a barrier, 2 done */
    thread_ctx c;
};
static std::vector<fiber> pool;
static jmp_buf sched_jb;
static fiber *cur;
static const std::function<void()> *cur_body;
static std::mutex launch_lock;  /* one launch at a time: the kernels' static shared arrays, the globals above */
static const size_t STACK = 256 << 10;

static void fiber_entry() {
    fiber *f = cur;
    if (!_setjmp(f->jb)) _longjmp(sched_jb, 1);  /* registered: back to the scheduler until first run */
    (*cur_body)();
    f->state = 2;
    _longjmp(sched_jb, 1);
}

/* the scheduler's two switches, out of line: its loop counters never live across a _setjmp */
static __attribute__((noinline)) void start(fiber *f) {
    ucontext_t here;
    cur = f;
    if (!_setjmp(sched_jb)) swapcontext(&here, &f->uc);
}

static __attribute__((noinline)) void resume(fiber *f) {
    cur = f, ctx = f->c;
    if (!_setjmp(sched_jb)) _longjmp(f->jb, 1);
}

void barrier() {
    fiber *f = cur;
    f->state = 1;
    if (!_setjmp(f->jb)) _longjmp(sched_jb, 1);
}

void launch(dim3 grid, dim3 block, size_t smem, cudaStream_t, const std::function<void()> &body) {
    const unsigned nthreads = block.x * block.y * block.z;
    if (!nthreads || nthreads > 1024 || !grid.x || !grid.y || !grid.z || smem > 48 * 1024 || block.y != 1 || block.z != 1) {
        last_error = cudaErrorInvalidValue;
        return;
    }
    std::lock_guard<std::mutex> guard(launch_lock);
    while (pool.size() < nthreads) {
        pool.emplace_back();
        pool.back().stack = (char *)malloc(STACK);
        if (!pool.back().stack) {
            pool.pop_back();
            last_error = cudaErrorMemoryAllocation;
            return;
        }
    }
    fiber *fs = pool.data();
    cur_body = &body;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                for (unsigned t = 0; t < nthreads; t++) {
                    fiber &f = fs[t];
                    f.state = 0, f.c.tid = uint3{t, 0, 0}, f.c.bid = uint3{bx, by, bz}, f.c.bdim = block, f.c.gdim = grid;
                    getcontext(&f.uc);
                    f.uc.uc_stack.ss_sp = f.stack, f.uc.uc_stack.ss_size = STACK, f.uc.uc_link = NULL;
                    makecontext(&f.uc, fiber_entry, 0);
                    start(&f);
                }
                for (;;) {
                    unsigned alive = 0;
                    for (unsigned t = 0; t < nthreads; t++)
                        if (fs[t].state == 0) resume(&fs[t]);
                    for (unsigned t = 0; t < nthreads; t++)
                        if (fs[t].state == 1) fs[t].state = 0, alive++;
                    if (!alive) break;
                }
            }
}
}  // namespace emu

struct emu_event { std::chrono::steady_clock::time_point t; };

static cudaError_t set(cudaError_t e) {
    if (e) emu::last_error = e;
    return e;
}

cudaError_t cudaGetDeviceCount(int *n) {
    const char *none = getenv("MFE_CUDA_EMU_NO_DEVICE");  /* tests: the no-GPU path */
    *n = none && none[0] == '1' ? 0 : 1;
    return *n ? cudaSuccess : set(cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : set(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0) return set(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "CPU emulation");
    p->multiProcessorCount = emu::sm_count, p->major = 9, p->minor = 0, p->sharedMemPerBlock = 48 * 1024;
    return cudaSuccess;
}
cudaError_t cudaMalloc(void **p, size_t n) {
    *p = aligned_alloc(256, (n + 255) / 256 * 256);
    if (!*p) return set(cudaErrorMemoryAllocation);
    memset(*p, 0xa5, (n + 255) / 256 * 256);  /* poison: reads of unwritten memory show */
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind) { memmove(dst, src, n); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k, cudaStream_t) { return cudaMemcpy(dst, src, n, k); }
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t) { memset(p, v, n); return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *f, size_t *t) { *f = (size_t)4 << 30, *t = (size_t)8 << 30; return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)malloc(1); return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return emu::last_error; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new emu_event; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { e->t = std::chrono::steady_clock::now(); return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    *ms = std::chrono::duration<float, std::milli>(b->t - a->t).count();
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaGetLastError(void) {
    cudaError_t e = emu::last_error;
    emu::last_error = cudaSuccess;
    return e;
}
const char *cudaGetErrorString(cudaError_t e) { return e == cudaErrorNoDevice ? "no CUDA-capable device is detected" : "emulated CUDA error"; }
const char *cudaGetErrorName(cudaError_t e) { return e == cudaErrorNoDevice ? "cudaErrorNoDevice" : "cudaErrorEmulated"; }
