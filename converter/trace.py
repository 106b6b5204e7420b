"""PyTorch module -> a short list of float layers ready to quantise.

torch.fx traces the model with the project's layers kept whole; BatchNorm is folded into the conv or
Hadamard depthwise op before it (or kept as a per-channel affine after a WHT layer), activations are
fused into their producer, dropout and flatten vanish. Anything else stops with one line naming the
module, its path and its class.
"""
from __future__ import annotations

import copy
import operator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from training.layers import WHT, HadamardDepthwise, StructuredConv2d, SumPool

from .errors import ConvertError


LEAVES = (WHT, HadamardDepthwise, SumPool)


@dataclass
class Layer:
    """One integer op to be: kind in conv, hdw, wht, affine, sumpool, add, avgpool, linear, clamp."""
    kind: str
    inputs: list[int]            # indices of earlier layers; -1 is the model input
    name: str
    module: nn.Module | None = None
    weight: torch.Tensor | None = None   # conv/linear/hdw weight (BN folded)
    bias: torch.Tensor | None = None
    scale: torch.Tensor | None = None    # affine, hdw: per-channel scale applied after the op
    act: tuple[float, float] | None = None  # fused clamp in float units (ReLU: (0, inf), ReLU6: (0, 6))
    fx_out: str = ""                     # the fx node whose value this layer produces (for calibration)
    nodes: list[str] = field(default_factory=list)  # the fx nodes it covers, in order (op, folded BN, activation)
    attrs: dict = field(default_factory=dict)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or type(m).__name__ == "_ShortcutA" or super().is_leaf_module(m, qualname)


def decompose_structured(model: nn.Module) -> nn.Module:
    """A copy with every StructuredConv2d replaced by its equal sum-pooling + small conv, so both
    halves are traced (and calibrated) on their own."""
    model = copy.deepcopy(model)
    for name, mod in list(model.named_modules()):
        if isinstance(mod, StructuredConv2d):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, leaf, mod.decompose())
    return model


def trace(model: nn.Module) -> fx.GraphModule:
    if isinstance(model, fx.GraphModule):  # torch.export's module(): already a graph of aten ops
        return model
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # noqa: BLE001 - fx raises many kinds; the user needs one line
        raise ConvertError(f"torch.fx cannot trace the model: {str(e).splitlines()[0]}") from None
    return fx.GraphModule(model, graph)


def _class_name(mod: nn.Module) -> str:
    """torch.nn.GELU rather than torch.nn.modules.activation.GELU."""
    where = type(mod).__module__
    return f"{'torch.nn' if where.startswith('torch.nn.modules') else where}.{type(mod).__name__}"


ATEN = torch.ops.aten


def _act_range(target, node: fx.Node, mod: nn.Module | None) -> tuple[float, float] | None:
    if isinstance(mod, nn.ReLU) or target in (F.relu, torch.relu, "relu", ATEN.relu.default):
        return (0.0, float("inf"))
    if isinstance(mod, nn.ReLU6) or target in (F.relu6, ATEN.relu6.default):
        return (0.0, 6.0)
    if isinstance(mod, nn.Hardtanh):
        return (float(mod.min_val), float(mod.max_val))
    if target in (F.hardtanh, ATEN.hardtanh.default):
        return (float(node.kwargs.get("min_val", node.args[1] if len(node.args) > 1 else -1.0)),
                float(node.kwargs.get("max_val", node.args[2] if len(node.args) > 2 else 1.0)))
    if target in (torch.clamp, torch.clip) or target in ("clamp", "clip"):
        lo = node.kwargs.get("min", node.args[1] if len(node.args) > 1 else None)
        hi = node.kwargs.get("max", node.args[2] if len(node.args) > 2 else None)
        return (-float("inf") if lo is None else float(lo), float("inf") if hi is None else float(hi))
    return None


IDENTITY_ATEN = (ATEN.flatten.using_ints, ATEN.view.default, ATEN.reshape.default, ATEN.dropout.default,
                 ATEN.clone.default, ATEN.contiguous.default, ATEN.alias.default)


def _is_identity(target, mod: nn.Module | None) -> bool:
    return (isinstance(mod, (nn.Dropout, nn.Identity, nn.Flatten)) or target in (torch.flatten, F.dropout)
            or target in ("flatten", "contiguous", "view", "reshape") or target in IDENTITY_ATEN)


