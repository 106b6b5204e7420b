"""Train the zoo's architectures side by side on one GPU within a time budget.

    python -m training.train_all --out runs/ --budget-s 540 [--data-dir DIR]

A short concurrent probe (two epochs of --probe-batches) measures each run's seconds per batch
under the same contention; each real run then gets as many epochs of its
one-cycle schedule as fit the budget (capped by --max-epochs). Every run writes
a resumable checkpoint per epoch (``python cli.py train ... --resume``), so a run
cut by the budget continues in a later session with the same command.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# arch -> extra train options (batch 256 keeps a small GPU step launch-bound rather than idle)
RECIPES = {
    "mbv2": [],
    "mbv2-wht": [],
    "mbv2-thesis": [],
    "resnet20": [],
    "resnet20-structured": [],
}
COMMON = ["--dataset", "fashion-mnist", "--schedule", "onecycle", "--batch-size", "256",
          "--lr", "0.2", "--label-smoothing", "0.1", "--seed", "0", "--threads", "2"]
TRAIN_IMAGES = 60000


def _cmd(arch: str, out: str, device: str, data_dir: str | None, extra: list[str]) -> list[str]:
    cmd = [sys.executable, os.path.join(ROOT, "cli.py"), "train", "--arch", arch,
           "--device", device, "-o", out, *COMMON, *RECIPES[arch], *extra]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _run_all(cmds: dict[str, list[str]], logdir: str, deadline: float) -> dict[str, int]:
    procs = {}
    for arch, cmd in cmds.items():
        log = open(os.path.join(logdir, f"{arch}.log"), "a")
        log.write(" ".join(cmd) + "\n")
        log.flush()
        procs[arch] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
        time.sleep(2)
    for p in procs.values():
        if p.poll() is None:
            p.kill()
    return {a: p.wait() for a, p in procs.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget-s", type=float, default=540)
    ap.add_argument("--max-epochs", type=int, default=40)
    ap.add_argument("--archs", default=",".join(RECIPES))
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--probe-batches", type=int, default=30)
    a = ap.parse_args()
    t0 = time.time()
    deadline = t0 + a.budget_s
    os.makedirs(a.out, exist_ok=True)
    archs = a.archs.split(",")
    resumable = {x for x in archs if os.path.exists(os.path.join(a.out, f"fmnist-{x}.pt"))}
    epochs = {}
    if len(resumable) < len(archs):
        probe_dir = os.path.join(a.out, "probe")
        os.makedirs(probe_dir, exist_ok=True)
        _run_all({x: _cmd(x, os.path.join(probe_dir, f"{x}.pt"), a.device, a.data_dir,
                          ["--epochs", "2", "--max-batches", str(a.probe_batches),
                           "--test-limit", "1000", "--quiet"]) for x in archs},
                 probe_dir, deadline)
        left = deadline - time.time() - 30
        steps = math.ceil(TRAIN_IMAGES / 256)
        for x in archs:
            ck = torch.load(os.path.join(probe_dir, f"{x}.pt"), map_location="cpu",
                            weights_only=False)
            # epoch 2 of the probe: cuDNN autotuning and warm-up are behind it
            per_epoch = ck["history"][1]["seconds"] * steps / a.probe_batches
            epochs[x] = max(1, min(a.max_epochs, int(left / per_epoch)))
            print(f"{x}: ~{per_epoch:.1f} s/epoch under contention -> {epochs[x]} epochs",
                  flush=True)
    cmds = {x: _cmd(x, os.path.join(a.out, f"fmnist-{x}.pt"), a.device, a.data_dir,
                    ["--epochs", str(epochs.get(x, a.max_epochs)), "--resume", "--quiet"])
            for x in archs}
    codes = _run_all(cmds, a.out, deadline)
    for x in archs:
        path = os.path.join(a.out, f"fmnist-{x}.pt")
        if os.path.exists(path):
            ck = torch.load(path, map_location="cpu", weights_only=False)
            h = ck["history"]
            print(f"{x}: exit {codes[x]}, epoch {ck['epochs']}/{ck['train_args']['epochs']}, "
                  f"test {100 * ck['test_accuracy']:.2f}%, best "
                  f"{100 * max(r['test_accuracy'] for r in h):.2f}%, "
                  f"{sum(r['seconds'] for r in h) / len(h):.1f} s/epoch", flush=True)
        else:
            print(f"{x}: exit {codes[x]}, no checkpoint", flush=True)
    print(f"total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
