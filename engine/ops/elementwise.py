"""add (residual, with rescale), clamp (ReLU/ReLU6 as integer clamps), requantize (rescale),
affine (per-channel scale and offset: a BatchNorm that no neighbouring op can absorb)."""
from __future__ import annotations

import numpy as np

from ..quant import requantize, rshift_round
from . import ACT, RQ_TENSOR, Attr, Blob, Cost, NodeView, Op, register, requant_cost


def same_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    if any(s != ins[0] for s in ins[1:]):
        raise ValueError(f"input shapes differ: {ins}")
    return ins[0]


def add_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a = v.attrs
    acc = xs[0].astype(np.int64) * a["mult_a"] + xs[1].astype(np.int64) * a["mult_b"]
    return np.clip(rshift_round(acc, a["shift"]), a["act_lo"], a["act_hi"]).astype(np.int8)


def add_cost(v: NodeView) -> Cost:
    h, w, c = v.out_shape
    mul = requant_cost(v, [v.attrs["mult_a"]]) + requant_cost(v, [v.attrs["mult_b"]])
    return Cost(mul, h * w * c)


register(Op(
    name="add", code=6, n_inputs=2,
    attrs=(Attr("mult_a", 0, 2**31 - 1), Attr("mult_b", 0, 2**31 - 1), Attr("shift", 0, 63), *ACT),
    blobs=(), out_dtypes=("int8",), shape=same_shape, blob_shapes=lambda v: {},
    reference=add_reference, cost=add_cost,
    doc="y = clamp(rshift_round(a*mult_a + b*mult_b, shift)) in int64; powers of two make it shift-only",
))

register(Op(
    name="clamp", code=7, n_inputs=1, attrs=ACT, blobs=(), out_dtypes=("int8",),
    shape=same_shape, blob_shapes=lambda v: {},
    reference=lambda v, xs: np.clip(xs[0], v.attrs["act_lo"], v.attrs["act_hi"]).astype(np.int8),
    cost=lambda v: Cost(0, 0), doc="ReLU / ReLU6 as an integer clamp",
))

register(Op(
    name="requantize", code=8, n_inputs=1, attrs=(*RQ_TENSOR, *ACT), blobs=(), out_dtypes=("int8",),
    shape=same_shape, blob_shapes=lambda v: {},
    reference=lambda v, xs: requantize(xs[0], v.attrs["mult"], v.attrs["shift"], v.attrs["act_lo"], v.attrs["act_hi"]),
    cost=lambda v: Cost(requant_cost(v, [v.attrs["mult"]]), 0),
    doc="int8 -> int8 rescale: clamp(rshift_round(x * mult, shift))",
))


def affine_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    b = v.blobs
    acc = xs[0].astype(np.int64) * b["mult"].astype(np.int64) + b["bias"]
    return np.clip(rshift_round(acc, b["shift"]), v.attrs["act_lo"], v.attrs["act_hi"]).astype(np.int8)


def affine_cost(v: NodeView) -> Cost:
    h, w, c = v.out_shape
    mag = np.abs(v.blobs["mult"].astype(np.int64))
    mulfree = bool(np.all((mag == 0) | ((mag & (mag - 1)) == 0)))
    return Cost(0 if mulfree else h * w * c, h * w * c)


register(Op(
    name="affine", code=10, n_inputs=1, attrs=ACT,
    blobs=(Blob("mult", "int32", doc="signed per-channel multiplier"), Blob("bias", "int32"),
           Blob("shift", "int32", False, lo=0, hi=63)),
    out_dtypes=("int8",), shape=same_shape,
    blob_shapes=lambda v: {k: (v.in_shapes[0][2],) for k in ("mult", "bias", "shift")},
    reference=affine_reference, cost=affine_cost,
    doc="y[c] = clamp(rshift_round(x * mult[c] + bias[c], shift[c])) in int64",
))
