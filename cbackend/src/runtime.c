/* Memory plan and graph execution: one arena sized once per model, images run in chunks. */
#define _POSIX_C_SOURCE 199309L  /* clock_gettime */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "arch.h"
#include "internal.h"

#define CHUNK 16  /* images per pass through the graph: bounds the arena, keeps activations in cache */
#define ARENA_BUDGET ((size_t)64 << 20)  /* a model whose plan needs more per image runs fewer images per pass */
#define MAX_PLAN ((size_t)2 << 30)       /* per image; the loader already bounds live activations to 1 GiB */

static const mfe_run_fn RUN[MFE_OP_COUNT] = {
    [MFE_OP_CONV2D] = mfe_run_conv2d, [MFE_OP_LINEAR] = mfe_run_linear, [MFE_OP_WHT] = mfe_run_wht,
    [MFE_OP_HDW] = mfe_run_hdw, [MFE_OP_SUMPOOL] = mfe_run_sumpool, [MFE_OP_ADD] = mfe_run_add,
    [MFE_OP_CLAMP] = mfe_run_clamp, [MFE_OP_REQUANTIZE] = mfe_run_requantize, [MFE_OP_AVGPOOL] = mfe_run_avgpool,
    [MFE_OP_AFFINE] = mfe_run_affine,
};

const char *mfe_isa(void) { return MFE_ISA_NAME; }

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Greedy first-fit over tensor lifetimes: a tensor lives from the node that writes it (the input: from
 * the start) to its last reader (the loader makes that at least its own node); tensors whose lifetimes
 * overlap never share bytes. Tensors are placed in birth order, so the ones that overlap the next are
 * exactly those still live at its birth: they are kept in `active`, sorted by offset, and the lowest gap
 * that fits is found in one pass (linear in the live tensors, not in all tensors). */
int mfe_plan_arena(mfe_model *m, char *err, size_t errlen) {
    int32_t *active = malloc(sizeof(int32_t) * ((size_t)m->nn + 1)), na = 0;
    if (!active) MFE_FAIL(MFE_ENOMEM, "out of memory");
    size_t top = 0, scratch = 0;
    for (int32_t k = -1; k < m->nn; k++) {  /* step -1: the input */
        const int32_t id = k < 0 ? m->input : m->nodes[k].out;
        mfe_tensor *t = &m->t[id];
        int32_t keep = 0;
        for (int32_t j = 0; j < na; j++)
            if (m->t[active[j]].last_use >= k) active[keep++] = active[j];
        na = keep;
        size_t off = 0, size = align64(t->bytes);
        int32_t pos = 0;
        for (; pos < na; pos++) {
            const mfe_tensor *u = &m->t[active[pos]];
            if (off + size <= u->offset) break;
            if (u->offset + align64(u->bytes) > off) off = u->offset + align64(u->bytes);
        }
        memmove(active + pos + 1, active + pos, sizeof *active * (size_t)(na - pos));
        active[pos] = id, na++;
        t->offset = off;
        if (off + size > top) top = off + size;
    }
    free(active);
    for (int32_t i = 0; i < m->nn; i++)
        if (m->nodes[i].scratch > scratch) scratch = m->nodes[i].scratch;
    MFE_CHECK(top <= MAX_PLAN, "memory plan of %zu bytes per image is over the %zu-byte limit", top, (size_t)MAX_PLAN);
    m->plan_bytes = top;
    m->scratch_per_thread = align64(scratch);
    /* images per pass: up to CHUNK, fewer where the plan is large, so the arena stays near ARENA_BUDGET */
    size_t fit = ARENA_BUDGET / (top ? top : 1);
    m->cap_batch = fit < 1 ? 1 : fit > CHUNK ? CHUNK : (int32_t)fit;
    return MFE_OK;
}

static int reserve(mfe_model *m, int32_t threads, char *err, size_t errlen) {
    if (!m->arena) {
        m->arena = aligned_alloc(64, align64(m->plan_bytes * (size_t)m->cap_batch) + 64);
    }
    if (threads > m->cap_threads) {
        free(m->scratch);
        m->scratch = aligned_alloc(64, m->scratch_per_thread * (size_t)threads + 64);
        m->cap_threads = m->scratch ? threads : 0;
    }
    if (!m->arena || !m->scratch) MFE_FAIL(MFE_ENOMEM, "out of memory planning %zu bytes", m->plan_bytes * (size_t)m->cap_batch);
    return MFE_OK;
}

/* uint8 pixels -> int8 input tensor: clamp(u - zero_point, -128, 127) */
static void quantize_input(int8_t *restrict x, const uint8_t *restrict u, size_t count, int zp) {
    if (zp == 128) {  /* the usual zero point: u - 128 is u with its top bit flipped, 32 bytes per instruction */
        for (size_t i = 0; i < count; i++) x[i] = (int8_t)(u[i] ^ 0x80);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        int v = (int)u[i] - zp;
        v = v < -128 ? -128 : v;
        x[i] = (int8_t)(v > 127 ? 127 : v);
    }
}

int32_t mfe_node_count(const mfe_model *m) { return m ? m->nn : 0; }

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int mfe_run(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads, char *err, size_t errlen) {
    return mfe_run_profiled(m, input, n, output, threads, NULL, err, errlen);
}

int mfe_run_profiled(mfe_model *m, const uint8_t *input, int32_t n, void *output, int32_t threads,
                     double *node_seconds, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!m || (n > 0 && (!input || !output))) MFE_FAIL(MFE_EARG, "mfe_run: null argument");
    if (n < 0 || threads < 1 || threads > 256) MFE_FAIL(MFE_EARG, "bad batch %d or threads %d", n, threads);
    int rc = reserve(m, threads, err, errlen);
    if (rc) return rc;
    const mfe_tensor *ti = &m->t[m->input], *to = &m->t[m->output];
    const size_t chunk = (size_t)m->cap_batch;
    for (int64_t b0 = 0; b0 < n; b0 += (int64_t)chunk) {
        int32_t nb = n - b0 < (int64_t)chunk ? (int32_t)(n - b0) : (int32_t)chunk;
        int8_t *x = (int8_t *)(m->arena + ti->offset * chunk);
        quantize_input(x, input + (size_t)b0 * ti->bytes, (size_t)nb * ti->bytes, m->zero_point);
        uint8_t *y = (uint8_t *)output + (size_t)b0 * to->bytes;  /* the output tensor lives in the caller's buffer */
#define AT(id) ((id) == m->output ? y : m->arena + m->t[id].offset * chunk)
        for (int32_t k = 0; k < m->nn; k++) {
            const mfe_node *nd = &m->nodes[k];
            mfe_ctx c = {m, nd, &m->t[nd->in[0]], nd->n_in > 1 ? &m->t[nd->in[1]] : NULL, &m->t[nd->out],
                         nb, threads, m->scratch};
            const double t0 = node_seconds ? seconds() : 0;
            RUN[nd->op](&c, AT(nd->in[0]), nd->n_in > 1 ? AT(nd->in[1]) : NULL, AT(nd->out));
            if (node_seconds) node_seconds[k] += seconds() - t0;
        }
        if (m->output == m->input) memcpy(y, x, (size_t)nb * to->bytes);
#undef AT
    }
    return MFE_OK;
}
