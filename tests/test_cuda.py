"""CUDA backend (issue 6).

Without a GPU (CI): `make cuda` builds warning-free for sm_75 and for the plain (no-dp4a, sm_53) path, the
sources keep to what CUDA 10.2 / C++14 / sm_53 have, and the missing GPU or library is a one-line error.
These tests fail, not skip, where nvcc is missing. The GPU tests below also run there, in a child pytest,
against the kernels' own source built for the CPU emulator (cbackend/cuda/emu: both the plain and the
__dp4a paths): that checks their arithmetic, indexing and synchronisation, not the GPU's compiler.
With a GPU: every op bit-exact with the numpy reference on random and adversarial cases, both WHT kernels,
conv/linear shapes around the GEMM tiles, batch sizes 1/3/256, passes split by a small arena, the zoo
models' logits hash equal to the C backend's, repeatability (same bytes twice, from threads), error paths.
GPU tests skip only where no GPU can be used, with the runtime's reason."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

import engine
from engine import cuda, ops
from engine.builder import GraphBuilder
from engine.ops.wht import max_sshift, smooth_table
from randgraph import EDGES, images, random_case, requant, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUDA_DIR = os.path.join(ROOT, "cbackend", "cuda")
ZOO = sorted(os.path.join(ROOT, "zoo", f) for f in os.listdir(os.path.join(ROOT, "zoo")) if f.endswith(".mfe"))
SAMPLE = os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz")
EMULATED = os.environ.get("MFE_CUDA_EMU") == "1"  # this run is the CPU emulator's (slow: fewer zoo images)


def nvcc() -> str:
    path = shutil.which(os.environ.get("NVCC", "nvcc")) or shutil.which("/usr/local/cuda/bin/nvcc")
    assert path, "nvcc not found: the CUDA backend's build test needs the CUDA toolkit's nvcc on PATH (or NVCC=...)"
    return path


def make_cuda(*args: str) -> str:
    p = subprocess.run(["make", "-j2", "cuda", f"NVCC={nvcc()}", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=1200)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    return out


# ---- without a GPU: the build, the sources, the errors ----

@pytest.mark.parametrize("variant,args", [
    ("sm75", ("CUDA_ARCH=sm_75", "CUDA_OUT=build/cuda-check/sm75")),
    ("plain", ("CUDA_ARCH=sm_75", "CUDA_OUT=build/cuda-check/plain", "CUDA_DEFS=-DMFE_CUDA_PLAIN")),
])
def test_build(variant, args):
    """`make cuda` compiles with -std=c++14, warning-free; 'plain' is the no-__dp4a path a Nano (sm_53) takes."""
    out = make_cuda(*args)
    lib = os.path.join(ROOT, args[1].split("=", 1)[1], "libmfe_cuda.so")
    assert os.path.exists(lib), out[-2000:]
    assert "warning" not in out.lower(), out[-4000:]
    flags = open(os.path.join(os.path.dirname(lib), "flags")).read()
    assert "-std=c++14" in flags
    nm = shutil.which("nm")
    if nm:  # the library exports its C API only (the C loader inside stays private)
        syms = subprocess.run([nm, "-D", "--defined-only", lib], capture_output=True, text=True).stdout.split()
        exported = sorted(s for s in syms if s.startswith("mfe"))
        assert exported and all(s.startswith("mfe_cuda_") for s in exported), exported


BANNED = {  # not in CUDA 10.2, sm_53 or C++14
    r"cooperative_groups": "cooperative groups", r"__reduce_\w+_sync": "warp reduce (sm_80)",
    r"\bcuda::": "libcu++", r"if\s+constexpr": "C++17", r"\bstd::(optional|variant|string_view|any)\b": "C++17",
    r"__nanosleep": "sm_70", r"cp\.async|cp_async": "sm_80", r"\bwgmma|\bmma\.sync|\bwmma::": "tensor cores",
    r"\b__half2?\b|cuda_fp16": "fp16 types", r"__match_(any|all)_sync": "sm_70", r"\bnamespace\s+\w+\s*::": "C++17",
    r"#include\s*<(cuda/|cooperative)": "newer headers", r"\[\[(nodiscard|maybe_unused|fallthrough)\]\]": "C++17",
}


def test_sources_fit_cuda_10_2_sm53():
    """The Nano's toolkit (CUDA 10.2, sm_53, C++14): no newer features, and __dp4a only under its guard."""
    for name in sorted(os.listdir(CUDA_DIR)):
        if not name.endswith((".cu", ".cuh")):
            continue
        src = open(os.path.join(CUDA_DIR, name)).read()
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", src, flags=re.S)
        for pat, why in BANNED.items():
            assert not re.search(pat, code), f"{name}: {pat} ({why}) is not available to CUDA 10.2 / sm_53 / C++14"
        depth, guarded = [], False
        for line in code.splitlines():
            s = line.strip()
            if s.startswith("#if"):
                depth.append("MFE_CUDA_DP4A" in s)
            elif s.startswith("#else") and depth:
                depth[-1] = False
            elif s.startswith("#endif") and depth:
                depth.pop()
            guarded = any(depth)
            if "__dp4a" in s:
                assert guarded, f"{name}: __dp4a outside #if MFE_CUDA_DP4A: {s}"
    cuh = open(os.path.join(CUDA_DIR, "common.cuh")).read()
    assert "__CUDA_ARCH__ >= 610" in cuh and "MFE_CUDA_PLAIN" in cuh


