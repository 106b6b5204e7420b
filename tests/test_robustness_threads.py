"""Concurrency (issue 7): one loaded model used from several Python threads at once gives the same results
as serial use (engine/native.py holds a lock per C model; the GIL is released while C runs), C threads
(OpenMP, threads > 1) give the same bytes as one thread, and batches split into passes the same way
whatever their size."""
from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import engine
from engine.builder import GraphBuilder
from randgraph import images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY_OP = os.path.join(ROOT, "zoo", "every-op.mfe")


def run_threads(n: int, target) -> list:
    errors: list = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not any(t.is_alive() for t in ts), "a thread hung"
    return errors


def test_one_model_many_python_threads():
    m = engine.load(EVERY_OP)
    rng = np.random.default_rng(0)
    batches = [images(rng, int(rng.integers(1, 40)), (28, 28, 1), "random") for _ in range(8)]
    want = [m.run(x, "ref") for x in batches]
    start = threading.Barrier(8)

    def work(i):
        start.wait()
        for rep in range(6):
            j = (i + rep) % len(batches)
            backend = ("c", "c-scalar")[(i + rep) % 2]
            got = m.run(batches[j], backend, threads=1 + (i + rep) % 3)
            np.testing.assert_array_equal(got, want[j], err_msg=f"thread {i}, repeat {rep}, {backend}")

    errors = run_threads(8, work)
    assert not errors, errors[0]


def test_first_use_from_many_threads_builds_one_c_model():
    m = engine.load(EVERY_OP)
    x = images(np.random.default_rng(1), 5, (28, 28, 1), "random")
    want = m.run(x, "ref")
    start = threading.Barrier(6)
    seen = []

    def work(i):
        start.wait()
        seen.append(m.native("c"))
        np.testing.assert_array_equal(m.run(x, "c", threads=2), want)

    errors = run_threads(6, work)
    assert not errors, errors[0]
    assert len({id(s) for s in seen}) == 1


@pytest.mark.parametrize("backend", ["c", "c-scalar"])
def test_c_threads_match_one_thread(backend):
    m = engine.load(EVERY_OP)
    x = images(np.random.default_rng(2), 37, (28, 28, 1), "random")
    want = m.run(x, backend, threads=1)
    np.testing.assert_array_equal(want, m.run(x, "ref"))
    for threads in (2, 3, 4, 8, 256):
        np.testing.assert_array_equal(m.run(x, backend, threads=threads), want, err_msg=f"{threads} threads")
    for n in (1, 15, 16, 17, 33):  # around the 16-image pass
        np.testing.assert_array_equal(m.run(x[:n], backend, threads=3), want[:n])


def test_large_plan_runs_fewer_images_per_pass():
    """2 MiB tensors, three live at once: the C runtime runs 10 images per pass, not 16 (the arena stays
    under 64 MiB); any
    batch size gives the reference's bytes, with any thread count, from several Python threads."""
    b = GraphBuilder((64, 128, 256))
    t = b.add("requantize", 0, mult=3, shift=1)
    t = b.add("clamp", t, act_lo=-100, act_hi=90)
    b.add("add", [0, t], mult_a=1, mult_b=1, shift=1)
    m = engine.from_graph(b.build())
    x = images(np.random.default_rng(3), 13, (64, 128, 256), "random")
    want = m.run(x, "ref")
    np.testing.assert_array_equal(m.run(x, "c", threads=2), want)

    def work(i):
        lo = i * 3
        got = m.run(x[lo:lo + 11], ("c", "c-scalar")[i % 2], threads=1 + i % 2)
        np.testing.assert_array_equal(got, want[lo:lo + 11])

    errors = run_threads(3, work)
    assert not errors, errors[0]
