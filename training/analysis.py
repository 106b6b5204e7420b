"""Parameter and operation counts for the model table.

``op_counts(model, input_shape)`` runs one forward pass with hooks and counts,
per image (BatchNorm is assumed folded; residual additions, pooling and
activations are not counted):

* ``mul_macs``: multiply-accumulates of ordinary Conv2d / Linear layers,
  the small conv of a decomposed StructuredConv2d and the n per-coefficient
  scales of a scaled WHT layer;
* ``free_ops``: multiplication-free accumulate operations: FWHT butterflies,
  thresholding (soft; smooth too, since the integer engine evaluates
  tanh(|z| s) * r with a table of signed powers of two, i.e. shifts and
  adds), the block sums of a WHT layer, the 9 operator
  applications per output of a HadamardDepthwise conv, the sum-pooling of a
  StructuredConv2d;
* ``multiply_free_share`` = free_ops / (free_ops + mul_macs).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from .layers import WHT, HadamardDepthwise, StructuredConv2d, next_pow2


def _log2(n: int) -> int:
    return n.bit_length() - 1


def _wht_ops(m: WHT) -> tuple[int, int]:
    """(free, mul) operations per pixel for one WHT layer."""
    mi, mo, n = next_pow2(m.in_channels), next_pow2(m.out_channels), m.n
    free = mi * _log2(mi) + (n - 1) + (n - mo) + mo * _log2(mo)
    return free, n if m.V is not None else 0


def op_counts(model: nn.Module, input_shape: tuple[int, int, int]) -> dict:
    counts = {"mul_macs": 0, "free_ops": 0}
    hooks = []

    def hook(mod, inp, out):
        x = inp[0]
        if isinstance(mod, WHT):
            f, mu = _wht_ops(mod)
            pix = x[0, 0].numel()
            counts["free_ops"] += f * pix
            counts["mul_macs"] += mu * pix
        elif isinstance(mod, HadamardDepthwise):
            counts["free_ops"] += out[0].numel() * 9
        elif isinstance(mod, StructuredConv2d):
            kc, kh, kw = mod.pool_kernel
            hp, wp = x.shape[2] + 2 * mod.padding, x.shape[3] + 2 * mod.padding
            c1, h1, w1 = mod.in_channels - kc + 1, hp - kh + 1, wp - kw + 1
            # separable running sums: channel, then rows, then columns
            counts["free_ops"] += ((kc - 1) * c1 * hp * wp + (kh - 1) * c1 * h1 * wp
                                   + (kw - 1) * c1 * h1 * w1)
            counts["mul_macs"] += out[0].numel() * mod.c_prime * mod.k_prime ** 2
        elif isinstance(mod, nn.Conv2d):
            counts["mul_macs"] += (out[0].numel() * (mod.in_channels // mod.groups)
                                   * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, nn.Linear):
            counts["mul_macs"] += mod.in_features * mod.out_features

    for mod in model.modules():
        if isinstance(mod, (WHT, HadamardDepthwise, StructuredConv2d, nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        p = next(model.parameters())
        model(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    model.train(was_training)
    for h in hooks:
        h.remove()
    total = counts["mul_macs"] + counts["free_ops"]
    counts["multiply_free_share"] = counts["free_ops"] / total if total else 0.0
    counts["params"] = sum(q.numel() for q in model.parameters())
    return counts


def table(archs=("mbv2", "mbv2-wht", "mbv2-thesis", "resnet20", "resnet20-structured"),
          input_shape=(1, 28, 28)) -> list[dict]:
    from .models import build
    rows = []
    for a in archs:
        m = build(a, in_channels=input_shape[0])
        c = op_counts(m, input_shape)
        rows.append({"arch": a, **c})
    return rows


if __name__ == "__main__":
    for shape in ((1, 28, 28), (3, 32, 32)):
        print(f"input {shape}")
        for r in table(input_shape=shape):
            print(f"  {r['arch']:22s} params {r['params']:>9,d}  mul MACs {r['mul_macs'] / 1e6:7.2f}M"
                  f"  free ops {r['free_ops'] / 1e6:6.2f}M  multiply-free {100 * r['multiply_free_share']:5.1f}%")
