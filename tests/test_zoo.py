"""The shipped, converted models: real trained networks through the whole integer path."""
import os

import numpy as np
import pytest

import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("name,ops,full_test_accuracy", [
    ("fmnist-mbv2.mfe", {"conv2d", "add", "avgpool", "linear"}, 0.9483),
    ("default.mfe", {"conv2d", "add", "avgpool", "linear", "wht", "hdw", "affine"}, 0.9398),  # mbv2-wht
    ("fmnist-mbv2-wht-mulfree.mfe", {"conv2d", "add", "avgpool", "linear", "wht", "hdw", "affine"}, 0.9337),
])
def test_converted_model_classifies_the_sample(name, ops, full_test_accuracy):
    m = engine.load(os.path.join(ROOT, "zoo", name))
    sample = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))
    logits = m.run(sample["images"], "c", threads=2)
    assert (logits.argmax(1) == sample["labels"]).mean() > full_test_accuracy - 0.05
    np.testing.assert_array_equal(m.run(sample["images"][:2], "ref"), logits[:2])
    assert {n.op for n in m.graph.nodes} == ops


def test_mulfree_model_has_no_multiplies():
    from engine.inspect import report
    m = engine.load(os.path.join(ROOT, "zoo", "fmnist-mbv2-wht-mulfree.mfe"))
    assert report(m.graph)["totals"]["multiplies"] == 0
    assert report(engine.load(os.path.join(ROOT, "zoo", "default.mfe")).graph)["totals"]["multiplies"] > 0
