"""Bad inputs (issue 7): the API raises engine.InputError / ModelError / BackendError saying what is wrong,
and `python cli.py run ...` prints one line `error: ...` and exits 1, for every kind of bad input."""
from __future__ import annotations

import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

import cli
import engine
from engine import native
from engine.builder import GraphBuilder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY_OP = os.path.join(ROOT, "zoo", "every-op.mfe")


@pytest.fixture(scope="module")
def model():
    return engine.load(EVERY_OP)


@pytest.fixture(scope="module")
def rgb():
    b = GraphBuilder((4, 5, 3))
    b.add("clamp", 0)
    return engine.from_graph(b.build())


def test_exception_types_are_exported():
    assert engine.InputError is engine.runtime.InputError is engine.graph.InputError
    assert issubclass(engine.InputError, ValueError) and issubclass(engine.ModelError, ValueError)
    assert issubclass(engine.BackendError, RuntimeError)


# ---- the API ----

@pytest.mark.parametrize("shape", [(28, 28), (1, 28, 28, 3), (2, 28, 27, 1), (28, 28, 1, 1, 1), (), (784,), (2, 1, 28, 28)])
def test_wrong_shape(model, shape):
    with pytest.raises(engine.InputError, match="shape"):
        model.run(np.zeros(shape, np.uint8))


def test_accepted_shapes(model):
    x = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    want = model.run(x, "ref")
    np.testing.assert_array_equal(model.run(x[:, :, :, 0]), want)  # (N, H, W) for one channel
    np.testing.assert_array_equal(model.run(x[0]), want[:1])  # one (H, W, C) image
    np.testing.assert_array_equal(model.run(list(x)), want)  # nested sequences


@pytest.mark.parametrize("dtype", [np.int64, np.int8, np.uint16, np.bool_, np.complex64, np.str_, object])
def test_wrong_dtype(model, dtype):
    with pytest.raises(engine.InputError, match="dtype"):
        model.run(np.zeros((2, 28, 28, 1), dtype=dtype))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf(model, bad):
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    x[1, 3, 4, 0] = bad
    for backend in ("ref", "c"):
        with pytest.raises(engine.InputError, match="NaN or infinite"):
            model.run(x, backend)


def test_floats_outside_unit_range(model):
    x = np.random.default_rng(1).uniform(0, 255, (2, 28, 28, 1))  # 0..255 floats: a common mistake
    with pytest.raises(engine.InputError, match=r"\[0, 1\]"):
        model.run(x)
    with pytest.raises(engine.InputError, match=r"\[0, 1\]"):
        model.run(np.full((1, 28, 28, 1), -0.01))


def test_floats_in_unit_range_match_uint8(model):
    u = np.random.default_rng(2).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    for dt in (np.float16, np.float32, np.float64):
        np.testing.assert_array_equal(model.run(u.astype(dt) / dt(255)), model.run(u))


def test_empty_batch(model):
    for x in (np.zeros((0, 28, 28, 1), np.uint8), np.zeros((0, 28, 28), np.float32), []):
        with pytest.raises(engine.InputError, match="empty batch|shape"):
            model.run(x)


def test_ragged_and_non_numeric(model):
    with pytest.raises(engine.InputError):
        model.run([np.zeros((28, 28, 1)), np.zeros((27, 28, 1))])
    with pytest.raises(engine.InputError):
        model.run("not images")
    with pytest.raises(engine.InputError):
        model.run(None)


def test_bad_threads_and_backends(model):
    x = np.zeros((1, 28, 28, 1), np.uint8)
    for threads in (0, -1, 257, 1.5, True, "2"):
        with pytest.raises(engine.BackendError, match="threads"):
            model.run(x, "c", threads=threads)
    np.testing.assert_array_equal(model.run(x, "c", threads=np.int64(2)), model.run(x, "ref"))
    with pytest.raises(engine.BackendError, match="unknown backend"):
        model.run(x, "gpu")
    from engine import cuda
    if cuda.unavailable_reason():  # no GPU or no build here: one line saying so (tests/test_cuda.py: the GPU side)
        with pytest.raises(engine.BackendError, match="CUDA"):
            model.run(x, "cuda")


