"""Whole models, side by side: mbv2 and mbv2-wht (1x28x28 Fashion-MNIST shape) on
  our engine (C backend): converted by our converter, int8, int8 --reduce-range and --mulfree;
  PyTorch fp32 eager (the float model itself);
  ONNX Runtime fp32 (our export, onnx_export.py) and int8 (quantize_static U8S8 QDQ per-channel),
plus zoo/default.mfe on our engine. Weights: zoo/fmnist-<arch>.pt where shipped, else the architecture
built with training.models.build(arch, in_channels=1) and given non-trivial BatchNorm statistics and WHT
thresholds (weights do not change speed; the output says which).

Prepared files (converted .mfe, fp32 checkpoint, .onnx) are cached under build/bench/, keyed by the
weights, the calibration size, the package versions and the sources that make them.
Every figure: median of interleaved rounds (common.interleaved) over all peers of one (batch, threads)
group. Peak RSS: benchmarks/rss_child.py per peer, in its own process. Hotspots: our int8 mbv2 run whole on
a sample image with every node timed inside the C run (mfe_run_profiled): each layer as it runs in the
model, with its real input and the caches as the layers before it leave them."""
from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import json
import os
import subprocess
import sys

import numpy as np

from .common import ROOT, BenchError, clock_for, interleaved, progress

ARCHS = ("mbv2", "mbv2-wht")
SHAPE = (28, 28, 1)  # H, W, C
NORM = {"mean": [0.2860], "std": [0.3530]}
SAMPLE = os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz")
DEFAULT_MFE = os.path.join(ROOT, "zoo", "default.mfe")
CACHE = os.path.join(ROOT, "build", "bench")
CACHE_VERSION = "1"
SETTLE_S = 0.01  # multi-thread tables: let the previous runtime's spinning workers go idle (common.interleaved)
PEERS = ("engine-int8", "engine-int8-rr", "engine-mulfree", "torch-fp32", "ort-fp32", "ort-int8")
# how each engine peer is converted: int8; int8 with --reduce-range (7-bit weights where the input is signed, the
# byte product on AVX2, as ONNX Runtime's reduce_range); --mulfree
CONVERSIONS = {"engine-int8": {}, "engine-int8-rr": {"reduce_range": True}, "engine-mulfree": {"mulfree": True}}
SOURCES = ("converter/*.py", "engine/ops/*.py", "engine/format.py", "engine/graph.py", "engine/quant.py",
           "training/layers.py", "training/models.py", "benchmarks/onnx_export.py", "benchmarks/models.py")


def sample_images(n: int) -> np.ndarray:
    """n uint8 NHWC images from the embedded sample (tiled when n > 300)."""
    imgs = np.load(SAMPLE)["images"]
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    return np.ascontiguousarray(np.resize(imgs, (n, *imgs.shape[1:])))


