"""Every C kernel (native build, AVX2-only build on x86-64, portable scalar build) is bit-exact with the
numpy reference."""
import numpy as np
import pytest

import engine
from engine import ops
from randgraph import EDGES, images, random_case

import platform

BACKENDS = ("c", "c-scalar") + (("c-avx2",) if platform.machine() == "x86_64" else ())


def check(graph, x, threads=1):
    model = engine.from_graph(graph)
    want = model.run(x, "ref")
    for backend in BACKENDS:
        got = model.run(x, backend, threads=threads)
        assert got.dtype == np.int32 and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=f"{backend} differs from the reference")
    return want


@pytest.mark.parametrize("op", sorted(ops.OPS))
@pytest.mark.parametrize("seed", range(12))
def test_random(op, seed):
    rng = np.random.default_rng(1000 * ops.OPS[op].code + seed)
    g = random_case(op, rng)
    check(g, images(rng, int(rng.integers(1, 21)), g.tensors[0].shape, "random"), threads=1 + seed % 2)


@pytest.mark.parametrize("op", sorted(ops.OPS))
@pytest.mark.parametrize("edge", EDGES[1:])
def test_adversarial(op, edge):
    """All-max, all-min and alternating inputs and weights: results saturate, never wrap."""
    rng = np.random.default_rng(abs(hash((op, edge))) % 2**32)
    for _ in range(3):
        g = random_case(op, rng, edge)
        check(g, images(rng, 3, g.tensors[0].shape, edge))


@pytest.mark.parametrize("cin,cout,n", [(3, 3, 4), (5, 12, 16), (12, 5, 16), (1024, 1024, 1024), (300, 100, 512)])
def test_wht_channel_shapes(cin, cout, n):
    """C not a power of two, C_out above and below C_in, 1x1 spatial, the seed's 1024 channels."""
    from engine.builder import GraphBuilder
    from engine.ops.wht import smooth_table
    rng = np.random.default_rng(cin * cout)
    for mode in (0, 1):
        b = GraphBuilder((1, 1, cin) if cin == 300 else (4, 8, cin))  # 1x1 spatial; full SIMD blocks
        g_shift, table = smooth_table(0.02)
        b.add("wht", 0, cout=cout, n=n, order=mode, mode=mode, residual=int(cin == cout), tshift=g_shift,
              thresh=rng.integers(0, 8 * n, n), table=table.ravel() if mode else np.zeros(0))
        g = b.build()
        for edge in EDGES:
            check(g, images(rng, 5, g.tensors[0].shape, edge))


def test_saturation_is_specified():
    """Requantisation clamps to [act_lo, act_hi]; the int32 accumulator proof holds at the extremes."""
    from engine.builder import GraphBuilder
    b = GraphBuilder((2, 2, 4))
    b.add("conv2d", 0, cout=2, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, groups=1,
          weight=np.full((2, 1, 1, 4), 127), bias=[2**31 - 1 - 4 * 128 * 127, -(2**31) + 4 * 128 * 128],
          mult=[1, 1], shift=[0, 0], act_lo=-100, act_hi=100)
    out = check(b.build(), np.stack([np.zeros((2, 2, 4), np.uint8), np.full((2, 2, 4), 255, np.uint8)]))
    assert set(np.unique(out)) <= {-100, 100}


RQ_FORMS = {  # (mult, shift) per channel for each exact form the SIMD requantisation picks per tile (cbackend/src/x86.h)
    "shift": lambda rng, c: (np.ones(c, np.int64), rng.choice([0, 1, 2, 7, 15, 30, 31, 32, 33, 63], c)),
    "high": lambda rng, c: (rng.integers(0, 2**31, c), rng.integers(32, 64, c)),
    # s = 31..33, the wide/high boundary, with products near the int8 range (small mult and bias): rounding shows
    "near32": lambda rng, c: (rng.integers(1 << 19, 1 << 20, c), rng.integers(31, 34, c)),
    "wide": lambda rng, c: (rng.integers(0, 2**31, c), rng.integers(0, 32, c)),
    # short multipliers: acc * mult + 2^(s-1) provably inside int32, the int32 form (conv's GEMM and depthwise rows)
    "mul32": lambda rng, c: (rng.integers(1, 1 << 7, c), rng.integers(0, 32, c)),
    "mixed": lambda rng, c: (np.where(np.arange(c) % 3, rng.integers(1 << 30, 2**31, c), 1), rng.integers(30, 34, c)),
}


