"""hdw: Hadamard multiplication-free depthwise 3x3 (seed 000), padding 1, stride 1 or 2.

y[c] = requant(sum over the 3x3 window of op(x << xshift, w << wshift) + b[c]) with
  min: 1/2(|x+w| - |x-w|) = sign(x) sign(w) min(|x|, |w|)
  ef:  sign(x) sign(w) (|x| + |w|)
x and w share one scale (xshift or wshift aligns them by a power of two); zero padding contributes 0.
"""
from __future__ import annotations

import numpy as np

from ..quant import requantize
from . import ACT, RQ_BLOBS, Attr, Blob, Cost, NodeView, Op, register, requant_cost, rq_shapes
from .conv import conv_windows

OP_MIN, OP_EF = 0, 1


def hadamard_op(x: np.ndarray, w: np.ndarray, op: int) -> np.ndarray:
    s = np.sign(x) * np.sign(w)
    if op == OP_MIN:
        return s * np.minimum(np.abs(x), np.abs(w))
    return s * (np.abs(x) + np.abs(w))


def hdw_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    h, w, c = ins[0]
    s = a["stride"]
    return ((h - 1) // s + 1, (w - 1) // s + 1, c)


def hdw_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a = v.attrs
    x = xs[0].astype(np.int64) << a["xshift"]
    geo = dict(kh=3, kw=3, stride_h=a["stride"], stride_w=a["stride"], pad_t=1, pad_l=1, pad_b=1, pad_r=1)
    win = conv_windows(x, geo)  # N,Ho,Wo,C,3,3
    w = np.moveaxis(v.blobs["weight"].astype(np.int64), -1, 0) << a["wshift"]  # C,3,3
    acc = hadamard_op(win, w, a["op"]).sum(axis=(-1, -2)) + v.blobs["bias"]
    return requantize(acc, v.blobs["mult"], v.blobs["shift"], a["act_lo"], a["act_hi"])


def hdw_cost(v: NodeView) -> Cost:
    ho, wo, c = v.out_shape
    per_tap = 4 if v.attrs["op"] == OP_MIN else 2  # min: x+w, x-w, difference, accumulate
    return Cost(requant_cost(v, v.blobs["mult"]), ho * wo * c * (9 * per_tap + 1))


register(Op(
    name="hdw", code=4, n_inputs=1,
    attrs=(Attr("stride", 1, 2), Attr("op", 0, 1, "0 min, 1 ef"), Attr("xshift", 0, 7), *ACT, Attr("wshift", 0, 7)),
    blobs=(Blob("weight", "int8", doc="3 x 3 x C"), Blob("bias", "int32"), *RQ_BLOBS),
    out_dtypes=("int8",), shape=hdw_shape,
    blob_shapes=lambda v: {"weight": (3, 3, v.in_shapes[0][2]), "bias": (v.in_shapes[0][2],), **rq_shapes(v)},
    reference=hdw_reference, cost=hdw_cost,
    acc_bound=lambda v: int(9 * ((128 << v.attrs["xshift"]) + (128 << v.attrs["wshift"]))
                            + np.abs(v.blobs["bias"].astype(np.int64)).max(initial=0)),
    doc="multiplication-free depthwise 3x3 with the min- or ef-operator",
))
