"""Hostile model files (issue 7): both loaders refuse every truncated, corrupted or crafted file with a
ModelError that names the problem and its byte offset; never a crash, a hang, a huge allocation or a
read outside the file. Files are crafted here byte by byte (the writer refuses invalid graphs), then
resealed (size field and checksum fixed) so the deeper checks are reached.

Also the loaders' differential test: random field mutations of real files must be accepted or refused by
the Python and the C loader alike, and an accepted file must run bit-exact on both."""
from __future__ import annotations

import hashlib
import os
import re
import struct
import time
from unittest import mock

import numpy as np
import pytest

import engine
from engine import format as fmt
from engine import graph as graph_mod
from engine import ops
from engine.builder import GraphBuilder
from engine.graph import Graph, ModelError
from randgraph import images, random_case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY_OP = os.path.join(ROOT, "zoo", "every-op.mfe")
U32, U64 = 2**32 - 1, 2**64 - 1

# ---- crafting files ----


def pack(g: Graph) -> bytes:
    """fmt.to_bytes without the validation, so invalid graphs can be written."""
    with mock.patch.object(Graph, "validate", lambda self: self):
        return fmt.to_bytes(g)


def reseal(buf: bytes | bytearray) -> bytes:
    """Fix the size field and the checksum after an edit."""
    buf = bytearray(buf)
    if len(buf) >= 64:
        struct.pack_into("<Q", buf, 16, len(buf))
        buf[24:56] = hashlib.sha256(bytes(buf[64:])).digest()
    return bytes(buf)


def patch(data: bytes, at: int, code: str, *values) -> bytes:
    buf = bytearray(data)
    struct.pack_into("<" + code, buf, at, *values)
    return reseal(buf)


def header(data: bytes) -> dict:
    keys = ("nt", "nn", "input", "output", "zp", "reserved", "tensors", "nodes", "meta", "meta_size", "blobs")
    return dict(zip(keys, fmt.HEADER.unpack_from(data, 64)))


def node_at(data: bytes, i: int) -> int:
    return header(data)["nodes"] + i * fmt.NODE.size


def tensor_at(data: bytes, i: int) -> int:
    return header(data)["tensors"] + i * fmt.TENSOR.size


ATTRS_AT, BLOBS_AT = 8 + 4 * ops.MAX_INPUTS + 8, 8 + 4 * ops.MAX_INPUTS + 8 + 4 * ops.MAX_ATTRS + 8  # within a node


def attr_at(data: bytes, node: int, name: str) -> int:
    op = ops.BY_CODE[struct.unpack_from("<I", data, node_at(data, node))[0]]
    return node_at(data, node) + ATTRS_AT + 4 * op.attr_index(name)


def both_reject(data: bytes, words: str, offset: bool = True):
    """Both loaders raise ModelError whose message matches `words` (and, by default, names a byte offset)."""
    msgs = []
    for load in (fmt.from_bytes, lambda d: engine.native.NativeModel(d), lambda d: engine.native.NativeModel(d, "scalar")):
        with pytest.raises(ModelError) as e:
            load(data)
        msgs.append(str(e.value))
        assert re.search(words, str(e.value)), (words, str(e.value))
        if offset:
            assert re.search(r"offset \d+", str(e.value)), str(e.value)
    return msgs


def c_accepts(data: bytes) -> bool:
    try:
        engine.native.NativeModel(data)
        return True
    except ModelError:
        return False


def small_graph(shape=(4, 4, 8)) -> GraphBuilder:
    return GraphBuilder(shape)


def clamp_graph(shape=(4, 4, 8)) -> Graph:
    b = GraphBuilder(shape)
    b.add("clamp", 0)
    return b.build()


