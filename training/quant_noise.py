"""Pseudo-quantisation noise (`train --quant-noise S`): teach a float model to shrug off the int8
rounding that `convert` adds, so its integer graph keeps the float model's answers (agreement).

While on, every tensor the integer graph rounds gets uniform noise of S int8 steps' width,
U(-S/2, S/2) * max|x| / 127 with the tensor's own batch max: the error a rounding to 127 levels
makes (Fan et al. 2020, "Training with Quantization Noise"; Defossez et al. 2021, DiffQ). Noise,
not a rounded forward pass: the float model itself must become insensitive, because agreement is
measured against it.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .layers import WHT, HadamardDepthwise


def rounded_modules(model: nn.Module) -> list[nn.Module]:
    """The modules whose outputs are int8 tensors in the converted graph: WHT and Hadamard
    depthwise layers, activations (conv/affine + activation fuse into one rounded op), a
    Sequential's closing BatchNorm (a projection) and residual blocks (the add)."""
    found = []
    for m in model.modules():
        if isinstance(m, (WHT, HadamardDepthwise, nn.ReLU, nn.ReLU6, nn.Hardtanh)):
            found.append(m)
        elif isinstance(m, nn.Sequential) and len(m) and isinstance(m[-1], nn.BatchNorm2d):
            found.append(m[-1])
        elif getattr(m, "use_res", False):
            found.append(m)
    return found


class QuantNoise:
    """Hooks `rounded_modules(model)`; adds the noise only while `on` (training batches)."""

    def __init__(self, model: nn.Module, strength: float):
        self.strength, self.on = strength, False
        for m in rounded_modules(model):
            m.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, inputs, out: torch.Tensor) -> torch.Tensor | None:
        if not self.on:
            return None
        step = out.detach().abs().amax() * (self.strength / 127)
        return out + (torch.rand_like(out) - 0.5) * step