def cli(*args, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), *args], capture_output=True, text=True,
                          timeout=600, env=e, cwd=ROOT)


def test_library_missing_is_one_line_error():
    p = cli("run", ZOO[0], "--backend", "cuda", env={"MFE_CUDA_LIB": "/nonexistent/libmfe_cuda.so"})
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("error: the CUDA backend is not built: run `make cuda`"), p.stderr


@pytest.mark.parametrize("variant", ["plain", "dp4a"])
def test_kernels_on_cpu_emulator(variant):
    """Where no GPU is present: the GPU tests of this file on the CPU emulator (the dp4a build: the tests
    of the kernels that have a dp4a path)."""
    if os.environ.get("MFE_CUDA_LIB"):
        pytest.skip("this run already uses a chosen library (MFE_CUDA_LIB)")
    if library_built() and cuda.unavailable_reason() is None:
        pytest.skip("a CUDA GPU is present: the GPU tests run on it instead")
    out = os.path.join(ROOT, "build", "cuda-emu", variant)
    p = subprocess.run([sys.executable, os.path.join(CUDA_DIR, "emu", "build.py"), out, *(["--dp4a"] if variant == "dp4a" else [])],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0 and not p.stderr.strip(), p.stderr[-4000:]
    expr = "not build and not emulator and not no_gpu and not library_missing and not sources"
    if variant == "dp4a":
        expr += " and (wht or conv or linear or batch or zoo)"
    env = dict(os.environ, MFE_CUDA_LIB=os.path.join(out, "libmfe_cuda.so"), MFE_CUDA_EMU="1")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", os.path.abspath(__file__),
                        "-k", expr], capture_output=True, text=True, timeout=3000, env=env, cwd=ROOT)
    tail = (p.stdout + p.stderr)[-4000:]
    assert p.returncode == 0, tail
    assert "CPU emulation" in cuda_device_of(env), tail
    ran = re.search(r"(\d+) passed", tail)
    assert ran and int(ran.group(1)) >= 50, f"the emulated GPU tests did not run: {tail}"


def cuda_device_of(env) -> str:
    code = "from engine import cuda; print(cuda.device_name(0))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT).stdout


def library_built() -> bool:
    if not os.path.exists(cuda.library_path()):
        make_cuda()  # CUDA_ARCH from the environment, else the Makefile's default
    return os.path.exists(cuda.library_path())


def test_no_gpu_is_one_line_error():
    """Where no GPU can be used: `run --backend cuda` prints one line naming the reason and exits 1."""
    assert library_built()
    reason = cuda.unavailable_reason()
    if reason is None:
        pytest.skip("a CUDA GPU is present: the no-GPU error path cannot be seen here")
    assert "no CUDA GPU" in reason
    p = cli("run", ZOO[0], "--backend", "cuda")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: CUDA backend: no CUDA GPU"), p.stderr
    m = engine.load(ZOO[0])
    with pytest.raises(engine.BackendError, match="no CUDA GPU"):
        m.run(np.zeros((1, *m.input_shape), np.uint8), "cuda")


# ---- with a GPU ----

@pytest.fixture(scope="module")
def gpu():
    assert library_built()
    reason = cuda.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    return cuda.device_name(0)


