"""Model file: round trip, atomic write, and both loaders rejecting damaged files with a clear error."""
import hashlib
import os
import struct

import numpy as np
import pytest

import engine
from engine import format as fmt
from engine.gen_header import HEADER, render
from engine.graph import ModelError
from randgraph import random_case

EVERY_OP = os.path.join(os.path.dirname(__file__), "..", "zoo", "every-op.mfe")


def test_generated_c_header_is_current():
    assert HEADER.read_text() == render(), "run `python -m engine.gen_header`"


def test_round_trip(tmp_path):
    g = fmt.load(EVERY_OP)
    path = tmp_path / "m.mfe"
    fmt.save(g, str(path))
    assert path.read_bytes() == open(EVERY_OP, "rb").read()
    assert [f for f in os.listdir(tmp_path)] == ["m.mfe"]  # no temp file left behind
    g2 = fmt.load(str(path))
    for a, b in zip(g.nodes, g2.nodes):
        assert a.op == b.op and a.attrs == b.attrs and a.name == b.name
        for k in a.blobs:
            np.testing.assert_array_equal(a.blobs[k], b.blobs[k])


def test_blobs_are_aligned():
    data = open(EVERY_OP, "rb").read()
    nn = struct.unpack_from("<I", data, 68)[0]
    nodes_at = struct.unpack_from("<Q", data, 64 + 32)[0]
    for i in range(nn):
        f = fmt.NODE.unpack_from(data, nodes_at + i * fmt.NODE.size)
        spans = f[-2 * 4:]
        assert all(spans[j] % 64 == 0 for j in range(0, 8, 2) if spans[j + 1])


def reseal(buf: bytearray) -> bytes:
    """Fix the checksum after a deliberate edit, so the deeper checks are reached."""
    buf[24:56] = hashlib.sha256(bytes(buf[64:])).digest()
    return bytes(buf)


def both_reject(data: bytes, words: str):
    with pytest.raises(ModelError, match=words):
        fmt.from_bytes(data)
    with pytest.raises(ModelError, match=words):
        engine.native.NativeModel(data)


def test_damaged_files_rejected_by_both_loaders():
    good = open(EVERY_OP, "rb").read()
    both_reject(good[:40], "too short")
    both_reject(b"NOTMODEL" + good[8:], "magic")
    both_reject(good[:-10], "size")
    flipped = bytearray(good)
    flipped[-1] ^= 0xFF
    both_reject(bytes(flipped), "checksum")
    bad_version = bytearray(good)
    bad_version[8] = 9
    both_reject(bytes(bad_version), "version")
    nodes_at = struct.unpack_from("<Q", good, 64 + 32)[0]
    bad_op = bytearray(good)
    struct.pack_into("<I", bad_op, nodes_at, 99)
    both_reject(reseal(bad_op), "op code")
    bad_attr = bytearray(good)  # stem conv: kh = 200, outside its range
    struct.pack_into("<i", bad_attr, nodes_at + 24 + 4, 200)
    both_reject(reseal(bad_attr), "attribute")
    bad_blob = bytearray(good)  # first blob offset beyond the end of the file
    struct.pack_into("<Q", bad_blob, nodes_at + fmt.NODE.size - 64, len(good) + 64)
    both_reject(reseal(bad_blob), "outside the file")


def test_wrap_proof_refuses_overflowing_accumulators():
    rng = np.random.default_rng(0)
    g = random_case("conv2d", rng)
    node = g.nodes[0]
    node.blobs["bias"] = np.full_like(node.blobs["bias"], 2**31 - 1)
    with pytest.raises(ModelError, match="wrap"):
        g.validate()
