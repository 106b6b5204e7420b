"""Write test cases for the C test program (cbackend/tests/run_models.c): model files with inputs and the
outputs the numpy reference (the executable spec) gives for them.

    python cbackend/tests/make_cases.py OUT_DIR

For every case NAME: NAME.mfe (the model), NAME.in (u32 image count n, then n uint8 NHWC images),
NAME.out (the reference output, n images, little-endian int8 or int32 as the model's output dtype).
Also NAME.bad files: damaged models that a loader must refuse. The cases: the zoo models, every op on
random and extreme (all +127, all -128, alternating) inputs and weights, and small multi-op graphs.
"""
from __future__ import annotations

import hashlib
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from engine import format as fmt  # noqa: E402
from engine import ops  # noqa: E402
from engine.builder import GraphBuilder  # noqa: E402
from engine.graph import Graph  # noqa: E402
from engine.ops.wht import smooth_table  # noqa: E402
from randgraph import EDGES, images, random_case  # noqa: E402

EVERY_OP = os.path.join(ROOT, "zoo", "every-op.mfe")


def chain(rng: np.random.Generator, h: int = 6, w: int = 5, c: int = 6) -> Graph:
    """A small network through most ops: conv, hdw, wht (smooth), clamp, sumpool, add, avgpool, linear."""
    b = GraphBuilder((h, w, c))
    rq = lambda n, s: dict(mult=np.ones(n, np.int64), shift=np.full(n, s))
    t = b.add("conv2d", 0, cout=8, kh=3, kw=3, stride_h=1, stride_w=2, pad_t=1, pad_l=1, pad_b=1, pad_r=1, groups=2,
              weight=rng.integers(-128, 128, (8, 3, 3, c // 2)), bias=rng.integers(-999, 999, 8), **rq(8, 9))
    t = b.add("hdw", t, stride=2, op=int(rng.integers(2)), xshift=int(rng.integers(8)),
              weight=rng.integers(-128, 128, (3, 3, 8)), bias=rng.integers(-99, 99, 8), **rq(8, 6))
    g, table = smooth_table(0.03)
    u = b.add("wht", t, cout=8, n=16, order=1, mode=1, residual=1, tshift=g, thresh=rng.integers(0, 300, 16),
              table=table.ravel())
    u = b.add("clamp", u, act_lo=-20, act_hi=100)
    t = b.add("add", [t, u], mult_a=3, mult_b=1 << 20, shift=21)
    t = b.add("sumpool", t, cw=3, kh=2, kw=2, pad_t=0, pad_l=1, pad_b=1, pad_r=0, mult=1, shift=3)
    t = b.add("avgpool", t, mult=(1 << 31) - 1, shift=34)
    b.add("linear", t, out_dtype="int32", cout=10, weight=rng.integers(-128, 128, (10, 6)), bias=rng.integers(-9, 9, 10))
    return b.build()


def depthwise_rows(rng: np.random.Generator, h: int = 5, w: int = 7) -> Graph:
    """Depthwise 3x3 convs down each of the row kernels' paths (cbackend/src/dwrows.h): 16-channel tiles and a tail
    (24 channels, stride 1), a non-zero pad_value, stride 2, fewer than 16 channels; short multipliers."""
    b = GraphBuilder((h, w, 24))
    t = 0
    for c, stride, pv in ((24, 1, 0), (24, 1, -7), (24, 2, 0), (8, 1, 0)):
        if c != b.shape(t)[2]:
            t = b.add("conv2d", t, cout=c, kh=1, kw=1, stride_h=1, stride_w=1, groups=1,
                      weight=rng.integers(-64, 65, (c, 1, 1, b.shape(t)[2])), bias=rng.integers(-999, 999, c),
                      mult=rng.integers(1 << 11, 1 << 12, c), shift=np.full(c, 20))
        t = b.add("conv2d", t, cout=c, kh=3, kw=3, stride_h=stride, stride_w=stride, pad_t=1, pad_l=1, pad_b=1,
                  pad_r=1, groups=c, pad_value=pv, weight=rng.integers(-128, 128, (c, 3, 3, 1)),
                  bias=rng.integers(-999, 999, c), mult=rng.integers(1 << 11, 1 << 12, c), shift=np.full(c, 16))
    return b.build()


def zoo_models() -> list[tuple[str, Graph, str]]:
    """Every model shipped in zoo/ (their inputs: the embedded Fashion-MNIST sample images)."""
    folder = os.path.join(ROOT, "zoo")
    return [("zoo_" + name[:-4].replace("-", "_"), fmt.load(os.path.join(folder, name)), "sample")
            for name in sorted(os.listdir(folder)) if name.endswith(".mfe")]


def graphs(per_op: int = 3, zoo: bool = False) -> list[tuple[str, Graph, str]]:
    """(name, graph, input edge) for every case: the default zoo model (all zoo models with zoo=True),
    every op on random and extreme inputs, small multi-op chains."""
    out = zoo_models() if zoo else [("zoo_every_op", fmt.load(EVERY_OP), "random")]
    for op in sorted(ops.OPS):
        rng = np.random.default_rng(7000 + ops.OPS[op].code)
        for i in range(per_op):
            edge = EDGES[i % len(EDGES)]
            out.append((f"{op}_{i}_{edge}", random_case(op, rng, edge), edge))
    for i in range(3):
        out.append((f"chain_{i}", chain(np.random.default_rng(i)), EDGES[i]))
    out.append(("depthwise_rows", depthwise_rows(np.random.default_rng(9)), "random"))
    return out


def damaged() -> list[tuple[str, bytes]]:
    """Files a loader must refuse (resealed, so the checks behind the checksum are reached)."""
    good = open(EVERY_OP, "rb").read()

    def reseal(buf: bytearray) -> bytes:
        struct.pack_into("<Q", buf, 16, len(buf))
        buf[24:56] = hashlib.sha256(bytes(buf[64:])).digest()
        return bytes(buf)

    out = [("truncated", reseal(bytearray(good[: len(good) // 2]))), ("checksum", good[:-1] + bytes([good[-1] ^ 1]))]
    t_at = struct.unpack_from("<Q", good, 88)[0]
    huge = bytearray(good)
    struct.pack_into("<3I", huge, t_at + 4, 1 << 21, 1 << 21, 1 << 22)  # h*w*c == 2^64
    out.append(("wrapping_shape", reseal(huge)))
    blob = bytearray(good)
    n_at = struct.unpack_from("<Q", good, 96)[0]
    struct.pack_into("<QQ", blob, n_at + 96, 2**64 - 64, 128)
    out.append(("blob_near_2_64", reseal(blob)))
    return out


def write(folder: str, n_images: int = 5) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = []
    sample = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))["images"]
    for name, g, edge in graphs(zoo=True):
        rng = np.random.default_rng(len(names))
        shape = g.tensors[g.input].shape
        if edge == "sample" and sample.shape[1:] == shape:
            x = sample[:n_images]
        else:
            x = images(rng, n_images, shape, "random" if edge == "sample" else edge)
        y = g.run_reference(g.quantize_input(x))
        path = os.path.join(folder, name)
        fmt.save(g, path + ".mfe")
        with open(path + ".in", "wb") as f:
            f.write(struct.pack("<I", n_images) + np.ascontiguousarray(x).tobytes())
        with open(path + ".out", "wb") as f:
            f.write(np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("<")).tobytes())
        names.append(path + ".mfe")
    for name, data in damaged():
        with open(os.path.join(folder, name + ".bad"), "wb") as f:
            f.write(data)
        names.append(os.path.join(folder, name + ".bad"))
    return names


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    print("\n".join(write(sys.argv[1])))
