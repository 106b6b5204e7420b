"""The multiplication-free number rule (`convert --mulfree`), and the same rule as a differentiable view of a
model for quantisation-aware fine-tuning (`train --finetune-mulfree`).

The rule, in one place:
* a weight becomes 0 or +-2^k * scale with k in 0..6 (int8 magnitudes 1..64), rounded to the nearest power
  of two in the log domain; `scale` is a power of two per output channel (per tensor for the classifier and
  the Hadamard depthwise layers), the one that sends the largest |w| to 64; weights below 2^-0.5 * scale
  become 0 (`pow2_weights`);
* a BatchNorm scale that cannot be folded into weights (after a WHT or Hadamard depthwise layer) and the
  1/(h*w) of the global average pool become the nearest power of two (`pow2_nearest`);
* a WHT layer's per-coefficient scale V becomes a sum of up to three signed powers of two (`pow2_terms`):
  three shifts and two adds per coefficient, as the smooth-threshold table's entries. One power of two is
  too coarse there: V is the layer's only learned channel mixing, and rounding it so cost the scaled
  mbv2-wht 54 points before fine-tuning (40% against 89% with three terms, 94.6% float);
* activation scales are powers of two (`pow2_act_scale`), so every requantisation factor
  (input scale * weight scale / output scale) is an exact power of two: a shift, with no second rounding.
The integer model then follows from the float weights and BatchNorm parameters alone (and the activation
scales, powers of two that calibration picks), which is what lets `fake_quant` show a training run what the
converter will build.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from engine.ops.wht import TABLE_TERMS

WEIGHT_TOP = 64  # largest weight magnitude 2^6: int8 with the sign to spare
_TINY = 1e-30


def pow2_nearest(v: torch.Tensor) -> torch.Tensor:
    """sign(v) * 2^round(log2 |v|): the nearest power of two in the log domain (0 stays 0)."""
    return torch.sign(v) * torch.exp2(torch.round(torch.log2(v.abs().clamp_min(_TINY))))


def pow2_round(v: torch.Tensor, top: float) -> torch.Tensor:
    """|v| to the nearest power of two in the log domain, capped at `top` (a power of two); 0 below 2^-0.5."""
    e = torch.round(torch.log2(v.abs().clamp_min(_TINY))).clamp(0, math.log2(top))
    return torch.where(v.abs() < 2 ** -0.5, torch.zeros_like(v), torch.sign(v) * torch.exp2(e))


def pow2_terms(v: torch.Tensor, top: float | None = None, terms: int = TABLE_TERMS) -> torch.Tensor:
    """v as a sum of up to `terms` signed powers of two, each the nearest to what is left (log domain); with
    `top`, integer terms as `pow2_round` gives them (|v| <= top then keeps the sum within top)."""
    out = torch.zeros_like(v)
    for _ in range(terms):
        rest = v - out
        out = out + (pow2_round(rest, top) if top else pow2_nearest(rest))
    return out


def pow2_scale(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """The power-of-two step of `pow2_weights`, shaped to broadcast against w (per output channel, or one)."""
    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    top = flat.detach().abs().amax(1).clamp_min(1e-12)
    scale = torch.exp2(torch.round(torch.log2(top)) - math.log2(WEIGHT_TOP))
    return scale.reshape((-1,) + (1,) * (w.dim() - 1)) if per_channel else scale.reshape(())


def pow2_weights(w: torch.Tensor, per_channel: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(q, scale) with w ~= q * scale, q in {0, +-1, +-2, ..., +-64} (float) and scale a power of two."""
    scale = pow2_scale(w, per_channel)
    return pow2_round(w / scale, WEIGHT_TOP), scale


def pow2_act_scale(absmax: float) -> float:
    """Activation scale: the smallest power of two whose int8 range (127 steps) holds absmax."""
    return 2.0 ** math.ceil(math.log2(max(absmax, 1e-8) / 127))


def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """q in the forward pass, identity gradient to x (straight-through estimator)."""
    return x + (q - x).detach()


def fake_pow2_weights(w: torch.Tensor, per_channel: bool) -> torch.Tensor:
    """`pow2_weights` as float weights, with a straight-through gradient to w."""
    q, scale = pow2_weights(w.detach(), per_channel)
    return _ste(w, q * scale)


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of a BatchNorm with its running statistics, as converter.trace folds it."""
    g = bn.weight if bn.weight is not None else torch.ones_like(bn.running_mean)
    b = bn.bias if bn.bias is not None else torch.zeros_like(bn.running_mean)
    s = g / torch.sqrt(bn.running_var + bn.eps)
    return s, b - bn.running_mean * s


class _Conv(nn.Module):
    """Conv2d (+ the BatchNorm folded into it) with power-of-two weights. `in_scale` (per input channel) is
    the factor the converter multiplies the first conv's weights by when it absorbs the input normalisation."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, in_scale: torch.Tensor | None):
        super().__init__()
        self.conv, self.bn = conv, bn
        self.register_buffer("in_scale", in_scale, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv
        w = c.weight
        b = c.bias if c.bias is not None else w.new_zeros(w.shape[0])
        if self.bn is not None:
            s, shift = _bn_affine(self.bn)
            w, b = w * s.view(-1, 1, 1, 1), b * s + shift
        if self.in_scale is not None:
            w = fake_pow2_weights(w * self.in_scale, True) / self.in_scale
        else:
            w = fake_pow2_weights(w, True)
        return F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)


