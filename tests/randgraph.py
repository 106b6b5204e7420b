"""Random and adversarial one-op graphs for the bit-exactness tests."""
from __future__ import annotations

import numpy as np

from engine.builder import GraphBuilder
from engine.graph import Graph
from engine.ops.wht import smooth_table

EDGES = ("random", "max", "min", "alternating")


def images(rng: np.random.Generator, n: int, shape: tuple[int, int, int], edge: str) -> np.ndarray:
    """uint8 pixels; with the default zero point 128, 255 -> +127 and 0 -> -128 in the int8 input."""
    if edge == "max":
        return np.full((n, *shape), 255, np.uint8)
    if edge == "min":
        return np.zeros((n, *shape), np.uint8)
    if edge == "alternating":
        return np.where(np.indices((n, *shape)).sum(0) % 2 == 0, 255, 0).astype(np.uint8)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8)


def wht_scale(rng: np.random.Generator, n: int, edge: str) -> dict:
    """wht's optional per-coefficient scale: half the time none; else |scale| <= 2^sshift, all at the limit for edge 'max'."""
    if rng.random() < 0.5:
        return {}
    sshift = int(rng.choice([0, 1, 5, 12]))
    lim = 1 << sshift
    scale = rng.choice([-lim, lim], n) if edge == "max" else rng.integers(-lim, lim + 1, n)
    return {"scaled": 1, "sshift": sshift, "cscale": scale}


def weights(rng: np.random.Generator, shape: tuple, edge: str) -> np.ndarray:
    if edge == "max":
        return np.full(shape, 127, np.int8)
    if edge == "min":
        return np.full(shape, -128, np.int8)
    return rng.integers(-128, 128, shape).astype(np.int8)


def requant(rng: np.random.Generator, c: int, acc_range: float, saturate: bool) -> dict:
    """Per-channel (mult, shift) mapping about acc_range to the int8 range; tiny shifts saturate."""
    mult = rng.integers(1 << 30, 1 << 31, c)
    if rng.random() < 0.3:
        mult = 1 << rng.integers(0, 4, c)  # powers of two: the shift-only path
    bits = int(np.ceil(np.log2(max(acc_range, 2)))) - 7
    base = 31 * (mult > 8) + np.clip(bits, 0, 30)
    shift = np.clip(base - (rng.integers(3, 8, c) if saturate else rng.integers(-1, 2, c)), 0, 63)
    return dict(mult=mult, shift=shift)


def random_case(op: str, rng: np.random.Generator, edge: str = "random") -> Graph:
    h, w, c = int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 40))
    b = GraphBuilder((h, w, c))
    sat = rng.random() < 0.25
    act = dict(act_lo=int(rng.choice([-128, 0])), act_hi=int(rng.choice([127, 127, 60])))
    if op == "conv2d":
        k = int(rng.choice([1, 3, 5]))
        kind = rng.choice(["dense", "depthwise", "grouped"])
        g = c if kind == "depthwise" else (int(rng.choice([d for d in range(1, c + 1) if c % d == 0])) if kind == "grouped" else 1)
        cout = c if kind == "depthwise" else g * int(rng.integers(1, 5))
        p = int(rng.integers(0, 3))
        p = max(p, (k - min(h, w) + 1) // 2)
        cin_g = c // g
        b.add("conv2d", 0, cout=cout, kh=k, kw=k, stride_h=int(rng.integers(1, 3)), stride_w=int(rng.integers(1, 3)),
              pad_t=p, pad_l=p, pad_b=p, pad_r=p, groups=g, pad_value=int(rng.choice([0, 0, -128, 127, -55])), weight=weights(rng, (cout, k, k, cin_g), edge),
              bias=rng.integers(-5000, 5000, cout), **requant(rng, cout, 128 * 64 * k * k * cin_g, sat), **act)
    elif op == "linear":
        cout, k = int(rng.integers(1, 20)), h * w * c
        int32 = rng.random() < 0.5
        rq = {} if int32 else requant(rng, cout, 128 * 64 * k, sat)
        b.add("linear", 0, out_dtype="int32" if int32 else "int8", cout=cout,
              weight=weights(rng, (cout, k), edge), bias=rng.integers(-5000, 5000, cout), **rq, **({} if int32 else act))
    elif op == "wht":
        residual = int(rng.random() < 0.3)
        cout = c if residual else int(rng.integers(1, 70))
        n = 1 << int(np.ceil(np.log2(max(c, cout, 2)))) + int(rng.integers(0, 2))
        mode = int(rng.integers(0, 2))
        g, table = smooth_table(float(rng.uniform(0.001, 0.2))) if mode else (0, np.zeros(0))
        thresh = np.full(n, 2**31 - 1) if edge == "max" else rng.integers(0, 40 * n, n)
        order = int(rng.integers(0, 2))
        oshift = int(rng.choice([o for o in (0, 0, -2, 1, 3) if n.bit_length() - 1 + o >= 0]))  # n = 2 takes no -2
        b.add("wht", 0, cout=cout, n=n, order=order, mode=mode, residual=residual, tshift=g,
              thresh=thresh, table=table.ravel(), oshift=oshift, **wht_scale(rng, n, edge), **act)
    elif op == "hdw":
        b.add("hdw", 0, stride=int(rng.integers(1, 3)), op=int(rng.integers(0, 2)), xshift=int(rng.integers(0, 8)),
              wshift=int(rng.choice([0, 0, 3, 7])),
              weight=weights(rng, (3, 3, c), edge), bias=rng.integers(-3000, 3000, c),
              **requant(rng, c, 9 * 256 * 16, sat), **act)
    elif op == "sumpool":
        cw = int(rng.integers(1, c + 1))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        pad = dict(pad_t=int(rng.integers(0, 2)), pad_l=int(rng.integers(0, 2)))
        pad.update(pad_b=max(0, kh - h - pad["pad_t"]), pad_r=max(0, kw - w - pad["pad_l"]))
        rq = requant(rng, 1, 64 * cw * kh * kw, sat)
        b.add("sumpool", 0, cw=cw, kh=kh, kw=kw, **pad, mult=int(rq["mult"][0]), shift=int(rq["shift"][0]), **act)
    elif op == "add":
        other = b.add("requantize", 0, mult=int(rng.integers(1, 1 << 31)), shift=31)
        m = requant(rng, 2, 256, sat)
        b.add("add", [0, other], mult_a=int(m["mult"][0]), mult_b=int(m["mult"][1]), shift=int(m["shift"].max()), **act)
    elif op == "clamp":
        lo = int(rng.integers(-128, 100))
        b.add("clamp", 0, act_lo=lo, act_hi=int(rng.integers(lo, 128)))
    elif op == "requantize":
        rq = requant(rng, 1, 128, sat)
        b.add("requantize", 0, mult=int(rq["mult"][0]), shift=int(rq["shift"][0]), **act)
    elif op == "affine":
        mult = -(2**31) + 1 if edge == "min" else (2**31 - 1 if edge == "max" else None)
        mult = np.full(c, mult) if mult is not None else rng.integers(-(1 << 20), 1 << 20, c)
        b.add("affine", 0, mult=mult, bias=rng.integers(-(1 << 24), 1 << 24, c), shift=rng.integers(10, 25, c), **act)
    elif op == "avgpool":
        rq = requant(rng, 1, 64 * h * w, sat)
        b.add("avgpool", 0, mult=int(rq["mult"][0]), shift=int(rq["shift"][0]), **act)
    else:
        raise KeyError(op)
    return b.build()
