"""Model file (.mfe) reader and writer; the layout is documented in docs/format.md.

Fixed little-endian records a small C loader can read with no library: a 64-byte preamble (magic,
version, size, SHA-256 of everything after it), a graph header, tensor and node records, a JSON block
for people (names, provenance), then 64-byte-aligned weight blobs.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

from . import ops
from .graph import Graph, ModelError, Node, Tensor

MAGIC = b"MFENGINE"
VERSION = 1
ALIGN = 64
PREAMBLE = struct.Struct("<8sII Q 32s Q")  # magic, version, reserved, file_size, sha256, reserved
HEADER = struct.Struct("<6I 5Q")  # n_tensors, n_nodes, input, output, zero_point, reserved, 5 offsets/sizes
TENSOR = struct.Struct("<4If3I")  # dtype, h, w, c, scale, reserved x3
NODE = struct.Struct(f"<{2 + ops.MAX_INPUTS}I 2I {ops.MAX_ATTRS}i 2I {2 * ops.MAX_BLOBS}Q")
HEADER_AT = PREAMBLE.size
MAX_FILE = 1 << 31  # 2 GiB: a bound on what the loaders will allocate
DTYPE_NAMES = {v: k for k, v in ops.DTYPES.items()}
assert PREAMBLE.size == 64 and HEADER.size == 64 and TENSOR.size == 32 and NODE.size == 160


def _le(dtype: str) -> np.dtype:
    return np.dtype(ops.NP_DTYPES[dtype]).newbyteorder("<")


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def to_bytes(g: Graph) -> bytes:
    g.validate()
    nt, nn = len(g.tensors), len(g.nodes)
    tensors_at = HEADER_AT + HEADER.size
    nodes_at = tensors_at + nt * TENSOR.size
    meta = json.dumps({"tensors": [t.name for t in g.tensors], "nodes": [n.name for n in g.nodes], **g.meta},
                      separators=(",", ":")).encode()
    meta_at = nodes_at + nn * NODE.size
    blobs_at = _align(meta_at + len(meta))
    blob_bytes, records, at = [], [], blobs_at
    for node in g.nodes:
        op = ops.OPS[node.op]
        spans = []
        for b in op.blobs:
            data = np.ascontiguousarray(node.blobs[b.name], dtype=_le(b.dtype)).tobytes()
            spans += [at, len(data)]
            blob_bytes.append(data + b"\0" * (_align(len(data)) - len(data)))
            at += _align(len(data))
        spans += [0, 0] * (ops.MAX_BLOBS - len(op.blobs))
        ins = node.inputs + [0] * (ops.MAX_INPUTS - len(node.inputs))
        attrs = [node.attrs[a.name] for a in op.attrs] + [0] * (ops.MAX_ATTRS - len(op.attrs))
        records.append(NODE.pack(op.code, len(node.inputs), *ins, node.output, len(op.attrs), *attrs,
                                 len(op.blobs), 0, *spans))
    body = b"".join([
        HEADER.pack(nt, nn, g.input, g.output % nt, g.input_zero_point, 0,
                    tensors_at, nodes_at, meta_at, len(meta), blobs_at),
        *(TENSOR.pack(ops.DTYPES[t.dtype], *t.shape, t.scale, 0, 0, 0) for t in g.tensors),
        *records, meta, b"\0" * (blobs_at - meta_at - len(meta)), *blob_bytes,
    ])
    size = HEADER_AT + len(body)
    return PREAMBLE.pack(MAGIC, VERSION, 0, size, hashlib.sha256(body).digest(), 0) + body


def save(g: Graph, path: str) -> None:
    """Write atomically: a temp file in the same folder, fsync, then rename over `path`."""
    data = to_bytes(g)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".mfe", dir=folder)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _span(buf: bytes, at: int, size: int, what: str) -> None:
    if at < HEADER_AT or size < 0 or at + size > len(buf):
        raise ModelError(f"{what} [{at}, {at + size}) lies outside the file (size {len(buf)})")


def from_bytes(buf: bytes) -> Graph:
    if len(buf) < HEADER_AT + HEADER.size:
        raise ModelError(f"file too short ({len(buf)} bytes) at offset 0")
    magic, version, _, size, digest, _ = PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ModelError(f"bad magic {magic!r} at offset 0: not a model file")
    if version != VERSION:
        raise ModelError(f"unsupported version {version} at offset 8 (this engine reads {VERSION})")
    if size != len(buf):
        raise ModelError(f"file size field {size} at offset 16 != actual size {len(buf)} (truncated?)")
    if hashlib.sha256(memoryview(buf)[HEADER_AT:]).digest() != digest:
        raise ModelError("checksum mismatch at offset 24: the file is corrupted")
    nt, nn, inp, out, zp, _, t_at, n_at, m_at, m_size, _ = HEADER.unpack_from(buf, HEADER_AT)
    _span(buf, t_at, nt * TENSOR.size, "tensor table")
    _span(buf, n_at, nn * NODE.size, "node table")
    _span(buf, m_at, m_size, "metadata")
    try:
        meta = json.loads(buf[m_at:m_at + m_size])
        assert isinstance(meta, dict)
    except Exception:
        raise ModelError(f"metadata at offset {m_at} is not a JSON object") from None
    names = lambda key, n, prefix: (meta.get(key) if isinstance(meta.get(key), list) and len(meta[key]) == n
                                    else [f"{prefix}{i}" for i in range(n)])
    tnames, nnames = names("tensors", nt, "t"), names("nodes", nn, "n")
    tensors = []
    for i in range(nt):
        at = t_at + i * TENSOR.size
        dt, h, w, c, scale, *_ = TENSOR.unpack_from(buf, at)
        if dt not in DTYPE_NAMES:
            raise ModelError(f"tensor {i}: bad dtype code {dt} at offset {at}")
        tensors.append(Tensor(str(tnames[i]), (h, w, c), DTYPE_NAMES[dt], scale))
    nodes = []
    for i in range(nn):
        at = n_at + i * NODE.size
        f = NODE.unpack_from(buf, at)
        code, n_in, ins = f[0], f[1], list(f[2:2 + ops.MAX_INPUTS])
        output, n_attrs = f[2 + ops.MAX_INPUTS], f[3 + ops.MAX_INPUTS]
        attrs = f[4 + ops.MAX_INPUTS: 4 + ops.MAX_INPUTS + ops.MAX_ATTRS]
        n_blobs, spans = f[4 + ops.MAX_INPUTS + ops.MAX_ATTRS], f[6 + ops.MAX_INPUTS + ops.MAX_ATTRS:]
        op = ops.BY_CODE.get(code)
        if op is None:
            raise ModelError(f"node {i}: unknown op code {code} at offset {at}")
        if n_in != op.n_inputs or n_attrs != len(op.attrs) or n_blobs != len(op.blobs):
            raise ModelError(f"node {i} ({op.name}): input/attribute/blob counts disagree with the op table at offset {at}")
        if any(j >= nt for j in ins[:n_in]) or output >= nt:
            raise ModelError(f"node {i} ({op.name}): tensor index out of range at offset {at}")
        blobs = {}
        for j, b in enumerate(op.blobs):
            b_at, b_size = spans[2 * j], spans[2 * j + 1]
            _span(buf, b_at, b_size, f"node {i} blob {b.name}")
            itemsize = np.dtype(ops.NP_DTYPES[b.dtype]).itemsize
            if b_at % ALIGN or b_size % itemsize:
                raise ModelError(f"node {i} blob {b.name}: misaligned or ragged at offset {b_at}")
            blobs[b.name] = np.frombuffer(buf, dtype=_le(b.dtype), count=b_size // itemsize,
                                          offset=b_at).astype(ops.NP_DTYPES[b.dtype])
        node = Node(str(nnames[i]), op.name, ins[:n_in], output, {a.name: attrs[k] for k, a in enumerate(op.attrs)}, blobs)
        nodes.append(node)
    g = Graph(tensors, nodes, inp, out, zp, {k: v for k, v in meta.items() if k not in ("tensors", "nodes")})
    if not 0 <= inp < nt:
        raise ModelError(f"input tensor index {inp} out of range at offset {HEADER_AT + 8}")
    # blobs arrive flat; give them the shapes the op table expects (validate checks the rest)
    for node in nodes:
        try:
            want = ops.OPS[node.op].blob_shapes(g.view(node))
        except (ArithmeticError, ValueError):
            continue
        for name, shape in want.items():
            if node.blobs[name].size == int(np.prod(shape)):
                node.blobs[name] = node.blobs[name].reshape(shape)
    return g.validate()


def load(path: str) -> Graph:
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE:
            raise ModelError(f"{path}: {size} bytes is over the {MAX_FILE}-byte limit")
        with open(path, "rb") as f:
            return from_bytes(f.read())
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
