"""conv2d (any k x k, stride, padding, groups incl. depthwise) and linear: int8 x int8 -> int32 -> int8."""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..quant import INT32_MAX, requantize
from . import ACT, RQ_BLOBS, Attr, Blob, Cost, NodeView, Op, register, requant_cost, rq_shapes

CONV_ATTRS = (
    Attr("cout", 1, 1 << 16), Attr("kh", 1, 15), Attr("kw", 1, 15),
    Attr("stride_h", 1, 8), Attr("stride_w", 1, 8),
    Attr("pad_t", 0, 15), Attr("pad_l", 0, 15), Attr("pad_b", 0, 15), Attr("pad_r", 0, 15),
    Attr("groups", 1, 1 << 16), *ACT,
    Attr("pad_value", -128, 127, "int8 value of the padding: the input zero point of a normalised image"),
)


def conv_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    h, w, c = ins[0]
    g = a["groups"]
    if c % g or a["cout"] % g:
        raise ValueError(f"groups={g} must divide cin={c} and cout={a['cout']}")
    hp, wp = h + a["pad_t"] + a["pad_b"], w + a["pad_l"] + a["pad_r"]
    if hp < a["kh"] or wp < a["kw"]:
        raise ValueError(f"kernel {a['kh']}x{a['kw']} larger than padded input {hp}x{wp}")
    return ((hp - a["kh"]) // a["stride_h"] + 1, (wp - a["kw"]) // a["stride_w"] + 1, a["cout"])


def conv_blob_shapes(v: NodeView) -> dict:
    a = v.attrs
    return {"weight": (a["cout"], a["kh"], a["kw"], v.in_shapes[0][2] // a["groups"]),
            "bias": (a["cout"],), **rq_shapes(v)}


def conv_windows(x: np.ndarray, a: dict[str, int]) -> np.ndarray:
    """N,H,W,C -> N,Ho,Wo,C,kh,kw windows of the input padded with pad_value (default 0)."""
    xp = np.pad(x, ((0, 0), (a["pad_t"], a["pad_b"]), (a["pad_l"], a["pad_r"]), (0, 0)),
                constant_values=a.get("pad_value", 0))
    win = sliding_window_view(xp, (a["kh"], a["kw"]), axis=(1, 2))
    return win[:, ::a["stride_h"], ::a["stride_w"]]


def conv_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a, b = v.attrs, v.blobs
    x = xs[0].astype(np.int64)
    g, cout = a["groups"], a["cout"]
    win = conv_windows(x, a)  # N,Ho,Wo,Cin,kh,kw
    n, ho, wo, cin = win.shape[:4]
    win = win.reshape(n, ho, wo, g, cin // g, a["kh"], a["kw"])
    w = b["weight"].astype(np.int64).reshape(g, cout // g, a["kh"], a["kw"], cin // g)
    acc = np.einsum("nhwgcij,goijc->nhwgo", win, w).reshape(n, ho, wo, cout) + b["bias"]
    return requantize(acc, b["mult"], b["shift"], a["act_lo"], a["act_hi"])


def conv_acc_bound(v: NodeView) -> int:
    w = np.abs(v.blobs["weight"].astype(np.int64)).reshape(v.attrs["cout"], -1)
    return int((w.sum(1) * 128 + np.abs(v.blobs["bias"].astype(np.int64))).max())


def mac_cost(macs: int, weights: np.ndarray) -> tuple[int, int]:
    """Multiplies and adds of `macs` multiply-accumulates; signed powers of two (or 0) cost adds only."""
    mag = np.abs(weights.astype(np.int64))
    mulfree = bool(np.all((mag == 0) | ((mag & (mag - 1)) == 0)))
    return (0 if mulfree else macs), macs


def conv_cost(v: NodeView) -> Cost:
    ho, wo, cout = v.out_shape
    macs = ho * wo * cout * int(np.prod(v.blobs["weight"].shape[1:]))
    mul, add = mac_cost(macs, v.blobs["weight"])
    return Cost(mul + requant_cost(v, v.blobs["mult"]), add + ho * wo * cout)


register(Op(
    name="conv2d", code=1, n_inputs=1, attrs=CONV_ATTRS,
    blobs=(Blob("weight", "int8", doc="OHWI: cout, kh, kw, cin/groups"), Blob("bias", "int32"), *RQ_BLOBS),
    out_dtypes=("int8",), shape=conv_shape, blob_shapes=conv_blob_shapes,
    reference=conv_reference, cost=conv_cost, acc_bound=conv_acc_bound,
    doc="y = clamp(requant(sum_window x*w + bias)); padding holds pad_value; groups == cin is depthwise",
))


def linear_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    return (1, 1, a["cout"])


def linear_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    x = xs[0].reshape(xs[0].shape[0], -1).astype(np.int64)  # NHWC flattened
    acc = x @ v.blobs["weight"].astype(np.int64).T + v.blobs["bias"]
    acc = acc[:, None, None, :]
    if v.out_dtype == "int32":
        from ..quant import INT32_MIN, check_range
        return check_range(acc, INT32_MIN, INT32_MAX, "linear output").astype(np.int32)
    return requantize(acc, v.blobs["mult"], v.blobs["shift"], v.attrs["act_lo"], v.attrs["act_hi"])


def linear_cost(v: NodeView) -> Cost:
    mul, add = mac_cost(v.blobs["weight"].size, v.blobs["weight"])
    return Cost(mul + requant_cost(v, v.blobs["mult"]), add + v.attrs["cout"])


register(Op(
    name="linear", code=2, n_inputs=1, attrs=(Attr("cout", 1, 1 << 16), *ACT),
    blobs=(Blob("weight", "int8", doc="cout x (H*W*C in NHWC order)"), Blob("bias", "int32"), *RQ_BLOBS),
    out_dtypes=("int8", "int32"), shape=linear_shape,
    blob_shapes=lambda v: {"weight": (v.attrs["cout"], int(np.prod(v.in_shapes[0]))),
                           "bias": (v.attrs["cout"],), **rq_shapes(v)},
    reference=linear_reference, cost=linear_cost,
    acc_bound=lambda v: int((np.abs(v.blobs["weight"].astype(np.int64)).sum(1) * 128
                             + np.abs(v.blobs["bias"].astype(np.int64))).max()),
    doc="fully connected over the flattened NHWC input; int32 output (logits) skips requantisation",
))
