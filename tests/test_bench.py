"""The bench command: its pieces compute what they claim, and a --quick run gives every key with real peers
(PyTorch, ONNX Runtime from requirements-bench.txt). No timing is asserted anywhere: only that figures exist."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench(*args, ok=True):
    p = subprocess.run([sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True, cwd=ROOT,
                       timeout=600)
    if ok:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_command_imports_nothing_heavy():
    code = ("import sys, benchmarks.command; "
            "print([m for m in ('torch', 'onnxruntime', 'onnx', 'matplotlib', 'engine', 'numpy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.strip() == "[]"
    from benchmarks.command import bench as cmd
    assert cmd.name == "bench"


def test_help_has_example_and_errors_are_one_line():
    out = bench("--help").stdout
    assert "Example" in out and "--quick" in out and "--json" in out
    p = bench("--only", "nonsense", ok=False)
    assert p.returncode != 0 and "nonsense" in p.stderr


def test_walsh_matrix_is_orthonormal_in_sequency_order():
    from benchmarks.seed import walsh_matrix
    w = walsh_matrix(32)
    assert np.allclose(w @ w.T, np.eye(32))
    sign_changes = [(np.diff(np.sign(row)) != 0).sum() for row in w]
    assert sign_changes == list(range(32))


def test_radix_wht_is_the_full_walsh_hadamard_transform():
    """Two radix-r tensordot stages = the r^2-point WHT (Kronecker structure); inverse gives x back."""
    import scipy.linalg
    import torch

    from benchmarks.seed import Radix32WHT
    r = 4
    layer = Radix32WHT(r * r, radix=r, threshold=False)
    layer.w = layer.wt = torch.from_numpy((scipy.linalg.hadamard(r) / np.sqrt(r)).astype(np.float32))
    x = torch.randn(2, 3, 5, r * r)
    z = layer.transform(x.reshape(2, 3, 5, r, r), layer.w)  # (.., k2, k1): the grid comes back transposed
    full = x @ torch.from_numpy((scipy.linalg.hadamard(r * r) / r).astype(np.float32))
    assert torch.allclose(z.transpose(-1, -2).reshape(2, 3, 5, r * r), full, atol=1e-5)
    layer = Radix32WHT(r * r, radix=r, threshold=False)  # Walsh-ordered: orthonormal, inverse is W^T
    assert torch.allclose(layer(x), x, atol=1e-5)
    y = Radix32WHT(1024)(torch.randn(1, 2, 2, 1024))
    assert y.shape == (1, 2, 2, 1024) and torch.isfinite(y).all()


def test_loglog_slope_and_interleaved_timing():
    from benchmarks.common import interleaved, loglog_slope
    xs = [64, 128, 256, 512]
    assert loglog_slope(xs, [x ** 2 * 3.0 for x in xs]) == pytest.approx(2.0)
    assert loglog_slope(xs, [x * 0.5 for x in xs]) == pytest.approx(1.0)
    assert loglog_slope([64], [1.0]) is None
    calls = {"a": 0, "b": 0}

    def f(k):
        return lambda: calls.__setitem__(k, calls[k] + 1)
    ms = interleaved({"a": f("a"), "b": f("b")}, repeats=5)
    assert set(ms) == {"a", "b"} and all(v >= 0 for v in ms.values())
    assert calls["a"] >= 7 and calls["b"] >= 7  # warm-up, calibration, 5 rounds


def test_onnx_export_forms_compute_the_layers():
    """The export-only forward passes (onnx_export.exportable) equal the project's layers."""
    import torch

    from benchmarks.onnx_export import exportable, fwht_matmul, hdw_forward
    from training.layers import WHT, HadamardDepthwise, fwht
    x = torch.randn(2, 2048, 3, 2)
    assert torch.allclose(fwht_matmul(x), fwht(x, 1), rtol=1e-4, atol=1e-2)
    for op in ("min", "ef"):
        for stride in (1, 2):
            m = HadamardDepthwise(6, stride, op)
            torch.nn.init.normal_(m.bias)
            xi = torch.randn(2, 6, 7, 6)
            with torch.no_grad():
                assert torch.allclose(hdw_forward(m, xi), m(xi), atol=1e-5)
    layer = WHT(24, 40, "smooth")
    with torch.no_grad():
        layer.T.uniform_(0, 0.3)
        xi = torch.randn(2, 24, 4, 4)
        want = layer(xi)
        with exportable():
            got = layer(xi)
    assert torch.allclose(got, want, atol=1e-5)


