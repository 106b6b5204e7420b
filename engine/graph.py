"""The integer graph: tensors, nodes, validation (shapes, ranges, the no-wrap proof), reference run."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .quant import INT32_MAX

# Limits both loaders enforce (cbackend/src/model.c holds the same numbers; a test compares them).
MAX_TENSORS = 65536
MAX_NODES = 65536
MAX_DIM = 1 << 28  # each of h, w, c
MAX_TENSOR_BYTES = 1 << 30  # h * w * c * 4, whatever the dtype
MAX_LIVE_BYTES = 1 << 30  # activations of one image, all tensors live at one step together


class ModelError(ValueError):
    """A model file or graph is invalid; the message names the problem (and byte offset when known)."""


class InputError(ValueError):
    """Input images of the wrong shape, dtype or values."""


def _at(obj) -> str:
    return f" at offset {obj.at}" if getattr(obj, "at", None) is not None else ""


@dataclass
class Tensor:
    name: str
    shape: tuple[int, int, int]  # H, W, C per image
    dtype: str = "int8"
    scale: float = 1.0
    at: int | None = field(default=None, compare=False, repr=False)  # byte offset of its record, when read


@dataclass
class Node:
    name: str
    op: str
    inputs: list[int]
    output: int
    attrs: dict[str, int]
    blobs: dict[str, np.ndarray] = field(default_factory=dict)
    at: int | None = field(default=None, compare=False, repr=False)  # byte offset of its record, when read


def tensor_bytes(t: Tensor) -> int:
    h, w, c = (int(v) for v in t.shape)
    return h * w * c * (1 if t.dtype == "int8" else 4)


def check_tensor(t: Tensor) -> None:
    """dtype, shape (each dim in [1, 2^28], h*w*c*4 <= 1 GiB, in Python ints: nothing wraps), scale."""
    where = f"tensor {t.name}{_at(t)}"
    if t.dtype not in ops.DTYPES:
        raise ModelError(f"{where}: bad dtype {t.dtype}")
    if len(t.shape) != 3 or not all(1 <= int(v) <= MAX_DIM for v in t.shape):
        raise ModelError(f"{where}: bad shape {t.shape}")
    h, w, c = (int(v) for v in t.shape)
    if h * w * c * 4 > MAX_TENSOR_BYTES:
        raise ModelError(f"{where}: shape {h}x{w}x{c} over the 1 GiB tensor limit")
    if not (np.isfinite(t.scale) and t.scale > 0):
        raise ModelError(f"{where}: scale {t.scale} must be finite and > 0")


@dataclass
class Graph:
    tensors: list[Tensor]
    nodes: list[Node]
    input: int = 0
    output: int = -1
    input_zero_point: int = 128  # uint8 pixel u -> int8 input q = clamp(u - zero_point)
    meta: dict = field(default_factory=dict)

    def view(self, node: Node) -> ops.NodeView:
        out = self.tensors[node.output]
        return ops.NodeView(node.attrs, node.blobs, [self.tensors[i].shape for i in node.inputs],
                            out.shape, out.dtype, [self.tensors[i].scale for i in node.inputs], out.scale)

    def validate(self) -> "Graph":
        """Check everything a kernel relies on; raise ModelError naming the first problem."""
        nt = len(self.tensors)
        if not self.nodes:
            raise ModelError("graph has no nodes")
        if nt > MAX_TENSORS or len(self.nodes) > MAX_NODES:
            raise ModelError(f"{nt} tensors / {len(self.nodes)} nodes: over the {MAX_TENSORS} / {MAX_NODES} limit")
        if not (0 <= self.input < nt and -nt <= self.output < nt):
            raise ModelError("input/output tensor index out of range")
        if self.output % nt == self.input:
            raise ModelError("output tensor is the input: the graph computes nothing")
        if self.tensors[self.input].dtype != "int8":
            raise ModelError("input tensor must be int8")
        if not 0 <= self.input_zero_point <= 255:
            raise ModelError(f"input zero point {self.input_zero_point} outside [0, 255]")
        for t in self.tensors:
            check_tensor(t)
        produced = {self.input}
        for node in self.nodes:
            self._validate_node(node, produced)
            produced.add(node.output)
        if self.output % nt not in produced:
            raise ModelError("output tensor is never produced")
        live = self.live_bytes()
        if live > MAX_LIVE_BYTES:
            raise ModelError(f"activations need {live} bytes per image, over the {MAX_LIVE_BYTES}-byte limit")
        return self

    def live_bytes(self) -> int:
        """Largest sum of bytes of the tensors live at one step (the input before node 0, then each node),
        per image: what any arena needs. A tensor lives from the step that writes it to its last reader."""
        size = [tensor_bytes(t) for t in self.tensors]
        end = {self.input: -1}
        for i, node in enumerate(self.nodes):
            end[node.output] = i
            for t in node.inputs:
                end[t] = i
        end[self.output % len(self.tensors)] = len(self.nodes)
        delta = [0] * (len(self.nodes) + 2)
        delta[0] += size[self.input]
        delta[end[self.input] + 2] -= size[self.input]
        for i, node in enumerate(self.nodes):
            delta[i + 1] += size[node.output]
            if end[node.output] < len(self.nodes):
                delta[end[node.output] + 2] -= size[node.output]
        peak = live = 0
        for d in delta[:-1]:
            live += d
            peak = max(peak, live)
        return peak

    def _validate_node(self, node: Node, produced: set[int]) -> None:
        where = f"node {node.name} ({node.op}){_at(node)}"
        if node.op not in ops.OPS:
            raise ModelError(f"{where}: unknown op")
        op = ops.OPS[node.op]
        if len(node.inputs) != op.n_inputs or any(i not in produced for i in node.inputs):
            raise ModelError(f"{where}: inputs {node.inputs} missing or not yet computed")
        if not 0 <= node.output < len(self.tensors) or node.output in produced:
            raise ModelError(f"{where}: output tensor {node.output} invalid or written twice")
        if set(node.attrs) != {a.name for a in op.attrs}:
            raise ModelError(f"{where}: attributes {sorted(node.attrs)} != {[a.name for a in op.attrs]}")
        for a in op.attrs:
            if not a.lo <= node.attrs[a.name] <= a.hi:
                raise ModelError(f"{where}: attribute {a.name}={node.attrs[a.name]} outside [{a.lo}, {a.hi}]")
        if "act_lo" in node.attrs and node.attrs["act_lo"] > node.attrs["act_hi"]:
            raise ModelError(f"{where}: act_lo > act_hi")
        if any(self.tensors[i].dtype != "int8" for i in node.inputs):
            raise ModelError(f"{where}: inputs must be int8")
        out = self.tensors[node.output]
        if out.dtype not in op.out_dtypes:
            raise ModelError(f"{where}: output dtype {out.dtype} not in {op.out_dtypes}")
        try:
            shape = op.shape(node.attrs, [self.tensors[i].shape for i in node.inputs])
        except ValueError as e:
            raise ModelError(f"{where}: {e}") from None
        if tuple(shape) != tuple(out.shape):
            raise ModelError(f"{where}: output shape {out.shape} != inferred {shape}")
        view = self.view(node)
        want = op.blob_shapes(view)
        if set(node.blobs) != set(want):
            raise ModelError(f"{where}: blobs {sorted(node.blobs)} != {sorted(want)}")
        for b in op.blobs:
            arr = node.blobs[b.name]
            if arr.dtype != ops.NP_DTYPES[b.dtype] or arr.shape != tuple(want[b.name]):
                raise ModelError(f"{where}: blob {b.name} is {arr.dtype}{arr.shape}, want {b.dtype}{want[b.name]}")
            if arr.size and ((b.lo is not None and arr.min() < b.lo) or (b.hi is not None and arr.max() > b.hi)):
                raise ModelError(f"{where}: blob {b.name} values outside [{b.lo}, {b.hi}]")
        if op.check is not None:
            try:
                op.check(view)
            except ValueError as e:
                raise ModelError(f"{where}: {e}") from None
        if op.acc_bound is not None and op.acc_bound(view) > INT32_MAX:
            raise ModelError(f"{where}: int32 accumulator could wrap (bound {op.acc_bound(view)})")

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """uint8 pixels (N,H,W,C) -> the int8 input tensor: clamp(u - zero_point, -128, 127)."""
        return np.clip(x.astype(np.int16) - self.input_zero_point, -128, 127).astype(np.int8)

    def run_reference(self, x_int8: np.ndarray) -> np.ndarray:
        """The executable spec: run every node with the numpy reference."""
        return self.reference_values(x_int8)[self.output % len(self.tensors)]

    def reference_values(self, x_int8: np.ndarray) -> dict[int, np.ndarray]:
        """Every tensor's value (by tensor index) under the numpy reference."""
        vals = {self.input: x_int8}
        for node in self.nodes:
            vals[node.output] = ops.OPS[node.op].reference(self.view(node), [vals[i] for i in node.inputs])
        return vals
