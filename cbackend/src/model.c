/* Model file loader: validates every byte it uses before any kernel sees it (docs/format.md). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static const mfe_prepare_fn PREPARE[MFE_OP_COUNT] = {
    [MFE_OP_CONV2D] = mfe_prepare_conv2d, [MFE_OP_LINEAR] = mfe_prepare_linear,
    [MFE_OP_WHT] = mfe_prepare_wht, [MFE_OP_HDW] = mfe_prepare_hdw,
    [MFE_OP_SUMPOOL] = mfe_prepare_sumpool, [MFE_OP_ADD] = mfe_prepare_add,
    [MFE_OP_CLAMP] = mfe_prepare_clamp, [MFE_OP_REQUANTIZE] = mfe_prepare_requantize,
    [MFE_OP_AVGPOOL] = mfe_prepare_avgpool, [MFE_OP_AFFINE] = mfe_prepare_affine,
};


/* Limits (docs/format.md; engine/format.py and engine/graph.py hold the same numbers, a test compares). */
#define MAX_TENSORS 65536
#define MAX_NODES 65536
#define MAX_DIM ((int64_t)1 << 28)            /* each of h, w, c */
#define MAX_TENSOR_BYTES ((uint64_t)1 << 30)  /* h * w * c * 4, whatever the dtype */
#define MAX_LIVE_BYTES ((uint64_t)1 << 30)    /* activations of one image, all live tensors together */
#define MAX_SCRATCH ((size_t)1 << 28)         /* per-thread kernel scratch of one node (C backend only) */
#define BODY_AT (MFE_PREAMBLE_SIZE + MFE_HEADER_SIZE)  /* tables, metadata and blobs start here */

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }  /* little-endian hosts */
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* [at, at + size) inside [lo, hi): no sum is formed, so spans near 2^64 cannot wrap. */
static int span_in(uint64_t at, uint64_t size, uint64_t lo, uint64_t hi) {
    return at >= lo && at <= hi && size <= hi - at;
}

int mfe_check_requant_blobs(const mfe_node *nd, int b_mult, int b_shift, int32_t c, int out_int8,
                            char *err, size_t errlen) {
    int64_t want = out_int8 ? c : 0;
    MFE_CHECK(nd->blob_n[b_mult] == want && nd->blob_n[b_shift] == want,
              "requant blobs hold %lld/%lld values, want %lld", (long long)nd->blob_n[b_mult],
              (long long)nd->blob_n[b_shift], (long long)want);
    return MFE_OK;
}

static int check_blob_values(const mfe_node *nd, int j, const mfe_blob_info *bi, char *err, size_t errlen) {
    for (int64_t i = 0; i < nd->blob_n[j]; i++) {
        int64_t v = bi->dtype == MFE_DT_INT8 ? ((const int8_t *)nd->blob[j])[i] : ((const int32_t *)nd->blob[j])[i];
        MFE_CHECK(v >= bi->lo && v <= bi->hi, "blob %d value %lld at index %lld outside [%lld, %lld]", j,
                  (long long)v, (long long)i, (long long)bi->lo, (long long)bi->hi);
    }
    return MFE_OK;
}

static int zeros(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return 0;
    return 1;
}

