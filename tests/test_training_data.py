"""Data loaders: Fashion-MNIST from the Debian package, CIFAR-10 from tiny
files written here in the exact cifar-10-batches-py pickle format."""
import os
import pickle
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from training import data  # noqa: E402


def test_data_module_imports_without_torch():
    code = ("import sys; import training.data, training.command; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("split,n", [("train", 60000), ("test", 10000)])
def test_fashion_mnist_real_files(split, n):
    x, y = data.load_fashion_mnist(split)
    assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() == n // 10          # balanced classes
    assert 0.25 < x.mean() / 255 < 0.32             # matches NORMALIZATION mean 0.286


def test_fashion_mnist_missing_package(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        data.load_fashion_mnist("test", root=str(tmp_path))
    msg = str(e.value)
    assert "dataset-fashion-mnist" in msg and "apt-get install dataset-fashion-mnist" in msg
    assert "\n" not in msg
    with pytest.raises(ValueError):
        data.load_fashion_mnist("valid")


def write_cifar(folder, per_batch=7, seed=0):
    rng = np.random.default_rng(seed)
    d = folder / "cifar-10-batches-py"
    d.mkdir()
    truth = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        imgs = rng.integers(0, 256, size=(per_batch, 32, 32, 3), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        # the official layout: bytes keys, data (N, 3072) uint8 row-major
        # channel planes (R 1024, G 1024, B 1024), labels a list of ints
        batch = {b"batch_label": name.encode(), b"labels": labels,
                 b"data": imgs.transpose(0, 3, 1, 2).reshape(per_batch, 3072),
                 b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)]}
        with open(d / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        truth[name] = (imgs, np.array(labels))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                             b"frog", b"horse", b"ship", b"truck"],
            b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    with open(d / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return truth


def test_cifar10_tiny_files(tmp_path):
    truth = write_cifar(tmp_path)
    for folder in (str(tmp_path), str(tmp_path / "cifar-10-batches-py")):
        x, y = data.load_cifar10(folder, "train")
        assert x.shape == (35, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
        want = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
        np.testing.assert_array_equal(x, want)
        np.testing.assert_array_equal(
            y, np.concatenate([truth[f"data_batch_{i}"][1] for i in range(1, 6)]))
        xt, yt = data.load_cifar10(folder, "test")
        np.testing.assert_array_equal(xt, truth["test_batch"][0])
        np.testing.assert_array_equal(yt, truth["test_batch"][1])
    # pixel (0,0) red channel is the first byte of the row
    raw = pickle.load(open(tmp_path / "cifar-10-batches-py" / "test_batch", "rb"),
                      encoding="bytes")[b"data"]
    assert xt[0, 0, 0, 0] == raw[0, 0] and xt[0, 0, 0, 1] == raw[0, 1024]


def test_cifar10_missing(tmp_path):
    with pytest.raises(FileNotFoundError):
        data.load_cifar10(str(tmp_path), "train")


def test_augment_crop_and_flip():
    rng = np.random.default_rng(0)
    x = np.arange(2 * 6 * 6, dtype=np.uint8).reshape(2, 6, 6, 1)
    same = data.augment(x, rng, pad=0, flip=False)
    np.testing.assert_array_equal(same, x)
    outs = [data.augment(x, np.random.default_rng(s), pad=2, flip=True) for s in range(20)]
    for o in outs:
        assert o.shape == x.shape and o.dtype == np.uint8
        for i in range(2):
            # every output is a shifted window of the zero-padded image, maybe mirrored
            padded = np.pad(x[i, :, :, 0], 2)
            wins = [padded[a:a + 6, b:b + 6] for a in range(5) for b in range(5)]
            assert any(np.array_equal(o[i, :, :, 0], w) or np.array_equal(o[i, :, :, 0], w[:, ::-1])
                       for w in wins)
    assert any(not np.array_equal(o, x) for o in outs)


def test_normalize_layout():
    x = np.full((2, 4, 5, 3), 255, np.uint8)
    y = data.normalize(x, [0.5, 0.5, 0.5], [0.5, 0.25, 1.0])
    assert y.shape == (2, 3, 4, 5) and y.dtype == np.float32
    np.testing.assert_allclose(y[0, :, 0, 0], [1.0, 2.0, 0.5])
