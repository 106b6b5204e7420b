"""PyTorch -> integer graph. `convert(module, calib, ...)` from Python; `python cli.py convert` from a shell.

    from converter import convert
    graph = convert(model, calib_images_uint8_nhwc, mean=[0.286], std=[0.353])
    engine.format.save(graph, "model.mfe")
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import ConvertError

__all__ = ["ConvertError", "convert", "float_batches", "float_batch_size", "load_source", "traced"]


def float_batches(images: np.ndarray, mean, std, batch: int = 128):
    """uint8 NHWC -> normalised float NCHW torch batches, as the models were trained."""
    import torch
    m = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.array(images[i:i + batch].transpose(0, 3, 1, 2))).float() / 255  # a writable copy
        yield (x - m) / s


def float_batch_size(model, default: int = 128) -> int:
    """torch.export programs are specialised to the batch they were exported with (1 here): feed single images."""
    import torch
    return 1 if isinstance(model, torch.fx.GraphModule) else default


WHT_PERCENTILE = 99.9


def convert(model, calib: np.ndarray, mean: list[float], std: list[float], *, mulfree: bool = False,
            reduce_range: bool = False, percentile: float | None = None, meta: dict | None = None,
            progress: Callable[[int], None] | None = None):
    """Trace, fold, calibrate on `calib` (uint8 NHWC images) and quantise; returns an engine Graph."""
    import torch

    from . import calibrate, quantize
    if calib.ndim != 4 or calib.dtype != np.uint8 or len(calib) == 0:
        raise ConvertError("calibration images must be a non-empty uint8 NHWC array")
    if len(mean) != calib.shape[3] or len(std) != calib.shape[3]:
        raise ConvertError(f"normalisation has {len(mean)} channels, the images {calib.shape[3]}")
    model, gm, layers = traced(model)
    ranged = gm
    if mulfree and not isinstance(model, torch.fx.GraphModule):
        from .mulfree import fake_quant
        ranged = fake_quant(model, std)  # the activations the power-of-two weights give (what training saw)
    # a WHT output spreads its inputs' energy over n coefficients and is heavy-tailed: its max is far
    # above its typical value, so a max-calibrated int8 step drowns most outputs (mbv2-wht: agreement
    # 93.5% with max, 97.3% with the 99.9th percentile)
    wht = {lay.fx_out: WHT_PERCENTILE for lay in layers if lay.kind == "wht"} if percentile is None else {}
    absmax = calibrate.ranges(ranged, [lay.fx_out for lay in layers],
                              list(float_batches(calib, mean, std, float_batch_size(model))), percentile, progress,
                              overrides=wht)
    q = quantize.Quantizer(layers, absmax, tuple(calib.shape[1:]), mean, std, mulfree, reduce_range)
    return q.build({"producer": "converter", "normalization": {"mean": list(mean), "std": list(std)},
                    "mulfree": mulfree, "reduce_range": reduce_range, **(meta or {})})


def traced(model) -> tuple:
    """(model, fx graph, converter layers) of a module (structured convs decomposed, in eval mode) or of a
    torch.export program."""
    import torch

    from . import trace
    if not isinstance(model, torch.fx.GraphModule):  # an exported program is already a graph (and in eval)
        model = trace.decompose_structured(model.eval())
    gm = trace.trace(model)
    layers = trace.layers_of(gm)
    if not layers:
        raise ConvertError("the model has no layers to convert")
    return model, gm, layers


def load_source(path: str):
    """(module, info) from a project checkpoint, a pickled nn.Module, or a torch.export .pt2 file."""
    import torch
    if path.endswith(".pt2"):
        try:
            return torch.export.load(path).module(), {}
        except FileNotFoundError:
            raise ConvertError(f"{path}: no such file") from None
        except Exception as e:  # noqa: BLE001
            raise ConvertError(f"{path}: not a torch.export program ({str(e).splitlines()[0]})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001
        raise ConvertError(f"{path}: not a torch file ({str(e).splitlines()[0]})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.float().eval(), {}
    if isinstance(obj, dict) and "arch" in obj and "state_dict" in obj:
        from training.checkpoint import load
        model, ckpt = load(path)
        return model, ckpt
    raise ConvertError(f"{path}: neither a project checkpoint nor a pickled torch.nn.Module")
