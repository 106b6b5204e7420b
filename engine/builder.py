"""GraphBuilder: append nodes by op name; attributes and blobs are split by the op table and the
output shape is inferred by the op's own rule. Used by the converter, zoo scripts and tests."""
from __future__ import annotations

import numpy as np

from . import ops
from .graph import Graph, Node, Tensor

DEFAULTS = {"act_lo": -128, "act_hi": 127}  # every other attribute defaults to 0


class GraphBuilder:
    def __init__(self, shape: tuple[int, int, int], scale: float = 1.0, zero_point: int = 128):
        self.tensors = [Tensor("input", tuple(shape), "int8", float(scale))]
        self.nodes: list[Node] = []
        self.zero_point = zero_point

    def shape(self, t: int) -> tuple[int, int, int]:
        return self.tensors[t].shape

    def add(self, op_name: str, inputs: list[int] | int, name: str | None = None, out_dtype: str = "int8",
            scale: float = 1.0, **kw) -> int:
        """Append a node; kw holds its attributes (defaults: act_lo/act_hi) and blobs. Returns the output tensor."""
        op = ops.get(op_name)
        inputs = [inputs] if isinstance(inputs, int) else list(inputs)
        attrs = {a.name: int(kw.pop(a.name, DEFAULTS.get(a.name, 0))) for a in op.attrs}
        blobs = {b.name: np.asarray(kw.pop(b.name), dtype=ops.NP_DTYPES[b.dtype]) for b in op.blobs if b.name in kw}
        if kw:
            raise TypeError(f"{op_name}: unknown arguments {sorted(kw)}")
        out_shape = op.shape(attrs, [self.shape(i) for i in inputs])
        name = name or f"{op_name}_{len(self.nodes)}"
        self.tensors.append(Tensor(name, tuple(out_shape), out_dtype, float(scale)))
        view = ops.NodeView(attrs, blobs, [self.shape(i) for i in inputs], tuple(out_shape), out_dtype)
        for b, shp in op.blob_shapes(view).items():  # blobs a node of this shape leaves empty need not be given
            if b not in blobs and int(np.prod(shp)) == 0:
                blobs[b] = np.zeros(shp, dtype=ops.NP_DTYPES[next(x.dtype for x in op.blobs if x.name == b)])
            elif b in blobs:
                blobs[b] = blobs[b].reshape(shp)
        self.nodes.append(Node(name, op_name, inputs, len(self.tensors) - 1, attrs, blobs))
        return len(self.tensors) - 1

    def build(self, output: int | None = None, meta: dict | None = None) -> Graph:
        out = len(self.tensors) - 1 if output is None else output
        return Graph(self.tensors, self.nodes, 0, out, self.zero_point, dict(meta or {})).validate()