@pytest.mark.parametrize("form", sorted(RQ_FORMS))
@pytest.mark.parametrize("kind", ["pointwise", "depthwise", "grouped", "affine"])
@pytest.mark.parametrize("act", [(-128, 127), (-3, 90)])
def test_requant_forms(form, kind, act):
    """Every requantisation form (shift only, high dword, int64) in the GEMM epilogue, the depthwise row kernel,
    the general conv loop and affine, with biases that spread the accumulators over the whole int32 range;
    with the int8 range (the saturating packs clamp) and a narrower clamp."""
    from engine.builder import GraphBuilder
    rng = np.random.default_rng(sorted(RQ_FORMS).index(form) * 10 + len(kind) + act[1])
    c = 20  # two full tiles of 8 and a tail
    mult, shift = RQ_FORMS[form](rng, c)
    b = GraphBuilder((3, 5, 24 if kind == "pointwise" else c))
    spread = {"near32": 2.0 ** -20, "mul32": 2.0 ** -10}.get(form, 1.0)  # of the biases over their int32 range
    if kind == "affine":
        b.add("affine", 0, mult=mult * rng.choice([-1, 1], c), bias=(rng.uniform(-1, 1, c) * spread * 2**31).astype(np.int64), shift=shift,
              act_lo=act[0], act_hi=act[1])
    else:
        cin = {"pointwise": 24, "depthwise": 1, "grouped": 10}[kind]
        k = 1 if kind == "pointwise" else 3
        w = rng.integers(-128, 128, (c, k, k, cin)).astype(np.int8)
        lim = 2**31 - 1 - 128 * np.abs(w.astype(np.int64)).reshape(c, -1).sum(1)  # the no-wrap proof's bias limit
        b.add("conv2d", 0, cout=c, kh=k, kw=k, stride_h=1, stride_w=1, pad_t=k // 2, pad_l=k // 2, pad_b=k // 2,
              pad_r=k // 2, groups=c // cin if kind != "pointwise" else 1, weight=w,
              bias=(rng.uniform(-1, 1, c) * spread * lim).astype(np.int64), mult=mult, shift=shift, act_lo=act[0], act_hi=act[1])
    g = b.build()
    for edge in EDGES:
        check(g, images(rng, 2, g.tensors[0].shape, edge))


@pytest.mark.parametrize("kind", ["pointwise", "depthwise"])
@pytest.mark.parametrize("over", [False, True])
def test_requant_int32_form_bound(kind, over):
    """The int32 requantisation runs only where acc * mult + 2^(s-1) cannot leave int32 for any accumulator
    (|bias| + 128 sum|w|). Inputs all -128 against positive weights and a negative bias reach that bound; one
    step past the line (over) must take the int64 form, or the product wraps."""
    from engine.builder import GraphBuilder
    c, cin = 16, (24 if kind == "pointwise" else 1)
    k = 1 if kind == "pointwise" else 3
    w = np.full((c, k, k, cin), 100, np.int8)
    taps = 128 * 100 * k * k * cin
    mult, shift = 1024, 4
    bound = (2**31 + (2**20 if over else -2**3)) // mult  # mult * bound + 2^3 is 2^31 + 2^20 + 8, or 2^31
    if not over:
        bound -= 1  # mult * bound + 8 <= 2^31 - 1
    b = GraphBuilder((3, 5, c if kind == "depthwise" else cin))
    b.add("conv2d", 0, cout=c, kh=k, kw=k, stride_h=1, stride_w=1, pad_t=k // 2, pad_l=k // 2, pad_b=k // 2,
          pad_r=k // 2, groups=c if kind == "depthwise" else 1, pad_value=-128, weight=w,
          bias=np.full(c, -(bound - taps)), mult=np.full(c, mult), shift=np.full(c, shift), act_lo=-128, act_hi=127)
    g = b.build()
    want = check(g, images(np.random.default_rng(0), 2, g.tensors[0].shape, "min"))
    assert (want == -128).all()  # every output saturates low: a wrapped product would read high