def _is_global_pool(target, node: fx.Node, mod: nn.Module | None) -> bool:
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        size = mod.output_size if isinstance(mod.output_size, tuple) else (mod.output_size,) * 2
        return tuple(size) == (1, 1)
    if target in (F.adaptive_avg_pool2d, ATEN.adaptive_avg_pool2d.default):
        return node.args[1] in (1, (1, 1), [1, 1])
    if target in (torch.mean, "mean", ATEN.mean.dim):
        dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
        return dims is not None and sorted(d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])) == [2, 3]
    return False


def _arg(node: fx.Node, i: int, name: str, default, attr):
    v = node.args[i] if len(node.args) > i else node.kwargs.get(name, default)
    return attr(v) if isinstance(v, fx.Node) else v


def _pair(v) -> tuple[int, int]:
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return (int(v[0]), int(v[-1]))


def _conv(node: fx.Node, mod: nn.Module | None, attr) -> dict | None:
    """weight, bias, stride, padding, groups of an nn.Conv2d or an aten.conv2d (torch.export)."""
    if isinstance(mod, nn.Conv2d):
        if mod.padding_mode != "zeros" or mod.dilation != (1, 1) or isinstance(mod.padding, str):
            raise ConvertError(f"unsupported conv settings (dilation/padding mode) in {node.target}")
        bias = mod.bias.detach() if mod.bias is not None else torch.zeros(mod.out_channels)
        return dict(weight=mod.weight.detach().clone(), bias=bias.clone(), stride=mod.stride, padding=mod.padding,
                    groups=mod.groups)
    if node.target is not ATEN.conv2d.default:
        return None
    w = _arg(node, 1, "weight", None, attr)
    if _pair(_arg(node, 5, "dilation", [1], attr)) != (1, 1):
        raise ConvertError(f"unsupported conv dilation at {node.name}")
    b = _arg(node, 2, "bias", None, attr)
    return dict(weight=w.detach().clone(), bias=(b.detach().clone() if b is not None else torch.zeros(w.shape[0])),
                stride=_pair(_arg(node, 3, "stride", [1], attr)), padding=_pair(_arg(node, 4, "padding", [0], attr)),
                groups=int(_arg(node, 6, "groups", 1, attr)))


