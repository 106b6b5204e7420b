"""Datasets as numpy arrays (this module imports numpy only; no torch).

* ``load_fashion_mnist(split)``: read from the Debian package
  ``dataset-fashion-mnist`` (gzipped idx files in /usr/share/datasets/fashion-mnist,
  or $FASHION_MNIST_DIR).  Returns uint8 images (N, 28, 28, 1) and int64
  labels (N,).
* ``load_cifar10(folder, split)``: the standard python-pickle release
  (``cifar-10-batches-py``: data_batch_1..5, test_batch); ``folder`` may be
  that directory or its parent.  Returns uint8 (N, 32, 32, 3), int64 (N,).
* ``load(dataset, split, data_dir=None)``: either of the above by name.
* ``NORMALIZATION[dataset]``: per-channel mean/std on pixels scaled to [0, 1].
* ``augment(images, rng, pad, flip)``: random crop with zero padding and
  random horizontal flip on a uint8 NHWC batch.
"""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np

FASHION_MNIST_PACKAGE = "dataset-fashion-mnist"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATASETS = ("fashion-mnist", "cifar10")

NORMALIZATION = {
    "fashion-mnist": {"mean": [0.2860], "std": [0.3530]},
    "cifar10": {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
}
# augmentation used for training: crop padding (pixels) and horizontal flip
AUGMENT = {
    "fashion-mnist": {"pad": 2, "flip": True},
    "cifar10": {"pad": 4, "flip": True},
}
INPUT_SHAPE = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
NUM_CLASSES = {"fashion-mnist": 10, "cifar10": 10}


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")


def read_idx(path: str) -> np.ndarray:
    """Read a (gzipped) idx file of unsigned bytes."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    arr = np.frombuffer(data, dtype=np.uint8, offset=offset)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {dims}, file holds {arr.size} bytes")
    return arr.reshape(dims)


def load_fashion_mnist(split: str = "train", root: str | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    _check_split(split)
    root = root or os.environ.get("FASHION_MNIST_DIR") or FASHION_MNIST_DIR
    kind = "train" if split == "train" else "t10k"
    paths = [os.path.join(root, f"{kind}-{what}-idx{nd}-ubyte.gz")
             for what, nd in (("images", 3), ("labels", 1))]
    for p in paths:
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"Fashion-MNIST file {p} not found: install the Debian package "
                f"{FASHION_MNIST_PACKAGE} (apt-get install {FASHION_MNIST_PACKAGE})")
    images = read_idx(paths[0])
    labels = read_idx(paths[1]).astype(np.int64)
    if images.ndim != 3 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"{root}: inconsistent Fashion-MNIST files")
    return np.ascontiguousarray(images[..., None]), labels


def _cifar_dir(folder: str) -> str:
    sub = os.path.join(folder, "cifar-10-batches-py")
    return sub if os.path.isdir(sub) else folder


def load_cifar10(folder: str, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    _check_split(split)
    if not folder:
        raise FileNotFoundError("CIFAR-10 needs a folder holding cifar-10-batches-py")
    d = _cifar_dir(folder)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        p = os.path.join(d, name)
        if not os.path.exists(p):
            raise FileNotFoundError(
                f"CIFAR-10 file {p} not found (expected the standard cifar-10-batches-py files)")
        with open(p, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = batch.get(b"data", batch.get("data"))
        labels = batch.get(b"labels", batch.get("labels"))
        if data is None or labels is None:
            raise ValueError(f"{p}: not a CIFAR-10 batch (no data/labels)")
        data = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        xs.append(data.transpose(0, 2, 3, 1))
        ys.append(np.asarray(labels, dtype=np.int64))
    return np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys)


def load(dataset: str, split: str, data_dir: str | None = None
         ) -> tuple[np.ndarray, np.ndarray]:
    if dataset == "fashion-mnist":
        return load_fashion_mnist(split, data_dir)
    if dataset == "cifar10":
        return load_cifar10(data_dir or "", split)
    raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")


def augment(images: np.ndarray, rng: np.random.Generator, pad: int = 0,
            flip: bool = False) -> np.ndarray:
    """Random crop (after zero padding by ``pad``) + random horizontal flip.

    ``images``: uint8 (B, H, W, C).  Returns a new array of the same shape."""
    b, h, w, _ = images.shape
    out = images
    if pad:
        padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        oy = rng.integers(0, 2 * pad + 1, size=b)
        ox = rng.integers(0, 2 * pad + 1, size=b)
        rows = oy[:, None] + np.arange(h)[None, :]
        cols = ox[:, None] + np.arange(w)[None, :]
        out = padded[np.arange(b)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mask = rng.random(b) < 0.5
        out = out.copy() if out is images else out
        out[mask] = out[mask, :, ::-1]
    return out


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, (x/255 - mean) / std."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
