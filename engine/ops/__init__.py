"""The op table: every op is defined once here (name, code, attributes, blobs, dtypes, shape rule,
reference semantics, cost). The file format, the C header (engine/gen_header.py), the loaders and
`inspect` all read these definitions; the `reference` functions are the executable spec.

Tensors are NHWC per image (H, W, C); the batch axis is dynamic. Activations are symmetric int8
(zero point 0). Accumulators are int32, and every graph proves at load time that none can wrap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

Shape = tuple[int, int, int]
MAX_ATTRS, MAX_BLOBS, MAX_INPUTS = 16, 4, 2
DTYPES = {"int8": 1, "int32": 2}  # file codes; 0 is invalid
NP_DTYPES = {"int8": np.int8, "int32": np.int32}


@dataclass(frozen=True)
class Attr:
    name: str
    lo: int
    hi: int
    doc: str = ""


@dataclass(frozen=True)
class Blob:
    name: str
    dtype: str
    param: bool = True  # counted as a learned parameter by `inspect`
    doc: str = ""
    lo: int | None = None  # allowed value range; None: the dtype's range
    hi: int | None = None


@dataclass(frozen=True)
class Cost:
    multiplies: int
    adds: int


@dataclass
class NodeView:
    """What an op's rules see of one node: attributes, blobs, input and output tensors."""
    attrs: dict[str, int]
    blobs: dict[str, np.ndarray]
    in_shapes: list[Shape]
    out_shape: Shape
    out_dtype: str
    in_scales: list[float] = field(default_factory=list)
    out_scale: float = 1.0


@dataclass(frozen=True)
class Op:
    name: str
    code: int
    n_inputs: int
    attrs: tuple[Attr, ...]
    blobs: tuple[Blob, ...]
    out_dtypes: tuple[str, ...]
    # (attrs, input shapes) -> output shape; raises ValueError on an inconsistent node
    shape: Callable[[dict[str, int], list[Shape]], Shape]
    # NodeView -> {blob name: expected shape}
    blob_shapes: Callable[[NodeView], dict[str, tuple[int, ...]]]
    # (NodeView, inputs as N,H,W,C arrays) -> output array
    reference: Callable[[NodeView, list[np.ndarray]], np.ndarray]
    # NodeView -> Cost per image
    cost: Callable[[NodeView], Cost]
    # NodeView -> largest |int32 accumulator| the node can reach (the no-wrap proof); None: no accumulator
    acc_bound: Callable[[NodeView], int] | None = None
    # NodeView -> None; raises ValueError where values break a rule across attributes and blobs
    check: Callable[[NodeView], None] | None = None
    doc: str = ""

    def attr_index(self, name: str) -> int:
        return [a.name for a in self.attrs].index(name)


OPS: dict[str, Op] = {}
BY_CODE: dict[int, Op] = {}


def register(op: Op) -> Op:
    assert op.name not in OPS and op.code not in BY_CODE, op.name
    assert len(op.attrs) <= MAX_ATTRS and len(op.blobs) <= MAX_BLOBS and op.n_inputs <= MAX_INPUTS
    OPS[op.name] = op
    BY_CODE[op.code] = op
    return op


def get(name: str) -> Op:
    if name not in OPS:
        raise KeyError(f"unknown op {name!r}")
    return OPS[name]


# Attributes shared by ops that end in a requantisation to int8.
ACT = (Attr("act_lo", -128, 127, "fused clamp low (ReLU: 0)"), Attr("act_hi", -128, 127, "fused clamp high"))
RQ_TENSOR = (Attr("mult", 0, 2**31 - 1, "requant multiplier"), Attr("shift", 0, 63, "requant right shift"))
RQ_BLOBS = (Blob("mult", "int32", False, "per-channel requant multiplier", 0, 2**31 - 1),
            Blob("shift", "int32", False, "per-channel requant right shift", 0, 63))


def rq_shapes(v: NodeView) -> dict[str, tuple[int, ...]]:
    c = v.out_shape[2] if v.out_dtype == "int8" else 0
    return {"mult": (c,), "shift": (c,)}


def requant_cost(v: NodeView, mults: np.ndarray | list[int]) -> int:
    """Multiplies spent requantising the output: none where every multiplier is a power of two."""
    from ..quant import is_pow2
    if v.out_dtype != "int8" or all(is_pow2(int(m)) or int(m) == 0 for m in np.ravel(mults)):
        return 0
    h, w, c = v.out_shape
    return h * w * c


from . import conv, elementwise, hdw, pool, sumpool, wht  # noqa: E402,F401  (registers the ops)