def normalise(u8: np.ndarray, norm: dict) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW (x / 255 - mean) / std, as the models were trained."""
    x = u8.transpose(0, 3, 1, 2).astype(np.float32) / 255
    m = np.asarray(norm["mean"], np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(norm["std"], np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def randomise(model, seed: int = 1):
    """Non-trivial BatchNorm statistics and affine parameters, WHT thresholds > 0 (what training would
    give; all-identity BatchNorms would make a converted model trivially small-valued)."""
    import torch

    from training.layers import WHT
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(mod, WHT):
                mod.T.copy_(torch.rand(mod.n, generator=g) * 0.2)
    return model


def source_model(arch: str):
    """(float module in eval mode, config, normalisation, description of the weights)."""
    import torch

    from training import checkpoint
    from training.models import build
    path = os.path.join(ROOT, "zoo", f"fmnist-{arch}.pt")
    if os.path.exists(path):
        model, ck = checkpoint.load(path)
        return model, dict(ck.get("config", {})), ck.get("normalization") or NORM, f"zoo/{os.path.basename(path)}"
    torch.manual_seed(0)
    config = {"in_channels": SHAPE[2]}
    model = randomise(build(arch, **config)).eval()
    return model, config, NORM, f"random (no zoo/fmnist-{arch}.pt; built with training.models.build)"


def _digest(*parts: str) -> str:
    h = hashlib.sha256("\0".join(parts).encode())
    for pat in SOURCES:
        for p in sorted(glob.glob(os.path.join(ROOT, pat))):
            with open(p, "rb") as f:
                h.update(os.path.relpath(p, ROOT).encode() + f.read())
    return h.hexdigest()[:16]


def prepare(arch: str, calib_n: int, quiet: bool = False) -> dict:
    """Make (or find in the cache) this arch's files; returns paths, sizes and checks."""
    import torch

    from .common import _version
    model, config, norm, weights = source_model(arch)
    wid = weights
    if weights.startswith("zoo/"):
        with open(os.path.join(ROOT, weights), "rb") as f:
            wid = hashlib.sha256(f.read()).hexdigest()
    key = _digest(CACHE_VERSION, arch, wid, str(calib_n), str(_version("torch")), str(_version("onnxruntime")),
                  str(_version("onnx")))
    d = os.path.join(CACHE, f"{arch}-{key}")
    files = {"engine-int8": "int8.mfe", "engine-int8-rr": "int8-rr.mfe", "engine-mulfree": "mulfree.mfe",
             "torch-fp32": "fp32.pt", "ort-fp32": "fp32.onnx", "ort-int8": "int8.onnx"}
    files = {k: os.path.join(d, v) for k, v in files.items()}
    meta_path = os.path.join(d, "meta.json")
    if os.path.exists(meta_path) and all(os.path.exists(p) for p in files.values()):
        with open(meta_path) as f:
            meta = json.load(f)
        progress(f"{arch}: prepared files found in {os.path.relpath(d, ROOT)}", quiet)
        return {**meta, "module": model, "files": files, "cached": True}
    os.makedirs(d, exist_ok=True)
    calib_u8 = sample_images(calib_n)
    calib_f = normalise(calib_u8, norm)
    from converter import ConvertError, convert
    from engine import format as fmt
    for peer, options in CONVERSIONS.items():
        progress(f"{arch}: converting ({peer[7:]}) on {calib_n} sample images", quiet)
        try:
            g = convert(model, calib_u8, norm["mean"], norm["std"], **options, meta={"arch": arch})
        except ConvertError as e:
            raise BenchError(f"{arch}: converter failed: {str(e).splitlines()[0]}") from None
        fmt.save(g, files[peer])
    sd = {k: v.float() if torch.is_floating_point(v) else v for k, v in model.state_dict().items()}
    torch.save({"format": "mfcnn-checkpoint", "format_version": 1, "arch": arch, "config": config,
                "state_dict": sd, "normalization": norm, "input_shape": (SHAPE[2], *SHAPE[:2])},
               files["torch-fp32"])
    from . import onnx_export
    progress(f"{arch}: exporting to ONNX and quantising (ONNX Runtime, U8S8 QDQ per-channel)", quiet)
    try:
        onnx_export.export_fp32(model, (SHAPE[2], *SHAPE[:2]), files["ort-fp32"])
        onnx_export.quantize_int8(files["ort-fp32"], files["ort-int8"], calib_f)
    except Exception as e:  # noqa: BLE001 - exporter / quantiser errors are many kinds
        raise BenchError(f"{arch}: ONNX export or quantisation failed: {str(e).strip().splitlines()[0]}") from None
    with torch.inference_mode():
        ref = model(torch.from_numpy(calib_f[:16])).numpy()
    got = onnx_export.session(files["ort-fp32"], 1).run(None, {"x": calib_f[:16]})[0]
    rel = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
    if rel > 1e-3:
        raise BenchError(f"{arch}: the ONNX export disagrees with the eager model (max rel. diff {rel:.2g})")
    meta = {"arch": arch, "weights": weights, "normalization": norm, "calib_images": calib_n,
            "onnx_fp32_max_rel_diff": rel}
    with open(meta_path, "w") as f:
        json.dump(meta, f)
    return {**meta, "module": model, "files": files, "cached": False}