def check(graph, x, other: str = "ref"):
    """cuda against the reference (or another backend); returns the output."""
    model = engine.from_graph(graph)
    want = model.run(x, other)
    got = model.run(x, "cuda")
    assert got.dtype == np.int32 and got.shape == want.shape
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        raise AssertionError(f"cuda differs from {other} at {len(bad)} of {got.size} values; first {bad[0].tolist()}: "
                             f"cuda {got[tuple(bad[0])]} vs {want[tuple(bad[0])]}; nodes "
                             f"{[(n.op, n.attrs) for n in graph.nodes]}")
    return want


@pytest.mark.parametrize("op", sorted(ops.OPS))
@pytest.mark.parametrize("seed", range(12))
def test_random(gpu, op, seed):
    rng = np.random.default_rng(1000 * ops.OPS[op].code + seed)
    g = random_case(op, rng)
    check(g, images(rng, int(rng.integers(1, 21)), g.tensors[0].shape, "random"))


@pytest.mark.parametrize("op", sorted(ops.OPS))
@pytest.mark.parametrize("edge", EDGES[1:])
def test_adversarial(gpu, op, edge):
    """All-max, all-min and alternating inputs and weights: results saturate, never wrap."""
    rng = np.random.default_rng(int(hashlib.sha256(f"{op}{edge}".encode()).hexdigest()[:8], 16))
    for _ in range(3):
        g = random_case(op, rng, edge)
        check(g, images(rng, 3, g.tensors[0].shape, edge))


def wht_graph(shape, cin, cout, n, mode, rng, order=0, residual=None, thresh=None, oshift=0, act=(-128, 127), table=None,
              cscale=None, sshift=0):
    b = GraphBuilder((*shape, cin))
    g_shift, tab = smooth_table(float(rng.uniform(0.0005, 0.05)))
    if table is not None:
        tab = table
    residual = int(cin == cout) if residual is None else residual
    b.add("wht", 0, cout=cout, n=n, order=order, mode=mode, residual=residual, tshift=g_shift,
          thresh=rng.integers(0, 8 * n, n) if thresh is None else thresh, table=tab.ravel() if mode else np.zeros(0),
          oshift=oshift, act_lo=act[0], act_hi=act[1],
          **({} if cscale is None else {"scaled": 1, "sshift": sshift, "cscale": cscale}))
    return b.build()


@pytest.mark.parametrize("cin,cout,n", [(3, 3, 4), (5, 12, 16), (12, 5, 16), (16, 16, 16), (32, 32, 32), (24, 32, 32),
                                        (64, 64, 128), (256, 256, 256), (300, 100, 512), (512, 512, 512),
                                        (1024, 1024, 1024), (1000, 1024, 1024), (1024, 700, 1024),
                                        (2048, 2048, 2048), (1500, 4000, 4096), (16384, 16384, 16384)])
def test_wht_shapes(gpu, cin, cout, n):
    """Fast kernel (n <= 1024: several pixels per warp below 1024, 16-byte paths where cin or cout == n,
    byte paths else, short last blocks) and the generic one (n > 1024)."""
    rng = np.random.default_rng(cin * 7 + cout * 3 + n)
    pixels = (1, 3) if n >= 4096 else (3, 5) if n >= 1024 else (7, 9)
    for mode in (0, 1):
        g = wht_graph(pixels, cin, cout, n, mode, rng, order=mode)
        for edge in EDGES:
            check(g, images(rng, 3, g.tensors[0].shape, edge))


def test_wht_generic_kernel_every_size(gpu, monkeypatch):
    """MFE_CUDA_WHT_GENERIC=1 sends every n through the generic int32 kernel: it must agree too."""
    monkeypatch.setenv("MFE_CUDA_WHT_GENERIC", "1")
    rng = np.random.default_rng(5)
    for cin, cout, n in [(2, 2, 2), (3, 7, 8), (16, 16, 16), (100, 64, 128), (1024, 1024, 1024)]:
        for mode in (0, 1):
            g = wht_graph((2, 3), cin, cout, n, mode, rng)
            check(g, images(rng, 4, g.tensors[0].shape, "random"))


@pytest.mark.parametrize("generic", [False, True])
@pytest.mark.parametrize("cin,cout,n", [(5, 12, 16), (64, 40, 64), (40, 64, 64), (96, 576, 1024), (1024, 1024, 1024),
                                        (320, 1280, 2048)])