def test_profiled_run_times_every_node():
    """Hotspots time each node inside the whole run: the output is unchanged, every node gets a time, and
    the times add up to no more than the run."""
    import time

    import engine
    m = engine.load(os.path.join(ROOT, "zoo", "fmnist-mbv2.mfe"))
    nm = m.native()
    x = np.random.default_rng(0).integers(0, 256, (3, *nm.in_shape), dtype=np.uint8)
    want = nm.run(x)
    t = np.zeros(len(m.graph.nodes))
    t0 = time.perf_counter()
    got = nm.run(x, node_seconds=t)
    took = time.perf_counter() - t0
    np.testing.assert_array_equal(got, want)
    assert (t > 0).all() and t.sum() <= took
    with pytest.raises(ValueError, match="node_seconds"):
        nm.run(x, node_seconds=np.zeros(len(m.graph.nodes) + 1))


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    plots = tmp_path_factory.mktemp("plots")
    p = bench("--quick", "--json", "--threads", "1", "--plot", str(plots))
    return json.loads(p.stdout), p.stderr, plots


def test_quick_json_has_every_part(quick):
    r, err, plots = quick
    assert "[bench]" in err  # progress on stderr
    for key in ("machine", "settings", "seed", "growth", "models", "hotspots", "targets", "plots"):
        assert key in r, key
    m = r["machine"]
    assert m["engine_isa"] and m["cores"] >= 1 and m["torch"] and m["onnxruntime"]
    assert [e["threads"] for e in r["seed"]] == [1]
    for e in r["seed"]:
        for k in ("torch_conv1x1_ms", "torch_radix32_ms", "int8_conv1x1_ms", "wht_ms", "wht_soft_ms"):
            assert e[k] > 0
    g = r["growth"]
    assert [p["channels"] for p in g["points"]] == r["settings"]["growth"]
    assert set(g["slope"]) == {"wht", "int8_conv1x1", "torch_conv1x1"}


def test_quick_models_rows_and_hotspots(quick):
    r, _, plots = quick
    md = r["models"]
    peers = {(row["model"], row["peer"]) for row in md["rows"]}
    for arch in ("mbv2", "mbv2-wht"):
        for peer in ("engine-int8", "engine-int8-rr", "engine-mulfree", "torch-fp32", "ort-fp32", "ort-int8"):
            assert (arch, peer) in peers
    cols = {f"b{b}_t{t}" for b in md["batches"] for t in md["threads"]}
    assert md["batches"][0] == 1 and md["threads"] == [1]
    for row in md["rows"]:
        assert set(row["ms"]) == cols and all(v > 0 for v in row["ms"].values())
        assert row["file_bytes"] > 0 and row["peak_rss_mb"] > 0
    assert all(v < 1e-3 for v in md["onnx_fp32_max_rel_diff"].values())
    h = r["hotspots"]
    assert h["model"] == "mbv2" and h["top"] and h["by_kind"][0]["ms"] >= h["by_kind"][-1]["ms"] > 0
    assert sum(k["count"] for k in h["by_kind"]) == 64 and 0 < h["sum_of_nodes_ms"] <= 1.2 * h["model_ms"]  # the nodes lie inside the run
    assert {"int8_mbv2_vs_ort_int8_mbv2", "int8_rr_mbv2_vs_ort_int8_mbv2", "wht_vs_torch_conv1x1"} <= set(r["targets"])
    assert sorted(os.path.basename(p) for p in r["plots"]) == ["growth.png", "hotspots.png", "models.png", "seed.png"]
    for p in r["plots"]:
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_seed_at_one_and_all_threads():
    r = json.loads(bench("--quick", "--json", "--only", "seed", "--threads", "2").stdout)
    assert [e["threads"] for e in r["seed"]] == [1, 2] and "models" not in r
    for e in r["seed"]:
        assert set(e) >= {"threads", "torch_conv1x1_ms", "torch_radix32_ms", "int8_conv1x1_ms", "wht_ms"}
        assert e["tensor"][1:] == [32, 32, 1024]


def test_text_output_renders(quick):
    from benchmarks.command import render
    r, _, _ = quick
    text = render(r)
    for what in ("seed 000's experiment", "growth", "full models", "hotspots", "targets", "load average"):
        assert what in text
