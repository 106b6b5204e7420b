/* Internal model structures and helpers shared by the loader, the runtime and the kernels. */
#ifndef MFE_INTERNAL_H
#define MFE_INTERNAL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "mfe.h"
#include "mfe_ops.h"

typedef struct {
    int32_t h, w, c, dtype;
    float scale;
    size_t bytes;      /* per image */
    size_t offset;     /* per-image offset in the arena plan; times the chunk size at run time */
    int32_t last_use;  /* index of the last node reading it */
    int32_t lo;        /* the least value it can hold: its producer's act_lo (int8), else -128 */
} mfe_tensor;

typedef struct mfe_node {
    int32_t op, n_in, in[MFE_MAX_INPUTS], out;
    int32_t a[MFE_MAX_ATTRS];
    const void *blob[MFE_MAX_BLOBS];
    int64_t blob_n[MFE_MAX_BLOBS];  /* element counts */
    void *prep;                     /* op-specific data made at load (packed weights, tables) */
    size_t scratch;                 /* per-thread scratch bytes the kernel needs */
} mfe_node;

struct mfe_model {
    uint8_t *file;
    size_t size;
    int32_t nt, nn, input, output, zero_point;
    mfe_tensor *t;
    mfe_node *nodes;
    size_t plan_bytes;  /* arena bytes per image */
    int32_t cap_batch, cap_threads;
    uint8_t *arena, *scratch;
    size_t scratch_per_thread;
};

/* A kernel runs one node over n images; in/out point at [n, H, W, C] buffers. */
typedef struct {
    const mfe_model *m;
    const mfe_node *nd;
    const mfe_tensor *x, *x2, *y;
    int32_t n, threads;
    uint8_t *scratch;  /* threads * nd->scratch bytes */
} mfe_ctx;

typedef int (*mfe_prepare_fn)(const mfe_model *m, mfe_node *nd, char *err, size_t errlen);
typedef void (*mfe_run_fn)(const mfe_ctx *c, const void *in0, const void *in1, void *out);

#ifdef _OPENMP
#include <omp.h>
static inline int mfe_thread(void) { return omp_get_thread_num(); }
#else
static inline int mfe_thread(void) { return 0; }
#endif

/* Output row r of a batch laid out [n, H, W, C]: its image's input and the row's first output byte. */
typedef struct { const int8_t *x; int8_t *y; int32_t oy; } mfe_row;

static inline mfe_row mfe_row_at(const mfe_tensor *X, const mfe_tensor *Y, const void *in, void *out, int64_t r) {
    int64_t b = r / Y->h;
    mfe_row row = {(const int8_t *)in + b * X->bytes, NULL, (int32_t)(r % Y->h)};
    row.y = (int8_t *)out + b * Y->bytes + (size_t)row.oy * Y->w * Y->c;
    return row;
}

/* for (int64_t var = 0; var < n; var++) { body }, split statically over `threads` OpenMP threads; one thread
 * runs the loop inline: an OpenMP parallel region costs ~0.4 us even with one thread (~25 us per mbv2 pass). */
#define MFE_PARALLEL_FOR(threads, var, n, ...)                                                        \
    do {                                                                                               \
        const int mfe_nt_ = (threads);                                                                 \
        if (mfe_nt_ > 1) {                                                                             \
            _Pragma("omp parallel for num_threads(mfe_nt_) schedule(static)")                         \
            for (int64_t var = 0; var < (n); var++) __VA_ARGS__                                        \
        } else                                                                                         \
            for (int64_t var = 0; var < (n); var++) __VA_ARGS__                                        \
    } while (0)

/* This thread's slice of the per-thread scratch. */
#define MFE_SCRATCH(c) ((c)->scratch + (size_t)mfe_thread() * (c)->m->scratch_per_thread)

/* Output row r of a 3x3 window op (strides sh, sw; padding pt at the top, pl at the left), one output pixel at a
 * time: `pixel` gets its output and its window's nine input pixels, this thread's scratch filled with pad_value
 * (C bytes) where the window leaves the input. */
typedef struct { int32_t sh, sw, pt, pl, pad_value; } mfe_win9;
typedef void (*mfe_pixel9_fn)(int8_t *y, const int8_t *const win[9], const void *ctx);

