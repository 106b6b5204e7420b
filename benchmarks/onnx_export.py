"""Float models -> ONNX (fp32) -> ONNX Runtime static int8, for the full-model comparison.

The project's WHT and HadamardDepthwise layers run through torch.autograd.Function in eager PyTorch,
which the ONNX exporters cannot trace. `exportable()` swaps in, for the export only, forward passes that
compute the same values from plain tensor ops:
  * fwht: the transform as radix-32 (or smaller) stages, each a MatMul against a +-1 Hadamard matrix
    (the seed's own tensordot formulation; of the forms tried -- log2(n) add/sub butterfly stages,
    one n x n MatMul, radix-32 MatMuls -- the fastest in ONNX Runtime, fp32 and int8);
  * HadamardDepthwise ('min' / 'ef'): its nine taps gathered by one depthwise Conv with one-hot kernels,
    Max/Min (or Sign/Abs) broadcast over them and a ReduceSum (a tenth of the nodes of nine slices: ONNX
    Runtime runs it faster, and its quantiser, whose passes grow with the node count, finishes sooner).
Every export is checked against the eager model (the caller compares outputs).

Int8: onnxruntime.quantization.quantize_static, QDQ format, per-channel weights, activations QUInt8 and
weights QInt8 (U8S8: ORT's fast int8 path on x86; its default S8S8 leaves the first conv and the convs
feeding residual adds in fp32), after quant_pre_process (shape inference and graph optimisation)."""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
import warnings

import numpy as np

MAX_RADIX = 32


def _hadamard(r: int) -> np.ndarray:
    h = np.ones((1, 1), dtype=np.float32)
    while h.shape[0] < r:
        h = np.block([[h, h], [h, -h]])
    return h


def fwht_matmul(x, dim: int = 1):
    """Unnormalised natural-order FWHT along dim 1 of (N, n, H, W): radix-<=32 MatMul stages."""
    import torch
    if dim != 1:
        raise ValueError("the export form transforms dim 1 only")
    n = int(x.shape[1])
    hw = [int(s) for s in x.shape[2:]]
    rest = math.prod(hw)
    y = x.reshape(-1, n, rest)
    inner, m = n, n
    while m > 1:
        r = min(m, MAX_RADIX)
        m //= r
        inner //= r
        y = torch.matmul(torch.from_numpy(_hadamard(r)), y.reshape(-1, r, inner * rest))
    return y.reshape(-1, n, *hw)


def hdw_forward(self, x):
    """HadamardDepthwise.forward from plain ops: the nine taps of each channel gathered by one depthwise
    Conv with one-hot 3x3 kernels (N, 9C, H', W'), op(x, w) broadcast over them, summed over the taps."""
    import torch
    import torch.nn.functional as F
    c, s = self.channels, self.stride
    taps = F.conv2d(x, _one_hot_taps(c).to(x.dtype), stride=s, padding=1, groups=c)
    taps = taps.reshape(-1, c, 9, int(taps.shape[2]), int(taps.shape[3]))
    wt = self.weight.reshape(1, c, 9, 1, 1)
    if self.op == "min":  # 1/2(|x+w| - |x-w|) = sign(w) clamp(x, -|w|, |w|)
        a = wt.abs()
        y = (torch.minimum(torch.maximum(taps, -a), a) * torch.sign(wt)).sum(2)
    else:  # 'ef': sign(x) sign(w) (|x| + |w|)
        y = (torch.sign(taps) * torch.sign(wt) * (taps.abs() + wt.abs())).sum(2)
    if self.bias is not None:
        y = y + self.bias.view(1, c, 1, 1)
    return y


def _one_hot_taps(c: int):
    import torch
    eye = torch.eye(9).reshape(9, 1, 3, 3)
    return eye.repeat(c, 1, 1, 1)  # (9c, 1, 3, 3): output channel 9i+k is tap k of channel i


@contextlib.contextmanager
def exportable():
    """Within: training.layers' WHT and HadamardDepthwise compute through plain, exportable ops."""
    from training import layers
    old = layers.fwht, layers.HadamardDepthwise.forward
    layers.fwht, layers.HadamardDepthwise.forward = fwht_matmul, hdw_forward
    try:
        yield
    finally:
        layers.fwht, layers.HadamardDepthwise.forward = old


def export_fp32(model, shape: tuple[int, int, int], path: str) -> None:
    """TorchScript-based exporter (fast; dynamic batch axis), opset 17."""
    import torch
    x = torch.zeros(1, *shape)
    with exportable(), warnings.catch_warnings(), contextlib.redirect_stdout(open(os.devnull, "w")):
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), path, dynamo=False, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}}, opset_version=17)


def quantize_int8(fp32_path: str, out_path: str, calib: np.ndarray) -> None:
    """Static U8S8 QDQ per-channel quantisation calibrated on `calib` (float NCHW, one image per step)."""
    from onnxruntime import quantization as q

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter({"x": calib[i:i + 1]} for i in range(len(calib)))

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = os.path.join(d, "pre.onnx")
        q.quant_pre_process(fp32_path, pre)
        q.quantize_static(pre, out_path, Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8)


def session(path: str, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
