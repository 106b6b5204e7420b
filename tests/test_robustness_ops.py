"""Integer safety at the extremes (issue 7): every op driven with all +127, all -128, alternating and
"flat spectrum" inputs, extreme weights, requantisation multipliers and shifts at both ends of their
ranges, maximal thresholds, xshift/wshift 7, biases exactly at the wrap-proof boundary and reductions
at their largest accepted size. Every C build must match the numpy reference bit for bit (so nothing
wraps where the spec saturates), and the loaders must refuse the first value past each boundary."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import engine
from engine import ops
from engine.builder import GraphBuilder
from engine.graph import Graph, ModelError
from engine.quant import INT32_MAX

M31 = 2**31 - 1
BACKENDS = ("c", "c-avx2", "c-scalar")
INPUTS = ("max", "min", "alternating", "flat")


def pixels(kind: str, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 images; with zero point 128, 255 -> +127 and 0 -> -128."""
    if kind == "max":
        return np.full((n, *shape), 255, np.uint8)
    if kind == "min":
        return np.zeros((n, *shape), np.uint8)
    idx = np.indices((n, *shape))
    if kind == "alternating":
        return np.where(idx.sum(0) % 2 == 0, 255, 0).astype(np.uint8)
    # "flat": a bent sign pattern over the channels (its Walsh spectrum has constant magnitude, the
    # worst case for the WHT's L1 norm), varied by pixel
    c = np.arange(shape[2])
    k = max(1, (shape[2] - 1).bit_length())
    a, b = c >> (k // 2), c & ((1 << (k // 2)) - 1)
    bits = np.array([bin(v).count("1") & 1 for v in (a & b)])
    sign = (bits[None, None, None, :] + idx[1] + idx[2]) % 2
    return np.where(sign == 0, 255, 0).astype(np.uint8)


def check(g: Graph, kinds=INPUTS, n: int = 2) -> list[np.ndarray]:
    """Every available C build (1 and 2 threads) equals the reference on every input kind."""
    m = engine.from_graph(g)
    outs = []
    shape = g.tensors[g.input].shape
    for kind in kinds:
        x = pixels(kind, n, shape)
        want = m.run(x, "ref")
        for backend in BACKENDS:
            try:
                m.check_backend(backend)
            except engine.BackendError:
                continue  # c-avx2 exists on x86-64 only
            for threads in (1, 2):
                got = m.run(x, backend, threads=threads)
                np.testing.assert_array_equal(got, want, err_msg=f"{backend}, {threads} thread(s), input {kind}")
        outs.append(want)
    return outs


def bias_limit(op: str, attrs: dict, blobs: dict, in_shape, out_shape, out_dtype="int8") -> int:
    """Largest |bias| the no-wrap proof accepts for these weights (the same for every channel)."""
    b = dict(blobs, bias=np.zeros_like(blobs["bias"]))
    v = ops.NodeView(attrs, b, [in_shape], out_shape, out_dtype)
    return INT32_MAX - ops.OPS[op].acc_bound(v)


RQ = [(M31, 0), (M31, 63), (M31, 31), (1, 0), (0, 0), (1 << 30, 40), (3, 62)]
ACTS = [(-128, 127), (0, 127), (0, 0), (-128, -128), (127, 127)]


def rq_blobs(c, mult, shift):
    return dict(mult=np.full(c, mult), shift=np.full(c, shift))


@pytest.mark.parametrize("kind", ["pointwise", "dense3x3", "depthwise", "grouped", "strided5x5"])
@pytest.mark.parametrize("wkind", ["max", "min", "alternating"])
def test_conv2d_extremes(kind, wkind):
    h, w, c = (3, 4, 64) if kind == "pointwise" else (5, 6, 12)
    geo = dict(kh=1, kw=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, stride_h=1, stride_w=1, groups=1, cout=16)
    if kind in ("dense3x3", "depthwise", "grouped"):
        geo.update(kh=3, kw=3, pad_t=1, pad_l=1, pad_b=1, pad_r=1)
    if kind == "depthwise":
        geo.update(groups=c, cout=c)
    if kind == "grouped":
        geo.update(groups=4, cout=8)
    if kind == "strided5x5":
        geo.update(kh=5, kw=5, pad_t=2, pad_l=0, pad_b=2, pad_r=4, stride_h=3, stride_w=2, cout=5)
    cout, cin_g = geo["cout"], c // geo["groups"]
    shape = (cout, geo["kh"], geo["kw"], cin_g)
    weight = {"max": np.full(shape, 127), "min": np.full(shape, -128),
              "alternating": np.where(np.indices(shape).sum(0) % 2, 127, -128)}[wkind].astype(np.int8)
    combos = list(itertools.product(RQ[:4], ACTS[:3], (-128, 127)))
    for (mult, shift), (lo, hi), pad_value in combos[hash((kind, wkind)) % 3::3]:
        b = GraphBuilder((h, w, c))
        attrs = dict(geo, act_lo=lo, act_hi=hi, pad_value=pad_value)
        attrs = {a.name: attrs.get(a.name, 0) for a in ops.OPS["conv2d"].attrs}
        out_shape = ops.OPS["conv2d"].shape(attrs, [(h, w, c)])
        lim = bias_limit("conv2d", attrs, dict(weight=weight, bias=np.zeros(cout, np.int32)), (h, w, c), out_shape)
        bias = np.where(np.arange(cout) % 2, lim, -lim)
        b.add("conv2d", 0, weight=weight, bias=bias, **rq_blobs(cout, mult, shift), **attrs)
        g = b.build()
        for y in check(g, kinds=("max", "min", "alternating"), n=1):
            assert y.min() >= lo and y.max() <= hi
    bias = g.nodes[0].blobs["bias"]
    g.nodes[0].blobs["bias"] = (bias + np.where(bias >= 0, 1, -1)).astype(np.int32)  # one past, every channel
    with pytest.raises(ModelError, match="wrap"):
        g.validate()


def test_linear_reaches_int32_max_exactly():
    """An int32 logit of exactly +-(2^31 - 1): bias + 128 * 128 * K with every input and weight -128."""
    k = 16
    b = GraphBuilder((2, 2, 4))
    lim = M31 - 128 * 128 * k
    b.add("linear", 0, out_dtype="int32", cout=2, weight=np.stack([np.full(k, -128), np.full(k, 127)]),
          bias=[lim, -lim])
    g = b.build()
    y_min, y_max = check(g, kinds=("min", "max"), n=1)
    assert y_min[0, 0] == M31 and y_min[0, 1] == -lim - 128 * 127 * k
    assert y_max[0, 0] == lim - 127 * 128 * k and y_max[0, 1] == -lim + 127 * 127 * k
    g.nodes[0].blobs["bias"] = np.array([lim + 1, -lim], np.int32)
    with pytest.raises(ModelError, match="wrap"):
        g.validate()


@pytest.mark.parametrize("mult,shift", RQ)
def test_linear_int8_requant_extremes(mult, shift):
    k = 48
    b = GraphBuilder((1, 4, 12))
    lim = M31 - 128 * 128 * k
    b.add("linear", 0, cout=3, weight=np.stack([np.full(k, -128), np.full(k, 127), np.arange(k) % 2 * 255 - 128]),
          bias=[lim, -lim, 0], mult=[mult] * 3, shift=[shift] * 3)
    check(b.build())


@pytest.mark.parametrize("op", [0, 1])
@pytest.mark.parametrize("xshift,wshift", [(7, 0), (0, 7), (7, 7), (3, 5)])
def test_hdw_shifts_and_bias_boundary(op, xshift, wshift):
    c = 11
    for stride, wvals in itertools.product((1, 2), (-128, 127)):
        b = GraphBuilder((5, 4, c))
        weight = np.full((3, 3, c), wvals)
        weight[1, 1, ::2] = 0  # zero taps: the min/ef operators give 0 there
        attrs = dict(stride=stride, op=op, xshift=xshift, wshift=wshift, act_lo=-128, act_hi=127)
        attrs = {a.name: attrs.get(a.name, 0) for a in ops.OPS["hdw"].attrs}
        out_shape = ops.OPS["hdw"].shape(attrs, [(5, 4, c)])
        lim = bias_limit("hdw", attrs, dict(weight=weight.astype(np.int8), bias=np.zeros(c, np.int32)), (5, 4, c), out_shape)
        b.add("hdw", 0, weight=weight, bias=np.where(np.arange(c) % 2, lim, -lim), **rq_blobs(c, M31, 31), **attrs)
        g = b.build()
        check(g)
    bias = g.nodes[0].blobs["bias"]
    g.nodes[0].blobs["bias"] = (bias + np.where(bias >= 0, 1, -1)).astype(np.int32)
    with pytest.raises(ModelError, match="wrap"):
        g.validate()


@pytest.mark.parametrize("mode,codes,tshift", [(0, None, 0), (1, 1, 0), (1, -1, 31), (1, 32, 5), (1, -32, 0), (1, "mixed", 3)])
@pytest.mark.parametrize("thresh", ["zero", "max", "mixed"])
def test_wht_largest_transform(mode, codes, tshift, thresh):
    """n = 2^14 (the largest), 16384 channels in and out, residual: the intermediate values reach
    their largest under the flat-spectrum input, and thresholds of 2^31 - 1 zero every coefficient; with
    the per-coefficient scale at its widest (sshift 9: (128 n + 1) << 9 < 2^31), every factor +-2^9."""
    n = 1 << 14
    t = {"zero": np.zeros(n), "max": np.full(n, M31), "mixed": np.arange(n) % 3 * (M31 // 2)}[thresh]
    if codes == "mixed":
        table = np.tile(np.array([1, -1, 32, -32, 0, 2], np.int8), 128)[:768]
    else:
        table = np.full(768, codes if codes is not None else 0, np.int8)
    signs = np.where(np.arange(n) % 3 == 1, -512, 512)
    for residual, order, scaled in ((1, 0, {}), (0, 1, {}), (1, 1, {"scaled": 1, "sshift": 9, "cscale": signs})):
        b = GraphBuilder((1, 2, n))
        b.add("wht", 0, cout=n if residual else 100, n=n, order=order, mode=mode, residual=residual, tshift=tshift,
              thresh=t, table=table if mode else np.zeros(0), **scaled)
        check(b.build(), n=1)


def test_wht_small_channels_in_large_transform():
    b = GraphBuilder((2, 3, 1))
    table = np.full(768, 1, np.int8)
    b.add("wht", 0, cout=200, n=1 << 14, order=1, mode=1, residual=0, tshift=0, thresh=np.zeros(1 << 14), table=table)
    check(b.build())


@pytest.mark.parametrize("mult,shift", [(M31, 0), (M31, 63), (M31, 40), (1, 0)])
def test_sumpool_large_window(mult, shift):
    """A 15 x 15 x 16384 window: sums of 128 * 3.7M, requantised with the extreme multipliers."""
    b = GraphBuilder((15, 15, 16384))
    b.add("sumpool", 0, cw=16384, kh=15, kw=15, mult=mult, shift=shift)
    check(b.build(), kinds=("max", "min"), n=1)


def test_sumpool_largest_window_cannot_wrap():
    """The largest window the attributes allow (65536 channels x 15 x 15) sums to at most 128 * 14.7M
    < 2^31: accepted by both loaders (the attribute ranges keep sumpool inside int32)."""
    assert 128 * 65536 * 15 * 15 <= M31
    b = GraphBuilder((15, 15, 65536))
    b.add("sumpool", 0, cw=65536, kh=15, kw=15, mult=M31, shift=63)
    m = engine.from_graph(b.build())
    m.check_backend("c")


def test_avgpool_at_the_bound():
    """4095 x 4096 pixels of -128 sum to -(2^31 - 2^19): accepted and exact; 4096 x 4096 is refused."""
    b = GraphBuilder((4095, 4096, 1))
    b.add("avgpool", 0, mult=M31, shift=62)
    y = check(b.build(), kinds=("min", "max"), n=1)
    assert y[0].shape == (1, 1)
    b = GraphBuilder((4096, 4096, 1))
    b.add("avgpool", 0, mult=1, shift=24)
    with pytest.raises(ModelError, match="wrap"):
        b.build()


@pytest.mark.parametrize("mult_a,mult_b", [(M31, M31), (M31, 0), (0, 0), (1, M31)])
@pytest.mark.parametrize("shift", [0, 1, 31, 62, 63])
def test_add_extremes(mult_a, mult_b, shift):
    b = GraphBuilder((3, 5, 7))
    other = b.add("requantize", 0, mult=M31, shift=0)  # saturates: -128 / +127
    b.add("add", [0, other], mult_a=mult_a, mult_b=mult_b, shift=shift)
    check(b.build())


@pytest.mark.parametrize("mult", [0, 1, 2, M31, 1 << 30])
@pytest.mark.parametrize("shift", [0, 1, 7, 31, 62, 63])
def test_requantize_extremes(mult, shift):
    for lo, hi in ACTS:
        b = GraphBuilder((2, 3, 5))
        b.add("requantize", 0, mult=mult, shift=shift, act_lo=lo, act_hi=hi)
        for y in check(b.build()):
            assert y.min() >= lo and y.max() <= hi


@pytest.mark.parametrize("mult", [-(2**31), M31, 0, -1])
@pytest.mark.parametrize("bias", [-(2**31), M31, 0])
@pytest.mark.parametrize("shift", [0, 31, 63])
def test_affine_extremes(mult, bias, shift):
    c = 13
    b = GraphBuilder((2, 3, c))
    b.add("affine", 0, mult=np.full(c, mult), bias=np.full(c, bias), shift=np.full(c, shift))
    check(b.build())


@pytest.mark.parametrize("lo,hi", ACTS)
def test_clamp_extremes(lo, hi):
    b = GraphBuilder((2, 3, 5))
    b.add("clamp", 0, act_lo=lo, act_hi=hi)
    for y in check(b.build()):
        assert y.min() >= lo and y.max() <= hi