static inline void mfe_window9_row(const mfe_ctx *c, const void *in, void *out, int64_t r, mfe_win9 g, mfe_pixel9_fn pixel,
                                   const void *ctx) {
    const mfe_tensor *X = c->x, *Y = c->y;
    int8_t *pad = (int8_t *)MFE_SCRATCH(c);
    memset(pad, g.pad_value, (size_t)X->c);
    const mfe_row row = mfe_row_at(X, Y, in, out, r);
    for (int32_t ox = 0; ox < Y->w; ox++) {
        const int8_t *win[9];
        for (int32_t k = 0; k < 9; k++) {
            const int32_t iy = row.oy * g.sh - g.pt + k / 3, ix = ox * g.sw - g.pl + k % 3;
            win[k] = iy < 0 || iy >= X->h || ix < 0 || ix >= X->w ? pad : row.x + ((size_t)iy * X->w + ix) * X->c;
        }
        pixel(row.y + (size_t)ox * Y->c, win, ctx);
    }
}

#define MFE_FAIL(code, ...) do { snprintf(err, errlen, __VA_ARGS__); return (code); } while (0)
#define MFE_CHECK(cond, ...) do { if (!(cond)) MFE_FAIL(MFE_EFORMAT, __VA_ARGS__); } while (0)

static inline int8_t mfe_sat8(int64_t v, int32_t lo, int32_t hi) {
    return (int8_t)(v < lo ? lo : v > hi ? hi : v);
}

/* floor((v + 2^(s-1)) / 2^s), exact for s == 0; the rounding every op uses. */
static inline int64_t mfe_rshift_round(int64_t v, int32_t s) {
    return s ? (v + ((int64_t)1 << (s - 1))) >> s : v;
}

/* int32 accumulator -> int8: clamp(rshift_round(acc * mult, shift), lo, hi); |acc * mult| < 2^62. */
static inline int8_t mfe_requant(int32_t acc, int32_t mult, int32_t shift, int32_t lo, int32_t hi) {
    return mfe_sat8(mfe_rshift_round((int64_t)acc * mult, shift), lo, hi);
}

static inline int64_t mfe_abs64(int64_t v) { return v < 0 ? -v : v; }

/* Per-family entry points (one C file each). */
#define MFE_DECLARE(op) \
    int mfe_prepare_##op(const mfe_model *m, mfe_node *nd, char *err, size_t errlen); \
    void mfe_run_##op(const mfe_ctx *c, const void *in0, const void *in1, void *out);
MFE_DECLARE(conv2d)
MFE_DECLARE(linear)
MFE_DECLARE(wht)
MFE_DECLARE(hdw)
MFE_DECLARE(sumpool)
MFE_DECLARE(add)
MFE_DECLARE(clamp)
MFE_DECLARE(requantize)
MFE_DECLARE(avgpool)
MFE_DECLARE(affine)

/* gemm.c: packed dense products for 1x1 convolutions (and im2col rows), requantised to int8; mfe_gemm_packed_bytes() is 0
 * where this build has no fast path. mfe_gemm_rows takes np <= mfe_gemm_block_rows(cin) pixels and needs
 * mfe_gemm_scratch_bytes(cin) of 64-byte-aligned scratch; its shifts may carry MFE_RQ_MUL32 (below). */
int mfe_gemm_block_rows(int32_t cin);
size_t mfe_gemm_packed_bytes(int32_t cout, int32_t cin);
size_t mfe_gemm_scratch_bytes(int32_t cin);
/* What the loader knows that lets a build use a faster exact byte product whose pair sums must fit int16
 * (AVX2 vpmaddubsw saturates them; NEON's smull + smlal pairs would wrap): */
enum {
    MFE_GEMM_ANY = 0,        /* nothing: any int8 input, any int8 weight */
    MFE_GEMM_X_NONNEG = 1,   /* every input byte lies in [0, 127] */
    MFE_GEMM_W_NARROW = 2,   /* every weight lies in [-64, 64] (x + 128 <= 255 then keeps pair sums in int16) */
};
void mfe_gemm_pack(void *dst, const int8_t *w, const int32_t *bias, int32_t cout, int32_t cin, int known);
void mfe_gemm_rows(int8_t *y, void *scratch, const int8_t *x, int np, int32_t cin, const void *packed,
                   int32_t cout, const int32_t *mult, const int32_t *shift, int32_t lo, int32_t hi);

/* A shift at or above this in a kernel's prepared shift table (conv.c's rq_shift) is shift + MFE_RQ_MUL32 where
 * the loader proved acc * mult + 2^(shift-1) inside int32 for every accumulator the channel can hold, so
 * the SIMD requantisation may run in int32 (x86.h mfe_rq8, neon.h mfe_rq8__neon); their loads strip it. Blob
 * shifts stay below it. */
#define MFE_RQ_MUL32 64

/* Shared checks used by several prepare functions. */
int mfe_check_requant_blobs(const mfe_node *nd, int b_mult, int b_shift, int32_t c, int out_int8,
                            char *err, size_t errlen);

void mfe_sha256(const uint8_t *data, size_t len, uint8_t out[32]);

#endif
