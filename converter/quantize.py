"""Float layers + activation ranges -> the integer graph (engine/ops semantics).

Scales are symmetric per tensor (activations) and per output channel (conv weights); the model's
input normalisation (x/255 - mean) / std is folded into the first conv, whose padding takes the pixel
value that normalises to zero (pad_value). `mulfree` applies the rule in converter/mulfree.py: signed
power-of-two weights (or zero) with power-of-two steps, power-of-two activation scales and BatchNorm
scales, so every requantisation is an exact shift and no multiply remains.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.builder import GraphBuilder
from engine.graph import Graph
from engine.ops.wht import SMOOTH, SOFT, max_sshift, smooth_table
from engine.quant import INT32_MAX, pow2_multiplier, quantize_multiplier, short_multiplier

from .errors import ConvertError
from .mulfree import pow2_act_scale, pow2_nearest, pow2_round, pow2_scale, pow2_terms, pow2_weights
from .trace import Layer

ZERO_POINT = 128  # uint8 pixel u -> int8 q = u - 128: no clamping, q * (1/255) spans the pixel range
# reduce_range: weights of dense convs (but the first) whose input can be negative lie in [-NARROW, NARROW], so the pair sums
# of AVX2's vpmaddubsw on x + 128 (at most 2 * 255 * 64 = 32640) cannot saturate (cbackend/src/gemm.c)
NARROW = 64


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _pow2(f, v: np.ndarray, *args) -> np.ndarray:
    """A converter.mulfree rule (torch) applied to numpy values."""
    return f(torch.from_numpy(np.asarray(v, np.float64)), *args).numpy()


def quant_weights(w: np.ndarray, per_channel: bool, mulfree: bool, top: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """int8 weights in [-top, top] and their scales (per output channel, or one); mulfree's are within 64."""
    if mulfree:
        q, scale = pow2_weights(torch.from_numpy(w), per_channel)
        scale = scale.numpy().ravel()
    else:
        flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
        scale = np.maximum(np.abs(flat).max(1), 1e-12) / top
        q = np.clip(np.rint(w / (scale.reshape((-1,) + (1,) * (w.ndim - 1)) if per_channel else scale[0])), -top, top)
    return np.asarray(q).astype(np.int8), (scale if per_channel else np.full(w.shape[0], scale[0]))


