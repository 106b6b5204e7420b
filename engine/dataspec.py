"""Dataset specs used on the command line: `fashion-mnist[:train|test][:N]` or `cifar10:DIR[:train|test][:N]`."""
from __future__ import annotations

import numpy as np


def load_spec(spec: str, default_split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """uint8 NHWC images and int64 labels; ValueError / FileNotFoundError with a one-line reason."""
    from training.data import load_cifar10, load_fashion_mnist
    parts = spec.split(":")
    name, rest = parts[0], parts[1:]
    folder = None
    if name == "cifar10":
        if not rest or not rest[0]:
            raise ValueError("cifar10 needs a folder: cifar10:DIR[:train|test][:N]")
        folder, rest = rest[0], rest[1:]
    elif name != "fashion-mnist":
        raise ValueError(f"unknown dataset {spec!r}: use fashion-mnist[:train|test][:N] or cifar10:DIR[:train|test][:N]")
    if rest and rest[0].isdigit():  # fashion-mnist:N: the split left out, as [:train|test][:N] allows
        rest = ["", *rest]
    split = rest[0] if rest and rest[0] else default_split
    if split not in ("train", "test") or len(rest) > 2:
        raise ValueError(f"bad dataset spec {spec!r}: split must be train or test, then an optional count")
    try:
        n = int(rest[1]) if len(rest) > 1 else None
    except ValueError:
        n = -1
    if n is not None and n < 1:
        raise ValueError(f"bad image count in {spec!r}: give a positive number")
    images, labels = load_cifar10(folder, split) if folder else load_fashion_mnist(split)
    return images[:n], labels[:n]