static int parse_nodes(mfe_model *m, uint64_t at, uint64_t blobs_at, uint8_t *produced, char *err, size_t errlen) {
    for (int32_t i = 0; i < m->nn; i++, at += MFE_NODE_SIZE) {
        const uint8_t *p = m->file + at;
        mfe_node *nd = &m->nodes[i];
        nd->op = (int32_t)rd32(p);
        MFE_CHECK(nd->op > 0 && nd->op < MFE_OP_COUNT && MFE_OP_INFO[nd->op].name && PREPARE[nd->op],
                  "node %d: unknown op code %d at offset %llu", i, nd->op, (unsigned long long)at);
        const mfe_op_info *oi = &MFE_OP_INFO[nd->op];
        nd->n_in = (int32_t)rd32(p + 4);
        for (int j = 0; j < MFE_MAX_INPUTS; j++) nd->in[j] = (int32_t)rd32(p + 8 + 4 * j);
        nd->out = (int32_t)rd32(p + 8 + 4 * MFE_MAX_INPUTS);
        const uint8_t *q = p + 12 + 4 * MFE_MAX_INPUTS;
        const uint64_t attrs_at = at + 16 + 4 * MFE_MAX_INPUTS;
        uint32_t n_attrs = rd32(q);
        for (int j = 0; j < MFE_MAX_ATTRS; j++) nd->a[j] = (int32_t)rd32(q + 4 + 4 * j);
        q += 4 + 4 * MFE_MAX_ATTRS;
        uint32_t n_blobs = rd32(q);
        q += 8;
        MFE_CHECK(nd->n_in == oi->n_inputs && n_attrs == (uint32_t)oi->n_attrs && n_blobs == (uint32_t)oi->n_blobs,
                  "node %d (%s): counts disagree with the op table at offset %llu", i, oi->name, (unsigned long long)at);
        /* unused input, attribute and blob slots and the reserved word are 0 */
        MFE_CHECK(zeros(p + 8 + 4 * (size_t)oi->n_inputs, 4 * (size_t)(MFE_MAX_INPUTS - oi->n_inputs)) &&
                  zeros(p + attrs_at - at + 4 * (size_t)oi->n_attrs, 4 * (size_t)(MFE_MAX_ATTRS - oi->n_attrs)) &&
                  zeros(q - 4, 4) && zeros(q + 16 * (size_t)oi->n_blobs, 16 * (size_t)(MFE_MAX_BLOBS - oi->n_blobs)),
                  "node %d (%s): unused or reserved fields are not 0 at offset %llu", i, oi->name, (unsigned long long)at);
        for (int j = 0; j < oi->n_attrs; j++)
            MFE_CHECK(nd->a[j] >= oi->attrs[j].lo && nd->a[j] <= oi->attrs[j].hi,
                      "node %d (%s): attribute %d = %d outside [%lld, %lld] at offset %llu", i, oi->name, j, nd->a[j],
                      (long long)oi->attrs[j].lo, (long long)oi->attrs[j].hi, (unsigned long long)(attrs_at + 4 * j));
        if (oi->act_lo >= 0) {
            int lo = oi->act_lo;
            MFE_CHECK(nd->a[lo] <= nd->a[lo + 1], "node %d (%s): act_lo %d > act_hi %d at offset %llu", i, oi->name,
                      nd->a[lo], nd->a[lo + 1], (unsigned long long)(attrs_at + 4 * lo));
        }
        for (int j = 0; j < nd->n_in; j++) {
            MFE_CHECK(nd->in[j] >= 0 && nd->in[j] < m->nt && produced[nd->in[j]],
                      "node %d (%s): input tensor %d missing or not yet computed at offset %llu", i, oi->name, nd->in[j],
                      (unsigned long long)(at + 8 + 4 * j));
            MFE_CHECK(m->t[nd->in[j]].dtype == MFE_DT_INT8, "node %d (%s): inputs must be int8 at offset %llu", i,
                      oi->name, (unsigned long long)(at + 8 + 4 * j));
        }
        MFE_CHECK(nd->out >= 0 && nd->out < m->nt && !produced[nd->out],
                  "node %d (%s): output tensor %d invalid or written twice at offset %llu", i, oi->name, nd->out,
                  (unsigned long long)(at + 8 + 4 * MFE_MAX_INPUTS));
        MFE_CHECK(oi->out_dtypes & (1u << m->t[nd->out].dtype), "node %d (%s): output dtype not allowed at offset %llu",
                  i, oi->name, (unsigned long long)(at + 8 + 4 * MFE_MAX_INPUTS));
        for (int j = 0; j < oi->n_blobs; j++) {
            uint64_t b_at = rd64(q + 16 * j), b_size = rd64(q + 16 * j + 8);
            size_t item = oi->blobs[j].dtype == MFE_DT_INT8 ? 1 : 4;
            MFE_CHECK(span_in(b_at, b_size, blobs_at, m->size) && b_at % MFE_ALIGN == 0 && b_size % item == 0,
                      "node %d (%s): blob %d [%llu, +%llu) outside the file's blob section or misaligned at offset %llu", i,
                      oi->name, j, (unsigned long long)b_at, (unsigned long long)b_size,
                      (unsigned long long)(at + (uint64_t)(q - p) + 16 * j));
            nd->blob[j] = m->file + b_at;
            nd->blob_n[j] = (int64_t)(b_size / item);
            int rc = check_blob_values(nd, j, &oi->blobs[j], err, errlen);
            if (rc) {
                char why[128];
                snprintf(why, sizeof why, "%.120s", err);
                MFE_FAIL(rc, "node %d (%s): %s (blob at offset %llu)", i, oi->name, why, (unsigned long long)b_at);
            }
        }
        int rc = PREPARE[nd->op](m, nd, err, errlen);
        if (!rc && nd->scratch > MAX_SCRATCH)
            rc = MFE_EFORMAT, snprintf(err, errlen, "kernel scratch of %zu bytes is over the limit", nd->scratch);
        if (rc) {
            char why[128];
            snprintf(why, sizeof why, "%.120s", err);
            MFE_FAIL(rc, "node %d (%s) at offset %llu: %s", i, oi->name, (unsigned long long)at, why);
        }
        produced[nd->out] = 1;
        if (oi->act_lo >= 0 && m->t[nd->out].dtype == MFE_DT_INT8) m->t[nd->out].lo = nd->a[oi->act_lo];  /* ops clamp */
        m->t[nd->out].last_use = i;  /* live while its node runs, even if nothing reads it */
        for (int j = 0; j < nd->n_in; j++) m->t[nd->in[j]].last_use = i;
    }
    return MFE_OK;
}