def multipliers(real: np.ndarray, mulfree: bool, bound: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per channel (mult, shift); with `bound` (each channel's largest |accumulator|), short multipliers if every
    channel has one (engine.quant.short_multiplier): a layer takes one requantisation form throughout."""
    real = np.ravel(real)
    pairs = [pow2_multiplier(r) for r in real] if mulfree else None
    if pairs is None and bound is not None:
        pairs = [short_multiplier(r, int(b)) for r, b in zip(real, bound)]
        pairs = None if None in pairs else pairs
    if pairs is None:
        pairs = [quantize_multiplier(r) for r in real]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def common_shift(reals: list[np.ndarray], limit: float = 2.0 ** 31) -> int:
    """Largest shift s <= 62 with every |real| * 2^s below `limit` (int32 multipliers, int32 biases)."""
    top = max(float(np.max(np.abs(r))) for r in reals)
    return int(min(62, math.floor(math.log2((limit - 1) / top)) if top > 0 else 62))


def act_bounds(act: tuple[float, float] | None, scale: float) -> dict[str, int]:
    if act is None:
        return {}
    lo = -128 if act[0] == -math.inf else int(np.clip(math.ceil(act[0] / scale - 0.5), -128, 127))
    hi = 127 if act[1] == math.inf else int(np.clip(math.floor(act[1] / scale + 0.5), -128, 127))
    return {"act_lo": lo, "act_hi": hi}


def _bias(b: np.ndarray, acc_scale: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(b / acc_scale), -(2**30), 2**30).astype(np.int64)


class Quantizer:
    def __init__(self, layers: list[Layer], absmax: dict[str, float], input_shape: tuple[int, int, int],
                 mean: list[float], std: list[float], mulfree: bool, reduce_range: bool = False):
        self.layers, self.absmax, self.mulfree, self.reduce_range = layers, absmax, mulfree, reduce_range
        self.mean, self.std = np.asarray(mean, float), np.asarray(std, float)
        self.b = GraphBuilder(input_shape, scale=1 / 255, zero_point=ZERO_POINT)
        self.tensor: dict[int, int] = {-1: 0}
        self.scale: dict[int, float] = {-1: 1.0}  # the first conv absorbs 1/(255 std)

    def out_scale(self, layer: Layer) -> float:
        top = min(self.absmax.get(layer.fx_out, 0.0), self._useful_range(layer))
        if layer.act is not None:
            top = min(top, layer.act[1])
        return pow2_act_scale(top) if self.mulfree else max(top, 1e-8) / 127

    def _useful_range(self, layer: Layer) -> float:
        """The largest |value| of this layer's output that its consumers can tell apart; values beyond
        it may saturate without changing any result, so the int8 step can be finer than the
        calibrated range allows. hdw's min operator clips x to +-|w|; an affine followed by a
        clamp only sees, per channel, the x that map inside the clamp (wide WHT outputs before their
        BatchNorm have channels of very different gain)."""
        i = self.layers.index(layer)
        users = [c for c in self.layers if i in c.inputs]
        if not users:
            return math.inf
        tops = []
        for c in users:
            if c.kind == "hdw" and c.attrs["op"] == "min":
                tops.append(float(np.abs(_np(c.weight)).max()))
            elif c.kind == "affine" and c.act is not None and all(map(math.isfinite, c.act)):
                a, b = _np(c.scale), _np(c.bias)
                a = np.where(np.abs(a) < 1e-12, 1e-12, a)
                tops.append(float(np.abs(np.stack([(c.act[0] - b) / a, (c.act[1] - b) / a])).max()))
            else:
                return math.inf
        return max(tops)

    def build(self, meta: dict) -> Graph:
        for i, layer in enumerate(self.layers):
            last = i == len(self.layers) - 1
            t, s = getattr(self, "_" + layer.kind)(layer, last)
            self.tensor[i], self.scale[i] = t, s
        return self.b.build(meta=meta)

    def _input(self, layer: Layer) -> tuple[int, float]:
        return self.tensor[layer.inputs[0]], self.scale[layer.inputs[0]]

    def _nonneg_input(self, layer: Layer) -> bool:
        """Whether the layer's input is a layer output clamped at >= 0."""
        i = layer.inputs[0]
        return i >= 0 and self.layers[i].act is not None and self.layers[i].act[0] >= 0

    def _requant(self, real: np.ndarray, bound: np.ndarray | None = None) -> dict[str, np.ndarray]:
        m, s = multipliers(real, self.mulfree, bound)
        return {"mult": m, "shift": s}

    def _conv(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        w, bias = _np(layer.weight), _np(layer.bias)
        pad_value = 0
        if layer.inputs[0] == -1:  # fold (u/255 - mean)/std with u = q + 128 into this conv
            if layer.attrs["groups"] != 1:
                raise ConvertError(f"{layer.name}: the first layer must be an ordinary conv to absorb normalisation")
            w = w / (255 * self.std.reshape(1, -1, 1, 1))
            offset = ZERO_POINT - 255 * self.mean  # q + offset = u - 255 mean, per channel
            pad_value = int(np.clip(np.rint(-offset.mean()), -128, 127))
        # not the first conv: the image's precision matters most there, and its few products gain nothing
        narrow = self.reduce_range and layer.attrs["groups"] == 1 and layer.inputs[0] != -1 and not self._nonneg_input(layer)
        wq, sw = quant_weights(w, True, self.mulfree, NARROW if narrow else 127)
        if layer.inputs[0] == -1:  # through the weights the integer conv uses (power-of-two rounding is coarse)
            bias = bias + (wq * sw.reshape(-1, 1, 1, 1) * offset.reshape(1, -1, 1, 1)).sum(axis=(1, 2, 3))
        sy = self.out_scale(layer)
        sh, sw_ = layer.attrs["stride"]
        ph, pw = layer.attrs["padding"]
        bq = _bias(bias, sx * sw)
        bound = np.abs(bq) + 128 * np.abs(wq.astype(np.int64)).reshape(len(wq), -1).sum(1)  # the C loader's acc bound
        t = self.b.add("conv2d", x, name=layer.name, scale=sy, cout=w.shape[0], kh=w.shape[2], kw=w.shape[3],
                       stride_h=sh, stride_w=sw_, pad_t=ph, pad_b=ph, pad_l=pw, pad_r=pw,
                       groups=layer.attrs["groups"], pad_value=pad_value, weight=wq.transpose(0, 2, 3, 1),
                       bias=bq, **self._requant(sx * sw / sy, bound), **act_bounds(layer.act, sy))
        return t, sy

    def _hdw(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        w, bias = _np(layer.weight).reshape(-1, 9), _np(layer.bias)
        # x and w share one scale: shift whichever has the smaller range up by a power of two
        if self.mulfree:  # the weights' power-of-two step (exact when sx is a power of two, as mulfree makes it)
            e = round(math.log2(sx / float(_pow2(pow2_scale, w, False))))
        else:
            e = math.floor(math.log2(127 * sx / max(np.abs(w).max(), 1e-12)))
        e = int(np.clip(e, -7, 7))
        xshift, wshift = max(e, 0), max(-e, 0)
        sa = sx / 2 ** xshift  # the accumulator's scale; weights are w_int * sa * 2^wshift
        # a folded BatchNorm scales each channel after the op; a negative scale flips the channel's
        # weights and bias instead, since op(x, -w) = -op(x, w)
        post = _np(layer.scale) if layer.scale is not None else np.ones(len(bias))
        if self.mulfree:
            post = _pow2(pow2_nearest, post)
        sign = np.where(post < 0, -1.0, 1.0)
        w, bias = w * sign[:, None], bias * sign
        ws = w / (sa * 2 ** wshift)
        wq = _pow2(pow2_round, ws, 64) if self.mulfree else np.clip(np.rint(ws), -127, 127)
        sy = self.out_scale(layer)
        t = self.b.add("hdw", x, name=layer.name, scale=sy, stride=layer.attrs["stride"],
                       op=0 if layer.attrs["op"] == "min" else 1, xshift=xshift, wshift=wshift,
                       weight=wq.T.reshape(3, 3, -1).astype(np.int8), bias=_bias(bias, sa),
                       **self._requant(np.abs(post) * sa / sy), **act_bounds(layer.act, sy))
        return t, sy

    def _wht(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        m = layer.module
        n, k = m.n, m.n.bit_length() - 1
        # A scaled layer computes c S(V/c z) with c = 2^ec >= max|V| (soft is homogeneous; smooth's tanh gets
        # c in its slope), so the integer scales stay within 2^sshift and c joins the output step.
        v = _np(m.V) if m.V is not None else None
        vmax = float(np.abs(v).max()) if v is not None else 0.0
        ec = math.ceil(math.log2(vmax)) if vmax > 0 else 0
        if m.residual:  # x << k joins the sum at the input's step: no factor may stand between them
            if ec > 0:
                raise ConvertError(f"{layer.name}: a residual WHT layer needs its scales V within [-1, 1]")
            ec = 0
        c = 2.0 ** ec
        # output scale sx * 2^o: the smallest power-of-two step whose int8 range holds the output
        want = self.out_scale(layer) / sx
        o = int(np.clip(math.ceil(math.log2(want) - 1e-9), -k + ec, 31 - k + ec))
        sy = sx * 2.0 ** o
        t_int = np.clip(np.rint(_np(m.T.clamp(min=0)) / c * math.sqrt(n) / sx), 0, INT32_MAX).astype(np.int64)
        mode = SMOOTH if m.mode == "smooth" else SOFT
        g, table = smooth_table(c * sx / math.sqrt(n)) if mode == SMOOTH else (0, np.zeros(0))
        scaled = {}
        if v is not None:
            sshift = max_sshift(n)
            top = 2.0 ** sshift
            cs = _pow2(pow2_terms, v / c * top, top) if self.mulfree else np.rint(v / c * top)
            scaled = {"scaled": 1, "sshift": sshift, "cscale": cs.astype(np.int64)}
        t = self.b.add("wht", x, name=layer.name, scale=sy, cout=m.out_channels, n=n,
                       order=int(m.ordering == "walsh"), mode=mode, residual=int(m.residual), tshift=g,
                       thresh=t_int, table=table.ravel(), oshift=o - ec, **scaled, **act_bounds(layer.act, sy))
        return t, sy

    def _affine(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        sy = self.out_scale(layer)
        scale = _np(layer.scale)
        real, off = (_pow2(pow2_nearest, scale) if self.mulfree else scale) * sx / sy, _np(layer.bias) / sy
        s = min(common_shift([real]), common_shift([off], 2.0 ** 30))
        mult = _pow2(pow2_round, real * 2 ** s, 2**30) if self.mulfree else np.rint(real * 2 ** s)
        t = self.b.add("affine", x, name=layer.name, scale=sy, mult=mult, bias=np.rint(off * 2 ** s),
                       shift=np.full(len(real), s), **act_bounds(layer.act, sy))
        return t, sy

    def _clamp(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        return self.b.add("clamp", x, name=layer.name, scale=sx, **act_bounds(layer.act, sx)), sx

    def _sumpool(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        sy = self.out_scale(layer)
        (kc, kh, kw), p = layer.module.kernel, layer.module.padding
        m, s = multipliers(np.array([sx / sy]), self.mulfree)
        t = self.b.add("sumpool", x, name=layer.name, scale=sy, cw=kc, kh=kh, kw=kw, pad_t=p, pad_l=p, pad_b=p,
                       pad_r=p, mult=int(m[0]), shift=int(s[0]), **act_bounds(layer.act, sy))
        return t, sy

    def _shortcut(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        cin = self.b.shape(x)[2]
        cout, lo, st = cin + layer.attrs["pad"], layer.attrs["pad"] // 2, layer.attrs["stride"]
        w = np.zeros((cout, 1, 1, cin), np.int8)
        w[np.arange(cin) + lo, 0, 0, np.arange(cin)] = 1  # exact copy: weights 1, requant x1
        t = self.b.add("conv2d", x, name=layer.name, scale=sx, cout=cout, kh=1, kw=1, stride_h=st, stride_w=st,
                       groups=1, weight=w, bias=np.zeros(cout), mult=np.ones(cout), shift=np.zeros(cout))
        return t, sx

    def _add(self, layer: Layer, last: bool) -> tuple[int, float]:
        (a, sa), (b, sb) = [(self.tensor[i], self.scale[i]) for i in layer.inputs]
        sy = self.out_scale(layer)
        reals = [np.array([sa / sy]), np.array([sb / sy])]
        s = common_shift(reals, 2.0 ** 30)
        mult = [int(_pow2(pow2_round, r * 2 ** s, 2**30)[0]) if self.mulfree else int(np.rint(r[0] * 2 ** s))
                for r in reals]
        t = self.b.add("add", [a, b], name=layer.name, scale=sy, mult_a=mult[0], mult_b=mult[1], shift=s,
                       **act_bounds(layer.act, sy))
        return t, sy

    def _avgpool(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        h, w, _ = self.b.shape(x)
        sy = self.out_scale(layer)
        inv = 1.0 / (h * w)
        m, s = multipliers(np.array([(_pow2(pow2_nearest, inv) if self.mulfree else inv) * sx / sy]), self.mulfree)
        t = self.b.add("avgpool", x, name=layer.name, scale=sy, mult=int(m[0]), shift=int(s[0]),
                       **act_bounds(layer.act, sy))
        return t, sy

    def _linear(self, layer: Layer, last: bool) -> tuple[int, float]:
        x, sx = self._input(layer)
        h, w_, c = self.b.shape(x)
        w = _np(layer.weight)
        if w.shape[1] != h * w_ * c:
            raise ConvertError(f"{layer.name}: {w.shape[1]} inputs but the tensor before it holds {h}x{w_}x{c}")
        w = w.reshape(w.shape[0], c, h, w_).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)  # NCHW -> NHWC order
        # logits share one scale so their argmax is the float model's: per-tensor weight scale
        wq, sw = quant_weights(w, per_channel=not last, mulfree=self.mulfree)
        bias = _bias(_np(layer.bias), sx * sw)
        if last:
            return self.b.add("linear", x, name=layer.name, out_dtype="int32", scale=float(sx * sw[0]),
                              cout=w.shape[0], weight=wq, bias=bias), float(sx * sw[0])
        sy = self.out_scale(layer)
        return self.b.add("linear", x, name=layer.name, scale=sy, cout=w.shape[0], weight=wq, bias=bias,
                          **self._requant(sx * sw / sy), **act_bounds(layer.act, sy)), sy