def peak_rss(kind: str, path: str, batch: int, threads: int = 1) -> dict:
    p = subprocess.run([sys.executable, "-m", "benchmarks.rss_child", kind, path, str(batch), str(threads)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)
    if p.returncode != 0:
        raise BenchError(f"peak RSS of {kind} {os.path.basename(path)}: "
                         f"{(p.stderr.strip().splitlines() or ['failed'])[-1]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return {"peak_rss_mb": round(r["peak_kb"] / 1024, 1), "rss_over_imports_mb": round((r["peak_kb"] - r["import_kb"]) / 1024, 1)}


def _kind(peer: str) -> str:
    return peer.split("-")[0]


def run(threads: list[int], batches: list[int], repeats: int, calib_n: int, min_sample_s: float = 0.0,
        rss: bool = True, quiet: bool = False, budget_s: float | None = None) -> dict:
    import torch

    import engine
    from . import onnx_export
    from .seed import engine_runner
    prepared = {a: prepare(a, calib_n, quiet) for a in ARCHS}
    rows: list[dict] = []
    for a, p in prepared.items():
        for peer in PEERS:
            rows.append({"model": a, "peer": peer, "file": os.path.relpath(p["files"][peer], ROOT),
                         "file_bytes": os.path.getsize(p["files"][peer]), "ms": {}})
    engines, notes = {}, []
    for r in rows:
        if r["peer"].startswith("engine"):
            engines[(r["model"], r["peer"])] = engine.load(os.path.join(ROOT, r["file"]))
    if os.path.exists(DEFAULT_MFE):
        try:
            engines[("default.mfe", "engine")] = engine.load(DEFAULT_MFE)
            rows.append({"model": "default.mfe", "peer": "engine", "file": "zoo/default.mfe",
                         "file_bytes": os.path.getsize(DEFAULT_MFE), "ms": {}})
        except engine.ModelError as e:  # a stale stand-in after an op-table change: say so, measure the rest
            notes.append(f"zoo/default.mfe left out: {str(e).splitlines()[0]}")
    x_u8 = {b: sample_images(b) for b in batches}
    x_f = {(a, b): normalise(x_u8[b], p["normalization"]) for a, p in prepared.items() for b in batches}
    for t in threads:
        torch.set_num_threads(t)
        sessions = {(a, peer): onnx_export.session(p["files"][peer], t) for a, p in prepared.items()
                    for peer in ("ort-fp32", "ort-int8")}
        for b in batches:
            progress(f"models: batch {b}, {t} thread(s), {len(rows)} peers side by side", quiet)
            peers = {}
            for r in rows:
                a, peer = r["model"], r["peer"]
                if peer.startswith("engine"):
                    peers[(a, peer)] = engine_runner(engines[(a, peer)], x_u8[b], t)
                elif peer == "torch-fp32":
                    m, xt = prepared[a]["module"], torch.from_numpy(x_f[(a, b)])
                    peers[(a, peer)] = (lambda m, xt: lambda: m(xt))(m, xt)
                else:
                    s, feed = sessions[(a, peer)], {"x": x_f[(a, b)]}
                    peers[(a, peer)] = (lambda s, feed: lambda: s.run(None, feed))(s, feed)
            with torch.inference_mode():
                ms = interleaved(peers, repeats, min_sample_s, budget_s, SETTLE_S if t > 1 else 0.0, clock_for(t))
            for r in rows:
                r["ms"][f"b{b}_t{t}"] = round(ms[(r["model"], r["peer"])], 4)
        del sessions
    if rss:
        bmax = max(batches)
        progress(f"models: peak RSS of each peer in its own process (batch {bmax}, 1 thread)", quiet)
        with concurrent.futures.ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1))) as ex:
            futs = {id(r): ex.submit(peak_rss, _kind(r["peer"]), os.path.join(ROOT, r["file"]), bmax) for r in rows}
            for r in rows:
                r.update(futs[id(r)].result())
    else:
        for r in rows:
            r.update({"peak_rss_mb": None, "rss_over_imports_mb": None})
    return {"input": [SHAPE[2], *SHAPE[:2]], "batches": batches, "threads": threads,
            "weights": {a: p["weights"] for a, p in prepared.items()},
            "onnx_fp32_max_rel_diff": {a: p["onnx_fp32_max_rel_diff"] for a, p in prepared.items()},
            "rss_batch": max(batches), "rows": rows, "notes": notes}