def test_wht_scaled(gpu, monkeypatch, generic, cin, cout, n):
    """Per-coefficient scale, in the fast kernel (n <= 1024: byte and 16-byte paths, residual where cin ==
    cout) and the generic one: random factors, all at +-2^sshift, the widest sshift n allows, a narrow clamp."""
    if generic:
        monkeypatch.setenv("MFE_CUDA_WHT_GENERIC", "1")
    rng = np.random.default_rng(cin + n)
    for mode in (0, 1):
        for sshift in (0, 6, max_sshift(n)):
            lim = 1 << sshift
            for cscale in (rng.integers(-lim, lim + 1, n), rng.choice([-lim, lim], n)):
                act = (-128, 127) if rng.random() < 0.5 else (0, 90)
                g = wht_graph((2, 3), cin, cout, n, mode, rng, order=mode, cscale=cscale, sshift=sshift, act=act)
                for edge in EDGES:
                    check(g, images(rng, 2, g.tensors[0].shape, edge))


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("oshift", [-10, 0, 1, 21])
def test_wht_1024_extremes(gpu, mode, oshift):
    """The seed's layer at its limits: +-127/-128/alternating inputs, thresholds 0 and past the cap, the
    output shift from 0 (oshift -10) to 31 (oshift 21), residual, a table of extreme codes, a ReLU6-like clamp."""
    rng = np.random.default_rng(mode * 100 + oshift + 20)
    n = 1024
    table = rng.choice(np.array([-32, -1, 0, 1, 2, 32], np.int8), size=(3, 256))
    for thresh in (np.zeros(n, np.int64), np.full(n, 2**31 - 1), rng.integers(0, 50 * n, n)):
        for act in ((-128, 127), (0, 60)):
            g = wht_graph((2, 4), n, n, n, mode, rng, residual=int(rng.random() < 0.5), thresh=thresh, oshift=oshift,
                          act=act, table=table if rng.random() < 0.5 else None)
            for edge in EDGES:
                check(g, images(rng, 2, g.tensors[0].shape, edge))


def conv_graph(rng, shape, cout, k, stride, pad, groups, pad_value=0, edge="random", kw=None):
    h, w, c = shape
    kw = k if kw is None else kw
    b = GraphBuilder(shape)
    cig = c // groups
    b.add("conv2d", 0, cout=cout, kh=k, kw=kw, stride_h=stride, stride_w=stride, pad_t=pad, pad_l=pad, pad_b=pad,
          pad_r=pad, groups=groups, pad_value=pad_value, weight=weights(rng, (cout, k, kw, cig), edge),
          bias=rng.integers(-5000, 5000, cout), **requant(rng, cout, 128 * 64 * k * kw * cig, False))
    return b.build()


@pytest.mark.parametrize("shape,cout,k,stride,pad,groups,pv", [
    ((9, 11, 1), 16, 3, 1, 1, 1, -128),      # the stem: cin 1 (byte gathers), pad_value
    ((8, 8, 16), 96, 1, 1, 0, 1, 0),         # 1x1: the GEMM, word gathers
    ((7, 5, 70), 33, 1, 1, 0, 1, 0),         # 1x1, K not a multiple of 4
    ((12, 12, 320), 130, 1, 1, 0, 1, 0),     # 1x1: several row and column tiles, K over many steps
    ((10, 9, 24), 40, 3, 2, 1, 1, 55),       # 3x3 stride 2, padded
    ((6, 7, 12), 12, 5, 1, 2, 3, 0),         # grouped, cin_g 4
    ((6, 6, 10), 15, 3, 2, 1, 5, -7),        # grouped, cin_g 2 (byte gathers)
    ((9, 9, 144), 144, 3, 1, 1, 144, 0),     # depthwise 3x3
    ((9, 9, 40), 40, 5, 2, 2, 40, 127),      # depthwise 5x5 stride 2, pad_value
    ((5, 5, 8), 16, 3, 1, 1, 8, 0),          # channel multiplier 2 (grouped, not depthwise)
])
def test_conv_shapes(gpu, shape, cout, k, stride, pad, groups, pv):
    rng = np.random.default_rng(sum(shape) * 31 + cout + k)
    for edge in EDGES:
        g = conv_graph(rng, shape, cout, k, stride, pad, groups, pv, edge)
        check(g, images(rng, 3, shape, edge))


@pytest.mark.parametrize("shape,cout,int32", [((1, 1, 1280), 10, True), ((4, 4, 30), 17, False), ((3, 3, 7), 70, True),
                                              ((2, 2, 256), 1000, False)])