def conv_graph(h=4, w=4, c=8, **kw) -> Graph:
    """One conv2d node, written by hand so that inconsistent geometries can be made too."""
    a = dict(cout=4, kh=3, kw=3, stride_h=1, stride_w=1, pad_t=1, pad_l=1, pad_b=1, pad_r=1, groups=1,
             act_lo=-128, act_hi=127)
    a.update(kw)
    a = {x.name: a.get(x.name, 0) for x in ops.OPS["conv2d"].attrs}
    cout, cin_g = a["cout"], max(1, c // a["groups"])
    ho = max(1, (h + a["pad_t"] + a["pad_b"] - a["kh"]) // a["stride_h"] + 1)
    wo = max(1, (w + a["pad_l"] + a["pad_r"] - a["kw"]) // a["stride_w"] + 1)
    blobs = dict(weight=np.ones((cout, a["kh"], a["kw"], cin_g), np.int8), bias=np.zeros(cout, np.int32),
                 mult=np.ones(cout, np.int32), shift=np.zeros(cout, np.int32))
    return Graph([graph_mod.Tensor("x", (h, w, c)), graph_mod.Tensor("y", (ho, wo, cout))],
                 [graph_mod.Node("conv", "conv2d", [0], 1, a, blobs)], 0, 1, 128)


def default_bytes() -> bytes:
    return open(EVERY_OP, "rb").read()


# ---- the preamble and header ----


def test_limits_agree_between_python_and_c():
    src = open(os.path.join(ROOT, "cbackend", "src", "model.c")).read()
    c = {k: eval(v.replace("(int64_t)", "").replace("(uint64_t)", "").replace("(size_t)", ""))
         for k, v in re.findall(r"#define (MAX_\w+) (.+?)(?:\s*/\*.*)?$", src, re.M)}
    for name in ("MAX_TENSORS", "MAX_NODES", "MAX_DIM", "MAX_TENSOR_BYTES", "MAX_LIVE_BYTES"):
        assert c[name] == getattr(graph_mod, name), name
    assert fmt.MAX_FILE == 1 << 31


def test_preamble_fields():
    good = pack(clamp_graph())
    both_reject(b"", "too short")
    both_reject(good[:127], "too short")
    both_reject(b"MFENGINX" + good[8:], "magic")
    both_reject(patch(good, 8, "I", fmt.VERSION - 1), "version")  # files of the format before
    both_reject(patch(good, 8, "I", fmt.VERSION + 1), "version")
    both_reject(good + b"\0", "size")  # size field no longer matches
    both_reject(good[:-1], "size")
    both_reject(patch(good, 12, "I", 1), "reserved")  # the preamble is not covered by the checksum
    both_reject(patch(good, 56, "Q", 1), "reserved")
    bad = bytearray(good)
    bad[200] ^= 1
    both_reject(bytes(bad), "checksum")


@pytest.mark.parametrize("field,code,value,words", [
    (0, "I", 0, "tensor count"), (0, "I", U32, "tensor count"), (0, "I", 65537, "tensor count"),
    (4, "I", 0, "node count"), (4, "I", U32, "node count"), (4, "I", 2**31, "node count"),
    (8, "I", 7, "input tensor index"), (8, "I", U32, "input tensor index"),
    (12, "I", 2, "output tensor index"), (12, "I", 0, "output tensor is the input"),
    (16, "I", 256, "zero point"), (16, "I", U32, "zero point"), (20, "I", 1, "reserved"),
    (24, "Q", 64, "tensor table"), (24, "Q", U64 - 31, "tensor table"), (24, "Q", 2**63, "tensor table"),
    (32, "Q", 0, "node table"), (32, "Q", U64 - 159, "node table"), (32, "Q", 10**6, "node table"),
    (40, "Q", U64, "metadata"), (48, "Q", U64, "metadata"), (48, "Q", 2**63 + 5, "metadata"),
    (56, "Q", 65, "blob section"), (56, "Q", U64 - 63, "blob section"), (56, "Q", 0, "blob section|table"),
])
def test_header_fields(field, code, value, words):
    both_reject(patch(pack(clamp_graph()), 64 + field, code, value), words)


def test_counts_times_record_size_cannot_wrap():
    """n * record size near 2^64 (or past the file) with the table offset placed to make a wrapped sum fit."""
    good = pack(clamp_graph())
    for nt in (2**27, 2**32 - 1):
        both_reject(patch(good, 64, "I", nt), "tensor count|tensor table")
    for at in (U64 - 64 * 31, 2**64 - 2**5):
        both_reject(patch(good, 64 + 24, "Q", at), "tensor table")


def test_truncated_and_extended_at_every_length():
    """Cut (or zero-extend) a real file at many lengths and reseal it: a clean ModelError every time."""
    good = default_bytes()
    for n in list(range(0, 200, 7)) + list(range(200, len(good), max(1, len(good) // 150))):
        data = reseal(good[:n])
        with pytest.raises(ModelError):
            fmt.from_bytes(data)
        assert not c_accepts(data)
    assert not c_accepts(reseal(good + b"\0" * 64)) or fmt.from_bytes(reseal(good + b"\0" * 64))


# ---- tensor records ----


@pytest.mark.parametrize("shape,words", [
    ((0, 4, 8), "bad shape"), ((4, 0, 8), "bad shape"), ((4, 4, 0), "bad shape"),
    ((2**31, 1, 1), "bad shape"), ((U32, 1, 1), "bad shape"), ((2**28 + 1, 1, 1), "bad shape"),
    ((2**21, 2**21, 2**22), "limit"),  # the product is 2^64: wrapped to 0 in a 64-bit multiply
    ((2**24, 2**24, 2**16), "limit"), ((2**28, 2**28, 2**28), "limit"), ((2**14, 2**14, 2), "limit"),
])
def test_tensor_shapes(shape, words):
    data = pack(clamp_graph())
    at = tensor_at(data, 0)
    both_reject(patch(data, at + 4, "3I", *shape), words)
    both_reject(patch(data, tensor_at(data, 1) + 4, "3I", *shape), words)


def test_huge_depthwise_conv_does_not_read_outside_the_arena():
    """The crash this issue found: a 2^24 x 2^24 x 2^16 tensor wrapped to 0 bytes in the C loader, which
    planned no memory for it, and the depthwise conv then read and wrote far outside the arena."""
    c = 1 << 16
    b = GraphBuilder((4, 4, c))
    b.add("conv2d", 0, cout=c, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, groups=c,
          weight=np.ones((c, 1, 1, 1)), bias=np.zeros(c), mult=np.ones(c), shift=np.zeros(c))
    data = pack(b.build())
    for i in (0, 1):
        data = patch(data, tensor_at(data, i) + 4, "3I", 2**24, 2**24, 2**16)
    both_reject(data, "limit")


@pytest.mark.parametrize("field,code,value,words", [
    (0, "I", 0, "dtype"), (0, "I", 3, "dtype"), (0, "I", U32, "dtype"),
    (16, "f", float("nan"), "scale"), (16, "f", float("inf"), "scale"), (16, "f", 0.0, "scale"),
    (16, "f", -1.0, "scale"), (20, "I", 1, "reserved"), (28, "I", 1, "reserved"),
])
def test_tensor_fields(field, code, value, words):
    data = pack(clamp_graph())
    both_reject(patch(data, tensor_at(data, 1) + field, code, value), words)


def test_int32_input_and_int32_into_an_op():
    data = pack(clamp_graph())
    both_reject(patch(data, tensor_at(data, 0), "I", 2), "int8|dtype", offset=False)
    b = GraphBuilder((4, 4, 8))
    t = b.add("clamp", 0)
    b.add("clamp", t)
    data = pack(b.build())
    both_reject(patch(data, tensor_at(data, 1), "I", 2), "dtype|int8")


# ---- node records ----


def test_node_fields():
    data = pack(conv_graph())
    at = node_at(data, 0)
    both_reject(patch(data, at, "I", 0), "op code")
    both_reject(patch(data, at, "I", 99), "op code")
    both_reject(patch(data, at, "I", U32), "op code")
    both_reject(patch(data, at + 4, "I", 2), "counts")
    both_reject(patch(data, at + 8 + 4 * ops.MAX_INPUTS + 4, "I", 3), "counts")  # n_attrs
    both_reject(patch(data, at + BLOBS_AT - 8, "I", 3), "counts")  # n_blobs
    both_reject(patch(data, at + BLOBS_AT - 4, "I", 1), "reserved")
    both_reject(patch(data, at + 12, "I", 1), "unused")  # second input slot of a one-input op
    both_reject(patch(data, at + ATTRS_AT + 4 * 15, "i", -1), "unused")  # attribute slot past the op's
    both_reject(patch(data, at + 8, "I", 1), "not yet computed|written twice|range")  # reads its own output
    both_reject(patch(data, at + 8, "I", U32), "range|missing")
    both_reject(patch(data, at + 8 + 4 * ops.MAX_INPUTS, "I", 0), "written twice")
    both_reject(patch(data, at + 8 + 4 * ops.MAX_INPUTS, "I", 2**31), "range|invalid")


def test_unused_blob_slot_must_be_zero():
    b = GraphBuilder((4, 4, 8))
    b.add("wht", 0, cout=8, n=8, order=0, mode=0, residual=0, tshift=0, thresh=np.zeros(8))
    data = pack(b.build())
    both_reject(patch(data, node_at(data, 0) + BLOBS_AT + 16 * 3, "Q", 64), "unused")  # wht has 3 blobs


@pytest.mark.parametrize("j,at,size,words", [
    (0, U64 - 63, 64, "blob"), (0, 2**63, 2**63, "blob"), (0, 128, 72, "blob"),  # inside the tables
    (0, None, U64, "blob"), (0, None, 2**63 + 1, "blob"), (0, 1, 72, "blob"),
    (1, None, 3, "blob"),  # int32 blob of a ragged byte count
])
def test_blob_spans(j, at, size, words):
    data = pack(conv_graph())
    slot = node_at(data, 0) + BLOBS_AT + 16 * j
    cur_at, cur_size = struct.unpack_from("<QQ", data, slot)
    both_reject(patch(data, slot, "QQ", cur_at if at is None else at, size), words)


def test_aliased_blobs_are_refused():
    """Found by this issue: nodes could share (alias) one blob span, so a 20 MB file of 65,536 1x1 convs
    sharing a 10 MB weight blob made the C loader pack ~650 GB of weights and both loaders scan the
    blob 65,536 times. Blob spans must now be disjoint, checked before any blob is read."""
    b = GraphBuilder((1, 1, 64))
    for _ in range(2):
        b.add("conv2d", 0, cout=32, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0,
              groups=1, weight=np.ones((32, 1, 1, 64)), bias=np.zeros(32), mult=np.ones(32), shift=np.zeros(32))
    b.add("add", [1, 2], mult_a=1, mult_b=1, shift=1)
    data = pack(b.build())
    s0, s1 = node_at(data, 0) + BLOBS_AT, node_at(data, 1) + BLOBS_AT
    weight0 = struct.unpack_from("<QQ", data, s0)
    both_reject(patch(data, s1, "QQ", *weight0), "overlaps")  # the same weights
    both_reject(patch(data, s1, "QQ", weight0[0] + 64, weight0[1]), "overlaps")  # partly
    both_reject(patch(data, s0 + 16, "QQ", weight0[0] + 1984, 128), "overlaps|misaligned")  # bias inside the weights
    at, size = struct.unpack_from("<QQ", data, s1 + 16)
    fmt.from_bytes(patch(data, s1 + 16, "QQ", at, size))  # disjoint again: fine


def test_blob_sizes_disagreeing_with_the_shape_rule():
    data = pack(conv_graph())
    slot = node_at(data, 0) + BLOBS_AT
    at, size = struct.unpack_from("<QQ", data, slot)
    both_reject(patch(data, slot, "QQ", at, size - 1), "weight|sizes", offset=False)
    bias_at, bias_size = struct.unpack_from("<QQ", data, slot + 16)
    both_reject(patch(data, slot + 16, "QQ", bias_at, bias_size - 4), "bias|sizes", offset=False)


@pytest.mark.parametrize("op", sorted(ops.OPS))
def test_every_attribute_just_outside_its_range(op):
    rng = np.random.default_rng(ops.OPS[op].code)
    data = pack(random_case(op, rng))
    n = len(ops.OPS[op].attrs)
    assert c_accepts(data)
    for a in ops.OPS[op].attrs:
        for v in (a.lo - 1, a.hi + 1, -2**31, 2**31 - 1):
            if a.lo <= v <= a.hi or not -2**31 <= v < 2**31:
                continue
            both_reject(patch(data, attr_at(data, 0 if op != "add" else 1, a.name), "i", v), "attribute|outside")
    assert n <= ops.MAX_ATTRS


@pytest.mark.parametrize("op", sorted(o.name for o in ops.OPS.values() if "act_lo" in [a.name for a in o.attrs]))
def test_act_lo_above_act_hi(op):
    data = pack(random_case(op, np.random.default_rng(7)))
    node = 0 if op != "add" else 1
    both_reject(patch(patch(data, attr_at(data, node, "act_lo"), "i", 5), attr_at(data, node, "act_hi"), "i", 4),
                "act_lo")


@pytest.mark.parametrize("op,blob,value", [
    ("conv2d", "shift", 64), ("conv2d", "shift", -1), ("conv2d", "mult", -1), ("hdw", "shift", 2**31 - 1),
    ("wht", "thresh", -1), ("linear", "mult", -(2**31)),
])
def test_blob_values_outside_their_range(op, blob, value):
    rng = np.random.default_rng(3)
    for _ in range(20):
        g = random_case(op, rng)
        if g.nodes[0].blobs[blob].size:
            break
    g.nodes[0].blobs[blob] = g.nodes[0].blobs[blob].copy()
    g.nodes[0].blobs[blob].flat[-1] = value
    both_reject(pack(g), "outside", offset=False)


def test_smooth_table_codes_outside_range():
    g = random_case("wht", np.random.default_rng(0))
    node = g.nodes[0]
    node.attrs["mode"] = 1
    node.blobs["table"] = np.zeros(768, np.int8)
    node.blobs["table"][5] = 33
    both_reject(pack(g), "outside", offset=False)


# ---- the graph ----


def test_graph_structure():
    b = GraphBuilder((4, 4, 8))
    t1 = b.add("clamp", 0)
    b.add("clamp", t1)
    data = pack(b.build())
    # node 1 reads tensor 2, which only it writes
    both_reject(patch(data, node_at(data, 1) + 8, "I", 2), "not yet computed|written twice")
    # node 0 reads tensor 2, written later by node 1
    both_reject(patch(data, node_at(data, 0) + 8, "I", 2), "not yet computed")
    # both nodes write tensor 1
    both_reject(patch(data, node_at(data, 1) + 16, "I", 1), "written twice")
    # a third tensor nobody writes as the output
    g = b.build()
    g.tensors.append(graph_mod.Tensor("orphan", (4, 4, 8)))
    g.output = 3
    both_reject(pack(g), "never produced", offset=False)


@pytest.mark.parametrize("case", ["kernel_too_big", "groups", "wht_n_small", "wht_n_pow2", "wht_residual",
                                  "sumpool_window", "add_shapes", "hdw_shape", "linear_shape", "avgpool_shape"])
def test_shapes_inconsistent_along_the_graph(case):
    if case == "kernel_too_big":
        data = pack(conv_graph(h=2, w=2, kh=5, kw=5, pad_t=1, pad_l=1, pad_b=1, pad_r=1))
    elif case == "groups":
        data = pack(conv_graph(c=8, groups=3, cout=3))
    elif case.startswith("wht"):
        b = GraphBuilder((2, 2, 12))
        b.add("wht", 0, cout=12, n=16, order=0, mode=0, residual=1, tshift=0, thresh=np.zeros(16))
        g = b.build()
        if case == "wht_n_small":
            g.nodes[0].attrs["n"] = 8
        elif case == "wht_n_pow2":
            g.nodes[0].attrs["n"] = 24
            g.nodes[0].blobs["thresh"] = np.zeros(24, np.int32)
        else:
            g.nodes[0].attrs["cout"] = 10
            g.tensors[1].shape = (2, 2, 10)
        data = pack(g)
    elif case == "sumpool_window":
        b = GraphBuilder((2, 2, 4))
        b.add("sumpool", 0, cw=2, kh=2, kw=2, mult=1, shift=0)
        g = b.build()
        g.nodes[0].attrs["cw"] = 5
        data = pack(g)
    elif case == "add_shapes":
        b = GraphBuilder((2, 2, 4))
        t = b.add("sumpool", 0, cw=1, kh=1, kw=2, mult=1, shift=0)
        g = b.build()
        g.nodes.append(graph_mod.Node("add", "add", [0, t], 2, dict(mult_a=1, mult_b=1, shift=0, act_lo=-128, act_hi=127)))
        g.tensors.append(graph_mod.Tensor("sum", (2, 2, 4)))
        g.output = 2
        data = pack(g)
    elif case == "hdw_shape":
        b = GraphBuilder((5, 5, 4))
        b.add("hdw", 0, stride=2, op=0, xshift=0, weight=np.ones((3, 3, 4)), bias=np.zeros(4), mult=np.ones(4),
              shift=np.zeros(4))
        g = b.build()
        g.tensors[1].shape = (2, 2, 4)
        data = pack(g)
    elif case == "linear_shape":
        b = GraphBuilder((2, 2, 4))
        b.add("linear", 0, out_dtype="int32", cout=3, weight=np.ones((3, 16)), bias=np.zeros(3))
        g = b.build()
        g.tensors[1].shape = (1, 2, 3)
        data = pack(g)
    else:
        b = GraphBuilder((3, 3, 4))
        b.add("avgpool", 0, mult=1, shift=0)
        g = b.build()
        g.tensors[1].shape = (1, 1, 5)
        data = pack(g)
    both_reject(data, "", offset=True)


def test_stride_larger_than_input_is_valid_and_exact():
    """A legal corner: stride 8 over a 3x2 input gives a 1x1 output; both backends agree with the spec."""
    g = conv_graph(h=3, w=2, c=5, kh=1, kw=1, stride_h=8, stride_w=8, pad_t=0, pad_l=0, pad_b=0, pad_r=0)
    assert g.tensors[1].shape == (1, 1, 4)
    m = engine.from_graph(g)
    x = images(np.random.default_rng(0), 3, (3, 2, 5), "random")
    for backend in ("c", "c-scalar"):
        np.testing.assert_array_equal(m.run(x, backend), m.run(x, "ref"))


def test_linear_k_and_accumulator_bound():
    """K = H*W*C large: the weight blob must hold cout*K values (a small file cannot claim a huge K), and
    the no-wrap proof refuses 2^17 weights of -128 (128 * 128 * 2^17 = 2^31)."""
    b = GraphBuilder((2, 2, 4))
    b.add("linear", 0, out_dtype="int32", cout=3, weight=np.ones((3, 16)), bias=np.zeros(3))
    data = pack(b.build())
    both_reject(patch(data, tensor_at(data, 0) + 4, "3I", 2**14, 2**14, 1), "weight|sizes|shape", offset=False)
    k = 1 << 17
    b = GraphBuilder((1, 1, k))
    b.add("linear", 0, out_dtype="int32", cout=1, weight=np.full((1, k), -128), bias=np.zeros(1))
    g = Graph(b.tensors, b.nodes, 0, 1, 128)  # unvalidated: build() would refuse it
    both_reject(pack(g), "wrap")
    g.nodes[0].blobs["weight"][0, : k // 2] = 0
    fmt.from_bytes(pack(g))  # 128 * 128 * 2^16 < 2^31: accepted by both
    assert c_accepts(pack(g))


def test_bias_at_the_wrap_boundary():
    """The proof is exact: |bias| + 128 * sum|w| == 2^31 - 1 is accepted, one more is refused."""
    w = np.full((1, 1, 1, 4), -128)
    for extra, ok in ((0, True), (1, False)):
        b = GraphBuilder((1, 1, 4))
        b.add("conv2d", 0, cout=1, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, groups=1,
              weight=w, bias=[-(2**31 - 1 - 4 * 128 * 128) - extra], mult=[1], shift=[0])
        g = Graph(b.tensors, b.nodes, 0, 1, 128)
        data = pack(g)
        if ok:
            fmt.from_bytes(data)
            assert c_accepts(data)
        else:
            both_reject(data, "wrap", offset=False)


def test_activations_over_the_memory_limit():
    """Five 256 MiB tensors live at once (1.25 GiB per image) in a file of a few hundred bytes: refused by
    both loaders before any memory is planned."""
    b = GraphBuilder((2**14, 2**14, 1))
    outs = [b.add("clamp", 0) for _ in range(4)]
    a = b.add("add", outs[:2], mult_a=1, mult_b=1, shift=0)
    c = b.add("add", outs[2:], mult_a=1, mult_b=1, shift=0)
    b.add("add", [a, c], mult_a=1, mult_b=1, shift=0)
    g = Graph(b.tensors, b.nodes, 0, len(b.tensors) - 1, 128)
    data = pack(g)
    assert len(data) < 4096
    both_reject(data, "activations need", offset=False)
    # four of them (1 GiB) is at the limit and loads (nothing is allocated until a run)
    b = GraphBuilder((2**14, 2**14, 1))
    outs = [b.add("clamp", 0) for _ in range(3)]
    a = b.add("add", outs[:2], mult_a=1, mult_b=1, shift=0)
    b.add("add", [a, outs[2]], mult_a=1, mult_b=1, shift=0)
    data = pack(Graph(b.tensors, b.nodes, 0, len(b.tensors) - 1, 128))
    assert fmt.from_bytes(data).live_bytes() == 2**30
    assert c_accepts(data)


def test_sumpool_scratch_limit_in_c():
    """A 1x1x2^23 input padded 15+15 wide asks the C sumpool kernel for 31 x 2^23 int32 of scratch per
    thread: the C loader refuses it (the Python reference needs no scratch and accepts)."""
    b = GraphBuilder((1, 1, 2**23))
    b.add("sumpool", 0, cw=1, kh=1, kw=1, pad_l=15, pad_r=15, mult=1, shift=0)
    g = Graph(b.tensors, b.nodes, 0, 1, 128)
    data = pack(g)
    fmt.from_bytes(data)
    with pytest.raises(ModelError, match="scratch"):
        engine.native.NativeModel(data)


def test_dead_tensor_does_not_clobber_live_data():
    """Found by this issue: a node output nothing reads was planned to overlap live tensors (its lifetime
    was empty), so writing it corrupted the input the next node still needed."""
    b = GraphBuilder((4, 4, 8))
    t1 = b.add("requantize", 0, mult=1, shift=0)
    b.add("requantize", t1, mult=1, shift=1, act_lo=5, act_hi=5)  # dead
    b.add("add", [0, t1], mult_a=1, mult_b=1, shift=0)
    m = engine.from_graph(b.build())
    x = images(np.random.default_rng(0), 20, (4, 4, 8), "random")
    for backend in ("c", "c-scalar"):
        np.testing.assert_array_equal(m.run(x, backend), m.run(x, "ref"))


def test_many_nodes_load():
    """10,000 nodes in a chain: both loaders and the memory planner take them."""
    b = GraphBuilder((1, 1, 1))
    t = 0
    for _ in range(10000):
        t = b.add("clamp", t)
    data = pack(Graph(b.tensors, b.nodes, 0, t, 128))
    assert c_accepts(data)
    assert len(fmt.from_bytes(data).nodes) == 10000


def test_metadata_must_be_a_json_object():
    g = clamp_graph()
    data = bytearray(pack(g))
    h = header(bytes(data))
    data[h["meta"]] = ord("[")
    with pytest.raises(ModelError, match="metadata"):
        fmt.from_bytes(reseal(data))
    deep = b"[" * 100000 + b"]" * 100000  # too deep for the json module: still a ModelError
    g.meta = {}
    raw = bytearray(pack(g))
    h = header(bytes(raw))
    body = bytes(raw[:h["meta"]]) + deep
    with pytest.raises(ModelError):
        fmt.from_bytes(reseal(body))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ModelError, match="No such file"):
        engine.load(str(tmp_path / "nothere.mfe"))
    with pytest.raises(ModelError, match="directory"):
        engine.load(str(tmp_path))
    with pytest.raises(ModelError, match="No such file"):
        fmt.load(str(tmp_path / "nothere.mfe"))
    (tmp_path / "empty.mfe").write_bytes(b"")
    with pytest.raises(ModelError, match="too short"):
        engine.load(str(tmp_path / "empty.mfe"))
    os.mkfifo(tmp_path / "fifo.mfe")  # no writer: opening it must not block
    for path in ("/dev/zero", str(tmp_path / "fifo.mfe")):
        for load in (engine.load, fmt.load):
            with pytest.raises(ModelError, match="not a regular file"):
                load(path)


def test_fuzz_seed_corpus_is_current():
    """The committed seeds load in both loaders (else the fuzzer starts from files the format refuses):
    after an op table change, run `python cbackend/fuzz/make_corpus.py`."""
    folder = os.path.join(ROOT, "cbackend", "fuzz", "corpus")
    files = sorted(os.listdir(folder))
    assert len(files) >= 20 and sum(os.path.getsize(os.path.join(folder, f)) for f in files) < 400_000
    for name in files:
        data = open(os.path.join(folder, name), "rb").read()
        try:
            fmt.from_bytes(data)
        except ModelError as e:
            pytest.fail(f"{name}: {e}: run `python cbackend/fuzz/make_corpus.py`")
        assert c_accepts(data), name


# ---- the loaders' differential test ----

INTERESTING = (0, 1, 2, 3, 7, 8, 15, 16, 63, 64, 127, 128, 255, 256, 1 << 14, 1 << 16, 2**31 - 1, 2**31, U32)


def mutate(data: bytes, rng: np.random.Generator, base: bytes) -> bytes:
    """One random edit of the binary records of `base` (not its JSON bytes) made to `data`, resealed."""
    h = header(base)
    regions = [(64, 128), (h["tensors"], h["tensors"] + 32 * h["nt"]), (h["nodes"], h["nodes"] + 160 * h["nn"])]
    if h["blobs"] < len(data):
        regions.append((h["blobs"], len(data)))
    lo, hi = regions[int(rng.integers(len(regions)))]
    buf = bytearray(data)
    at = max(0, min(int(rng.integers(lo, hi)) & ~3, len(buf) - 4))
    kind = rng.integers(7)
    if kind == 4 and len(buf) > 72:  # cut (at least 64 bytes stay)
        del buf[int(rng.integers(64, len(buf))):]
    elif kind == 5:  # extend
        buf += bytes(int(rng.integers(1, 130)))
    elif kind == 6 and len(data) > 72:  # copy 8 bytes from elsewhere
        src = int(rng.integers(64, len(data) - 8))
        buf[at:at + 8] = data[src:src + 8]
    elif kind == 0:
        buf[at + int(rng.integers(4))] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        struct.pack_into("<I", buf, at, int(rng.choice(INTERESTING)))
    elif kind == 2:
        old = struct.unpack_from("<i", buf, at)[0]
        struct.pack_into("<i", buf, at, max(-2**31, min(2**31 - 1, old + int(rng.integers(-3, 4)))))
    else:
        buf[at] = int(rng.integers(256))
    return reseal(buf)


def seeds() -> list[bytes]:
    out = [default_bytes()]
    rng = np.random.default_rng(11)
    for op in sorted(ops.OPS):
        out.append(pack(random_case(op, rng)))
    return out


def small_enough(g: Graph) -> bool:
    return g.live_bytes() < (1 << 20) and all(int(np.prod(t.shape)) < (1 << 16) for t in g.tensors)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_files_python_and_c_agree(seed):
    """Python and C accept exactly the same mutated files, and what they accept runs bit-exact."""
    rng = np.random.default_rng(seed)
    base = seeds()
    accepted = 0
    deadline = time.perf_counter() + 4
    while time.perf_counter() < deadline:
        data = orig = base[int(rng.integers(len(base)))]
        for _ in range(int(rng.integers(1, 3))):
            data = mutate(data, rng, orig)
        try:
            g = fmt.from_bytes(data)
            py_ok, why = True, ""
        except ModelError as e:
            py_ok, why = False, str(e)
        c_ok = c_accepts(data)
        if not py_ok and "not a JSON object" in why:
            continue  # the C loader checks the metadata's span, not its JSON (no kernel reads it)
        assert py_ok == c_ok, f"python {'accepts' if py_ok else 'refuses: ' + why}, C {'accepts' if c_ok else 'refuses'}"
        if py_ok and small_enough(g):
            accepted += 1
            m = engine.Model(g, data)
            x = images(rng, int(rng.integers(1, 4)), m.input_shape, str(rng.choice(["random", "max", "min"])))
            want = m.run(x, "ref")
            for backend in ("c", "c-scalar"):
                np.testing.assert_array_equal(m.run(x, backend, threads=int(rng.integers(1, 3))), want)
    assert accepted > 0