/* Non-empty blob spans may not overlap: with aliasing, a small file could make every node check,
 * copy and pack the same large blob again (work and memory far beyond the file's size). Checked over
 * all four span slots of every node record before any blob is read. */
typedef struct { uint64_t at, size; int32_t node; int32_t slot; } blob_span;

static int cmp_span(const void *a, const void *b) {
    const blob_span *x = a, *y = b;
    return x->at < y->at ? -1 : x->at > y->at ? 1 : (x->node > y->node) - (x->node < y->node);
}

static int check_disjoint_blobs(const mfe_model *m, uint64_t n_at, char *err, size_t errlen) {
    blob_span *s = malloc(sizeof *s * (size_t)m->nn * MFE_MAX_BLOBS);
    if (!s) MFE_FAIL(MFE_ENOMEM, "out of memory");
    size_t k = 0;
    for (int32_t i = 0; i < m->nn; i++)
        for (int j = 0; j < MFE_MAX_BLOBS; j++) {
            const uint8_t *q = m->file + n_at + (uint64_t)i * MFE_NODE_SIZE + MFE_NODE_SIZE - 16 * (MFE_MAX_BLOBS - j);
            uint64_t size = rd64(q + 8);
            if (size) s[k++] = (blob_span){rd64(q), size, i, j};
        }
    qsort(s, k, sizeof *s, cmp_span);
    for (size_t i = 1; i < k; i++)
        if (s[i].at - s[i - 1].at < s[i - 1].size) {  /* s[i].at >= s[i-1].at: no wrap */
            int32_t node = s[i].node, slot = s[i].slot, other = s[i - 1].node;
            unsigned long long at = (unsigned long long)s[i].at, size = (unsigned long long)s[i].size;
            free(s);
            MFE_FAIL(MFE_EFORMAT, "node %d: blob [%llu, +%llu) overlaps a blob of node %d at offset %llu", node, at, size,
                     other, (unsigned long long)(n_at + (uint64_t)node * MFE_NODE_SIZE + MFE_NODE_SIZE - 16 * (MFE_MAX_BLOBS - slot)));
        }
    free(s);
    return MFE_OK;
}

