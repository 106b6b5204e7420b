"""avgpool: global average pooling as an int32 sum over H x W and a requantisation (1/(H W) folded in)."""
from __future__ import annotations

import numpy as np

from ..quant import requantize
from . import ACT, RQ_TENSOR, Cost, NodeView, Op, register, requant_cost


def avgpool_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a = v.attrs
    acc = xs[0].astype(np.int64).sum(axis=(1, 2), keepdims=True)
    return requantize(acc, a["mult"], a["shift"], a["act_lo"], a["act_hi"])


register(Op(
    name="avgpool", code=9, n_inputs=1, attrs=(*RQ_TENSOR, *ACT), blobs=(), out_dtypes=("int8",),
    shape=lambda a, ins: (1, 1, ins[0][2]), blob_shapes=lambda v: {},
    reference=avgpool_reference,
    cost=lambda v: Cost(requant_cost(v, [v.attrs["mult"]]), int(np.prod(v.in_shapes[0]))),
    acc_bound=lambda v: 128 * v.in_shapes[0][0] * v.in_shapes[0][1],
    doc="global average pool: sum over H x W, then requantise with mult ~ 2^shift / (H W)",
))