# ---- per-op hotspots of our int8 mbv2 ----

def _label(g, node) -> str:
    a = node.attrs
    if node.op != "conv2d":
        return node.op
    cin = g.tensors[node.inputs[0]].shape[2]
    kind = "depthwise " if a["groups"] == cin and cin > 1 else ""
    s = f" s{a['stride_h']}" if a["stride_h"] > 1 else ""
    return f"conv2d {kind}{a['kh']}x{a['kw']}{s}"


def hotspots(arch: str = "mbv2", variant: str = "engine-int8", repeats: int = 5, calib_n: int = 64,
             min_sample_s: float = 0.0, top: int = 10, quiet: bool = False) -> dict:
    """Where our converted `arch` spends its time: the whole model at batch 1, 1 thread, with each node timed
    inside the C run (mfe_run_profiled); per node the median over the repeats (each at least min_sample_s)."""
    import engine
    p = prepare(arch, calib_n, quiet)
    model = engine.load(p["files"][variant])
    g, nm = model.graph, model.native()
    progress(f"hotspots: {len(g.nodes)} nodes of {arch} ({variant}) timed inside the whole model, batch 1, 1 thread", quiet)
    image = sample_images(1)
    out = np.empty((1, *nm.out_shape), dtype=nm.out_dtype)
    clock = clock_for(1)
    nm.run(image, 1, out=out)  # plans the buffers
    samples, whole = [], []
    for _ in range(max(repeats, 1)):
        t, calls, t0 = np.zeros(len(g.nodes)), 0, clock()
        while True:
            nm.run(image, 1, out=out, node_seconds=t)
            calls += 1
            if clock() - t0 >= min_sample_s:
                break
        whole.append((clock() - t0) / calls * 1e3)
        samples.append(t / calls * 1e3)
    ms = np.median(np.array(samples), axis=0)
    nodes = [{"name": node.name, "label": _label(g, node), "input": list(g.tensors[node.inputs[0]].shape),
              "output": list(g.tensors[node.output].shape), "ms": round(float(v), 4)} for node, v in zip(g.nodes, ms)]
    total = sum(n["ms"] for n in nodes) or 1e-9
    for n in nodes:
        n["share"] = round(n["ms"] / total, 4)
    by_kind: dict[str, dict] = {}
    for n in nodes:
        k = by_kind.setdefault(n["label"], {"label": n["label"], "count": 0, "ms": 0.0})
        k["count"] += 1
        k["ms"] += n["ms"]
    kinds = sorted(by_kind.values(), key=lambda k: -k["ms"])
    for k in kinds:
        k["ms"] = round(k["ms"], 4)
        k["share"] = round(k["ms"] / total, 4)
    return {"model": arch, "variant": variant, "batch": 1, "threads": 1, "model_ms": round(float(np.median(whole)), 4),
            "sum_of_nodes_ms": round(float(np.median(np.array(samples).sum(axis=1))), 4), "by_kind": kinds, "top": sorted(nodes, key=lambda n: -n["ms"])[:top]}
