"""Shared pieces: interleaved median timing, the machine description, progress lines, log-log slopes.

Timing rule: peers compared in one table are measured side by side. `interleaved` runs every peer once
to warm up, picks for each an inner loop count so one sample lasts at least `min_sample_s`, then takes
`repeats` rounds; each round samples every peer once, in an order rotated from round to round, so a
background load that comes and goes hits all peers alike. The figure is the median over the rounds of
the per-call time."""
from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or failed; the message is one line for the user."""


def progress(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


CPU_TIME = False  # `bench --cpu-time`: one-thread tables time the calling thread's CPU time


def clock_for(threads: int) -> Callable[[], float]:
    """The clock of a table run at `threads` threads: wall time, or with CPU_TIME and one thread the calling
    thread's CPU time (what the peers spend computing, less inflated by other processes on a shared machine;
    every peer runs in the calling thread at one thread)."""
    return time.thread_time if CPU_TIME and threads == 1 else time.perf_counter


def interleaved(peers: dict[str, Callable[[], object]], repeats: int, min_sample_s: float = 0.0,
                budget_s: float | None = None, settle_s: float = 0.0,
                clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Median milliseconds per call of each peer, measured round-robin (see the module doc). With budget_s,
    rounds stop early once that many seconds have passed (never before 3 rounds): a heavily loaded
    machine then gives fewer rounds instead of an unbounded run. settle_s: a pause before each sample so
    the worker threads of the previous peer's runtime (OpenMP, ONNX Runtime's pool) stop spin-waiting
    before the next peer needs the cores."""
    names = list(peers)
    inner = {}
    for n in names:
        peers[n]()  # warm-up: plans buffers, faults pages in, picks kernels
        t0 = clock()
        peers[n]()
        dt = clock() - t0
        inner[n] = max(1, math.ceil(min_sample_s / dt)) if dt > 0 else 1
    samples: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(max(1, repeats)):
        if budget_s is not None and r >= 3 and time.perf_counter() - start > budget_s:
            break
        k = r % len(names)
        for n in names[k:] + names[:k]:
            fn, reps = peers[n], inner[n]
            if settle_s:
                time.sleep(settle_s)
            t0 = clock()
            for _ in range(reps):
                fn()
            samples[n].append((clock() - t0) * 1e3 / reps)
    return {n: statistics.median(s) for n, s in samples.items()}


def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); None with fewer than two points."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def _cpuinfo() -> dict[str, str]:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return info


def _version(mod: str) -> str | None:
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _gcc() -> str | None:
    try:
        out = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, timeout=10).stdout.strip()
        return out or None
    except (OSError, subprocess.SubprocessError):
        return None


def engine_isa() -> str:
    """The SIMD level the C backend was built for (what NativeModel(...).isa reports)."""
    import engine
    from engine.builder import GraphBuilder
    b = GraphBuilder((1, 1, 4))
    b.add("clamp", 0)
    try:
        return engine.from_graph(b.build()).native().isa
    except engine.BackendError as e:
        raise BenchError(str(e)) from None


def machine() -> dict:
    """CPU model, cores, SIMD flags, the engine's ISA, versions, load average now."""
    ci = _cpuinfo()
    flags = set(ci.get("flags", "").split())
    simd = [f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "asimd", "sve")
            if f in flags or f in ci.get("Features", "").split()]
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": ci.get("model name") or platform.processor() or platform.machine(),
        "arch": platform.machine(), "cores": os.cpu_count(), "usable_cores": usable,
        "cpu_simd": simd, "engine_isa": engine_isa(),
        "python": platform.python_version(), "numpy": _version("numpy"), "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"), "onnx": _version("onnx"), "gcc": _gcc(),
        "os": platform.platform(terse=True),
        "loadavg": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


def need(module: str, extra: str = "requirements-bench.txt"):
    """Import an optional package or raise BenchError saying how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise BenchError(f"{module} is not installed: pip install -r {extra}") from None