def test_linear_shapes(gpu, shape, cout, int32):
    rng = np.random.default_rng(cout)
    k = int(np.prod(shape))
    for edge in EDGES:
        b = GraphBuilder(shape)
        rq = {} if int32 else requant(rng, cout, 128 * 64 * k, False)
        b.add("linear", 0, out_dtype="int32" if int32 else "int8", cout=cout, weight=weights(rng, (cout, k), edge),
              bias=rng.integers(-5000, 5000, cout), **rq)
        check(b.build(), images(rng, 5, shape, edge))


def chain_graph():
    """Every op in one graph (residual add, wht with residual, hdw, sumpool, grouped and depthwise convs)."""
    rng = np.random.default_rng(9)
    b = GraphBuilder((14, 14, 8))
    x = b.add("conv2d", 0, cout=16, kh=3, kw=3, stride_h=1, stride_w=1, pad_t=1, pad_l=1, pad_b=1, pad_r=1, groups=1,
              pad_value=-3, weight=weights(rng, (16, 3, 3, 8), "random"), bias=rng.integers(-900, 900, 16),
              **requant(rng, 16, 128 * 64 * 72, False))
    h = b.add("hdw", x, stride=2, op=0, xshift=1, wshift=0, weight=weights(rng, (3, 3, 16), "random"),
              bias=rng.integers(-900, 900, 16), **requant(rng, 16, 9 * 512, False))
    w = b.add("wht", h, cout=16, n=16, mode=1, residual=1, tshift=smooth_table(0.05)[0], thresh=rng.integers(0, 200, 16),
              table=smooth_table(0.05)[1].ravel())
    a = b.add("affine", w, mult=rng.integers(-(1 << 12), 1 << 12, 16), bias=rng.integers(-(1 << 16), 1 << 16, 16),
              shift=rng.integers(8, 14, 16))
    s = b.add("sumpool", a, cw=3, kh=2, kw=2, pad_t=1, pad_l=1, mult=1, shift=3)
    d = b.add("conv2d", s, cout=14, kh=3, kw=3, stride_h=1, stride_w=1, pad_t=1, pad_l=1, pad_b=1, pad_r=1, groups=14,
              weight=weights(rng, (14, 3, 3, 1), "random"), bias=rng.integers(-900, 900, 14),
              **requant(rng, 14, 128 * 64 * 9, False))
    r = b.add("requantize", s, mult=3 << 28, shift=29)
    e = b.add("add", [d, r], mult_a=1, mult_b=1, shift=1)
    c = b.add("clamp", e, act_lo=0, act_hi=100)
    p = b.add("avgpool", c, mult=1 << 20, shift=26)
    b.add("linear", p, out_dtype="int32", cout=10, weight=weights(rng, (10, 14), "random"), bias=rng.integers(-99, 99, 10))
    return b.build()


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_batch_sizes(gpu, batch):
    rng = np.random.default_rng(batch)
    g = chain_graph()
    check(g, images(rng, batch, g.tensors[0].shape, "random"))


def test_passes_split_by_a_small_arena(gpu, monkeypatch):
    """A small arena budget splits a batch into passes (one image each, then a few): the same bytes."""
    g = chain_graph()
    x = images(np.random.default_rng(3), 10, g.tensors[0].shape, "random")
    want = engine.from_graph(g).run(x, "ref")
    np.testing.assert_array_equal(engine.from_graph(g).run(x, "cuda"), want)
    for budget, per_pass in ((1, 1), (3 * plan_bound(g), 3)):
        monkeypatch.setenv("MFE_CUDA_ARENA_BYTES", str(budget))
        split = engine.from_graph(g)
        assert split.native("cuda").max_batch >= per_pass and (per_pass > 1 or split.native("cuda").max_batch == 1)
        np.testing.assert_array_equal(split.run(x, "cuda"), want)