def test_backend_not_built(monkeypatch):
    def missing(name):
        raise ImportError(name)
    monkeypatch.setattr(native.importlib, "import_module", missing)
    m = engine.load(EVERY_OP)
    with pytest.raises(engine.BackendError, match="not built"):
        m.run(np.zeros((1, 28, 28, 1), np.uint8), "c")
    assert m.run(np.zeros((1, 28, 28, 1), np.uint8), "ref").shape == (1, 10)


def test_native_model_checks_its_input(model):
    """NativeModel is internal, but a wrong shape there would make C read past the buffer: refused."""
    nm = model.native("c")
    for shape in ((1, 28, 28, 2), (28, 28, 1), (1, 27, 28, 1)):
        with pytest.raises(engine.InputError):
            nm.run(np.zeros(shape, np.uint8))
    assert nm.run(np.zeros((0, 28, 28, 1), np.uint8)).shape == (0, 1, 1, 10)


def test_model_files(tmp_path):
    with pytest.raises(engine.ModelError, match="No such file"):
        engine.load(str(tmp_path / "missing.mfe"))
    with pytest.raises(engine.ModelError, match="directory"):
        engine.load(str(tmp_path))
    (tmp_path / "junk.mfe").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(300))
    with pytest.raises(engine.ModelError, match="magic"):
        engine.load(str(tmp_path / "junk.mfe"))
    data = bytearray(open(EVERY_OP, "rb").read())
    data[5000] ^= 0x10
    (tmp_path / "flipped.mfe").write_bytes(bytes(data))
    with pytest.raises(engine.ModelError, match="checksum.*offset 24"):
        engine.load(str(tmp_path / "flipped.mfe"))


# ---- the CLI: one line `error: ...`, exit status 1 ----

def run_cli(capsys, *args):
    code = cli.main(list(args))
    err = capsys.readouterr().err
    return code, err


def one_line_error(capsys, words, *args):
    code, err = run_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert any(w in lines[0] for w in words.split("|")), err
    return lines[0]


@pytest.mark.parametrize("name,array,words", [
    ("shape", np.zeros((2, 32, 32, 3), np.uint8), "does not match"),
    ("dtype", np.zeros((2, 28, 28, 1), np.int64), "dtype int64"),
    ("nan", np.full((2, 28, 28, 1), np.nan, np.float32), "NaN"),
    ("inf", np.full((2, 28, 28, 1), np.inf), "infinite"),
    ("range", np.full((2, 28, 28, 1), 200.0), "[0, 1]"),
    ("empty", np.zeros((0, 28, 28, 1), np.uint8), "empty batch"),
    ("scalar", np.array(3), "shape"),
])
def test_cli_bad_arrays(capsys, tmp_path, name, array, words):
    path = tmp_path / f"{name}.npy"
    np.save(path, array)
    one_line_error(capsys, words, "run", "--input", str(path))


