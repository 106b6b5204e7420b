/* add (residual with rescale), clamp, requantize, affine: element by element over the whole batch. */
#include "internal.h"

static int same_shape(const mfe_model *m, const mfe_node *nd) {
    for (int j = 0; j < nd->n_in; j++) {
        const mfe_tensor *x = &m->t[nd->in[j]], *y = &m->t[nd->out];
        if (x->h != y->h || x->w != y->w || x->c != y->c) return 0;
    }
    return 1;
}

int mfe_prepare_add(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_add(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    const int32_t *a = c->nd->a;
    const int64_t ma = a[MFE_ADD_MULT_A], mb = a[MFE_ADD_MULT_B];
    const int32_t s = a[MFE_ADD_SHIFT], lo = a[MFE_ADD_ACT_LO], hi = a[MFE_ADD_ACT_HI];
    const int8_t *x = in0, *z = in1;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t i = 0; i < total; i++) y[i] = mfe_sat8(mfe_rshift_round(x[i] * ma + z[i] * mb, s), lo, hi);
}

int mfe_prepare_clamp(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_clamp(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t lo = c->nd->a[MFE_CLAMP_ACT_LO], hi = c->nd->a[MFE_CLAMP_ACT_HI];
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes;
    for (int64_t i = 0; i < total; i++) y[i] = mfe_sat8(x[i], lo, hi);
}

int mfe_prepare_requantize(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    return MFE_OK;
}

void mfe_run_requantize(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t *a = c->nd->a;
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t total = (int64_t)c->n * c->y->bytes;
    for (int64_t i = 0; i < total; i++)
        y[i] = mfe_requant(x[i], a[MFE_REQUANTIZE_MULT], a[MFE_REQUANTIZE_SHIFT], a[MFE_REQUANTIZE_ACT_LO], a[MFE_REQUANTIZE_ACT_HI]);
}

int mfe_prepare_affine(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const int64_t c = m->t[nd->out].c;
    MFE_CHECK(same_shape(m, nd), "input and output shapes differ");
    MFE_CHECK(nd->blob_n[MFE_AFFINE_B_MULT] == c && nd->blob_n[MFE_AFFINE_B_BIAS] == c && nd->blob_n[MFE_AFFINE_B_SHIFT] == c,
              "mult/bias/shift must hold %lld values", (long long)c);
    return MFE_OK;
}

void mfe_run_affine(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const mfe_node *nd = c->nd;
    const int32_t C = c->y->c, lo = nd->a[MFE_AFFINE_ACT_LO], hi = nd->a[MFE_AFFINE_ACT_HI];
    const int32_t *mult = nd->blob[MFE_AFFINE_B_MULT], *bias = nd->blob[MFE_AFFINE_B_BIAS], *shift = nd->blob[MFE_AFFINE_B_SHIFT];
    const int8_t *x = in0;
    int8_t *y = out;
    const int64_t pixels = (int64_t)c->n * c->y->h * c->y->w;
#pragma omp parallel for num_threads(c->threads) schedule(static)
    for (int64_t p = 0; p < pixels; p++)
        for (int32_t ch = 0; ch < C; ch++) {
            int64_t i = p * C + ch;
            y[i] = mfe_sat8(mfe_rshift_round((int64_t)x[i] * mult[ch] + bias[ch], shift[ch]), lo, hi);
        }
}
