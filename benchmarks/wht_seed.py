"""Seed 000's speed claim on this machine: the WHT layer vs a 1x1 convolution on a 10x32x32x1024 tensor.

    python benchmarks/wht_seed.py [--threads 1] [--repeats 15] [--json]

Each figure is the median of repeated runs, all measured side by side in this one process:
torch fp32 1x1 conv 1024->1024 (NCHW, its best CPU layout), our int8 1x1 conv and our wht layer
(soft and smooth thresholds), both on the C backend through the engine API.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import engine  # noqa: E402
from engine.builder import GraphBuilder  # noqa: E402
from engine.ops.wht import smooth_table  # noqa: E402

N, H, W, C = 10, 32, 32, 1024


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: plans buffers, faults pages in
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def wht_model(mode: int) -> engine.Model:
    b = GraphBuilder((H, W, C))
    g, table = smooth_table(0.01)
    b.add("wht", 0, cout=C, n=C, order=0, mode=mode, residual=0, tshift=g,
          thresh=np.random.default_rng(0).integers(0, 2000, C), table=table.ravel() if mode else np.zeros(0))
    return engine.from_graph(b.build())


def conv1x1_model() -> engine.Model:
    rng = np.random.default_rng(0)
    b = GraphBuilder((H, W, C))
    b.add("conv2d", 0, cout=C, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, groups=1,
          weight=rng.integers(-128, 128, (C, 1, 1, C)), bias=np.zeros(C), mult=np.ones(C), shift=np.full(C, 16), act_lo=0)
    return engine.from_graph(b.build())


def cpu_name() -> str:
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(args.threads)
    x_u8 = np.random.default_rng(1).integers(0, 256, (N, H, W, C), dtype=np.uint8)
    xt = torch.from_numpy(x_u8.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    conv = torch.nn.Conv2d(C, C, 1).eval()
    with torch.inference_mode():
        t_torch = median_ms(lambda: torch.relu(conv(xt)), args.repeats)
    res = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                       "torch": torch.__version__, "numpy": np.__version__},
           "tensor": [N, H, W, C], "threads": args.threads, "torch_conv1x1_ms": round(t_torch, 3)}
    soft, smooth, c1 = wht_model(0), wht_model(1), conv1x1_model()
    res["isa"] = soft.native().isa
    for key, m in (("wht_soft_ms", soft), ("wht_smooth_ms", smooth), ("int8_conv1x1_ms", c1)):
        res[key] = round(median_ms(lambda: m.native().run(x_u8, args.threads), args.repeats), 3)
        res[key.replace("_ms", "_speedup_vs_torch")] = round(t_torch / res[key], 2)
    if args.json:
        print(json.dumps(res))
        return
    print(f"{res['machine']['cpu']}, {args.threads} thread(s), isa {res['isa']}, torch {torch.__version__}")
    for key in ("torch_conv1x1_ms", "int8_conv1x1_ms", "wht_soft_ms", "wht_smooth_ms"):
        ratio = res.get(key.replace("_ms", "_speedup_vs_torch"), 1.0)
        print(f"  {key[:-3]:<16} {res[key]:>9.2f} ms   {ratio:>6.2f}x vs torch fp32 1x1 conv")


if __name__ == "__main__":
    main()
