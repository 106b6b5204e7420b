"""sumpool: stride-1 sum over a (channels x kh x kw) window, adds only (seed 001).

A structured k x k convolution equals sumpool over (C - c + 1, k - n + 1, k - n + 1) followed by a
smaller c x n x n convolution. The sum is requantised to int8 (per tensor) so the conv that follows
reads int8; zero padding applies spatially.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..quant import requantize
from . import ACT, RQ_TENSOR, Attr, Cost, NodeView, Op, register, requant_cost

GEOMETRY = (Attr("cw", 1, 1 << 16, "channel window"), Attr("kh", 1, 15), Attr("kw", 1, 15),
            Attr("pad_t", 0, 15), Attr("pad_l", 0, 15), Attr("pad_b", 0, 15), Attr("pad_r", 0, 15))


def sumpool_shape(a: dict[str, int], ins: list) -> tuple[int, int, int]:
    h, w, c = ins[0]
    ho, wo, co = h + a["pad_t"] + a["pad_b"] - a["kh"] + 1, w + a["pad_l"] + a["pad_r"] - a["kw"] + 1, c - a["cw"] + 1
    if min(ho, wo, co) < 1:
        raise ValueError(f"window {a['cw']}x{a['kh']}x{a['kw']} larger than the input {h}x{w}x{c}")
    return (ho, wo, co)


def sumpool_sum(x: np.ndarray, a: dict[str, int]) -> np.ndarray:
    xp = np.pad(x.astype(np.int64), ((0, 0), (a["pad_t"], a["pad_b"]), (a["pad_l"], a["pad_r"]), (0, 0)))
    win = sliding_window_view(xp, (a["kh"], a["kw"], a["cw"]), axis=(1, 2, 3))
    return win.sum(axis=(-1, -2, -3))


def sumpool_reference(v: NodeView, xs: list[np.ndarray]) -> np.ndarray:
    a = v.attrs
    return requantize(sumpool_sum(xs[0], a), a["mult"], a["shift"], a["act_lo"], a["act_hi"])


def sumpool_cost(v: NodeView) -> Cost:
    h, w, c = v.out_shape
    a = v.attrs
    # as the C kernel sums: column sums over kh rows x cw channels, then kw of them
    return Cost(requant_cost(v, [a["mult"]]), h * w * c * (a["cw"] * a["kh"] - 1 + a["kw"] - 1))


register(Op(
    name="sumpool", code=5, n_inputs=1, attrs=(*GEOMETRY, *RQ_TENSOR, *ACT), blobs=(),
    out_dtypes=("int8",), shape=sumpool_shape, blob_shapes=lambda v: {},
    reference=sumpool_reference, cost=sumpool_cost,
    acc_bound=lambda v: 128 * v.attrs["cw"] * v.attrs["kh"] * v.attrs["kw"],
    doc="stride-1 sum pooling over channels x kh x kw, then shift/multiplier requantisation",
))
