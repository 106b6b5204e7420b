/* A rough count of the inner-loop steps one image costs in a model (the kernels' loop bounds), so the
 * fuzz target and the sanitizer tests can skip running crafted graphs that would take seconds. */
#ifndef MFE_TESTS_WORK_H
#define MFE_TESTS_WORK_H
#include "internal.h"

static inline int64_t mfe_node_work(const mfe_model *m, const mfe_node *nd) {
    const mfe_tensor *x = &m->t[nd->in[0]], *y = &m->t[nd->out];
    const int64_t out = (int64_t)y->h * y->w * y->c, in = (int64_t)x->h * x->w * x->c;
    const int32_t *a = nd->a;
    switch (nd->op) {
    case MFE_OP_CONV2D:
        return out * a[MFE_CONV2D_KH] * a[MFE_CONV2D_KW] * (x->c / a[MFE_CONV2D_GROUPS]) + out + in;
    case MFE_OP_LINEAR:
        return (int64_t)y->c * in + out;
    case MFE_OP_WHT: {
        int64_t n = a[MFE_WHT_N], k = 0;
        while (((int64_t)1 << k) < n) k++;
        return (int64_t)x->h * x->w * n * (2 * k + 8);
    }
    case MFE_OP_HDW:
        return out * 9 + in;
    case MFE_OP_SUMPOOL: {
        int64_t wp = (int64_t)x->w + a[MFE_SUMPOOL_PAD_L] + a[MFE_SUMPOOL_PAD_R];
        return (int64_t)y->h * (wp * y->c + a[MFE_SUMPOOL_KH] * (int64_t)x->w * y->c * a[MFE_SUMPOOL_CW] +
                                (int64_t)y->w * y->c * a[MFE_SUMPOOL_KW]);
    }
    default:
        return out + in;
    }
}

static inline int64_t mfe_model_work(const mfe_model *m) {
    int64_t work = 0;
    for (int32_t i = 0; i < m->nn; i++) work += mfe_node_work(m, &m->nodes[i]);
    return work;
}

#endif
