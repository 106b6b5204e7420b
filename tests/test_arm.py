"""ARM (aarch64) builds under qemu user-mode emulation, CPU pinned: the standalone runner agrees with the x86
engine, every NEON kernel is bit-exact with the numpy reference, the cross-compile command, the instruction
counts. Needs the Debian packages gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user (`make deps`);
without them these tests skip, except under CI (CI set), where they fail."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
from engine import cross, ops
from engine import format as fmt
from engine.builder import GraphBuilder
from engine.ops.wht import smooth_table
from randgraph import EDGES, images, random_case, weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVERY_OP = os.path.join(ROOT, "zoo", "every-op.mfe")  # small and through every op: quick under qemu
# (cpu the build is for, kernels): the Jetson Nano build, its scalar twin, and the Orin build (sdot)
BUILDS = [("cortex-a57", "neon"), ("cortex-a57", "scalar"), ("cortex-a78ae", "neon")]


@pytest.fixture(scope="module")
def tc() -> cross.Toolchain:
    try:
        t = cross.toolchain()
        if not t.qemu:
            raise cross.CrossError("qemu-aarch64 not found (Debian package qemu-user)")
    except cross.CrossError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the ARM tests: {e}")
        pytest.skip(str(e))
    return t


@pytest.fixture(scope="module")
def built(tc):
    cache: dict = {}

    def get(cpu: str, isa: str) -> dict[str, str]:
        if (cpu, isa) not in cache:
            cache[cpu, isa] = cross.build(tc, cpu, isa)
        return cache[cpu, isa]
    return get


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> str:
    return cross.sample_npy(str(tmp_path_factory.mktemp("sample") / "sample.npy"))


def qemu_json(tc, prog, args, cpu):
    p = cross.run_qemu(tc, prog, args, cpu)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_runner_matches_x86_engine(tc, built, sample):
    """mfrun (aarch64, NEON, under qemu -cpu cortex-a57) and `python cli.py run --input X.npy --json` agree."""
    x86 = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "run", EVERY_OP, "--input", sample, "--json"],
                         capture_output=True, text=True, cwd=ROOT)
    assert x86.returncode == 0, x86.stderr
    want = json.loads(x86.stdout)
    arm = qemu_json(tc, built("cortex-a57", "neon")["mfrun"], [EVERY_OP, sample, "--json"], "cortex-a57")
    assert {"model", "backend", "n", "predictions", "logits_sha256", "isa", "latency_ms", "threads", "batch"} <= set(arm)
    assert arm["isa"] == "neon" and arm["backend"] == "c" and arm["n"] == want["n"] == 300
    assert arm["predictions"] == want["predictions"]
    assert arm["logits_sha256"] == want["logits_sha256"]


@pytest.mark.parametrize("cpu,isa,args", [("cortex-a57", "neon", ["--threads", "3", "--batch", "7"]),
                                          ("cortex-a57", "scalar", []), ("cortex-a78ae", "neon", ["--threads", "2"])])
def test_runner_builds_agree(tc, built, sample, cpu, isa, args):
    """Threads, batch size, the scalar build and the dotprod (Orin) build give the same logits."""
    want = cross.host_logits_sha256(EVERY_OP, sample)
    got = qemu_json(tc, built(cpu, isa)["mfrun"], [EVERY_OP, sample, "--json", *args], cpu)
    assert got["logits_sha256"] == want
    assert got["isa"] == {"scalar": "scalar", "neon": "neon-dotprod" if cpu == "cortex-a78ae" else "neon"}[isa]


def test_runner_inputs_and_errors(tc, built, tmp_path):
    """(N,H,W) batches and float input as the Python engine takes them; one-line errors, exit 1."""
    mfrun = built("cortex-a57", "neon")["mfrun"]
    x = np.load(cross.SAMPLE)["images"][:9]
    np.save(tmp_path / "nhw.npy", x[..., 0])
    np.save(tmp_path / "f32.npy", x.astype(np.float32) / 255)
    want = cross.host_logits_sha256(EVERY_OP, str(tmp_path / "nhw.npy"))
    for name in ("nhw.npy", "f32.npy"):
        assert qemu_json(tc, mfrun, [EVERY_OP, str(tmp_path / name), "--json"], "cortex-a57")["logits_sha256"] == want
    np.save(tmp_path / "bad.npy", np.zeros((2, 32, 32, 3), np.uint8))
    for args, words in [([EVERY_OP, str(tmp_path / "bad.npy")], "does not match"),
                        (["missing.mfe", str(tmp_path / "bad.npy")], "missing.mfe: No such file"),
                        ([str(tmp_path / "bad.npy"), str(tmp_path / "bad.npy")], "bad.npy: bad magic"),
                        ([EVERY_OP, "nothere.npy"], "cannot read"),
                        ([EVERY_OP], "give MODEL and INPUT"),
                        ([EVERY_OP, str(tmp_path / "nhw.npy"), "--threads", "0"], "--threads")]:
        p = cross.run_qemu(tc, mfrun, args, "cortex-a57")
        lines = p.stderr.strip().splitlines()
        assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr
    p = cross.run_qemu(tc, mfrun, ["--help"], "cortex-a57")
    assert p.returncode == 0 and "Example" in p.stdout


def test_dotprod_build_needs_armv82(tc, built, sample):
    """The Orin build uses sdot: on a pinned Cortex-A57 it stops with a clear error instead of SIGILL."""
    p = cross.run_qemu(tc, built("cortex-a78ae", "neon")["mfrun"], [EVERY_OP, sample], "cortex-a57")
    assert p.returncode == 1 and "dot products" in p.stderr and "cortex-a57" in p.stderr


# ---- every kernel bit-exact: one-op graphs written here, run by mftest in one qemu process per build ----

def extra_cases(rng: np.random.Generator):
    """Shapes that reach every NEON block size: dense convs (the GEMM: odd cin, sdot chunks and tails of 1-4
    steps, 16-wide output blocks and tails, pixel tails, -128 weights, short multipliers), depthwise 3x3 and hdw
    (channel tails, borders, pad values, shifts), wide sum-pools (the channel-window path), full fused WHT blocks
    (split input and output included), channels >= 8 for hdw and pooling."""
    for cin, cout, k in [(1, 16, 3), (3, 24, 3), (32, 32, 1), (64, 40, 1), (25, 24, 2), (17, 9, 1), (8, 48, 3), (48, 16, 1), (13, 24, 1)]:
        for edge in ("random", "max", "min", "alternating"):
            h, w = int(rng.integers(3, 7)), int(rng.integers(3, 7))
            b = GraphBuilder((h, w, cin))
            p = k // 2
            # short multipliers half the time: the GEMM's int32 requantisation where the loader proves it exact
            short = rng.random() < 0.5
            mult, shift = (rng.integers(1 << 9, 1 << 11, cout), rng.integers(17, 23, cout)) if short else \
                (rng.integers(1 << 30, 1 << 31, cout), rng.integers(36, 44, cout))
            wt = rng.integers(-127, 128, (cout, k, k, cin)) if edge == "random" else weights(rng, (cout, k, k, cin), edge)
            b.add("conv2d", 0, cout=cout, kh=k, kw=k, stride_h=1 + (cin == 3), stride_w=1, pad_t=p, pad_l=p, pad_b=p,
                  pad_r=p, groups=1, pad_value=int(rng.choice([0, -128, 127])), weight=wt,
                  bias=rng.integers(-5000, 5000, cout), mult=mult, shift=shift, act_lo=int(rng.choice([-128, 0])))
            yield f"conv{cin}x{cout}k{k}{'-short' * short}-{edge}", b.build(), images(rng, 3, (h, w, cin), edge)
    for cin, cmid, cout in [(24, 40, 33), (16, 16, 48)]:  # a 1x1 conv on inputs >= 0, or with narrow weights
        for edge in EDGES:
            b = GraphBuilder((int(rng.integers(2, 6)), int(rng.integers(2, 6)), cin))
            t = b.add("conv2d", 0, cout=cmid, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0,
                      groups=1, pad_value=0, weight=weights(rng, (cmid, 1, 1, cin), edge), bias=rng.integers(-500, 500, cmid),
                      mult=rng.integers(1 << 30, 1 << 31, cmid), shift=rng.integers(36, 40, cmid), act_lo=0)
            for src, wt in ((t, weights(rng, (cout, 1, 1, cmid), edge)), (0, rng.integers(-64, 65, (cout, 1, 1, cin)))):
                b.add("conv2d", src, cout=cout, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0,
                      groups=1, pad_value=0, weight=wt, bias=rng.integers(-5000, 5000, cout),
                      mult=rng.integers(1 << 30, 1 << 31, cout), shift=rng.integers(36, 42, cout))
                yield f"conv-{'nonneg' if src else 'narrow'}{cin}-{edge}", b.build(), images(rng, 2, b.shape(0), edge)
    # depthwise 3x3: 8-channel steps, tails, strides, borders, asymmetric padding; weights without -128 (the
    # pixel kernel) but for edge min; multipliers short (int32 form), long, or mixed within a layer
    for c, (sh, sw), pads in [(16, (1, 1), (1, 1, 1, 1)), (36, (1, 1), (1, 1, 1, 1)), (20, (2, 2), (1, 1, 1, 1)),
                              (8, (2, 2), (1, 1, 1, 1)), (5, (1, 1), (1, 1, 1, 1)), (24, (3, 1), (0, 2, 1, 0)),
                              (16, (1, 2), (2, 0, 0, 1))]:
        for edge in (*EDGES, "-127"):
            h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
            forms = str(rng.choice(["short", "long", "mixed"]))
            short = (rng.integers(1 << 9, 1 << 11, c), rng.integers(12, 16, c))
            mult, shift = (rng.integers(1 << 30, 1 << 31, c), rng.integers(36, 42, c)) if forms != "short" else short
            if forms == "mixed":  # channel 0 alone could take the int32 form
                mult[0], shift[0] = short[0][0], short[1][0]
            wt = np.full((c, 3, 3, 1), -127) if edge == "-127" else rng.integers(-127, 128, (c, 3, 3, 1)) if edge == "random" \
                else weights(rng, (c, 3, 3, 1), edge)
            b = GraphBuilder((h, w, c))
            b.add("conv2d", 0, cout=c, kh=3, kw=3, stride_h=sh, stride_w=sw, pad_t=pads[0], pad_l=pads[1], pad_b=pads[2],
                  pad_r=pads[3], groups=c, pad_value=int(rng.choice([0, -128, 127, -55])), weight=wt,
                  bias=rng.integers(-5000, 5000, c), mult=mult, shift=shift, act_lo=int(rng.choice([-128, 0])))
            yield f"dw{c}s{sh}{sw}-{forms}-{edge}", b.build(), images(rng, 2, (h, w, c), "min" if edge == "-127" else edge)
    for c, stride, xs, ws in [(16, 1, 0, 0), (20, 2, 4, 7), (8, 1, 7, 3), (5, 2, 4, 4), (24, 1, 5, 5)]:
        for edge in EDGES:  # hdw's min op, in int16 lanes up to min(xshift, wshift) = 4, then int32
            h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
            b = GraphBuilder((h, w, c))
            b.add("hdw", 0, stride=stride, op=0, xshift=xs, wshift=ws, weight=weights(rng, (3, 3, c), edge),
                  bias=rng.integers(-3000, 3000, c), mult=rng.integers(1 << 30, 1 << 31, c),
                  shift=rng.integers(38, 44, c) + min(xs, ws), act_lo=int(rng.choice([-128, 0])))
            yield f"hdw{c}s{stride}x{xs}w{ws}-{edge}", b.build(), images(rng, 2, (h, w, c), edge)
    for c, cw in [(40, 20), (40, 8), (24, 24), (9, 2)]:
        b = GraphBuilder((5, 6, c))
        b.add("sumpool", 0, cw=cw, kh=3, kw=2, pad_t=1, pad_l=0, pad_b=1, pad_r=1, mult=int(rng.integers(1 << 30, 1 << 31)),
              shift=36, act_lo=-128, act_hi=127)
        yield f"sumpool{c}w{cw}", b.build(), images(rng, 2, (5, 6, c), "random")
    g, table = smooth_table(0.02)
    for cin, cout, n, res in [(16, 16, 16, 1), (24, 40, 64, 0), (64, 64, 64, 1), (256, 128, 256, 0), (40, 40, 64, 1)]:
        for mode in (0, 1):
            b = GraphBuilder((3, 8, cin))
            scaled = (cin // 8 + mode) % 2  # each mode meets the per-coefficient scale in some shapes
            b.add("wht", 0, cout=cout, n=n, order=mode, mode=mode, residual=res, tshift=g,
                  thresh=rng.integers(0, 8 * n, n), table=table.ravel() if mode else np.zeros(0),
                  **({"scaled": 1, "sshift": 7, "cscale": rng.integers(-128, 129, n)} if scaled else {}))
            for edge in EDGES:
                yield f"wht{cin}-{cout}-{n}-m{mode}-{edge}", b.build(), images(rng, 3, (3, 8, cin), edge)


@pytest.fixture(scope="module")
def kernel_cases(tmp_path_factory) -> str:
    """Models, inputs and reference outputs for every op (tests/randgraph.py's random and adversarial cases
    plus extra_cases), and a manifest for mftest."""
    d = tmp_path_factory.mktemp("kernels")
    lines, k = [], 0

    def add(name, graph, x, threads):
        nonlocal k
        want = engine.from_graph(graph).run(x, "ref").astype("<i4")
        base = d / f"{k:04d}"
        fmt.save(graph, str(base) + ".mfe")
        np.save(str(base) + "-x.npy", np.ascontiguousarray(x, np.uint8))
        np.save(str(base) + "-y.npy", np.ascontiguousarray(want))
        lines.append(f"{name} {base}.mfe {base}-x.npy {base}-y.npy {threads}")
        k += 1

    for op in sorted(ops.OPS):
        for seed in range(10):
            rng = np.random.default_rng(7000 + 1000 * ops.OPS[op].code + seed)
            g = random_case(op, rng)
            add(f"{op}-random-{seed}", g, images(rng, int(rng.integers(1, 21)), g.tensors[0].shape, "random"), 1 + seed % 2)
        for edge in EDGES[1:]:
            rng = np.random.default_rng(abs(hash((op, edge, "arm"))) % 2**32)
            for i in range(2):
                g = random_case(op, rng, edge)
                add(f"{op}-{edge}-{i}", g, images(rng, 3, g.tensors[0].shape, edge), 1)
    rng = np.random.default_rng(55)
    for i, (name, g, x) in enumerate(extra_cases(rng)):
        add(name, g, x, 1 + i % 2)
    manifest = d / "manifest.txt"
    manifest.write_text("\n".join(lines) + "\n")
    return str(manifest)


@pytest.mark.parametrize("cpu,isa", BUILDS)
def test_kernels_bit_exact(tc, built, kernel_cases, cpu, isa):
    p = cross.run_qemu(tc, built(cpu, isa)["mftest"], [kernel_cases], cpu)
    fails = [l for l in p.stdout.splitlines() if l.startswith("FAIL")]
    assert p.returncode == 0 and not fails, "\n".join(fails[:20]) or p.stderr
    assert " 0 failed" in p.stdout.splitlines()[-1]


def test_kernels_undefined_behaviour(tc, kernel_cases):
    """The NEON build with undefined-behaviour checks that trap (make sanitize covers x86 builds only)."""
    p = cross.run_qemu(tc, cross.build(tc, "cortex-a57", "neon", ubsan=True)["mftest"], [kernel_cases], "cortex-a57")
    assert p.returncode == 0 and " 0 failed" in p.stdout.splitlines()[-1], p.stdout[-2000:] + p.stderr


# ---- the command, the ABI-mode loader, the instruction counts ----

def test_cross_compile_command(tc, tmp_path):
    out = tmp_path / "arm64"
    p = subprocess.run([sys.executable, "-m", "engine.crosscmd", "--target", "aarch64", "--cpu", "cortex-a57",
                        "-o", str(out), "--json"], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert rep["smoke"]["ran"] and rep["smoke"]["matches_host"] and rep["smoke"]["qemu_cpu"] == "cortex-a57"
    for name in ("mfrun", "libmfe.so", "_mfe_native.py", "README", "default.mfe", "sample.npy", "include/mfe.h"):
        assert (out / name).exists(), name
    for name in ("mfrun", "libmfe.so"):
        head = (out / name).read_bytes()[:20]
        assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
    assert "qemu" in (out / "README").read_text() or "mfrun" in (out / "README").read_text()
    human = subprocess.run([sys.executable, "-m", "engine.crosscmd", "-o", str(out), "--no-smoke"],
                           capture_output=True, text=True, cwd=ROOT)
    assert human.returncode == 0 and "not run: --no-smoke given" in human.stdout
    assert "Example" in subprocess.run([sys.executable, "-m", "engine.crosscmd", "--help"], capture_output=True,
                                       text=True, cwd=ROOT).stdout


@pytest.mark.parametrize("args,words", [(["--target", "riscv64"], "unknown target"), (["--cpu", "cortex-x9"], "unknown cpu")])
def test_cross_compile_errors(tc, tmp_path, args, words):
    p = subprocess.run([sys.executable, "-m", "engine.crosscmd", "-o", str(tmp_path / "o"), *args],
                       capture_output=True, text=True, cwd=ROOT)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr


def test_abi_loader_on_host(tmp_path, sample):
    """_mfe_native.py (cffi ABI mode over libmfe.so), exercised with a libmfe.so for this machine."""
    import importlib.util
    from engine.native import NativeModel
    lib = cross.build_host_library(str(tmp_path))
    os.environ["MFE_LIB"] = lib
    try:
        spec = importlib.util.spec_from_file_location("engine._mfe_abi", os.path.join(ROOT, "cbackend", "arm", "mfe_abi.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules["engine._mfe_abi"] = mod
        m = engine.load(EVERY_OP)
        x = np.load(sample)
        got = NativeModel(m.data, "abi").run(x)
        np.testing.assert_array_equal(got.astype(np.int32).reshape(len(x), -1), m.run(x, "ref"))
    finally:
        del os.environ["MFE_LIB"]
        sys.modules.pop("engine._mfe_abi", None)


def test_engine_under_aarch64_python(tc, built, sample, tmp_path):
    """The Python engine itself on emulated aarch64 Python 3.11 (Debian arm64 packages in a private root):
    engine.load + Model.run through the ABI-mode loader and the NEON libmfe.so, same logits as x86."""
    try:
        root = cross.arm_python_root()
    except cross.CrossError as e:
        if os.environ.get("CI") or "apt-get and dpkg-deb" not in str(e):
            raise
        pytest.skip(str(e))
    app = cross.engine_app(str(tmp_path / "app"), built("cortex-a57", "neon")["libmfe.so"])
    script = ("import hashlib, json, platform, numpy as np, engine\n"
              f"m = engine.load({EVERY_OP!r}); x = np.load({sample!r})\n"
              "l = m.run(x, 'c', threads=2)\n"
              "print(json.dumps({'machine': platform.machine(), 'isa': m.native().isa,\n"
              "  'sha': hashlib.sha256(np.ascontiguousarray(l, dtype='<i4').tobytes()).hexdigest()}))\n")
    p = cross.run_arm_python(tc, root, ["-c", script], cwd=app)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got == {"machine": "aarch64", "isa": "neon", "sha": cross.host_logits_sha256(EVERY_OP, sample)}


def test_instruction_counts_neon_fwht(tc):
    """Seed 000's WHT layer: the NEON build executes at most 1/4 of the scalar build's instructions."""
    res = cross.count_instructions(images=1, models=(), wht_modes=("soft",))
    w = res["wht_soft"]
    assert w["scalar"] > 10**8 and w["neon"] <= w["scalar"] / 4, w