/* Largest sum of bytes of the tensors live at one step (the input before node 0, then each node), per
 * image: what any arena needs. A tensor lives from the step that writes it to its last reader. */
static int64_t live_bytes(const mfe_model *m) {
    int64_t *delta = calloc((size_t)m->nn + 2, sizeof *delta), peak = 0, live = 0;  /* <= 2^16 * 2^30 */
    if (!delta) return INT64_MAX;
    delta[0] += (int64_t)m->t[m->input].bytes;
    delta[m->t[m->input].last_use + 2] -= (int64_t)m->t[m->input].bytes;  /* node 0 reads the input */
    for (int32_t i = 0; i < m->nn; i++) {
        const mfe_tensor *t = &m->t[m->nodes[i].out];
        delta[i + 1] += (int64_t)t->bytes;
        if (t->last_use < m->nn) delta[t->last_use + 2] -= (int64_t)t->bytes;
    }
    for (int32_t s = 0; s <= m->nn; s++) {
        live += delta[s];
        if (live > peak) peak = live;
    }
    free(delta);
    return peak;
}

static int parse(mfe_model *m, char *err, size_t errlen) {
    const uint8_t *f = m->file;
    MFE_CHECK(m->size >= BODY_AT, "file too short (%zu bytes) at offset 0", m->size);
    MFE_CHECK(memcmp(f, MFE_MAGIC, 8) == 0, "bad magic at offset 0: not a model file");
    MFE_CHECK(rd32(f + 8) == MFE_VERSION, "unsupported version %u at offset 8 (this engine reads %d; convert the model again)",
              rd32(f + 8), MFE_VERSION);
    MFE_CHECK(rd32(f + 12) == 0, "reserved field at offset 12 is not 0");
    MFE_CHECK(rd64(f + 16) == m->size, "file size field %llu at offset 16 != actual size %zu (truncated?)",
              (unsigned long long)rd64(f + 16), m->size);
    MFE_CHECK(rd64(f + 56) == 0, "reserved field at offset 56 is not 0");
    uint8_t digest[32];
    mfe_sha256(f + MFE_PREAMBLE_SIZE, m->size - MFE_PREAMBLE_SIZE, digest);
    MFE_CHECK(memcmp(digest, f + 24, 32) == 0, "checksum mismatch at offset 24: the file is corrupted");
    const uint8_t *h = f + MFE_PREAMBLE_SIZE;
    uint32_t nt = rd32(h), nn = rd32(h + 4), input = rd32(h + 8), output = rd32(h + 12), zp = rd32(h + 16);
    uint64_t t_at = rd64(h + 24), n_at = rd64(h + 32), m_at = rd64(h + 40), m_size = rd64(h + 48), b_at = rd64(h + 56);
    MFE_CHECK(nt >= 1 && nt <= MAX_TENSORS, "tensor count %u outside [1, %d] at offset 64", nt, MAX_TENSORS);
    MFE_CHECK(nn >= 1 && nn <= MAX_NODES, "node count %u outside [1, %d] at offset 68", nn, MAX_NODES);
    MFE_CHECK(input < nt, "input tensor index %u out of range at offset 72", input);
    MFE_CHECK(output < nt, "output tensor index %u out of range at offset 76", output);
    MFE_CHECK(output != input, "output tensor is the input at offset 76: the graph computes nothing");
    MFE_CHECK(zp <= 255, "input zero point %u outside [0, 255] at offset 80", zp);
    MFE_CHECK(rd32(h + 20) == 0, "reserved field at offset 84 is not 0");
    MFE_CHECK(b_at % MFE_ALIGN == 0 && span_in(b_at, 0, BODY_AT, m->size),
              "blob section offset %llu at offset 120 misaligned or outside the file", (unsigned long long)b_at);
    MFE_CHECK(span_in(t_at, (uint64_t)nt * MFE_TENSOR_SIZE, BODY_AT, b_at),
              "tensor table [%llu, +%llu) at offset 88 outside the file's table section", (unsigned long long)t_at,
              (unsigned long long)nt * MFE_TENSOR_SIZE);
    MFE_CHECK(span_in(n_at, (uint64_t)nn * MFE_NODE_SIZE, BODY_AT, b_at),
              "node table [%llu, +%llu) at offset 96 outside the file's table section", (unsigned long long)n_at,
              (unsigned long long)nn * MFE_NODE_SIZE);
    MFE_CHECK(span_in(m_at, m_size, BODY_AT, b_at), "metadata [%llu, +%llu) at offset 104 outside the file's table section",
              (unsigned long long)m_at, (unsigned long long)m_size);
    m->nt = (int32_t)nt, m->nn = (int32_t)nn, m->input = (int32_t)input, m->output = (int32_t)output, m->zero_point = (int32_t)zp;
    m->t = calloc((size_t)m->nt, sizeof *m->t);
    m->nodes = calloc((size_t)m->nn, sizeof *m->nodes);
    uint8_t *produced = calloc((size_t)m->nt, 1);
    if (!m->t || !m->nodes || !produced) { free(produced); MFE_FAIL(MFE_ENOMEM, "out of memory"); }
    for (int32_t i = 0; i < m->nt; i++) {
        const uint64_t at = t_at + (uint64_t)i * MFE_TENSOR_SIZE;
        const uint8_t *p = f + at;
        mfe_tensor *t = &m->t[i];
        uint32_t dt = rd32(p), dh = rd32(p + 4), dw = rd32(p + 8), dc = rd32(p + 12);
        memcpy(&t->scale, p + 16, 4);
        t->last_use = -1, t->lo = -128;
        const char *why = NULL;
        if (dt != MFE_DT_INT8 && dt != MFE_DT_INT32) why = "bad dtype code";
        else if (dh < 1 || dw < 1 || dc < 1 || dh > MAX_DIM || dw > MAX_DIM || dc > MAX_DIM) why = "bad shape";
        else if ((uint64_t)dh * dw > MAX_TENSOR_BYTES || (uint64_t)dh * dw * dc * 4 > MAX_TENSOR_BYTES)
            why = "shape over the 1 GiB tensor limit";  /* dims <= 2^28: neither product can wrap */
        else if (!(isfinite(t->scale) && t->scale > 0)) why = "scale must be finite and > 0";
        else if (!zeros(p + 20, 12)) why = "reserved fields are not 0";
        if (why) {
            free(produced);
            MFE_FAIL(MFE_EFORMAT, "tensor %d: %s (%u, %ux%ux%u) at offset %llu", i, why, dt, dh, dw, dc,
                     (unsigned long long)at);
        }
        t->dtype = (int32_t)dt, t->h = (int32_t)dh, t->w = (int32_t)dw, t->c = (int32_t)dc;
        t->bytes = (size_t)dh * dw * dc * (dt == MFE_DT_INT8 ? 1 : 4);
    }
    produced[m->input] = 1;
    int rc = check_disjoint_blobs(m, n_at, err, errlen);
    if (!rc)
        rc = m->t[m->input].dtype == MFE_DT_INT8 ? parse_nodes(m, n_at, b_at, produced, err, errlen)
                                                 : (snprintf(err, errlen, "input tensor must be int8"), MFE_EFORMAT);
    int out_ok = produced[m->output];
    free(produced);
    if (rc) return rc;
    MFE_CHECK(out_ok, "output tensor %d is never produced", m->output);
    m->t[m->output].last_use = m->nn;  /* the output stays live to the end */
    int64_t live = live_bytes(m);
    MFE_CHECK(live <= (int64_t)MAX_LIVE_BYTES, "activations need %llu bytes per image, over the %llu-byte limit",
              (unsigned long long)live, (unsigned long long)MAX_LIVE_BYTES);
    return MFE_OK;
}

