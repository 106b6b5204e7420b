"""Where an integer graph departs from its float model: per-layer errors (what ONNX Runtime's
qdq_loss_debug gives for QDQ models).

For every converted layer, the relative RMS error ||q - f|| / ||f|| of its dequantised int8 output q
against the float model's value f at the same point (the layer's fused clamp applied to f):
- `error`: end to end, the integer graph run on the images (errors of earlier layers included);
- `isolated`: the node alone, fed its float inputs quantised at the graph's scales (its own error).
A layer whose isolated error is small but whose end-to-end error grows is amplifying earlier errors.
Values beyond a consumer's useful range (e.g. above a Hadamard min operator's largest |w|) saturate on
purpose and count as error here."""
from __future__ import annotations

import numpy as np
import torch

from engine import ops
from engine.graph import Graph

from . import float_batch_size, float_batches, traced
from .calibrate import _Recorder


class _Keep:
    def __init__(self):
        self.parts: list[np.ndarray] = []

    def update(self, t: torch.Tensor) -> None:
        self.parts.append(t.detach().float().numpy())


def _rel(q: np.ndarray, f: np.ndarray) -> float:
    return float(np.sqrt(((q - f) ** 2).mean() / max(float((f ** 2).mean()), 1e-30)))


def layer_errors(model, graph: Graph, images: np.ndarray, mean: list[float], std: list[float]) -> list[dict]:
    """Per layer (graph order): name, op, error (end to end), isolated (see the module doc), and the share
    of its int8 outputs at the ends of the range (saturated)."""
    model, gm, layers = traced(model)
    keep = {lay.fx_out: _Keep() for lay in layers}
    rec = _Recorder(gm, keep)
    with torch.no_grad():
        for x in float_batches(images, mean, std, float_batch_size(model)):
            rec.run(x)
    flt = {}  # layer name -> its float output, NHWC like the graph, the layer's clamp applied
    for lay in layers:
        f = np.concatenate(keep[lay.fx_out].parts)
        f = f.transpose(0, 2, 3, 1) if f.ndim == 4 else f
        flt[lay.name] = np.clip(f, *lay.act) if lay.act is not None else f

    x = graph.quantize_input(images)
    vals = graph.reference_values(x)
    producer = {n.output: n for n in graph.nodes}
    rows = []
    for node in graph.nodes:
        if node.name not in flt:
            continue
        out = graph.tensors[node.output]
        q = vals[node.output].astype(np.float64) * out.scale
        f = flt[node.name].reshape(q.shape)
        inputs = []
        for i in node.inputs:  # the float input where a converted layer made it, else the graph's own value
            src = producer[i].name if i in producer else None
            if src not in flt:
                inputs.append(vals[i])
                continue
            fi = flt[src].reshape(vals[i].shape)
            inputs.append(np.clip(np.rint(fi / graph.tensors[i].scale), -128, 127).astype(vals[i].dtype))
        iso = ops.OPS[node.op].reference(graph.view(node), inputs).astype(np.float64) * out.scale
        y = vals[node.output]
        sat = float(((y <= -128) | (y >= 127)).mean()) if y.dtype == np.int8 else 0.0
        rows.append({"name": node.name, "op": node.op, "error": round(_rel(q, f), 4),
                     "isolated": round(_rel(iso, f), 4), "saturated": round(sat, 4)})
    return rows
