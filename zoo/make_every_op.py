"""Write zoo/fashion-mnist-sample.npz (test images with labels) and zoo/every-op.mfe: a small
random-weight integer graph that uses every op (the tests' and the fuzzer's model; the default model,
zoo/default.mfe, is the converted fmnist-mbv2-wht: `make default-model`).

    python zoo/make_every_op.py
"""
from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from engine import format as fmt  # noqa: E402
from engine.builder import GraphBuilder  # noqa: E402
from engine.ops.wht import smooth_table  # noqa: E402
from training.data import load_fashion_mnist  # noqa: E402

SAMPLE_N = 300


def write_sample(path: str) -> np.ndarray:
    images, labels = load_fashion_mnist("test")
    idx = np.sort(np.random.default_rng(0).choice(len(images), SAMPLE_N, replace=False))
    np.savez_compressed(path, images=images[idx], labels=labels[idx])
    return images[idx]


def calibrated(b: GraphBuilder, x: np.ndarray, op_name: str, inputs, per_channel: int = 0, **kw) -> int:
    """Add a node whose shift-only requantisation is the smallest shift with < 1% saturated outputs."""
    for shift in range(0, 40):
        rq = ({"mult": np.ones(per_channel), "shift": np.full(per_channel, shift)} if per_channel
              else {"mult": 1, "shift": shift})
        trial = GraphBuilder(b.shape(0))
        trial.tensors, trial.nodes = list(b.tensors), list(b.nodes)
        t = trial.add(op_name, inputs, **kw, **rq)
        y = trial.build(t).run_reference(x)
        if np.mean(np.abs(y.astype(np.int32)) >= 127) < 0.01:
            return b.add(op_name, inputs, **kw, **rq)
    raise RuntimeError(f"cannot calibrate {op_name}")


def build(calib: np.ndarray):
    rng = np.random.default_rng(1)
    w = lambda *shape: np.clip(np.rint(rng.normal(0, 40, shape)), -127, 127)
    b = GraphBuilder((28, 28, 1), scale=1 / 255, zero_point=128)
    x = np.clip(calib.astype(np.int16) - 128, -128, 127).astype(np.int8)
    same = dict(stride_h=1, stride_w=1, pad_t=1, pad_l=1, pad_b=1, pad_r=1)
    t = calibrated(b, x, "conv2d", 0, 16, cout=16, kh=3, kw=3, groups=1, **same, weight=w(16, 3, 3, 1),
                   bias=rng.integers(-500, 500, 16), act_lo=0, name="stem")
    t = calibrated(b, x, "hdw", t, 16, stride=2, op=0, xshift=0, weight=w(3, 3, 16), bias=np.zeros(16), act_lo=0, name="hdw_min")
    g, table = smooth_table(0.05 / np.sqrt(32))
    t = b.add("wht", t, cout=32, n=32, order=1, mode=1, residual=0, tshift=g, thresh=rng.integers(0, 400, 32),
              table=table.ravel(), scaled=1, sshift=8, cscale=rng.integers(-256, 257, 32), name="wht_smooth_scaled")
    t = b.add("clamp", t, act_lo=0, act_hi=127, name="relu")
    t = calibrated(b, x, "conv2d", t, 32, cout=32, kh=3, kw=3, groups=32, stride_h=2, stride_w=2, pad_t=1, pad_l=1,
                   pad_b=1, pad_r=1, weight=w(32, 3, 3, 1), bias=np.zeros(32), name="depthwise")
    p = calibrated(b, x, "conv2d", t, 32, cout=32, kh=1, kw=1, groups=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0,
                   pad_b=0, pad_r=0, weight=w(32, 1, 1, 32), bias=np.zeros(32), name="pointwise")
    q = b.add("wht", p, cout=32, n=32, order=0, mode=0, residual=1, tshift=0, thresh=rng.integers(0, 400, 32),
              name="wht_soft_residual")
    t = b.add("add", [p, q], mult_a=1, mult_b=1, shift=1, act_lo=0, name="residual_add")
    t = calibrated(b, x, "sumpool", t, cw=8, kh=2, kw=2, pad_t=0, pad_l=0, pad_b=1, pad_r=1, name="sumpool")
    t = calibrated(b, x, "conv2d", t, 24, cout=24, kh=2, kw=2, groups=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0,
                   pad_b=0, pad_r=0, weight=w(24, 2, 2, 25), bias=np.zeros(24), act_lo=0, name="structured_conv")
    t = calibrated(b, x, "hdw", t, 24, stride=1, op=1, xshift=1, weight=w(3, 3, 24), bias=np.zeros(24), name="hdw_ef")
    t = b.add("requantize", t, mult=1 << 30, shift=31, name="rescale")
    t = calibrated(b, x, "avgpool", t, name="pool")
    b.add("linear", t, out_dtype="int32", cout=10, weight=w(10, 24), bias=np.zeros(10), name="classifier")
    return b.build(meta={"producer": "zoo/make_every_op.py", "weights": "random (every op, not trained)",
                         "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                                     "Sneaker", "Bag", "Ankle boot"]})


def main() -> None:
    zoo = os.path.join(ROOT, "zoo")
    images = write_sample(os.path.join(zoo, "fashion-mnist-sample.npz"))
    fmt.save(build(images[:64]), os.path.join(zoo, "every-op.mfe"))
    print(f"wrote {zoo}/fashion-mnist-sample.npz ({SAMPLE_N} images) and {zoo}/every-op.mfe")


if __name__ == "__main__":
    main()
