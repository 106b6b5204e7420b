"""The shipped, converted MobileNet-V2: a real trained model through the whole integer path."""
import os

import numpy as np

import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_converted_mbv2_classifies_the_sample():
    m = engine.load(os.path.join(ROOT, "zoo", "fmnist-mbv2.mfe"))
    sample = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))
    logits = m.run(sample["images"], "c", threads=2)
    assert (logits.argmax(1) == sample["labels"]).mean() > 0.85  # 94.8% on the full test set
    np.testing.assert_array_equal(m.run(sample["images"][:4], "ref"), logits[:4])
    assert {n.op for n in m.graph.nodes} == {"conv2d", "add", "avgpool", "linear"}


def test_default_model_is_the_converted_mbv2_wht():
    m = engine.load(os.path.join(ROOT, "zoo", "default.mfe"))
    sample = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))
    logits = m.run(sample["images"], "c", threads=2)
    assert (logits.argmax(1) == sample["labels"]).mean() > 0.85  # 90.2% on the full test set
    np.testing.assert_array_equal(m.run(sample["images"][:2], "ref"), logits[:2])
    assert {"wht", "hdw", "affine", "conv2d"} <= {n.op for n in m.graph.nodes}