class _Linear(nn.Module):
    def __init__(self, linear: nn.Linear, per_channel: bool):
        super().__init__()
        self.linear, self.per_channel = linear, per_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_pow2_weights(self.linear.weight, self.per_channel), self.linear.bias)


class _Hdw(nn.Module):
    """HadamardDepthwise with power-of-two weights (one step for the layer); its BatchNorm scale is applied
    after the op, rounded to a power of two (op(x, w) is not linear in w, so it cannot be folded)."""

    def __init__(self, hdw: nn.Module, bn: nn.BatchNorm2d | None):
        super().__init__()
        self.hdw, self.bn = hdw, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.func.functional_call(self.hdw, {"weight": fake_pow2_weights(self.hdw.weight, False)}, (x,))
        if self.bn is None:
            return y
        s, shift = _bn_affine(self.bn)
        s = torch.where(s.abs() < 1e-8, torch.full_like(s, 1e-8), s)  # as converter.trace
        ratio = (pow2_nearest(s) / s).detach().view(1, -1, 1, 1)
        return (y * s.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)) * ratio


class _Affine(nn.Module):
    """A BatchNorm the converter keeps as a per-channel affine (after a WHT layer): power-of-two scale."""

    def __init__(self, bn: nn.BatchNorm2d):
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s, shift = _bn_affine(self.bn)
        return x * _ste(s, pow2_nearest(s)).view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


class _Act(nn.Module):
    """Rounding to the int8 grid of the layer's output scale (0: not set, pass through); straight-through
    inside the range, no gradient where it clips."""

    def __init__(self):
        super().__init__()
        self.scale = 0.0  # a Python float: no device sync to test it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale
        if not s:
            return x
        x = x.clamp(-128 * s, 127 * s)
        return _ste(x, torch.floor(x / s + 0.5) * s)  # half up, as the engine's rounding shift


