"""Ship trained checkpoints into zoo/ and print the model table.

    python -m training.zoo export RUN.pt zoo/fmnist-NAME.pt   # slim fp16 copy
    python -m training.zoo table zoo/*.pt                     # markdown table
"""
from __future__ import annotations

import json
import os
import sys

from . import checkpoint
from .analysis import op_counts
from .data import INPUT_SHAPE


def _command(ck: dict) -> str:
    """The train command that reproduces checkpoint ck."""
    targs = ck.get("train_args", {})
    if targs.get("finetune_mulfree"):
        return (f"python cli.py train --finetune-mulfree {targs['init']} --epochs {targs['epochs']} "
                f"--batch-size {targs['batch_size']} --label-smoothing {targs['label_smoothing']} "
                f"--device {targs.get('device', 'cpu')} -o RUN.pt")
    return ("python cli.py train --arch {arch} --dataset {dataset} --epochs {epochs} "
            "--schedule {schedule} --lr {lr} --batch-size {batch_size} --seed {seed} "
            "--width {width}{ls}{thr}{cfg}{init}{bb}{qn} --device {device} -o RUN.pt").format(
        cfg="".join(f" --config {k}={json.dumps(v)}" for k, v in ck.get("config", {}).items()
                    if k not in ("in_channels", "num_classes", "width")),
        device=targs.get("device", "cpu"),
        ls=(f" --label-smoothing {targs['label_smoothing']}"
            if targs.get("label_smoothing") else ""),
        init=f" --init {targs['init']}" if targs.get("init") else "",
        bb=(f" --backbone {targs['backbone']}" +
            (f" --freeze {targs['freeze']}" if targs.get("freeze") is not None else "") +
            (f" --distill {targs['distill']}" if targs.get("distill") else "")
            if targs.get("backbone") else ""),
        qn=f" --quant-noise {targs['quant_noise']}" if targs.get("quant_noise") else "",
        thr=(f" --threshold-lr-scale {targs['threshold_lr_scale']}"
             if targs.get("threshold_lr_scale", 1.0) != 1.0 else ""),
        **{k: targs.get(k) for k in ("arch", "dataset", "epochs", "schedule", "lr",
                                     "batch_size", "seed", "width")})


def row(path: str) -> dict:
    model, ck = checkpoint.load(path)
    shape = INPUT_SHAPE.get(ck.get("dataset", "fashion-mnist"), (1, 28, 28))
    ops = op_counts(model, shape)
    targs = ck.get("train_args", {})
    return {"file": os.path.basename(path), "arch": ck["arch"], "params": ops["params"],
            "multiply_free_share": ops["multiply_free_share"], "mul_macs": ops["mul_macs"],
            # a --finetune-mulfree checkpoint is meant for `convert --mulfree`: its float accuracy is beside the point
            "test_accuracy": ck.get("mulfree_accuracy") or ck.get("test_accuracy"),
            "mulfree": "mulfree_accuracy" in ck, "test_images": ck.get("test_images"),
            "epochs": ck.get("epochs"), "planned_epochs": targs.get("epochs"), "command": _command(ck)}


def markdown(paths) -> str:
    lines = ["| file | arch | params | multiply-free share of ops | mult. MACs | "
             "test acc. | epochs done / planned | reproduce |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for p in paths:
        r = row(p)
        acc = "-" if r["test_accuracy"] is None else f"{100 * r['test_accuracy']:.2f}%"
        acc += " (mulfree view)" if r["mulfree"] else ""
        lines.append(f"| {r['file']} | {r['arch']} | {r['params']:,} | "
                     f"{100 * r['multiply_free_share']:.1f}% | {r['mul_macs'] / 1e6:.1f}M | "
                     f"{acc} | {r['epochs']} / {r['planned_epochs']} | `{r['command']}` |")
    return "\n".join(lines)


def main(argv):
    if len(argv) >= 3 and argv[0] == "export":
        ck = checkpoint.export(argv[1], argv[2])
        print(f"{argv[2]}: {ck['arch']} epochs {ck['epochs']} "
              f"test accuracy {ck['test_accuracy']}, {os.path.getsize(argv[2]) / 1e6:.2f} MB")
    elif len(argv) >= 2 and argv[0] == "table":
        print(markdown(argv[1:]))
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
