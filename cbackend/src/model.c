/* Model file loader: validates every byte it uses before any kernel sees it (docs/format.md). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

static const mfe_prepare_fn PREPARE[MFE_OP_COUNT] = {
    [MFE_OP_CONV2D] = mfe_prepare_conv2d, [MFE_OP_LINEAR] = mfe_prepare_linear,
    [MFE_OP_WHT] = mfe_prepare_wht, [MFE_OP_HDW] = mfe_prepare_hdw,
    [MFE_OP_SUMPOOL] = mfe_prepare_sumpool, [MFE_OP_ADD] = mfe_prepare_add,
    [MFE_OP_CLAMP] = mfe_prepare_clamp, [MFE_OP_REQUANTIZE] = mfe_prepare_requantize,
    [MFE_OP_AVGPOOL] = mfe_prepare_avgpool,
};

#define MAX_TENSORS 65536
#define MAX_NODES 65536
#define MAX_IMAGE_BYTES ((size_t)1 << 30)  /* activations of one image, all live tensors together */

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }  /* little-endian hosts */
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int span_ok(const mfe_model *m, uint64_t at, uint64_t size) {
    return at >= MFE_PREAMBLE_SIZE && at <= m->size && size <= m->size - at;
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

static int parse_nodes(mfe_model *m, uint64_t at, uint8_t *produced, char *err, size_t errlen) {
    for (int32_t i = 0; i < m->nn; i++, at += MFE_NODE_SIZE) {
        const uint8_t *p = m->file + at;
        mfe_node *nd = &m->nodes[i];
        nd->op = (int32_t)rd32(p);
        MFE_CHECK(nd->op > 0 && nd->op < MFE_OP_COUNT && MFE_OP_INFO[nd->op].name,
                  "node %d: unknown op code %d at offset %llu", i, nd->op, (unsigned long long)at);
        const mfe_op_info *oi = &MFE_OP_INFO[nd->op];
        nd->n_in = (int32_t)rd32(p + 4);
        for (int j = 0; j < MFE_MAX_INPUTS; j++) nd->in[j] = (int32_t)rd32(p + 8 + 4 * j);
        nd->out = (int32_t)rd32(p + 8 + 4 * MFE_MAX_INPUTS);
        const uint8_t *q = p + 12 + 4 * MFE_MAX_INPUTS;
        uint32_t n_attrs = rd32(q);
        for (int j = 0; j < MFE_MAX_ATTRS; j++) nd->a[j] = (int32_t)rd32(q + 4 + 4 * j);
        q += 4 + 4 * MFE_MAX_ATTRS;
        uint32_t n_blobs = rd32(q);
        q += 8;
        MFE_CHECK(nd->n_in == oi->n_inputs && n_attrs == (uint32_t)oi->n_attrs && n_blobs == (uint32_t)oi->n_blobs,
                  "node %d (%s): counts disagree with the op table at offset %llu", i, oi->name, (unsigned long long)at);
        for (int j = 0; j < oi->n_attrs; j++)
            MFE_CHECK(nd->a[j] >= oi->attrs[j].lo && nd->a[j] <= oi->attrs[j].hi,
                      "node %d (%s): attribute %d = %d outside [%lld, %lld] at offset %llu", i, oi->name, j, nd->a[j],
                      (long long)oi->attrs[j].lo, (long long)oi->attrs[j].hi, (unsigned long long)(at + 20 + 4 * MFE_MAX_INPUTS + 4 * j));
        for (int j = 0; j < nd->n_in; j++) {
            MFE_CHECK(nd->in[j] >= 0 && nd->in[j] < m->nt && produced[nd->in[j]],
                      "node %d (%s): input tensor %d missing or not yet computed", i, oi->name, nd->in[j]);
            MFE_CHECK(m->t[nd->in[j]].dtype == MFE_DT_INT8, "node %d (%s): inputs must be int8", i, oi->name);
        }
        MFE_CHECK(nd->out >= 0 && nd->out < m->nt && !produced[nd->out],
                  "node %d (%s): output tensor %d invalid or written twice", i, oi->name, nd->out);
        MFE_CHECK(oi->out_dtypes & (1u << m->t[nd->out].dtype), "node %d (%s): output dtype not allowed", i, oi->name);
        for (int j = 0; j < oi->n_blobs; j++) {
            uint64_t b_at = rd64(q + 16 * j), b_size = rd64(q + 16 * j + 8);
            size_t item = oi->blobs[j].dtype == MFE_DT_INT8 ? 1 : 4;
            MFE_CHECK(span_ok(m, b_at, b_size) && b_at % MFE_ALIGN == 0 && b_size % item == 0,
                      "node %d (%s): blob %d [%llu, +%llu) outside the file or misaligned", i, oi->name, j,
                      (unsigned long long)b_at, (unsigned long long)b_size);
            nd->blob[j] = m->file + b_at;
            nd->blob_n[j] = (int64_t)(b_size / item);
            int rc = check_blob_values(nd, j, &oi->blobs[j], err, errlen);
            if (rc) return rc;
        }
        int rc = PREPARE[nd->op](m, nd, err, errlen);
        if (rc) {
            char why[200];
            snprintf(why, sizeof why, "%s", err);
            MFE_FAIL(rc, "node %d (%s): %s", i, oi->name, why);
        }
        produced[nd->out] = 1;
        for (int j = 0; j < nd->n_in; j++) m->t[nd->in[j]].last_use = i;
    }
    return MFE_OK;
}

static int parse(mfe_model *m, char *err, size_t errlen) {
    const uint8_t *f = m->file;
    MFE_CHECK(m->size >= MFE_PREAMBLE_SIZE + MFE_HEADER_SIZE, "file too short (%zu bytes) at offset 0", m->size);
    MFE_CHECK(memcmp(f, MFE_MAGIC, 8) == 0, "bad magic at offset 0: not a model file");
    MFE_CHECK(rd32(f + 8) == MFE_VERSION, "unsupported version %u at offset 8", rd32(f + 8));
    MFE_CHECK(rd64(f + 16) == m->size, "file size field %llu at offset 16 != actual size %zu (truncated?)",
              (unsigned long long)rd64(f + 16), m->size);
    uint8_t digest[32];
    mfe_sha256(f + MFE_PREAMBLE_SIZE, m->size - MFE_PREAMBLE_SIZE, digest);
    MFE_CHECK(memcmp(digest, f + 24, 32) == 0, "checksum mismatch at offset 24: the file is corrupted");
    const uint8_t *h = f + MFE_PREAMBLE_SIZE;
    m->nt = (int32_t)rd32(h), m->nn = (int32_t)rd32(h + 4);
    m->input = (int32_t)rd32(h + 8), m->output = (int32_t)rd32(h + 12), m->zero_point = (int32_t)rd32(h + 16);
    uint64_t t_at = rd64(h + 24), n_at = rd64(h + 32);
    MFE_CHECK(m->nt > 0 && m->nt <= MAX_TENSORS && m->nn > 0 && m->nn <= MAX_NODES,
              "tensor/node counts %d/%d out of range at offset 64", m->nt, m->nn);
    MFE_CHECK(span_ok(m, t_at, (uint64_t)m->nt * MFE_TENSOR_SIZE), "tensor table outside the file");
    MFE_CHECK(span_ok(m, n_at, (uint64_t)m->nn * MFE_NODE_SIZE), "node table outside the file");
    MFE_CHECK(m->input >= 0 && m->input < m->nt && m->output >= 0 && m->output < m->nt,
              "input/output tensor index out of range at offset 72");
    MFE_CHECK(m->zero_point >= 0 && m->zero_point <= 255, "input zero point %d outside [0, 255]", m->zero_point);
    m->t = calloc((size_t)m->nt, sizeof *m->t);
    m->nodes = calloc((size_t)m->nn, sizeof *m->nodes);
    uint8_t *produced = calloc((size_t)m->nt, 1);
    if (!m->t || !m->nodes || !produced) { free(produced); MFE_FAIL(MFE_ENOMEM, "out of memory"); }
    for (int32_t i = 0; i < m->nt; i++) {
        const uint8_t *p = f + t_at + (uint64_t)i * MFE_TENSOR_SIZE;
        mfe_tensor *t = &m->t[i];
        t->dtype = (int32_t)rd32(p), t->h = (int32_t)rd32(p + 4), t->w = (int32_t)rd32(p + 8), t->c = (int32_t)rd32(p + 12);
        memcpy(&t->scale, p + 16, 4);
        t->last_use = -1;
        uint64_t elems = (uint64_t)(uint32_t)t->h * (uint32_t)t->w * (uint32_t)t->c;
        if (!((t->dtype == MFE_DT_INT8 || t->dtype == MFE_DT_INT32) && t->h > 0 && t->w > 0 && t->c > 0 &&
              elems * 4 <= MAX_IMAGE_BYTES && isfinite(t->scale) && t->scale > 0)) {
            free(produced);
            MFE_FAIL(MFE_EFORMAT, "tensor %d: bad dtype, shape or scale at offset %llu", i,
                     (unsigned long long)(t_at + (uint64_t)i * MFE_TENSOR_SIZE));
        }
        t->bytes = (size_t)elems * (t->dtype == MFE_DT_INT8 ? 1 : 4);
    }
    produced[m->input] = 1;
    int rc = m->t[m->input].dtype == MFE_DT_INT8 ? parse_nodes(m, n_at, produced, err, errlen)
                                                  : (snprintf(err, errlen, "input tensor must be int8"), MFE_EFORMAT);
    int out_ok = produced[m->output];
    free(produced);
    if (rc) return rc;
    MFE_CHECK(out_ok, "output tensor is never produced");
    m->t[m->output].last_use = m->nn;  /* the output stays live to the end */
    return MFE_OK;
}

int mfe_plan_arena(mfe_model *m, char *err, size_t errlen);

int mfe_load(const void *data, size_t size, mfe_model **out, char *err, size_t errlen) {
    *out = NULL;
    if (size > (size_t)MFE_MAX_FILE) MFE_FAIL(MFE_EFORMAT, "file of %zu bytes is over the limit", size);
    mfe_model *m = calloc(1, sizeof *m);
    if (!m || !(m->file = malloc(size ? size : 1))) { free(m); MFE_FAIL(MFE_ENOMEM, "out of memory"); }
    memcpy(m->file, data, size);
    m->size = size;
    int rc = parse(m, err, errlen);
    if (!rc) rc = mfe_plan_arena(m, err, errlen);
    if (rc) { mfe_free(m); return rc; }
    *out = m;
    return MFE_OK;
}

int mfe_load_file(const char *path, mfe_model **out, char *err, size_t errlen) {
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) MFE_FAIL(MFE_EIO, "cannot open %s", path);
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
