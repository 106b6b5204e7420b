"""How the cost grows with the channel count: our `wht` (O(n log n) adds per pixel) against our int8 1x1
conv and torch's fp32 1x1 conv (O(n^2) multiply-adds per pixel), n -> n channels on a fixed pixel count,
1 thread, measured side by side at each n. The slope of log(ms) against log(n), least squares, says
which law each follows on this range (1 + ~0.17 for n log n from 64 to 4096, 2 for n^2; overheads that
do not grow with n pull small-n points up and the slope down)."""
from __future__ import annotations

import math

import numpy as np

from .common import clock_for, interleaved, loglog_slope, progress
from .seed import conv1x1_model, engine_runner, torch_conv1x1, wht_model

PIXELS = (32, 32)  # one 32x32 image, as in seed 000's tensor


def run(channels: list[int], repeats: int, threads: int = 1, min_sample_s: float = 0.0, quiet: bool = False) -> dict:
    import torch
    h, w = PIXELS
    torch.set_num_threads(threads)
    points = []
    for c in channels:
        progress(f"growth: {c} channels, {h}x{w} pixels, {threads} thread(s)", quiet)
        x_u8 = np.random.default_rng(c).integers(0, 256, (1, h, w, c), dtype=np.uint8)
        x_nchw = torch.from_numpy(np.ascontiguousarray(x_u8.transpose(0, 3, 1, 2)).astype(np.float32) / 255)
        conv = torch_conv1x1(c)
        peers = {"wht": engine_runner(wht_model(h, w, c, 1), x_u8, threads),
                 "int8_conv1x1": engine_runner(conv1x1_model(h, w, c), x_u8, threads),
                 "torch_conv1x1": lambda: torch.relu(conv(x_nchw))}
        with torch.inference_mode():
            ms = interleaved(peers, repeats, min_sample_s, clock=clock_for(threads))
        points.append({"channels": c, **{f"{k}_ms": round(v, 4) for k, v in ms.items()}})
    keys = ("wht", "int8_conv1x1", "torch_conv1x1")
    slope = {k: _r(loglog_slope(channels, [p[f"{k}_ms"] for p in points])) for k in keys}
    big = [p for p in points if p["channels"] >= 256]
    slope_256 = {k: _r(loglog_slope([p["channels"] for p in big], [p[f"{k}_ms"] for p in big])) for k in keys}
    nlogn = [c * math.log2(c) for c in channels]
    return {"pixels": [h, w], "threads": threads, "points": points, "slope": slope, "slope_from_256": slope_256,
            "slope_theory": {"n_log_n": _r(loglog_slope(channels, nlogn)), "n_squared": 2.0}}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
