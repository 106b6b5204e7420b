"""Seed 000's speed experiment on this machine: a 10x32x32x1024 tensor through
  (a) torch fp32 1x1 conv 1024->1024 + ReLU (NCHW, torch's fastest CPU layout),
  (b) the paper's WHT layer as its authors wrote it, in torch fp32: the 1024-point WHT as two radix-32
      stages, each a torch.tensordot against a 32x32 (Walsh-ordered, orthonormal) Hadamard matrix, smooth
      thresholding tanh(z w) relu(|z w| - T) on the 32x32 coefficient grid, then the two inverse stages,
  (c) our int8 1x1 conv (C backend), (d) our `wht` layer (int8, C backend): smooth thresholding (the
      seed's layer, `wht_ms`) and soft thresholding (`wht_soft_ms`).
Medians of interleaved runs (common.interleaved), 1 thread and all threads."""
from __future__ import annotations

import numpy as np

from .common import clock_for, interleaved, progress

SHAPE = (10, 32, 32, 1024)
RADIX = 32


# ---- (b) the radix-32 tensordot WHT layer in torch ----

def walsh_matrix(r: int) -> np.ndarray:
    """r x r orthonormal Hadamard matrix with rows in sequency (Walsh) order: row s is the Sylvester row
    bitrev(gray(s)), scaled by 1/sqrt(r)."""
    k = r.bit_length() - 1
    if r < 1 or 1 << k != r:
        raise ValueError(f"radix must be a power of two, got {r}")
    h = np.ones((1, 1))
    for _ in range(k):
        h = np.block([[h, h], [h, -h]])

    def bitrev(v: int) -> int:
        return int(format(v, f"0{k}b")[::-1], 2) if k else 0

    perm = [bitrev(s ^ (s >> 1)) for s in range(r)]
    return h[perm] / np.sqrt(r)


class Radix32WHT:
    """The seed's WHT layer for C = radix^2 channels, channels-last input (N, H, W, C) in torch fp32.

    forward: z = W-transform along both radix axes of the channel grid (two tensordots), smooth threshold
    with per-coefficient scale and threshold (radix x radix each), inverse transform (two tensordots
    against W^T, W being orthonormal), back to (N, H, W, C)."""

    def __init__(self, channels: int = RADIX * RADIX, radix: int = RADIX, seed: int = 0,
                 threshold: bool = True):
        import torch
        if radix * radix != channels:
            raise ValueError(f"{channels} channels is not radix^2 = {radix * radix}")
        self.r = radix
        w = walsh_matrix(radix).astype(np.float32)
        self.w = torch.from_numpy(w)
        self.wt = torch.from_numpy(np.ascontiguousarray(w.T))
        g = np.random.default_rng(seed)
        # as the paper initialises them: thresholds growing along the grid, scales one
        t = (np.arange(radix)[:, None] + np.arange(radix)[None, :]) / (10 * radix) * g.uniform(0.5, 1.5, (radix, radix))
        self.t = torch.from_numpy(t.astype(np.float32))
        self.s = torch.ones(radix, radix)
        self.threshold = threshold

    def transform(self, x, m):
        """Both radix stages against matrix m: (..., a, b) -> (..., kb, ka) -> ... each tensordot contracts
        one grid axis and appends the new axis last, so two stages give back the (row, column) layout
        transposed; the second transform (inverse) transposes it back."""
        import torch
        y = torch.tensordot(x, m, dims=([x.dim() - 1], [0]))
        return torch.tensordot(y, m, dims=([x.dim() - 2], [0]))

    def __call__(self, x):
        import torch
        n, h, w, c = x.shape
        z = self.transform(x.reshape(n, h, w, self.r, self.r), self.w)
        if self.threshold:
            z = z * self.s
            z = torch.tanh(z) * torch.relu(z.abs() - self.t)
        return self.transform(z, self.wt).reshape(n, h, w, c)


# ---- (c), (d): single-layer engine models ----

def wht_model(h: int, w: int, c: int, mode: int):
    """Our `wht` layer, n = c channels in and out, mode 0 soft / 1 smooth (table for s = 0.01)."""
    import engine
    from engine.builder import GraphBuilder
    from engine.ops.wht import smooth_table
    b = GraphBuilder((h, w, c))
    g, table = smooth_table(0.01)
    b.add("wht", 0, cout=c, n=c, order=0, mode=mode, residual=0, tshift=g,
          thresh=np.random.default_rng(0).integers(0, 2000, c), table=table.ravel() if mode else np.zeros(0))
    return engine.from_graph(b.build(), name=f"wht-{c}")


def conv1x1_model(h: int, w: int, c: int):
    """Our int8 1x1 conv c -> c with ReLU (act_lo 0), fixed-point requantisation."""
    import engine
    from engine.builder import GraphBuilder
    rng = np.random.default_rng(0)
    b = GraphBuilder((h, w, c))
    b.add("conv2d", 0, cout=c, kh=1, kw=1, stride_h=1, stride_w=1, pad_t=0, pad_l=0, pad_b=0, pad_r=0, groups=1,
          weight=rng.integers(-128, 128, (c, 1, 1, c)), bias=np.zeros(c), mult=np.ones(c), shift=np.full(c, 16),
          act_lo=0)
    return engine.from_graph(b.build(), name=f"conv1x1-{c}")


def engine_runner(model, x: np.ndarray, threads: int):
    """A no-argument callable running `model` on x through NativeModel.run into a preallocated output."""
    nm = model.native()
    out = np.empty((x.shape[0], *nm.out_shape), dtype=nm.out_dtype)
    return lambda: nm.run(x, threads, out=out)


def torch_conv1x1(c: int):
    import torch
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(c, c, 1).eval()
    for p in conv.parameters():
        p.requires_grad_(False)
    return conv


def run(threads: list[int], repeats: int, batch: int = SHAPE[0], min_sample_s: float = 0.0,
        quiet: bool = False) -> list[dict]:
    """One entry per thread count: ms of each peer and its speed-up over torch's fp32 1x1 conv."""
    import torch
    n, h, w, c = batch, *SHAPE[1:]
    x_u8 = np.random.default_rng(1).integers(0, 256, (n, h, w, c), dtype=np.uint8)
    x_nchw = torch.from_numpy(np.ascontiguousarray(x_u8.transpose(0, 3, 1, 2)).astype(np.float32) / 255)
    x_nhwc = torch.from_numpy(x_u8.astype(np.float32) / 255)
    conv, radix = torch_conv1x1(c), Radix32WHT(c)
    models = {"int8_conv1x1": conv1x1_model(h, w, c), "wht": wht_model(h, w, c, 1), "wht_soft": wht_model(h, w, c, 0)}
    out = []
    for t in threads:
        progress(f"seed 000 experiment: {n}x{h}x{w}x{c}, {t} thread(s)", quiet)
        torch.set_num_threads(t)
        peers = {"torch_conv1x1": lambda: torch.relu(conv(x_nchw)), "torch_radix32": lambda: radix(x_nhwc)}
        peers.update({k: engine_runner(m, x_u8, t) for k, m in models.items()})
        with torch.inference_mode():
            ms = interleaved(peers, repeats, min_sample_s, settle_s=0.01 if t > 1 else 0.0, clock=clock_for(t))
        row = {"threads": t, "tensor": [n, h, w, c], **{f"{k}_ms": round(v, 3) for k, v in ms.items()}}
        row["speedup_vs_torch_conv1x1"] = {k: round(ms["torch_conv1x1"] / v, 2) for k, v in ms.items()
                                           if k != "torch_conv1x1"}
        out.append(row)
    return out