class _AvgPool(nn.Module):
    """Global average pool whose 1/(h*w) is a power of two."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hw = x.shape[2] * x.shape[3]
        return x.mean((2, 3), keepdim=True) * (pow2_nearest(torch.tensor(1.0 / hw)).item() * hw)


class _Wht(nn.Module):
    """A WHT layer with per-coefficient scales V: each a sum of signed powers of two (shifts and adds)."""
    def __init__(self, wht: nn.Module):
        super().__init__()
        self.wht = wht

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.wht.V
        return self.wht.transform(x, _ste(v, pow2_terms(v.detach())))


def fake_quant(model: nn.Module, std: list[float]) -> fx.GraphModule:
    """A view of `model` whose forward pass computes what `convert --mulfree` will build from it (with input
    normalisation std): BatchNorm folded with its running statistics (frozen: the view never updates them),
    every weight and scale rounded by the rule above, straight-through gradients. The view shares the model's
    parameters, so training it trains the model, whose state_dict stays an ordinary checkpoint. Layers come
    from the converter's own trace, so the view folds exactly what the converter folds. Every layer output but
    the logits also passes an int8 rounding step, inactive until `set_activation_scales` gives it a scale."""
    from training.layers import StructuredConv2d

    from . import trace
    from .errors import ConvertError
    if any(isinstance(m, StructuredConv2d) for m in model.modules()):
        raise ConvertError("mulfree fine-tuning does not support StructuredConv2d layers yet")
    gm = trace.trace(model)
    mods = dict(gm.named_modules())
    nodes = {n.name: n for n in gm.graph.nodes}
    layers = trace.layers_of(gm)
    identity = "_mulfree_identity"
    gm.add_submodule(identity, nn.Identity())

    def swap(node: fx.Node, name: str, module: nn.Module) -> None:
        gm.add_submodule(name, module)
        node.op, node.target, node.args, node.kwargs = "call_module", name, (node.args[0],), {}

    for i, layer in enumerate(layers):
        head = nodes[layer.nodes[0]]
        mod = mods.get(head.target) if head.op == "call_module" else None
        if layer.kind in ("conv", "linear", "hdw", "affine") and mod is None:
            raise ConvertError(f"{layer.name}: mulfree fine-tuning needs nn.Module layers, not {head.target}")
        bns = [nodes[n] for n in layer.nodes if nodes[n].op == "call_module"
               and isinstance(mods[nodes[n].target], nn.BatchNorm2d)]
        if len(bns) > 1:
            raise ConvertError(f"{layer.name}: mulfree fine-tuning folds one BatchNorm per layer, not {len(bns)}")
        bn = mods[bns[0].target] if bns else None
        name = f"_mulfree_{i}"
        if layer.kind == "conv":
            in_scale = None
            if layer.inputs[0] == -1:  # the converter divides by 255 * std here (normalisation folded in)
                in_scale = 1 / (255 * torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
            swap(head, name, _Conv(mod, bn, in_scale))
        elif layer.kind == "linear":
            swap(head, name, _Linear(mod, per_channel=i != len(layers) - 1))
        elif layer.kind == "hdw":
            swap(head, name, _Hdw(mod, bn))
        elif layer.kind == "affine":  # the BatchNorm is the layer itself
            swap(head, name, _Affine(bn))
            continue
        elif layer.kind == "avgpool":
            swap(head, name, _AvgPool())
        elif layer.kind == "wht" and mod.V is not None:
            swap(head, name, _Wht(mod))
        if bns:  # folded into the layer above
            bns[0].target = identity
    for layer in layers[:-1]:  # the logits stay int32
        out = nodes[layer.fx_out]
        gm.add_submodule(_act_name(layer.fx_out), _Act())
        with gm.graph.inserting_after(out):
            act = gm.graph.call_module(_act_name(layer.fx_out), (out,))
        out.replace_all_uses_with(act, delete_user_cb=lambda user: user is not act)
    gm.graph.lint()
    gm.recompile()
    return gm


def _act_name(node: str) -> str:
    return f"_mulfree_act_{node}"


def activation_scales(model: nn.Module, calib, mean: list[float], std: list[float]) -> dict[str, float]:
    """The output scale `convert --mulfree` gives each layer of `model` now, keyed by the fx node that
    produces it (calibrated on `calib`, uint8 NHWC images): converts and reads the graph, so nothing
    about the choice is restated here."""
    from . import convert, trace
    model = copy.deepcopy(model).float().cpu()  # convert() calibrates on the CPU, in eval mode
    graph = convert(model, calib, mean, std, mulfree=True)
    layers = trace.layers_of(trace.trace(model))
    return {layer.fx_out: graph.tensors[node.output].scale for layer, node in zip(layers, graph.nodes)}


def set_activation_scales(view: fx.GraphModule, scales: dict[str, float] | None) -> None:
    """Give the view's int8 rounding steps their scales (None: switch them all off)."""
    for name, mod in view.named_children():
        if isinstance(mod, _Act):
            mod.scale = scales[name[len(_act_name("")):]] if scales else 0.0


@torch.no_grad()
def fold_batchnorm_(model: nn.Module) -> nn.Module:
    """Move each BatchNorm's running-statistics scale into the conv before it (its statistics become
    mean 0, var 1 - eps, gamma 1) and a Hadamard depthwise layer's bias into its BatchNorm's shift. The
    model computes the same in eval mode and converts to the same integer model. Why: with the statistics
    frozen, a step on a conv weight moves the output by s^2 times as much as a step on the folded weight
    (s = gamma / sqrt(var + eps), often 10-100), and a Hadamard bias in front of a BatchNorm, dead while
    batch statistics cancelled it, comes alive with the same gain: fine-tuning diverged at LR 0.01."""
    from training.layers import HadamardDepthwise

    from . import trace
    gm = trace.trace(model)
    mods = dict(gm.named_modules())
    nodes = {n.name: n for n in gm.graph.nodes}
    for layer in trace.layers_of(gm):
        found = [mods[nodes[n].target] for n in layer.nodes if nodes[n].op == "call_module"]
        head, bns = found[0] if found else None, [m for m in found if isinstance(m, nn.BatchNorm2d)]
        if len(bns) != 1 or layer.kind not in ("conv", "hdw") or not bns[0].affine:
            continue
        bn = bns[0]
        s, shift = _bn_affine(bn)
        if isinstance(head, nn.Conv2d):
            head.weight.mul_(s.view(-1, 1, 1, 1))
            if head.bias is not None:
                head.bias.mul_(s)
            bn.weight.fill_(1.0)
            bn.running_var.fill_(1.0 - bn.eps)
            bn.running_mean.zero_()
            bn.bias.copy_(shift)
        elif isinstance(head, HadamardDepthwise) and head.bias is not None:
            bn.bias.add_(s * head.bias)
            head.bias.zero_()
    return model
