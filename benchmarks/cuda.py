"""`python -m benchmarks.cuda [--json] [--quick]`: the CUDA backend on this machine's GPU (issue 6).

(a) The fused WHT layer, int8, on a (256, 32, 32, 1024) NHWC tensor (a `wht` node, n = 1024, 1024 channels
    in and out; soft and smooth thresholds): the median of many passes timed with CUDA events on
    device-resident data, as GB/s of bytes read plus bytes written, against
    - the device's copy bandwidth: cudaMemcpyAsync device to device of the same bytes (read + write counted);
    - torch's cuDNN fp16 1x1 conv 1024 -> 1024 on the same tensor (NCHW and channels_last; the faster is the
      peer), in this process. torch is imported here only; without torch + CUDA that peer is reported missing.
(b) Whole models, batch 256: every zoo/*.mfe on our CUDA backend (end to end from host uint8 to host logits,
    and the graph alone on the device), against PyTorch fp16 on the same GPU for the float architecture
    where a checkpoint exists (zoo/<model>.pt, or zoo/fmnist-<arch>.pt for the file's `arch` metadata),
    built through training.checkpoint.load.
Timings are medians; nothing here is asserted by the tests. Prints a table (or one JSON object) last."""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz")
WHT_SHAPE = (256, 32, 32, 1024)
TARGET_COPY_FRACTION = 0.8
TARGET_CONV_SPEEDUP = 4.0