def test_cli_unreadable_files(capsys, tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((3, 28, 28, 1), np.uint8))
    data = good.read_bytes()
    cases = {
        "missing.npy": None, "empty.npy": b"", "junk.npy": b"hello world" * 10, "image.png": b"\x89PNG\r\n\x1a\n" * 9,
        "pickle.npy": b"\x80\x04\x95" + bytes(40), "truncated.npy": data[: len(data) // 2],
        "header.npy": data[:20],
    }
    for name, content in cases.items():
        if content is not None:
            (tmp_path / name).write_bytes(content)
        one_line_error(capsys, "cannot read", "run", "--input", str(tmp_path / name))
    one_line_error(capsys, "directory|Invalid value", "run", "--input", str(tmp_path))
    os.mkfifo(tmp_path / "fifo.npy")  # no writer: must not block
    one_line_error(capsys, "not a regular file", "run", "--input", str(tmp_path / "fifo.npy"))
    one_line_error(capsys, "not a regular file", "run", "--input", "/dev/zero")


def test_cli_npz_files(capsys, tmp_path):
    np.savez(tmp_path / "noimages.npz", x=np.zeros((2, 28, 28, 1), np.uint8))
    one_line_error(capsys, "'images'", "run", "--input", str(tmp_path / "noimages.npz"))
    np.savez(tmp_path / "labels.npz", images=np.zeros((3, 28, 28, 1), np.uint8), labels=np.zeros(2, np.int64))
    one_line_error(capsys, "labels", "run", "--input", str(tmp_path / "labels.npz"))
    np.savez_compressed(tmp_path / "ok.npz", images=np.zeros((3, 28, 28, 1), np.uint8))
    data = (tmp_path / "ok.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[:-60])
    one_line_error(capsys, "cannot read", "run", "--input", str(tmp_path / "truncated.npz"))
    broken = bytearray(data)
    at = data.index(b"images.npy") + 60  # inside the compressed member
    broken[at: at + 8] = b"\xff" * 8
    (tmp_path / "corrupt.npz").write_bytes(bytes(broken))
    one_line_error(capsys, "cannot read|error", "run", "--input", str(tmp_path / "corrupt.npz"))


def test_cli_missing_fashion_mnist(capsys, tmp_path, monkeypatch):
    """The Debian package missing: FASHION_MNIST_DIR points at an empty folder."""
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    line = one_line_error(capsys, "not found", "run", "--dataset", "fashion-mnist:test:10")
    assert "dataset-fashion-mnist" in line


def test_cli_damaged_fashion_mnist(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("FASHION_MNIST_DIR", str(tmp_path))
    for kind in ("images-idx3", "labels-idx1"):
        (tmp_path / f"t10k-{kind}-ubyte.gz").write_bytes(b"not gzip at all")
    one_line_error(capsys, "gzip|Not a gzipped|cannot read", "run", "--dataset", "fashion-mnist:test:10")
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(100))
    one_line_error(capsys, "expected|holds|gzip|error", "run", "--dataset", "fashion-mnist:test:10")
    good = gzip.compress(b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + bytes(5))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(good[:-12])  # truncated gzip stream
    one_line_error(capsys, "error", "run", "--dataset", "fashion-mnist:test:10")


@pytest.mark.parametrize("args,words", [
    (("run", "--dataset", "fashion-mnist:test:abc"), "count|bad"),
    (("run", "--dataset", "fashion-mnist:valid"), "split|bad"),
    (("run", "--dataset", "mnist"), "unknown dataset"),
    (("run", "--threads", "0"), "threads|Invalid value"),
    (("run", "--batch", "0"), "batch|Invalid value"),
    (("run", "--backend", "gpu"), "backend|Invalid value"),
])
def test_cli_bad_options(capsys, args, words):
    one_line_error(capsys, words, *args)


def test_cli_bad_model_files(capsys, tmp_path):
    one_line_error(capsys, "No such file", "run", str(tmp_path / "missing.mfe"))
    data = bytearray(open(EVERY_OP, "rb").read())
    (tmp_path / "cut.mfe").write_bytes(bytes(data[:3000]))
    one_line_error(capsys, "truncated", "run", str(tmp_path / "cut.mfe"))
    data[4000] ^= 1
    (tmp_path / "flip.mfe").write_bytes(bytes(data))
    one_line_error(capsys, "checksum", "run", str(tmp_path / "flip.mfe"))
    one_line_error(capsys, "checksum", "inspect", str(tmp_path / "flip.mfe"))


def test_cli_subprocess_error_contract(tmp_path):
    """The same contract seen from outside: stderr is one line, stdout empty, exit status 1."""
    np.save(tmp_path / "nan.npy", np.full((1, 28, 28, 1), np.nan))
    p = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "run", "--input", str(tmp_path / "nan.npy")],
                       capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.strip().splitlines() == ["error: input holds NaN or infinite values"]
