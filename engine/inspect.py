"""Per-layer report of a graph: op, shapes, parameters, multiplies, adds, peak activation memory."""
from __future__ import annotations

import numpy as np

from . import ops
from .graph import Graph


def layer_rows(g: Graph) -> list[dict]:
    rows = []
    for node in g.nodes:
        op = ops.OPS[node.op]
        view = g.view(node)
        cost = op.cost(view)
        rows.append({
            "name": node.name, "op": node.op,
            "input": [list(g.tensors[i].shape) for i in node.inputs], "output": list(g.tensors[node.output].shape),
            "params": int(sum(node.blobs[b.name].size for b in op.blobs if b.param)),
            "multiplies": int(cost.multiplies), "adds": int(cost.adds),
            "attrs": dict(node.attrs),
        })
    return rows


def peak_activation_bytes(g: Graph) -> int:
    """Largest sum of live tensors (per image) over the schedule: what a perfect planner needs."""
    size = [int(np.prod(t.shape)) * (1 if t.dtype == "int8" else 4) for t in g.tensors]
    last = {g.input: -1}
    for i, node in enumerate(g.nodes):
        for t in node.inputs:
            last[t] = i
    last[g.output] = len(g.nodes)
    live, peak = {g.input: size[g.input]}, size[g.input]
    for i, node in enumerate(g.nodes):
        live[node.output] = size[node.output]
        peak = max(peak, sum(live.values()))
        live = {t: s for t, s in live.items() if last.get(t, i) > i}
    return peak


def report(g: Graph) -> dict:
    rows = layer_rows(g)
    totals = {k: sum(r[k] for r in rows) for k in ("params", "multiplies", "adds")}
    return {"layers": rows, "totals": totals, "peak_activation_bytes": peak_activation_bytes(g),
            "input": list(g.tensors[g.input].shape), "output": list(g.tensors[g.output].shape),
            "output_dtype": g.tensors[g.output].dtype}