def log(msg: str) -> None:
    print(f"[cuda-bench] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def wht_graph(mode: int, shape: tuple, n: int = 1024):
    from engine.builder import GraphBuilder
    from engine.ops.wht import smooth_table
    rng = np.random.default_rng(0)
    b = GraphBuilder(shape[1:])
    g, table = smooth_table(0.02)
    b.add("wht", 0, cout=n, n=n, order=0, mode=mode, residual=0, tshift=g, thresh=rng.integers(0, 8 * n, n),
          table=table.ravel() if mode else np.zeros(0), oshift=0)
    return b.build()


def torch_cuda():
    """torch with a usable CUDA device, or (None, why)."""
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means the peer is missing
        return None, f"torch not importable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} sees no CUDA device"
    return torch, None


def torch_time(torch, fn, reps: int, warmup: int = 5) -> list[float]:
    """Milliseconds per call of fn, each call between two CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(reps):
        a.record()
        fn()
        b.record()
        b.synchronize()
        out.append(a.elapsed_time(b))
    return out


def bench_wht(reps: int, batch: int = WHT_SHAPE[0]) -> dict:
    import engine
    from engine import cuda
    shape = (batch, *WHT_SHAPE[1:])
    nbytes = int(np.prod(shape))
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, shape, dtype=np.uint8)
    res: dict = {"shape_nhwc": list(shape), "bytes_in": nbytes, "bytes_out": nbytes, "reps": reps}
    log(f"copy bandwidth: cudaMemcpyAsync of {nbytes / 2**20:.0f} MiB device to device")
    copy = cuda.time_copy(nbytes, reps)
    res["copy_ms"] = median(copy)
    res["copy_gbs"] = 2 * nbytes / (res["copy_ms"] * 1e-3) / 1e9
    for name, mode in (("soft", 0), ("smooth", 1)):
        log(f"wht n=1024 {name} threshold, batch {batch}")
        m = engine.from_graph(wht_graph(mode, shape))
        cm = m.native("cuda")
        t = cm.time_graph(x, reps)
        ms = median(t)
        res[f"wht_{name}_ms"] = ms
        res[f"wht_{name}_ms_min"] = min(t)
        res[f"wht_{name}_gbs"] = 2 * nbytes / (ms * 1e-3) / 1e9
        del cm, m
    torch, why = torch_cuda()
    if torch is None:
        res["torch_conv"] = {"missing": why}
        return res
    log(f"torch {torch.__version__} cuDNN fp16 1x1 conv 1024->1024")
    torch.backends.cudnn.benchmark = True
    conv = {"torch": torch.__version__, "cudnn": torch.backends.cudnn.version()}
    with torch.inference_mode():
        xt = torch.randn(shape[0], shape[3], shape[1], shape[2], device="cuda", dtype=torch.half)
        w = torch.randn(1024, 1024, 1, 1, device="cuda", dtype=torch.half) * 0.03
        for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
            xl, wl = xt.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
            conv[f"{layout}_ms"] = median(torch_time(torch, lambda: torch.nn.functional.conv2d(xl, wl), reps))
            del xl, wl
        del xt, w
    torch.cuda.empty_cache()
    conv["best_ms"] = min(conv["nchw_ms"], conv["channels_last_ms"])
    res["torch_conv"] = conv
    return res


def sample_images(n: int) -> np.ndarray:
    imgs = np.load(SAMPLE)["images"]
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    return np.ascontiguousarray(np.resize(imgs, (n, *imgs.shape[1:])))


def checkpoint_for(path: str, meta: dict) -> str | None:
    stem = os.path.splitext(os.path.basename(path))[0]
    cands = [os.path.join(ROOT, "zoo", f"{stem}.pt")]
    for key in ("arch", "source_arch"):
        if isinstance(meta.get(key), str):
            cands.append(os.path.join(ROOT, "zoo", f"fmnist-{meta[key]}.pt"))
    for key in ("checkpoint", "source"):
        if isinstance(meta.get(key), str) and meta[key].endswith(".pt"):
            cands.append(os.path.join(ROOT, "zoo", os.path.basename(meta[key])))
    return next((c for c in cands if os.path.exists(c)), None)


def bench_model(path: str, batch: int, reps: int) -> dict:
    import engine
    m = engine.load(path)
    h, w, c = m.input_shape
    row: dict = {"model": os.path.relpath(path, ROOT), "batch": batch, "input": [h, w, c]}
    if (h, w, c) == (28, 28, 1):
        u8 = sample_images(batch)
    else:
        u8 = np.random.default_rng(2).integers(0, 256, (batch, h, w, c), dtype=np.uint8)
    cm = m.native("cuda")
    ours = cm.run(u8)
    for _ in range(3):
        cm.run(u8)
    e2e = []
    for _ in range(reps):
        t0 = time.perf_counter()
        cm.run(u8)
        e2e.append((time.perf_counter() - t0) * 1e3)
    row["ours_e2e_ms"] = median(e2e)
    row["ours_e2e_images_per_s"] = batch / (row["ours_e2e_ms"] * 1e-3)
    if batch <= cm.max_batch:
        row["ours_graph_ms"] = median(cm.time_graph(u8, reps))
        row["ours_graph_images_per_s"] = batch / (row["ours_graph_ms"] * 1e-3)
    try:
        want = m.native("c").run(u8)
        row["bit_exact_vs_c"] = bool(np.array_equal(want, ours))
    except engine.BackendError as e:
        row["bit_exact_vs_c"] = f"C backend unavailable: {e}"
    ckpt = checkpoint_for(path, m.graph.meta or {})
    if not ckpt:
        row["torch"] = {"missing": "no float checkpoint in zoo/ for this model"}
        return row
    torch, why = torch_cuda()
    if torch is None:
        row["torch"] = {"missing": why}
        return row
    try:
        sys.path.insert(0, ROOT)
        from training import checkpoint
        model, ck = checkpoint.load(ckpt)
    except Exception as e:  # noqa: BLE001
        row["torch"] = {"missing": f"cannot load {os.path.basename(ckpt)}: {type(e).__name__}: {str(e).splitlines()[0]}"}
        return row
    norm = ck.get("normalization") or {"mean": [0.2860], "std": [0.3530]}
    tr: dict = {"checkpoint": os.path.relpath(ckpt, ROOT), "arch": ck.get("arch"), "dtype": "float16"}
    torch.backends.cudnn.benchmark = True
    with torch.inference_mode():
        model = model.cuda().half().eval().to(memory_format=torch.channels_last)
        mean = torch.tensor(norm["mean"], device="cuda", dtype=torch.half).view(1, -1, 1, 1)
        std = torch.tensor(norm["std"], device="cuda", dtype=torch.half).view(1, -1, 1, 1)

        def prep(a):
            t = torch.from_numpy(a).cuda(non_blocking=False).permute(0, 3, 1, 2).half().div_(255)
            return ((t - mean) / std).contiguous(memory_format=torch.channels_last)

        xd = prep(u8)
        tr["graph_ms"] = median(torch_time(torch, lambda: model(xd), reps))
        tr["graph_images_per_s"] = batch / (tr["graph_ms"] * 1e-3)
        logits = model(xd).float().cpu().numpy()
        for _ in range(3):
            model(prep(u8)).cpu()
        e2e = []
        for _ in range(reps):
            t0 = time.perf_counter()
            model(prep(u8)).cpu()
            e2e.append((time.perf_counter() - t0) * 1e3)
        tr["e2e_ms"] = median(e2e)
        tr["e2e_images_per_s"] = batch / (tr["e2e_ms"] * 1e-3)
    ours2 = ours.reshape(batch, -1)
    if ours2.shape[1] == logits.reshape(batch, -1).shape[1]:
        tr["top1_agreement_with_ours"] = float((ours2.argmax(1) == logits.reshape(batch, -1).argmax(1)).mean())
    row["torch"] = tr
    del model
    torch.cuda.empty_cache()
    return row


def targets(res: dict) -> list[dict]:
    out = []
    w = res.get("wht") or {}
    if "wht_soft_gbs" in w:
        frac = w["wht_soft_gbs"] / w["copy_gbs"]
        out.append({"what": "fused WHT (soft) bandwidth / device copy bandwidth", "value": frac,
                    "target": TARGET_COPY_FRACTION, "met": frac >= TARGET_COPY_FRACTION})
        frac_s = w["wht_smooth_gbs"] / w["copy_gbs"]
        out.append({"what": "fused WHT (smooth) bandwidth / device copy bandwidth", "value": frac_s,
                    "target": TARGET_COPY_FRACTION, "met": frac_s >= TARGET_COPY_FRACTION})
        conv = w.get("torch_conv", {})
        if "best_ms" in conv:
            for name in ("soft", "smooth"):
                sp = conv["best_ms"] / w[f"wht_{name}_ms"]
                out.append({"what": f"fused WHT ({name}) speed-up over torch cuDNN fp16 1x1 conv", "value": sp,
                            "target": TARGET_CONV_SPEEDUP, "met": sp >= TARGET_CONV_SPEEDUP})
    return out


def table(res: dict) -> str:
    lines = [f"gpu       {res.get('gpu')}", f"build     {res.get('build')}"]
    w = res.get("wht")
    if isinstance(w, dict) and "copy_gbs" in w:
        b = w["bytes_in"] / 2**20
        lines += [f"fused WHT layer, int8 NHWC {tuple(w['shape_nhwc'])}, {b:.0f} MiB in + {b:.0f} MiB out, "
                  f"median of {w['reps']} (CUDA events)",
                  f"  {'device copy (cudaMemcpy D2D)':40s} {w['copy_ms']:8.3f} ms  {w['copy_gbs']:7.0f} GB/s"]
        for name in ("soft", "smooth"):
            lines.append(f"  {'our wht, ' + name + ' threshold':40s} {w[f'wht_{name}_ms']:8.3f} ms  "
                         f"{w[f'wht_{name}_gbs']:7.0f} GB/s  {w[f'wht_{name}_gbs'] / w['copy_gbs']:5.1%} of copy")
        conv = w.get("torch_conv", {})
        if "best_ms" in conv:
            for lay in ("nchw", "channels_last"):
                lines.append(f"  {'torch cuDNN fp16 1x1 conv, ' + lay:40s} {conv[f'{lay}_ms']:8.3f} ms")
        else:
            lines.append(f"  torch cuDNN fp16 1x1 conv: missing ({conv.get('missing')})")
    elif w:
        lines.append(f"fused WHT layer: failed ({w.get('error')})")
    rows = res.get("models") or []
    if rows:
        lines.append("whole models, images/s (median; e2e: host uint8 in, host logits out; graph: on the device)")
        lines.append(f"  {'model':28s} {'batch':>5s} {'ours e2e':>10s} {'ours graph':>11s} {'torch fp16 e2e':>15s} "
                     f"{'torch graph':>12s}  exact-vs-c")
        for r in rows:
            if "error" in r:
                lines.append(f"  {r['model']:28s} failed: {r['error']}")
                continue
            t = r.get("torch", {})
            te = f"{t['e2e_images_per_s']:15.0f}" if "e2e_images_per_s" in t else f"{'-':>15s}"
            tg = f"{t['graph_images_per_s']:12.0f}" if "graph_images_per_s" in t else f"{'-':>12s}"
            og = f"{r['ours_graph_images_per_s']:11.0f}" if "ours_graph_images_per_s" in r else f"{'-':>11s}"
            lines.append(f"  {r['model']:28s} {r['batch']:5d} {r['ours_e2e_images_per_s']:10.0f} {og} {te} {tg}  "
                         f"{r['bit_exact_vs_c']}")
            if "missing" in t:
                lines.append(f"  {'':28s} torch: {t['missing']}")
    for t in res.get("targets", []):
        lines.append(f"target    {'met    ' if t['met'] else 'not met'} {t['value']:6.2f} (>= {t['target']}) {t['what']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.cuda", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--batch", type=int, default=256, help="whole-model batch (default 256)")
    ap.add_argument("--wht-batch", type=int, default=WHT_SHAPE[0], help=argparse.SUPPRESS)  # smoke runs
    ap.add_argument("--only", choices=("wht", "models"), help="one part only")
    ap.add_argument("--out", metavar="FILE", help="also write the JSON object to FILE")
    args = ap.parse_args(argv)
    sys.path.insert(0, ROOT)
    from engine import cuda
    from engine.native import BackendError
    reps = 10 if args.quick else 50
    res: dict = {}
    try:
        res["gpu"] = cuda.device_name(0)
        res["build"] = cuda.build_info()
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.only in (None, "wht"):
        try:
            res["wht"] = bench_wht(reps, args.wht_batch)
        except Exception as e:  # noqa: BLE001 - report and go on to the models
            res["wht"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    if args.only in (None, "models"):
        res["models"] = []
        for path in sorted(glob.glob(os.path.join(ROOT, "zoo", "*.mfe"))):
            log(f"model {os.path.relpath(path, ROOT)}, batch {args.batch}")
            try:
                res["models"].append(bench_model(path, args.batch, reps))
            except Exception as e:  # noqa: BLE001
                res["models"].append({"model": os.path.relpath(path, ROOT),
                                      "error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"})
    res["targets"] = targets(res)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)
    print(json.dumps(res) if args.json else table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