@pytest.mark.parametrize("zero_point", [0, 1, 37, 127, 128, 200, 255])
def test_input_zero_points(zero_point):
    """uint8 pixels enter as clamp(u - zero_point, -128, 127) (a flipped top bit for 128), over 33-byte images."""
    from engine.builder import GraphBuilder
    rng = np.random.default_rng(zero_point)
    b = GraphBuilder((1, 3, 11), zero_point=zero_point)
    b.add("clamp", 0, act_lo=-128, act_hi=127)
    g = b.build()
    for edge in EDGES:
        check(g, images(rng, 3, g.tensors[0].shape, edge))


@pytest.mark.parametrize("shift", [0, 1, 7, 31, 32, 33, 62, 63])
def test_elementwise_extremes(shift):
    """add, requantize and clamp over spans with SIMD bodies and tails (37 elements a pixel): the largest
    multipliers and every kind of shift, so the int64 products and the rounding reach their bounds."""
    from engine.builder import GraphBuilder
    rng = np.random.default_rng(shift)
    for ma, mb in [(2**31 - 1, 2**31 - 1), (0, 1), (1, 0), tuple(int(v) for v in rng.integers(0, 2**31, 2))]:
        b = GraphBuilder((3, 5, 37))
        r = b.add("requantize", 0, mult=ma if ma else 1, shift=shift, act_lo=-128, act_hi=127)
        c = b.add("clamp", r, act_lo=-100, act_hi=90)
        b.add("add", [0, c], mult_a=ma, mult_b=mb, shift=shift, act_lo=-128 if ma % 2 else -3, act_hi=127)
        g = b.build()
        for edge in EDGES:
            check(g, images(rng, 2, g.tensors[0].shape, edge))


@pytest.mark.parametrize("cin,cout", [(1, 1), (3, 17), (16, 96), (70, 33), (96, 24), (320, 1280)])
def test_pointwise_gemm_shapes(cin, cout):
    """1x1 convs take the packed GEMM path: channel counts off its 4- and 16-wide blocks, pixel tails."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(cin * 1000 + cout)
    for edge in EDGES:
        b = GraphBuilder((3, 5, cin))
        b.add("conv2d", 0, cout=cout, kh=1, kw=1, stride_h=1, stride_w=1, groups=1, weight=weights(rng, (cout, 1, 1, cin), edge),
              bias=rng.integers(-5000, 5000, cout), **requant(rng, cout, 128 * 64 * cin, False))
        g = b.build()
        check(g, images(rng, 3, g.tensors[0].shape, edge), threads=2)


@pytest.mark.parametrize("cin,cout,k,lo,pad_value", [(24, 20, 1, 0, 0), (70, 33, 1, 1, 0), (3, 17, 1, 0, 0),
                                                     (160, 24, 1, 0, 0), (5, 12, 3, 0, 0), (5, 12, 3, 0, 7),
                                                     (5, 12, 3, 0, -5), (24, 20, 1, -1, 0)])
def test_gemm_nonnegative_inputs(cin, cout, k, lo, pad_value):
    """A conv whose input the producer clamps at >= 0 (ReLU) may take the GEMM's unsigned-byte product
    (AVX2 vpmaddubsw); its pair sums reach 2 * 127 * 128 at the extremes. A negative clamp or pad_value must not."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(cin * 100 + cout + k + lo + pad_value)
    for edge in EDGES:
        b = GraphBuilder((5, 9, cin))
        t = b.add("clamp", 0, act_lo=lo, act_hi=127)
        w = weights(rng, (cout, k, k, cin), edge)
        w.reshape(-1)[rng.integers(0, w.size, 4)] = [-128, 127, -128, 127]
        b.add("conv2d", t, cout=cout, kh=k, kw=k, stride_h=1, stride_w=1, pad_t=k // 2, pad_l=k // 2, pad_b=k // 2,
              pad_r=k // 2, groups=1, pad_value=pad_value, weight=w, bias=rng.integers(-5000, 5000, cout),
              **requant(rng, cout, 128 * 64 * cin * k * k, False))
        g = b.build()
        check(g, images(rng, 3, g.tensors[0].shape, edge), threads=2)