def plan_bound(g) -> int:
    """An upper bound of the C memory plan's bytes per image: every tensor rounded up to 64 bytes."""
    from engine.graph import tensor_bytes
    return sum((tensor_bytes(t) + 63) // 64 * 64 for t in g.tensors)


def sample(n: int) -> np.ndarray:
    imgs = np.load(SAMPLE)["images"]
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    return np.ascontiguousarray(np.resize(imgs, (n, *imgs.shape[1:])))


def reference_backend(model) -> str:
    try:
        model.native("c")
        return "c"
    except engine.BackendError:
        return "ref"


@pytest.mark.parametrize("path", ZOO, ids=[os.path.basename(p) for p in ZOO])
def test_zoo_models(gpu, path):
    """The shipped models on the sample images: the same logits as the C backend (the reference where the C
    backend is not built), for batch sizes 1, 3 and 256."""
    m = engine.load(path)
    h, w, c = m.input_shape
    n = 12 if EMULATED else 300
    x = sample(n) if (h, w, c) == (28, 28, 1) else images(np.random.default_rng(1), n, (h, w, c), "random")
    other = reference_backend(m)
    if other == "ref":
        x = x[:40]
    want = m.run(x, other)
    got = m.run(x, "cuda")
    assert hashlib.sha256(got.astype("<i4").tobytes()).hexdigest() == hashlib.sha256(want.astype("<i4").tobytes()).hexdigest()
    for batch in (1, 3, 16 if EMULATED else 256):  # np.resize repeats images (and so their outputs) in order
        np.testing.assert_array_equal(m.run(np.resize(x, (batch, h, w, c)), "cuda"), np.resize(want, (batch, *want.shape[1:])))


def test_cli_hash_matches_c(gpu, tmp_path):
    """`cli.py run --backend cuda --json` prints the C backend's logits_sha256 (the reference's on 20 images
    where the C backend is not built)."""
    for path in ZOO:
        m = engine.load(path)
        other = reference_backend(m)
        args = ["run", path, "--json"]
        if other == "ref" or EMULATED:
            np.save(tmp_path / "x.npy", images(np.random.default_rng(2), 20, m.input_shape, "random"))
            args += ["--input", str(tmp_path / "x.npy")]
        a, b = (cli(*args, "--backend", be) for be in ("cuda", other))
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        ja, jb = json.loads(a.stdout), json.loads(b.stdout)
        assert ja["logits_sha256"] == jb["logits_sha256"], path
        assert ja["backend"] == "cuda" and ja["isa"] == m.native("cuda").device


def test_repeatable_and_threads(gpu):
    """Same input twice gives the same bytes (no races); 4 Python threads sharing one model, and two models
    interleaved, give the serial bytes."""
    g = chain_graph()
    rng = np.random.default_rng(4)
    xs = [images(rng, int(b), g.tensors[0].shape, "random") for b in (1, 7, 64, 33)]
    m = engine.from_graph(g)
    serial = [m.run(x, "cuda") for x in xs]
    for x, want in zip(xs, serial):
        np.testing.assert_array_equal(m.run(x, "cuda"), want)
    wg = wht_graph((8, 8), 1024, 1024, 1024, 0, rng)
    wx = images(rng, 5, wg.tensors[0].shape, "random")
    wm = engine.from_graph(wg)
    w1 = wm.run(wx, "cuda")
    for _ in range(3):
        np.testing.assert_array_equal(wm.run(wx, "cuda"), w1)
    errors = []

    def worker(i):
        try:
            for j in range(6):
                k = (i + j) % len(xs)
                np.testing.assert_array_equal(m.run(xs[k], "cuda"), serial[k])
                np.testing.assert_array_equal(wm.run(wx, "cuda"), w1)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_errors(gpu, monkeypatch):
    m = engine.from_graph(chain_graph())
    with pytest.raises(engine.InputError):
        m.run(np.zeros((1, 5, 5, 8), np.uint8), "cuda")
    with pytest.raises(engine.BackendError, match="threads"):
        m.run(np.zeros((1, 14, 14, 8), np.uint8), "cuda", threads=0)
    cm = m.native("cuda")
    assert cm.run(np.zeros((0, 14, 14, 8), np.uint8)).shape == (0, 1, 1, 10)
    monkeypatch.setenv("MFE_CUDA_DEVICE", "99")
    with pytest.raises(engine.BackendError, match="out of range"):
        engine.from_graph(chain_graph()).run(np.zeros((1, 14, 14, 8), np.uint8), "cuda")
    monkeypatch.setenv("MFE_CUDA_DEVICE", "x")
    with pytest.raises(engine.BackendError, match="MFE_CUDA_DEVICE"):
        engine.from_graph(chain_graph()).run(np.zeros((1, 14, 14, 8), np.uint8), "cuda")


def test_timing_helpers(gpu):
    """benchmarks/cuda.py's helpers run (no timing is asserted)."""
    m = engine.from_graph(chain_graph())
    x = images(np.random.default_rng(0), 4, (14, 14, 8), "random")
    t = m.native("cuda").time_graph(x, 3, warmup=1)
    assert len(t) == 3 and all(v >= 0 for v in t)
    assert len(cuda.time_copy(1 << 20, 2, warmup=1)) == 2
