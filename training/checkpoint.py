"""Checkpoint format (a dict written with ``torch.save``).

Required keys (what the converter / engine reads)::

    "format":        "mfcnn-checkpoint", "format_version": 1
    "arch":          str, a name accepted by training.models.build
    "config":        dict, kwargs for build(arch, **config)
                     (in_channels, num_classes, width, ...)
    "state_dict":    model state_dict (fp32, or fp16 in the shipped zoo files;
                     integer buffers such as BatchNorm's num_batches_tracked keep
                     their dtype)
    "normalization": {"mean": [...], "std": [...]} per input channel, applied to
                     pixel values scaled to [0, 1]: x = (p/255 - mean) / std
    "test_accuracy": float in [0, 1] (top-1 on the evaluated test images) or None
    "epochs":        int, completed training epochs

Optional keys written by ``python cli.py train``: "dataset", "test_images"
(how many test images test_accuracy was measured on), "params",
"history" (per-epoch list of dicts), "train_args" (the CLI options),
"seconds" (training wall time), and for resuming "optimizer", "scheduler",
"rng".  A run started from another checkpoint records it in train_args["init"]
and its test accuracy in "init_test_accuracy";
a ``--finetune-mulfree`` run has train_args["finetune_mulfree"] = True and
"mulfree_accuracy" (test accuracy of the integer model ``convert --mulfree``
builds, computed by its float view; also per epoch in "history"); its convs
hold their BatchNorm scale (those BatchNorms only shift).  ``slim()`` drops the
resume state and can store fp16.
"""
from __future__ import annotations

import os
import pickle

import torch
import torch.nn as nn

from .models import build

FORMAT = "mfcnn-checkpoint"
FORMAT_VERSION = 1
RESUME_KEYS = ("optimizer", "scheduler", "rng")


def save(ckpt: dict, path: str) -> None:
    """Atomic write (temp file + rename) so a killed run never leaves half a file."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def read(path: str) -> dict:
    """The raw checkpoint dict (on CPU)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, ValueError, AttributeError, ImportError, pickle.UnpicklingError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable training checkpoint ({why})") from None
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not a training checkpoint (no arch/state_dict)")
    return ckpt


def float_state(ckpt: dict) -> dict:
    """The checkpoint's state_dict with floating tensors in fp32 (zoo files store fp16)."""
    return {k: (v.float() if torch.is_floating_point(v) else v)
            for k, v in ckpt["state_dict"].items()}


def model_of(ckpt: dict) -> nn.Module:
    """The checkpoint's model, rebuilt (fp32, eval mode, CPU)."""
    model = build(ckpt["arch"], **ckpt.get("config", {}))
    model.load_state_dict(float_state(ckpt))
    return model.float().eval()


def load(path: str) -> tuple[nn.Module, dict]:
    """Rebuild the model (fp32, eval mode, CPU) and return it with the checkpoint dict."""
    ckpt = read(path)
    return model_of(ckpt), ckpt


def slim(ckpt: dict, fp16: bool = True) -> dict:
    """Copy without the resume state; floating tensors stored as fp16 if asked."""
    out = {k: v for k, v in ckpt.items() if k not in RESUME_KEYS}
    if fp16:
        out["state_dict"] = {k: (v.half() if torch.is_floating_point(v) else v)
                             for k, v in ckpt["state_dict"].items()}
        out["storage_dtype"] = "float16"
    return out


def export(src: str, dst: str, fp16: bool = True) -> dict:
    """Write a slim (optionally fp16) copy of checkpoint ``src`` to ``dst``."""
    ckpt = slim(read(src), fp16)
    save(ckpt, dst)
    return ckpt
