"""Model file (.mfe) reader and writer; the layout is documented in docs/format.md.

Fixed little-endian records a small C loader can read with no library: a 64-byte preamble (magic,
version, size, SHA-256 of everything after it), a graph header, tensor and node records, a JSON block
for people (names, provenance), then 64-byte-aligned weight blobs.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile

import numpy as np

from . import ops
from .graph import MAX_NODES, MAX_TENSORS, Graph, ModelError, Node, Tensor, check_tensor

MAGIC = b"MFENGINE"
VERSION = 2  # 2: wht gained the attributes scaled, sshift and the blob cscale
ALIGN = 64
PREAMBLE = struct.Struct("<8sII Q 32s Q")  # magic, version, reserved, file_size, sha256, reserved
HEADER = struct.Struct("<6I 5Q")  # n_tensors, n_nodes, input, output, zero_point, reserved, 5 offsets/sizes
TENSOR = struct.Struct("<4If3I")  # dtype, h, w, c, scale, reserved x3
NODE = struct.Struct(f"<{2 + ops.MAX_INPUTS}I 2I {ops.MAX_ATTRS}i 2I {2 * ops.MAX_BLOBS}Q")
HEADER_AT = PREAMBLE.size
BODY_AT = HEADER_AT + HEADER.size  # tables, metadata and blobs start here
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


def _span_in(at: int, size: int, lo: int, hi: int) -> bool:
    return lo <= at <= hi and 0 <= size <= hi - at


def _check_disjoint_blobs(buf: bytes, n_at: int, nn: int) -> None:
    """Non-empty blob spans may not overlap: with aliasing, a small file could make every node check
    and copy the same large blob again (work and memory far beyond the file's size). Checked over all
    span slots of every node record before any blob is read, as the C loader does."""
    slots_at = NODE.size - 16 * ops.MAX_BLOBS
    spans = []
    for i in range(nn):
        at = n_at + i * NODE.size + slots_at
        f = struct.unpack_from(f"<{2 * ops.MAX_BLOBS}Q", buf, at)
        spans += [(f[2 * j], i, j, f[2 * j + 1]) for j in range(ops.MAX_BLOBS) if f[2 * j + 1]]
    spans.sort()
    for (a0, n0, _, s0), (a1, n1, j1, s1) in zip(spans, spans[1:]):
        if a1 - a0 < s0:
            raise ModelError(f"node {n1}: blob [{a1}, +{s1}) overlaps a blob of node {n0} "
                             f"at offset {n_at + n1 * NODE.size + slots_at + 16 * j1}")


def from_bytes(buf: bytes) -> Graph:
    """Parse and validate a model file; every problem raises ModelError naming it and its byte offset."""
    if len(buf) < BODY_AT:
        raise ModelError(f"file too short ({len(buf)} bytes) at offset 0")
    if len(buf) > MAX_FILE:
        raise ModelError(f"file of {len(buf)} bytes is over the {MAX_FILE}-byte limit")
    magic, version, res0, size, digest, res1 = PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise ModelError(f"bad magic {magic!r} at offset 0: not a model file")
    if version != VERSION:
        raise ModelError(f"unsupported version {version} at offset 8 (this engine reads {VERSION}; "
                         "convert the model again)")
    if res0:
        raise ModelError("reserved field at offset 12 is not 0")
    if size != len(buf):
        raise ModelError(f"file size field {size} at offset 16 != actual size {len(buf)} (truncated?)")
    if res1:
        raise ModelError("reserved field at offset 56 is not 0")
    if hashlib.sha256(memoryview(buf)[HEADER_AT:]).digest() != digest:
        raise ModelError("checksum mismatch at offset 24: the file is corrupted")
    nt, nn, inp, out, zp, res2, t_at, n_at, m_at, m_size, b_at = HEADER.unpack_from(buf, HEADER_AT)
    if not 1 <= nt <= MAX_TENSORS:
        raise ModelError(f"tensor count {nt} outside [1, {MAX_TENSORS}] at offset 64")
    if not 1 <= nn <= MAX_NODES:
        raise ModelError(f"node count {nn} outside [1, {MAX_NODES}] at offset 68")
    if inp >= nt:
        raise ModelError(f"input tensor index {inp} out of range at offset 72")
    if out >= nt:
        raise ModelError(f"output tensor index {out} out of range at offset 76")
    if out == inp:
        raise ModelError("output tensor is the input at offset 76: the graph computes nothing")
    if zp > 255:
        raise ModelError(f"input zero point {zp} outside [0, 255] at offset 80")
    if res2:
        raise ModelError("reserved field at offset 84 is not 0")
    if b_at % ALIGN or not _span_in(b_at, 0, BODY_AT, len(buf)):
        raise ModelError(f"blob section offset {b_at} at offset 120 misaligned or outside the file")
    for what, at, n, field_at in (("tensor table", t_at, nt * TENSOR.size, 88), ("node table", n_at, nn * NODE.size, 96),
                                  ("metadata", m_at, m_size, 104)):
        if not _span_in(at, n, BODY_AT, b_at):
            raise ModelError(f"{what} [{at}, +{n}) at offset {field_at} outside the file's table section")
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
        dt, h, w, c, scale, *reserved = TENSOR.unpack_from(buf, at)
        if dt not in DTYPE_NAMES:
            raise ModelError(f"tensor {i}: bad dtype code {dt} at offset {at}")
        if any(reserved):
            raise ModelError(f"tensor {i}: reserved fields are not 0 at offset {at}")
        t = Tensor(str(tnames[i]), (h, w, c), DTYPE_NAMES[dt], scale, at=at)
        check_tensor(t)  # before anything multiplies the dims
        tensors.append(t)
    _check_disjoint_blobs(buf, n_at, nn)
    nodes = []
    for i in range(nn):
        at = n_at + i * NODE.size
        f = NODE.unpack_from(buf, at)
        code, n_in, ins = f[0], f[1], list(f[2:2 + ops.MAX_INPUTS])
        output, n_attrs = f[2 + ops.MAX_INPUTS], f[3 + ops.MAX_INPUTS]
        attrs = f[4 + ops.MAX_INPUTS: 4 + ops.MAX_INPUTS + ops.MAX_ATTRS]
        n_blobs, reserved = f[4 + ops.MAX_INPUTS + ops.MAX_ATTRS], f[5 + ops.MAX_INPUTS + ops.MAX_ATTRS]
        spans = f[6 + ops.MAX_INPUTS + ops.MAX_ATTRS:]
        op = ops.BY_CODE.get(code)
        if op is None:
            raise ModelError(f"node {i}: unknown op code {code} at offset {at}")
        if n_in != op.n_inputs or n_attrs != len(op.attrs) or n_blobs != len(op.blobs):
            raise ModelError(f"node {i} ({op.name}): input/attribute/blob counts disagree with the op table at offset {at}")
        if any(ins[n_in:]) or any(attrs[n_attrs:]) or reserved or any(spans[2 * n_blobs:]):
            raise ModelError(f"node {i} ({op.name}): unused or reserved fields are not 0 at offset {at}")
        if any(j >= nt for j in ins[:n_in]) or output >= nt:
            raise ModelError(f"node {i} ({op.name}): tensor index out of range at offset {at}")
        blobs = {}
        for j, b in enumerate(op.blobs):
            s_at, s_size = spans[2 * j], spans[2 * j + 1]
            itemsize = np.dtype(ops.NP_DTYPES[b.dtype]).itemsize
            if not _span_in(s_at, s_size, b_at, len(buf)) or s_at % ALIGN or s_size % itemsize:
                raise ModelError(f"node {i} ({op.name}): blob {b.name} [{s_at}, +{s_size}) outside the file's blob "
                                 f"section or misaligned at offset {at + NODE.size - 16 * (ops.MAX_BLOBS - j)}")
            blobs[b.name] = np.frombuffer(buf, dtype=_le(b.dtype), count=s_size // itemsize,
                                          offset=s_at).astype(ops.NP_DTYPES[b.dtype])
        node = Node(str(nnames[i]), op.name, ins[:n_in], output, {a.name: attrs[k] for k, a in enumerate(op.attrs)},
                    blobs, at=at)
        nodes.append(node)
    g = Graph(tensors, nodes, inp, out, zp, {k: v for k, v in meta.items() if k not in ("tensors", "nodes")})
    # blobs arrive flat; give them the shapes the op table expects (validate checks the rest)
    for node in nodes:
        try:
            want = ops.OPS[node.op].blob_shapes(g.view(node))
        except (ArithmeticError, ValueError, IndexError, KeyError):
            continue
        for name, shape in want.items():
            if node.blobs[name].size == int(np.prod(shape, dtype=object)):
                node.blobs[name] = node.blobs[name].reshape(shape)
    return g.validate()


def read_file(path: str) -> bytes:
    """A model file's bytes: a regular file of at most MAX_FILE bytes (a FIFO or /dev/zero would block
    or make an unbounded read), else ModelError naming the path."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block the open
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ModelError(f"{path}: not a regular file")
            if st.st_size > MAX_FILE:
                raise ModelError(f"{path}: {st.st_size} bytes is over the {MAX_FILE}-byte limit")
            return f.read(MAX_FILE + 1)
    except OSError as e:
        raise ModelError(f"{path}: {e.strerror or e}") from None


def load(path: str) -> Graph:
    data = read_file(path)
    try:
        return from_bytes(data)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
