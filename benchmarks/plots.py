"""PNG charts of a bench result (matplotlib, an optional extra: pip install -r requirements-bench.txt).
`write(result, folder)` draws what the result holds and returns the paths written."""
from __future__ import annotations

import os

from .common import need

SEED_LABELS = {"torch_conv1x1": "torch fp32 1x1 conv", "torch_radix32": "torch fp32 radix-32 WHT",
               "int8_conv1x1": "our int8 1x1 conv", "wht": "our wht (smooth)", "wht_soft": "our wht (soft)"}


def _plt():
    mpl = need("matplotlib")
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def check() -> None:
    """Fail now where matplotlib is missing: before a long bench run, not after it."""
    _plt()


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def seed_chart(seed: list[dict], path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    keys = list(SEED_LABELS)
    width = 0.8 / max(1, len(seed))
    for i, row in enumerate(seed):
        xs = [k + i * width for k in range(len(keys))]
        ax.bar(xs, [row[f"{k}_ms"] for k in keys], width, label=f"{row['threads']} thread(s)")
    ax.set_xticks([k + width * (len(seed) - 1) / 2 for k in range(len(keys))])
    ax.set_xticklabels([SEED_LABELS[k] for k in keys], rotation=20, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("ms (median, log scale)")
    shape = "x".join(map(str, seed[0]["tensor"]))
    ax.set_title(f"Seed 000's experiment: {shape} tensor")
    ax.legend()
    return _save(plt, fig, path)


def growth_chart(growth: dict, path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ch = [p["channels"] for p in growth["points"]]
    for k, label in (("wht", "our wht"), ("int8_conv1x1", "our int8 1x1 conv"), ("torch_conv1x1", "torch fp32 1x1 conv")):
        ax.loglog(ch, [p[f"{k}_ms"] for p in growth["points"]], "o-", base=2,
                  label=f"{label} (slope {growth['slope'][k]})")
    ax.set_xlabel("channels n (n -> n)")
    ax.set_ylabel("ms (median)")
    h, w = growth["pixels"]
    ax.set_title(f"Cost against channels, {h}x{w} pixels, {growth['threads']} thread(s)")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    return _save(plt, fig, path)


def models_chart(models: dict, path: str) -> str:
    plt = _plt()
    cols = [(b, t) for b in models["batches"] for t in models["threads"]]
    fig, axes = plt.subplots(1, len(cols), figsize=(4.2 * len(cols), 5), squeeze=False)
    rows = models["rows"]
    labels = [f"{r['model']} {r['peer']}" for r in rows]
    for ax, (b, t) in zip(axes[0], cols):
        vals = [r["ms"][f"b{b}_t{t}"] / b for r in rows]
        colors = ["tab:green" if r["peer"].startswith("engine") else "tab:orange" if r["peer"].startswith("ort")
                  else "tab:blue" for r in rows]
        ax.barh(range(len(rows)), vals, color=colors)
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels if ax is axes[0][0] else [""] * len(rows), fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("ms per image (median, log)")
        ax.set_title(f"batch {b}, {t} thread(s)")
    fig.suptitle("Whole models: our engine (green), ONNX Runtime (orange), PyTorch eager (blue)")
    return _save(plt, fig, path)


def hotspots_chart(hot: dict, path: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    kinds = hot["by_kind"]
    ax.barh([k["label"] for k in kinds], [k["ms"] for k in kinds])
    ax.invert_yaxis()
    ax.set_xlabel("ms (sum over its layers, each timed inside the whole model)")
    ax.set_title(f"Where our {hot['variant']} {hot['model']} spends its time (batch 1, 1 thread)")
    return _save(plt, fig, path)


def write(result: dict, folder: str) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    out = []
    if "seed" in result:
        out.append(seed_chart(result["seed"], os.path.join(folder, "seed.png")))
    if "growth" in result:
        out.append(growth_chart(result["growth"], os.path.join(folder, "growth.png")))
    if "models" in result:
        out.append(models_chart(result["models"], os.path.join(folder, "models.png")))
    if "hotspots" in result:
        out.append(hotspots_chart(result["hotspots"], os.path.join(folder, "hotspots.png")))
    return out
