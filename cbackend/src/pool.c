/* avgpool: global average pooling as an int32 sum over H x W and one requantisation per channel. */
#include "internal.h"

int mfe_prepare_avgpool(const mfe_model *m, mfe_node *nd, char *err, size_t errlen) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    MFE_CHECK(y->h == 1 && y->w == 1 && y->c == x->c, "output shape must be 1x1x%d", x->c);
    MFE_CHECK(128LL * x->h * x->w <= INT32_MAX, "int32 sum could wrap");
    return MFE_OK;
}

void mfe_run_avgpool(const mfe_ctx *c, const void *in0, const void *in1, void *out) {
    (void)in1;
    const int32_t *a = c->nd->a, C = c->x->c, hw = c->x->h * c->x->w;
    for (int32_t b = 0; b < c->n; b++) {
        const int8_t *x = (const int8_t *)in0 + (size_t)b * c->x->bytes;
        for (int32_t ch = 0; ch < C; ch++) {
            int32_t s = 0;
            for (int32_t p = 0; p < hw; p++) s += x[(size_t)p * C + ch];
            ((int8_t *)out)[(size_t)b * C + ch] =
                mfe_requant(s, a[MFE_AVGPOOL_MULT], a[MFE_AVGPOOL_SHIFT], a[MFE_AVGPOOL_ACT_LO], a[MFE_AVGPOOL_ACT_HI]);
        }
    }
}