def _batchnorm(node: fx.Node, mod: nn.Module | None, attr) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel (scale, shift) of an eval-mode nn.BatchNorm2d or aten.batch_norm."""
    if isinstance(mod, nn.BatchNorm2d):
        g, b, mean, var, eps = mod.weight, mod.bias, mod.running_mean, mod.running_var, mod.eps
    elif node.target in (ATEN.batch_norm.default, ATEN._native_batch_norm_legit_no_training.default):
        g, b, mean, var = (_arg(node, i, k, None, attr) for i, k in ((1, "weight"), (2, "bias"), (3, "running_mean"), (4, "running_var")))
        eps = node.args[-1]
    else:
        return None
    g = g.detach() if g is not None else torch.ones_like(mean)
    b = b.detach() if b is not None else torch.zeros_like(mean)
    s = g / torch.sqrt(var + eps)
    return s, b - mean * s


def _linear(node: fx.Node, mod: nn.Module | None, attr) -> tuple[torch.Tensor, torch.Tensor] | None:
    if isinstance(mod, nn.Linear):
        w, b = mod.weight, mod.bias
    elif node.target is ATEN.linear.default:
        w, b = _arg(node, 1, "weight", None, attr), _arg(node, 2, "bias", None, attr)
    else:
        return None
    return w.detach().clone(), (b.detach().clone() if b is not None else torch.zeros(w.shape[0]))


def layers_of(gm: fx.GraphModule) -> list[Layer]:
    """Walk the traced graph in order and emit layers; value[node] = index of the layer holding it."""
    mods = dict(gm.named_modules())
    attr = lambda n: gm.get_parameter(n.target) if n.op == "get_attr" and n.target in dict(gm.named_parameters()) \
        else gm.get_buffer(n.target) if n.op == "get_attr" else None
    layers: list[Layer] = []
    value: dict[fx.Node, int] = {}
    users = {n: len(n.users) for n in gm.graph.nodes}

    def emit(layer: Layer, node: fx.Node) -> None:
        layer.fx_out = node.name
        layer.nodes.append(node.name)
        layers.append(layer)
        value[node] = len(layers) - 1

    def absorb(node: fx.Node, src: int) -> None:  # a BN or activation folded into layer src
        layers[src].fx_out = node.name
        layers[src].nodes.append(node.name)
        value[node] = src

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if any(v == -1 for v in value.values()):
                raise ConvertError("models with more than one input are not supported")
            value[node] = -1
            continue
        if node.op == "output":
            out = node.args[0]
            if isinstance(out, (tuple, list)) and len(out) == 1:  # torch.export returns a 1-tuple
                out = out[0]
            if not isinstance(out, fx.Node):
                raise ConvertError("the model must return a single tensor")
            return layers[: value[out] + 1] if value[out] == len(layers) - 1 else _reject_output(layers, value[out])
        if node.op == "get_attr":  # a torch.export parameter: read where an op takes it
            continue
        if node.op == "call_module" and node.target == "_guards_fn":  # torch.export's input checks
            continue
        mod = mods.get(node.target) if node.op == "call_module" else None
        where = f"{node.target} ({_class_name(mod)})" if mod is not None else str(node.target)
        args = [a for a in node.args if isinstance(a, fx.Node) and a.op != "get_attr"]
        src = value.get(args[0]) if args else None
        prev = layers[src] if src is not None and src >= 0 else None
        fusable = prev is not None and users[args[0]] == 1 and prev.fx_out == args[0].name

        if _is_identity(node.target, mod):
            value[node] = src
            continue
        act = _act_range(node.target, node, mod)
        if act is not None:
            if fusable and prev.act is None and prev.kind != "shortcut":
                prev.act = act
                absorb(node, src)
            else:
                emit(Layer("clamp", [src], node.name, act=act), node)
            continue
        bn = _batchnorm(node, mod, attr)
        if bn is not None:
            s, b = bn
            if fusable and prev.kind == "conv" and prev.act is None:
                prev.weight = prev.weight * s.view((-1,) + (1,) * (prev.weight.dim() - 1))
                prev.bias = prev.bias * s + b
                absorb(node, src)
            elif fusable and prev.kind == "hdw" and prev.act is None:
                # op(x, w) is not linear in w: the scale goes to the requantisation, the shift to the bias
                s = torch.where(s.abs() < 1e-8, torch.full_like(s, 1e-8), s)
                prev.scale = s if prev.scale is None else prev.scale * s
                prev.bias = prev.bias + b / prev.scale
                absorb(node, src)
            else:
                emit(Layer("affine", [src], node.target, scale=s, bias=b), node)
            continue
        conv, linear = _conv(node, mod, attr), _linear(node, mod, attr)
        if conv is not None:
            emit(Layer("conv", [src], str(node.target) if mod is not None else node.name, mod, conv.pop("weight"),
                       conv.pop("bias"), attrs=conv), node)
        elif linear is not None:
            emit(Layer("linear", [src], str(node.target) if mod is not None else node.name, mod, *linear), node)
        elif isinstance(mod, HadamardDepthwise):
            bias = mod.bias.detach() if mod.bias is not None else torch.zeros(mod.channels)
            emit(Layer("hdw", [src], node.target, mod, mod.weight.detach().clone(), bias.clone(),
                       attrs=dict(stride=mod.stride, op=mod.op)), node)
        elif isinstance(mod, WHT):
            emit(Layer("wht", [src], node.target, mod), node)
        elif isinstance(mod, SumPool):
            emit(Layer("sumpool", [src], node.target, mod), node)
        elif type(mod).__name__ == "_ShortcutA":  # option-A shortcut: subsample + zero channels
            emit(Layer("shortcut", [src], node.target, mod, attrs=dict(stride=mod.stride, pad=mod.pad)), node)
        elif _is_global_pool(node.target, node, mod):
            emit(Layer("avgpool", [src], node.name), node)
        elif node.target in (operator.add, torch.add, "add", operator.iadd, ATEN.add.Tensor) and len(args) == 2 and len(node.args) == 2:
            emit(Layer("add", [value[args[0]], value[args[1]]], node.name), node)
        elif mod is not None:
            raise ConvertError(f"unsupported module {where}")
        else:
            raise ConvertError(f"unsupported operation {getattr(node.target, '__name__', node.target)} at {node.name}")
    raise ConvertError("the traced graph has no output")


def _reject_output(layers: list[Layer], idx: int) -> list[Layer]:
    raise ConvertError(f"the model output is not its last layer ({layers[idx].name}); this is not supported")