int mfe_plan_arena(mfe_model *m, char *err, size_t errlen);

int mfe_load(const void *data, size_t size, mfe_model **out, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!out || (!data && size)) MFE_FAIL(MFE_EARG, "mfe_load: null argument");
    *out = NULL;
    if (size > (size_t)MFE_MAX_FILE) MFE_FAIL(MFE_EFORMAT, "file of %zu bytes is over the limit", size);
    mfe_model *m = calloc(1, sizeof *m);
    if (!m || !(m->file = malloc(size ? size : 1))) { free(m); MFE_FAIL(MFE_ENOMEM, "out of memory"); }
    if (size) memcpy(m->file, data, size);
    m->size = size;
    int rc = parse(m, err, errlen);
    if (!rc) rc = mfe_plan_arena(m, err, errlen);
    if (rc) { mfe_free(m); return rc; }
    *out = m;
    return MFE_OK;
}

int mfe_load_file(const char *path, mfe_model **out, char *err, size_t errlen) {
    char local[256];
    if (!err || !errlen) err = local, errlen = sizeof local;
    if (!out || !path) MFE_FAIL(MFE_EARG, "mfe_load_file: null argument");
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) MFE_FAIL(MFE_EIO, "cannot open %s: %s", path, strerror(errno));
    long size = (fseek(fp, 0, SEEK_END) == 0) ? ftell(fp) : -1;
    if (size < 0 || size > MFE_MAX_FILE || fseek(fp, 0, SEEK_SET) != 0) {
        fclose(fp);
        MFE_FAIL(MFE_EIO, "cannot read %s (or it is over the size limit)", path);
    }
    uint8_t *buf = malloc((size_t)size + 1);
    size_t got = buf ? fread(buf, 1, (size_t)size, fp) : 0;
    fclose(fp);
    if (!buf || got != (size_t)size) { free(buf); MFE_FAIL(MFE_EIO, "cannot read %s", path); }
    int rc = mfe_load(buf, (size_t)size, out, err, errlen);
    free(buf);
    const size_t plen = strlen(path) + 2;
    if (rc != MFE_OK && plen < errlen) {  /* "PATH: " before the reason: mfe_load only sees bytes */
        size_t keep = strlen(err);  /* mfe_load ends err inside errlen */
        if (keep > errlen - plen - 1) keep = errlen - plen - 1;
        memmove(err + plen, err, keep);
        err[plen + keep] = '\0';
        memcpy(err, path, plen - 2);
        err[plen - 2] = ':', err[plen - 1] = ' ';
    }
    return rc;
}

void mfe_free(mfe_model *m) {
    if (!m) return;
    if (m->nodes)
        for (int32_t i = 0; i < m->nn; i++) free(m->nodes[i].prep);
    free(m->nodes);
    free(m->t);
    free(m->arena);
    free(m->scratch);
    free(m->file);
    free(m);
}

void mfe_input_shape(const mfe_model *m, int32_t hwc[3]) {
    const mfe_tensor *t = &m->t[m->input];
    hwc[0] = t->h, hwc[1] = t->w, hwc[2] = t->c;
}

void mfe_output_shape(const mfe_model *m, int32_t hwc[3], int32_t *dtype) {
    const mfe_tensor *t = &m->t[m->output];
    hwc[0] = t->h, hwc[1] = t->w, hwc[2] = t->c, *dtype = t->dtype;
}

int32_t mfe_input_zero_point(const mfe_model *m) { return m->zero_point; }