@pytest.mark.parametrize("cin,cout,k,pad_value,wide", [(24, 20, 1, 0, 0), (70, 33, 1, 0, 0), (3, 17, 1, 0, 0),
                                                      (320, 40, 1, 0, 0), (5, 12, 3, -128, 0), (5, 12, 3, 127, 0),
                                                      (24, 20, 1, 0, 65), (24, 20, 1, 0, -65)])
def test_gemm_narrow_weights(cin, cout, k, pad_value, wide):
    """Weights in [-64, 64] (`convert --reduce-range`, and every --mulfree model) let a conv on signed input take
    the GEMM's byte product on x + 128 (AVX2 vpmaddubsw): pair sums reach +-2 * 255 * 64 = 32640 at the
    extremes, padding included. One weight past 64 (`wide`) must keep the int16 product."""
    from engine.builder import GraphBuilder
    from randgraph import requant
    rng = np.random.default_rng(cin * 100 + cout + k + pad_value + wide)
    for edge in EDGES:
        b = GraphBuilder((5, 9, cin))
        w = {"max": np.full((cout, k, k, cin), 64), "min": np.full((cout, k, k, cin), -64)}.get(
            edge, rng.integers(-64, 65, (cout, k, k, cin)))
        w[::2, ..., ::2] *= -1  # pairs of each sign, under any input
        w.reshape(-1)[rng.integers(0, w.size, 4)] = [-64, 64, -64, 64]
        bias, rq = rng.integers(-5000, 5000, cout), requant(rng, cout, 128 * 64 * cin * k * k, False)
        if wide:  # channel 1: only a pair (wide, +-64), where the byte product's 255 * 129 saturates by 128, seen
            w[1] = 0
            w[1, 0, 0, :2] = wide, np.sign(wide) * 64
            bias[1], rq["mult"][1], rq["shift"][1] = 0, 1, 8
        b.add("conv2d", 0, cout=cout, kh=k, kw=k, stride_h=1, stride_w=1, pad_t=k // 2, pad_l=k // 2, pad_b=k // 2,
              pad_r=k // 2, groups=1, pad_value=pad_value, weight=w.astype(np.int8), bias=bias, **rq)
        g = b.build()
        check(g, images(rng, 3, g.tensors[0].shape, edge), threads=2)


@pytest.mark.parametrize("pixels", [1, 2, 3, 4, 5, 7, 8, 9, 12, 49])
def test_pointwise_gemm_pixel_tails(pixels):
    """The GEMM runs blocks of 8, 4, 2 or 1 pixels: every tail length, channels off the 16-wide blocks."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(pixels)
    for cin, cout in ((5, 40), (96, 576)):
        b = GraphBuilder((1, pixels, cin))
        b.add("conv2d", 0, cout=cout, kh=1, kw=1, stride_h=1, stride_w=1, groups=1, weight=weights(rng, (cout, 1, 1, cin), "random"),
              bias=rng.integers(-5000, 5000, cout), **requant(rng, cout, 128 * 64 * cin, False))
        g = b.build()
        check(g, images(rng, 1, g.tensors[0].shape, "random"))
        check(g, images(rng, 2, g.tensors[0].shape, "random"), threads=2)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("c", [1, 7, 16, 21, 48])
def test_depthwise3x3_shapes(stride, c):
    """Depthwise 3x3 row kernel: widths around its 4-pixel blocks, channel tails, padding (asymmetric,
    non-zero pad_value, wider than the kernel's reach), strides."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(100 * c + stride)
    for w, pads, pv in ((1, (1, 1, 1, 1), 0), (5, (0, 1, 2, 0), -128), (9, (1, 1, 1, 1), 0), (13, (2, 0, 0, 2), 55), (4, (0, 0, 0, 0), 0)):
        for edge in EDGES:
            b = GraphBuilder((3 + stride, w, c))
            b.add("conv2d", 0, cout=c, kh=3, kw=3, stride_h=stride, stride_w=stride, pad_t=pads[0], pad_l=pads[1],
                  pad_b=pads[2], pad_r=pads[3], groups=c, pad_value=pv, weight=weights(rng, (c, 3, 3, 1), edge),
                  bias=rng.integers(-5000, 5000, c), **requant(rng, c, 128 * 64 * 9, rng.random() < 0.3),
                  act_lo=int(rng.choice([-128, 0])))
            g = b.build()
            check(g, images(rng, 2, g.tensors[0].shape, edge), threads=1 + (w % 2))


@pytest.mark.parametrize("cin,k,stride", [(1, 3, 1), (1, 3, 2), (3, 5, 1), (70, 3, 2), (8, 1, 2), (2, 3, 3)])
def test_dense_im2col_shapes(cin, k, stride):
    """Dense convs other than stride-1 unpadded 1x1 run the GEMM over im2col rows: pixel blocks that cross
    rows and images, windows partly in the padding (non-zero pad_value), rows over 64 bytes."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(cin * 100 + k * 10 + stride)
    for h, w, pad, pv in ((5, 7, 1, -100), (3, 3, 2, 0), (9, 4, 0, 0), (1, 11, k // 2, 127)):
        if h + 2 * pad < k or w + 2 * pad < k:
            continue
        for edge in EDGES:
            cout = int(rng.integers(1, 40))
            b = GraphBuilder((h, w, cin))
            b.add("conv2d", 0, cout=cout, kh=k, kw=k, stride_h=stride, stride_w=stride, pad_t=pad, pad_l=pad, pad_b=pad,
                  pad_r=pad, groups=1, pad_value=pv, weight=weights(rng, (cout, k, k, cin), edge),
                  bias=rng.integers(-5000, 5000, cout), **requant(rng, cout, 128 * 64 * k * k * cin, rng.random() < 0.3))
            g = b.build()
            check(g, images(rng, 3, g.tensors[0].shape, edge), threads=1 + (h % 2))


def test_dense_conv_past_im2col():
    """A window of more than 64 KiB (3 x 3 x 7300 inputs) takes no im2col rows: the direct conv's taps over
    weights packed [tap][cin][cout] (conv_tap)."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(7300)
    for edge in EDGES:
        b = GraphBuilder((3, 4, 7300))
        b.add("conv2d", 0, cout=5, kh=3, kw=3, stride_h=1, stride_w=2, pad_t=1, pad_l=0, pad_b=1, pad_r=1, groups=1,
              pad_value=-3, weight=weights(rng, (5, 3, 3, 7300), edge), bias=rng.integers(-5000, 5000, 5),
              **requant(rng, 5, 128 * 64 * 9 * 7300, False))
        g = b.build()
        check(g, images(rng, 2, g.tensors[0].shape, edge))


def widest_cscale(rng: np.random.Generator, n: int) -> dict:
    """wht's scale at the largest sshift n allows (max_sshift), some factors at +-2^sshift."""
    from engine.ops.wht import max_sshift
    sshift = max_sshift(n)
    lim = 1 << sshift
    cscale = rng.integers(-lim, lim + 1, n)
    cscale[rng.integers(0, n, n // 4)] = rng.choice([-lim, lim], n // 4)
    return {"scaled": 1, "sshift": sshift, "cscale": cscale}


@pytest.mark.parametrize("cin,cout,n", [(8, 8, 16), (96, 576, 1024), (576, 96, 1024), (160, 960, 1024), (16, 16, 128),
                                        (320, 1280, 2048), (40, 8, 64), (1024, 1024, 1024), (576, 160, 1024),
                                        (576, 576, 1024), (40, 40, 64), (136, 136, 256)])
@pytest.mark.parametrize("pixels", [1, 7, 16, 49])
def test_wht_fused_shapes(cin, cout, n, pixels):
    """The SIMD block path: channels in multiples of 8 far below n or just past n/2 (the repeated or split
    input and the folded or split output shortcuts), short pixel blocks (zero-padded copies), both threshold modes, residual,
    with and without the per-coefficient scale (each shape meets it in both modes across the pixel counts)."""
    from engine.builder import GraphBuilder
    from engine.ops.wht import smooth_table
    rng = np.random.default_rng(cin * 7 + cout * 3 + n + pixels)
    for mode in (0, 1):
        b = GraphBuilder((1, pixels, cin))
        g_shift, table = smooth_table(float(rng.uniform(0.002, 0.05)))
        b.add("wht", 0, cout=cout, n=n, order=mode, mode=mode, residual=int(cin == cout and mode == 1), tshift=g_shift,
              thresh=rng.integers(0, 8 * n, n), table=table.ravel() if mode else np.zeros(0), oshift=int(rng.choice([0, -1, 2])),
              **(widest_cscale(rng, n) if (mode + pixels) % 2 else {}))
        g = b.build()
        for edge in EDGES:
            check(g, images(rng, 2 if pixels < 16 else 1, g.tensors[0].shape, edge), threads=1 + pixels % 2)


@pytest.mark.parametrize("xs,ws", [(4, 7), (7, 4), (5, 5), (7, 7)])
def test_hdw_int16_bound(xs, ws):
    """hdw's min op runs in int16 lanes up to min(xshift, wshift) = 4 (nine taps of 128 << 4 and the sign
    xor's -1s stay inside int16), in int32 past it: -128 inputs against -128 and 127 weights at the bound."""
    from engine.builder import GraphBuilder
    from randgraph import weights
    rng = np.random.default_rng(100 * xs + ws)
    for stride in (1, 2):
        for edge in EDGES:
            b = GraphBuilder((4, 7, 40))
            b.add("hdw", 0, stride=stride, op=0, xshift=xs, wshift=ws, weight=weights(rng, (3, 3, 40), edge),
                  bias=rng.integers(-3000, 3000, 40), mult=rng.integers(1 << 30, 1 << 31, 40),
                  shift=rng.integers(38, 42, 40) + min(xs, ws), act_lo=int(rng.choice([-128, 0])))
            g = b.build()
            check(g, images(rng, 2, g.tensors[0].shape, edge), threads=1 + stride % 2)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("c", [5, 16, 40])
def test_hdw_shapes(stride, c):
    """hdw rows: widths around the 4-pixel blocks, channel tails, both ops, input and weight shifts."""
    from engine.builder import GraphBuilder
    from randgraph import requant, weights
    rng = np.random.default_rng(10 * c + stride)
    for w in (1, 4, 5, 9):
        for op in (0, 1):
            for edge in EDGES:
                xs, ws = int(rng.integers(0, 4)), int(rng.integers(0, 4))
                b = GraphBuilder((3, w, c))
                b.add("hdw", 0, stride=stride, op=op, xshift=xs, wshift=ws, weight=weights(rng, (3, 3, c), edge),
                      bias=rng.integers(-5000, 5000, c), **requant(rng, c, 9 * 128 * 2 ** max(xs, ws), rng.random() < 0.3),
                      act_lo=int(rng.choice([-128, 0])))
                g = b.build()
                check(g, images(rng, 2, g.tensors[0].shape, edge), threads=1 + (w % 2))
