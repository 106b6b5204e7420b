"""Cross-compiling the C backend for ARM boards (Jetson Nano: Cortex-A57; Jetson Orin: Cortex-A78AE),
checking it under qemu user-mode emulation, and counting executed ARM instructions.

No ARM machine is needed: Debian's cross toolchain (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) builds,
qemu-user (qemu-aarch64 -cpu CPU -L SYSROOT) runs. The CPU is always pinned, so an instruction the
board lacks (ARMv8.2 sdot on a Cortex-A57) dies with SIGILL here as it would there.

What one build makes (same C sources as the cffi backend: one loader, one set of kernels):
  libmfe.so  the C API (cbackend/include/mfe.h) as a plain shared library, loaded on the board by
             _mfe_native.py, a cffi ABI-mode shim (no compiler and no Python headers there);
  mfrun      the standalone runner, static: `mfrun MODEL INPUT.npy [--json]`;
  mftest     (tests) runs many one-op models against expected outputs in one process.

`count_instructions()` runs builds under a qemu TCG plugin of our own (cbackend/arm/insncount.c).
Nothing here imports numpy or the engine at module level.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "cbackend", "src")
CINC = os.path.join(ROOT, "cbackend", "include")
ARM = os.path.join(ROOT, "cbackend", "arm")
CACHE = os.path.join(ROOT, "build", "arm")
DEFAULT_MODEL = os.path.join(ROOT, "zoo", "default.mfe")
MODELS = ("default.mfe", "fmnist-mbv2.mfe")  # count_instructions: the WHT model and plain int8 MobileNet-V2
SAMPLE = os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz")
PACKAGES = ("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross", "qemu-user")

TARGETS = {"aarch64": "aarch64-linux-gnu"}
# -mcpu for gcc, and the CPU qemu 7.2 emulates for it (it has no Cortex-A78AE: the A76 has the same
# ARMv8.2 + dotprod instruction set that the build may use).
CPUS = {
    "cortex-a57": ("cortex-a57", "cortex-a57"),    # Jetson Nano / TX1 (ARMv8-A)
    "cortex-a53": ("cortex-a53", "cortex-a53"),    # Raspberry Pi 3
    "cortex-a72": ("cortex-a72", "cortex-a72"),    # Raspberry Pi 4
    "cortex-a76": ("cortex-a76", "cortex-a76"),    # Raspberry Pi 5 (ARMv8.2, dotprod)
    "cortex-a78ae": ("cortex-a78ae", "cortex-a76"),  # Jetson Orin (ARMv8.2, dotprod)
    "neoverse-n1": ("neoverse-n1", "neoverse-n1"),
    "generic": ("generic", "cortex-a57"),          # plain ARMv8-A
}
ISAS = ("neon", "scalar")
CFLAGS = ["-std=c11", "-fPIC", "-fopenmp", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter",
          "-Werror=implicit-function-declaration"]
QEMU_TIMEOUT = 600


class CrossError(RuntimeError):
    """The cross toolchain or emulator is missing, a build failed, or a check disagreed."""


@dataclass(frozen=True)
class Toolchain:
    target: str
    cc: str            # the cross gcc
    sysroot: str       # the target's libc folder (for qemu -L)
    qemu: str | None   # qemu-aarch64, or None where it is not installed


def _which(name: str) -> str | None:
    return shutil.which(name)


def toolchain(target: str = "aarch64") -> Toolchain:
    """The cross compiler, target sysroot and emulator; CrossError naming the Debian packages if missing.
    MFE_CROSS_CC, QEMU_LD_PREFIX and MFE_QEMU override the defaults."""
    if target not in TARGETS:
        raise CrossError(f"unknown target {target!r}: supported: {', '.join(TARGETS)}")
    triple = TARGETS[target]
    cc = os.environ.get("MFE_CROSS_CC") or _which(f"{triple}-gcc")
    if not cc:
        raise CrossError(f"no {triple}-gcc: install the Debian packages {' '.join(PACKAGES)} (make deps)")
    sysroot = os.environ.get("QEMU_LD_PREFIX") or f"/usr/{triple}"
    if not os.path.exists(os.path.join(sysroot, "lib", "ld-linux-aarch64.so.1")):
        raise CrossError(f"no aarch64 libc in {sysroot}: install libc6-dev-arm64-cross (make deps)")
    return Toolchain(target, cc, sysroot, os.environ.get("MFE_QEMU") or _which(f"qemu-{target}"))


def check_cpu(cpu: str) -> None:
    if cpu not in CPUS:
        raise CrossError(f"unknown cpu {cpu!r}: choose from {', '.join(CPUS)}")


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()
        err = next((l for l in msg if "error" in l), msg[0] if msg else "")
        raise CrossError(f"{what} failed: {err.strip()}")
    return p


def _flags(cpu: str, isa: str) -> list[str]:
    check_cpu(cpu)
    if isa not in ISAS:
        raise CrossError(f"unknown isa {isa!r}: choose from {', '.join(ISAS)}")
    mcpu = CPUS[cpu][0]
    arch = ["-march=armv8-a"] if mcpu == "generic" else [f"-mcpu={mcpu}"]
    opt = ["-O2", "-DMFE_FORCE_SCALAR"] if isa == "scalar" else ["-O3"]
    return [*CFLAGS, *arch, *opt, f"-I{CINC}", f"-I{CSRC}", f"-I{ARM}"]


def _digest(paths: list[str], *extra: str) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for p in sorted(paths):
        with open(p, "rb") as f:
            h.update(p.encode() + b"\0" + f.read())
    return h.hexdigest()[:16]


def _sources() -> list[str]:
    return sorted(os.path.join(CSRC, f) for f in os.listdir(CSRC) if f.endswith(".c"))


def _headers() -> list[str]:
    return sorted(os.path.join(d, f) for d in (CSRC, CINC, ARM) for f in os.listdir(d) if f.endswith(".h"))


def build(tc: Toolchain, cpu: str = "cortex-a57", isa: str = "neon", cache: str = CACHE,
          ubsan: bool = False) -> dict[str, str]:
    """Compile the backend once per (sources, cpu, isa) into a cache folder; returns paths of
    libmfe.so, mfrun and mftest there (rebuilt only when a source, header or flag changes). ubsan: with
    undefined-behaviour checks that trap (no runtime library needed: the program stops at a trap instruction)."""
    flags = _flags(cpu, isa) + (["-fsanitize=undefined", "-fsanitize-undefined-trap-on-error"] if ubsan else [])
    key = _digest(_sources() + _headers() + [os.path.join(ARM, f) for f in ("mfrun.c", "mftest.c")],
                  tc.cc, *flags)
    out = os.path.join(cache, f"{tc.target}-{cpu}-{isa}{'-ubsan' * ubsan}-{key}")
    paths = {n: os.path.join(out, n) for n in ("libmfe.so", "mfrun", "mftest")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    tmp = tempfile.mkdtemp(prefix="build-", dir=_mkdir(cache))
    try:
        objs = [os.path.join(tmp, os.path.basename(s)[:-2] + ".o") for s in _sources()]
        with concurrent.futures.ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:
            for f in [ex.submit(_run, [tc.cc, *flags, "-c", s, "-o", o], f"compiling {os.path.basename(s)}")
                      for s, o in zip(_sources(), objs)]:
                f.result()
        _run([tc.cc, "-shared", "-fopenmp", "-Wl,-soname,libmfe.so", "-o", os.path.join(tmp, "libmfe.so"), *objs],
             "linking libmfe.so")
        for prog in ("mfrun", "mftest"):  # static: runs on any aarch64 Linux, whatever its glibc
            _run([tc.cc, *flags, "-static", "-o", os.path.join(tmp, prog), os.path.join(ARM, prog + ".c"), *objs,
                  "-lm"], f"linking {prog}")
        for o in objs:
            os.remove(o)
        if os.path.exists(out):
            shutil.rmtree(out)
        os.replace(tmp, out)
        prefix = os.path.basename(out)[: -len(key)]
        for old in os.listdir(cache):  # builds of older sources for this (target, cpu, isa)
            if old.startswith(prefix) and old != os.path.basename(out) and len(old) == len(prefix) + len(key):
                shutil.rmtree(os.path.join(cache, old), ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return paths


def build_host_library(out_dir: str) -> str:
    """libmfe.so for this machine (host gcc, -march=native), to test the ABI-mode loader here."""
    cc = os.environ.get("CC") or _which("gcc") or _which("cc")
    if not cc:
        raise CrossError("no host C compiler (gcc)")
    out = os.path.join(_mkdir(out_dir), "libmfe.so")
    _run([cc, *CFLAGS, "-O2", "-march=native", f"-I{CINC}", f"-I{CSRC}", "-shared", "-o", out, *_sources()],
         "building libmfe.so for this machine")
    return out


def _mkdir(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def qemu_cmd(tc: Toolchain, prog: str, cpu: str = "cortex-a57", plugin: str | None = None) -> list[str]:
    """The command line that runs an aarch64 program under qemu with the CPU pinned."""
    if not tc.qemu:
        raise CrossError("qemu-aarch64 not found: install the Debian package qemu-user (make deps)")
    check_cpu(cpu)
    cmd = [tc.qemu, "-cpu", CPUS[cpu][1], "-L", tc.sysroot]
    if plugin:
        cmd += ["-plugin", plugin]
    return [*cmd, prog]


def run_qemu(tc: Toolchain, prog: str, args: list[str], cpu: str = "cortex-a57", plugin: str | None = None,
             timeout: float = QEMU_TIMEOUT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("QEMU_CPU", "QEMU_LD_PREFIX")}
    return subprocess.run([*qemu_cmd(tc, prog, cpu, plugin), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def glibc_needed(tc: Toolchain, lib: str) -> str | None:
    """The newest GLIBC_x.y symbol version a shared library needs (the board's glibc must have it)."""
    objdump = tc.cc[: -len("gcc")] + "objdump" if tc.cc.endswith("gcc") else None
    if not objdump or not _which(objdump):
        return None
    out = subprocess.run([objdump, "-T", lib], capture_output=True, text=True).stdout
    vers = {tuple(map(int, v.split("."))) for v in re.findall(r"GLIBC_(\d+\.\d+(?:\.\d+)?)", out)}
    return ".".join(map(str, max(vers))) if vers else None


def sample_npy(path: str, n: int | None = None) -> str:
    """The embedded sample images (zoo/fashion-mnist-sample.npz) as a uint8 NHWC .npy."""
    import numpy as np
    images = np.load(SAMPLE)["images"]
    np.save(path, np.ascontiguousarray(images[:n], dtype=np.uint8))
    return path


def host_logits_sha256(model: str, npy: str) -> str:
    """What `python cli.py run MODEL --input NPY --json` reports on this machine (C backend if built, else ref)."""
    import numpy as np
    import engine
    m = engine.load(model)
    x = np.load(npy)
    try:
        logits = m.run(x, "c")
    except engine.BackendError:
        logits = m.run(x, "ref")
    return hashlib.sha256(np.ascontiguousarray(logits, dtype="<i4").tobytes()).hexdigest()


def smoke_test(tc: Toolchain, mfrun: str, model: str, npy: str, cpu: str) -> dict:
    """mfrun under qemu on MODEL and NPY, compared with the x86 engine's logits hash."""
    p = run_qemu(tc, mfrun, [model, npy, "--json"], cpu)
    if p.returncode != 0:
        sig = f" (signal {-p.returncode})" if p.returncode < 0 else ""
        raise CrossError(f"smoke test under qemu-aarch64 -cpu {CPUS[cpu][1]} failed{sig}: "
                         f"{(p.stderr.strip().splitlines() or ['no output'])[-1]}")
    got = json.loads(p.stdout)
    want = host_logits_sha256(model, npy)
    if got["logits_sha256"] != want:
        raise CrossError(f"smoke test: aarch64 logits sha256 {got['logits_sha256']} differs from this machine's {want}")
    return {"ran": True, "qemu_cpu": CPUS[cpu][1], "n": got["n"], "isa": got["isa"],
            "logits_sha256": got["logits_sha256"], "matches_host": True}


README = """\
mfe for {target} ({cpu}, kernels: {isa}) - built by `python cli.py cross-compile`

Copy this folder to the board (Jetson Nano: Cortex-A57, JetPack 4; Jetson Orin: --cpu cortex-a78ae):
    scp -r {name} nano@jetson:~/mfe

1. Standalone runner, no Python needed (static: any aarch64 Linux):
    ./mfrun default.mfe sample.npy --json --threads 4
   Prints predictions and logits_sha256 under the keys of `python cli.py run --input X.npy --json`;
   the hash equals the one the x86 engine prints for the same model and images:
    logits_sha256 here: {sha}
   Input: a uint8 NHWC .npy batch (np.save), e.g. (N, 28, 28, 1) or (N, 28, 28).

2. C API (cbackend/include/mfe.h): link libmfe.so (needs libgomp.so.1 and glibc >= {glibc};
   JetPack 4 has glibc 2.27):
    gcc app.c -I include -L . -lmfe -o app && LD_LIBRARY_PATH=. ./app

3. The Python engine on the board (Python >= 3.11 with numpy, cffi and click): copy the repository's
   engine/ package and cli.py (run and inspect need nothing else), then put libmfe.so and _mfe_native.py
   (a cffi ABI-mode loader: no compiler, no Python headers) into that engine/ folder:
    cp libmfe.so _mfe_native.py ~/mfe-src/engine/
    python ~/mfe-src/cli.py run default.mfe --input sample.npy --json      # in this folder
   (or set MFE_LIB=/path/to/libmfe.so). It reports isa "{isa_name}" and the logits_sha256 above.

4. The GPU (CUDA backend): build it on the board, in a checkout of the repository, with JetPack's own
   nvcc (JetPack 4: CUDA 10.2; the sources keep to C++14 and what sm_53 has):
    export PATH=/usr/local/cuda/bin:$PATH && make cuda CUDA_ARCH=sm_53    # Nano; Orin: CUDA_ARCH=sm_87
    python cli.py run ~/mfe/default.mfe --backend cuda --input ~/mfe/sample.npy --json
   It prints the same logits_sha256 as the C backend (build/cuda/libmfe_cuda.so; README "CUDA backend").

Files: mfrun, libmfe.so, _mfe_native.py, include/mfe.h, default.mfe (the zoo model),
sample.npy (the embedded sample images), BUILD.json (flags, smoke test).
Smoke test: {smoke}
"""


def cross_compile(out_dir: str, target: str = "aarch64", cpu: str = "cortex-a57", isa: str = "neon",
                  smoke: bool = True, model: str | None = None, progress=lambda msg: None) -> dict:
    """Build into out_dir what the board needs: libmfe.so + the ABI-mode loader, the static mfrun, a
    README, the model and sample images; run mfrun once under qemu when qemu is installed. progress(msg)
    hears of each long step."""
    tc = toolchain(target)
    check_cpu(cpu)
    model = model or DEFAULT_MODEL
    if not os.path.isfile(model):
        raise CrossError(f"no model file {model}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise CrossError(f"{out_dir} exists and is not a folder")
    progress(f"compiling the C backend for {target} ({cpu}, {isa} kernels; cached after the first build)")
    built = build(tc, cpu, isa)
    _mkdir(os.path.join(out_dir, "include"))
    for name in ("libmfe.so", "mfrun"):
        shutil.copy2(built[name], os.path.join(out_dir, name))
    shutil.copy2(os.path.join(ARM, "mfe_abi.py"), os.path.join(out_dir, "_mfe_native.py"))
    shutil.copy2(os.path.join(CINC, "mfe.h"), os.path.join(out_dir, "include", "mfe.h"))
    shutil.copy2(model, os.path.join(out_dir, os.path.basename(model)))
    npy = sample_npy(os.path.join(out_dir, "sample.npy"))
    report = {"target": target, "cpu": cpu, "isa": isa, "out_dir": os.path.abspath(out_dir),
              "files": sorted(["mfrun", "libmfe.so", "_mfe_native.py", "include/mfe.h", os.path.basename(model),
                               "sample.npy", "README", "BUILD.json"]),
              "cflags": [f for f in _flags(cpu, isa) if not f.startswith("-I")],
              "libmfe_glibc": glibc_needed(tc, built["libmfe.so"])}
    if smoke and tc.qemu:
        progress("smoke test: mfrun under qemu-aarch64 on the sample images")
        report["smoke"] = smoke_test(tc, os.path.join(out_dir, "mfrun"), os.path.join(out_dir, os.path.basename(model)),
                                     npy, cpu)
        s = report["smoke"]
        smoke_line = (f"ran mfrun under qemu-aarch64 -cpu {s['qemu_cpu']} on {s['n']} sample images: logits sha256 "
                      f"matches this machine's engine ({s['logits_sha256'][:16]}...)")
        if CPUS[cpu][0] != s["qemu_cpu"] and cpu != "generic":
            smoke_line += f" [qemu 7.2 has no {cpu}; the {s['qemu_cpu']} has the same instruction set]"
    else:
        why = "--no-smoke given" if not smoke else "qemu-aarch64 not installed (Debian package qemu-user)"
        report["smoke"] = {"ran": False, "reason": why}
        smoke_line = f"not run: {why}"
    report["summary"] = smoke_line
    sha = report["smoke"].get("logits_sha256", "(run the smoke test to record it)")
    with open(os.path.join(out_dir, "README"), "w") as f:
        f.write(README.format(target=target, cpu=cpu, isa=isa, name=os.path.basename(os.path.abspath(out_dir)),
                              sha=sha, glibc=report["libmfe_glibc"] or "?", smoke=smoke_line,
                              isa_name=("neon-dotprod" if isa == "neon" and _has_dotprod(cpu) else isa)))
    with open(os.path.join(out_dir, "BUILD.json"), "w") as f:
        json.dump(report, f, indent=1)
    return report


def _has_dotprod(cpu: str) -> bool:
    return cpu in ("cortex-a76", "cortex-a78ae", "neoverse-n1")


# ---- the Python engine itself under emulated aarch64 Python (cffi ABI mode over libmfe.so) ----

PY_PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "python3-numpy", "python3-cffi-backend", "python3-cffi",
               "python3-click", "libgomp1")


def arm_python_root(root: str = os.path.join(CACHE, "pyroot-arm64")) -> str:
    """A private Debian arm64 root with python3.11, numpy, cffi, click and libgomp1, for running the engine
    under qemu-aarch64 -L ROOT. apt reads this machine's own sources and keys but keeps its state, lists
    and downloads under ROOT; packages are unpacked with dpkg-deb -x. The host's dpkg is never touched
    (no --add-architecture: that would remove the host's python3)."""
    python = os.path.join(root, "usr", "bin", "python3.11")
    done = os.path.join(root, ".complete")
    if os.path.exists(done) and os.path.exists(python):
        return root
    if not _which("apt-get") or not _which("dpkg-deb"):
        raise CrossError("apt-get and dpkg-deb (Debian) are needed to make the arm64 Python root")
    state, cache = os.path.join(root + ".apt", "state"), os.path.join(root + ".apt", "cache")
    for d in (os.path.join(state, "lists", "partial"), os.path.join(cache, "archives", "partial")):
        _mkdir(d)
    status = os.path.join(state, "status")
    open(status, "a").close()  # empty: every dependency is fetched, the host's packages are not consulted
    opts = [f"-oDir::State={state}", f"-oDir::State::status={status}", f"-oDir::Cache={cache}",
            "-oAPT::Architecture=arm64", "-oAPT::Architectures::=arm64", "-oAcquire::Languages=none",
            "-oDebug::NoLocking=1", "-oAPT::Get::AllowUnauthenticated=false"]
    _run(["apt-get", *opts, "-qq", "update"], "apt-get update (arm64 lists in a private folder)")
    _run(["apt-get", *opts, "-qq", "-y", "--download-only", "--no-install-recommends", "install", *PY_PACKAGES],
         "apt-get download of the arm64 Python packages")
    archives = os.path.join(cache, "archives")
    for deb in sorted(f for f in os.listdir(archives) if f.endswith(".deb")):
        _run(["dpkg-deb", "-x", os.path.join(archives, deb), root], f"unpacking {deb}")
    libdir = os.path.join(root, "usr", "lib", "aarch64-linux-gnu")
    for lib in ("blas/libblas.so.3", "lapack/liblapack.so.3"):  # what update-alternatives would link
        link = os.path.join(libdir, os.path.basename(lib))
        if os.path.exists(os.path.join(libdir, lib)) and not os.path.lexists(link):
            os.symlink(lib, link)
    if not os.path.exists(python):
        raise CrossError(f"the arm64 root in {root} has no python3.11")
    open(done, "w").close()
    return root


def engine_app(out_dir: str, libmfe: str) -> str:
    """A copy of the engine package as the board would hold it: pure Python plus libmfe.so and the
    ABI-mode loader as engine/_mfe_native.py (no compiled extension)."""
    eng = _mkdir(os.path.join(out_dir, "engine"))
    for sub, _, files in os.walk(os.path.join(ROOT, "engine")):
        if "__pycache__" in sub:
            continue
        dst = _mkdir(os.path.join(eng, os.path.relpath(sub, os.path.join(ROOT, "engine"))))
        for f in files:
            if f.endswith(".py"):
                shutil.copy2(os.path.join(sub, f), dst)
    shutil.copy2(libmfe, os.path.join(eng, "libmfe.so"))
    shutil.copy2(os.path.join(ARM, "mfe_abi.py"), os.path.join(eng, "_mfe_native.py"))
    return out_dir


def run_arm_python(tc: Toolchain, root: str, args: list[str], cwd: str, cpu: str = "cortex-a57",
                   timeout: float = QEMU_TIMEOUT) -> subprocess.CompletedProcess:
    """python3.11 of the arm64 root under qemu-aarch64 (CPU pinned, -L ROOT)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "QEMU_", "MFE_LIB"))}
    cmd = [tc.qemu or "qemu-aarch64", "-cpu", CPUS[cpu][1], "-L", root, os.path.join(root, "usr", "bin", "python3.11"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


# ---- instruction counts under qemu: an ARM figure where no ARM clock is reachable ----

def build_plugin(cache: str = CACHE) -> str:
    """Build the instruction-counting qemu plugin for this (host) machine."""
    src = os.path.join(ARM, "insncount.c")
    cc = os.environ.get("CC") or _which("gcc") or _which("cc")
    if not cc:
        raise CrossError("no host C compiler (gcc) to build the qemu plugin")
    out = os.path.join(_mkdir(cache), f"insncount-{_digest([src], cc)}.so")
    if not os.path.exists(out):
        tmp = out + ".tmp"
        _run([cc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, src], "building the qemu plugin")
        os.replace(tmp, out)
    return out


def count(tc: Toolchain, prog: str, args: list[str], cpu: str = "cortex-a57", plugin: str | None = None) -> int:
    """Guest instructions one run of an aarch64 program executes under qemu (TCG plugin insncount)."""
    plugin = plugin or build_plugin()
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "count")
        p = run_qemu(tc, prog, args, cpu, plugin=f"{plugin},outfile={out}")
        if p.returncode != 0:
            raise CrossError(f"{os.path.basename(prog)} under qemu failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        if not os.path.exists(out):
            raise CrossError("qemu-aarch64 did not load the counting plugin (qemu without TCG plugin support?)")
        with open(out) as f:
            return int(f.read().split()[1])


def profile(tc: Toolchain, prog: str, args: list[str], cpu: str = "cortex-a57", top: int = 15) -> list[tuple[str, int]]:
    """Executed instructions per function of a static aarch64 program: (symbol, instructions), largest
    first, from the plugin's per-block counts and the program's symbol table."""
    import bisect
    nm = tc.cc[: -len("gcc")] + "nm"
    syms = []
    for line in _run([nm, "-n", prog], "reading symbols").stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    addrs = [a for a, _ in syms]
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "tbs")
        p = run_qemu(tc, prog, args, cpu, plugin=f"{build_plugin()},tbs={out}")
        if p.returncode != 0 or not os.path.exists(out):
            raise CrossError(f"profiling {os.path.basename(prog)} failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
        per: dict[str, int] = {}
        with open(out) as f:
            for line in f:
                a, n = line.split()
                i = bisect.bisect_right(addrs, int(a, 16)) - 1
                name = syms[i][1] if i >= 0 else "?"
                per[name] = per.get(name, 0) + int(n)
    return sorted(per.items(), key=lambda kv: -kv[1])[:top]


def count_per_run(tc: Toolchain, mfrun: str, model: str, npy: str, cpu: str, plugin: str) -> int:
    """Instructions of one steady-state pass over the input: count(--repeat 2) - count(--repeat 1), so
    process start, model load, file reading, hashing and the first call's buffer planning drop out."""
    one = count(tc, mfrun, [model, npy, "--repeat", "1"], cpu, plugin)
    two = count(tc, mfrun, [model, npy, "--repeat", "2"], cpu, plugin)
    return two - one


def wht_seed_model(path: str, mode: int, c: int = 1024) -> str:
    """Seed 000's WHT layer as benchmarks/wht_seed.py builds it: 1024 channels, n = 1024."""
    import numpy as np
    from engine import format as fmt
    from engine.builder import GraphBuilder
    from engine.ops.wht import smooth_table
    b = GraphBuilder((32, 32, c))
    g, table = smooth_table(0.01)
    b.add("wht", 0, cout=c, n=c, order=0, mode=mode, residual=0, tshift=g,
          thresh=np.random.default_rng(0).integers(0, 2000, c), table=table.ravel() if mode else np.zeros(0))
    fmt.save(b.build(), path)
    return path


def count_instructions(images: int = 1, cpu: str = "cortex-a57", models: tuple[str, ...] = MODELS,
                       model_images: int = 8, wht_modes: tuple[str, ...] = ("soft", "smooth")) -> dict:
    """Executed aarch64 instructions of the NEON build and of the scalar build (-O2 -DMFE_FORCE_SCALAR,
    the flags of engine/_mfe_scalar) under qemu-aarch64 -cpu CPU, counted by the insncount plugin.

    wht_<mode>: seed 000's WHT layer (32x32x1024 int8 through `wht`, n = 1024) on `images` images,
    scaled to the seed's batch of 10 (the count is linear in images: every pixel block does the
    same work). model_<name>: each of `models` (zoo/ file names or paths) on the first `model_images`
    embedded sample images, per image (the count is linear in images too; all 300 under qemu, and
    the scalar build, would take many minutes for the MobileNet-V2 models).
    Each figure is one steady-state pass (count_per_run). Returns a dict (json-able)."""
    import numpy as np
    tc = toolchain()
    if not tc.qemu:
        raise CrossError("qemu-aarch64 not found: install the Debian package qemu-user (make deps)")
    plugin = build_plugin()
    builds = {isa: build(tc, cpu, isa)["mfrun"] for isa in ISAS}
    res: dict = {"cpu": cpu, "qemu_cpu": CPUS[cpu][1],
                 "method": "qemu-aarch64 TCG plugin cbackend/arm/insncount.c (guest instructions executed); "
                           "per pass = count(--repeat 2) - count(--repeat 1) of mfrun, threads 1",
                 "builds": {"neon": "-O3 -mcpu=" + CPUS[cpu][0], "scalar": "-O2 -DMFE_FORCE_SCALAR -mcpu=" + CPUS[cpu][0]}}
    with tempfile.TemporaryDirectory() as d:
        x = os.path.join(d, "x.npy")
        np.save(x, np.random.default_rng(1).integers(0, 256, (images, 32, 32, 1024), dtype=np.uint8))
        for mode in wht_modes:
            model = wht_seed_model(os.path.join(d, f"wht_{mode}.mfe"), {"soft": 0, "smooth": 1}[mode])
            counts = {isa: count_per_run(tc, prog, model, x, cpu, plugin) for isa, prog in builds.items()}
            res[f"wht_{mode}"] = {"shape": [10, 32, 32, 1024], "measured_images": images,
                                  **{isa: counts[isa] * 10 // images for isa in counts},
                                  "neon_over_scalar": round(counts["neon"] / counts["scalar"], 4)}
        npy = sample_npy(os.path.join(d, "sample.npy"), model_images)
        n, *hwc = np.load(npy).shape  # n < model_images where the sample has fewer
        for m in models:
            path = os.path.join(ROOT, "zoo", m)  # an absolute path stays as given
            counts = {isa: count_per_run(tc, prog, path, npy, cpu, plugin) for isa, prog in builds.items()}
            res["model_" + os.path.basename(m).removesuffix(".mfe")] = {
                "model": os.path.relpath(path, ROOT), "shape": [1, *hwc], "measured_images": n,
                **{isa: round(counts[isa] / n) for isa in counts},
                "neon_over_scalar": round(counts["neon"] / counts["scalar"], 4)}
    return res


if __name__ == "__main__":
    import sys
    kw = dict(zip(("images", "model_images"), map(int, sys.argv[1:3])))  # [WHT_IMAGES [MODEL_IMAGES]]
    print(json.dumps(count_instructions(**kw), indent=1))
