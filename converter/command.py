"""`python cli.py convert`: checkpoint -> .mfe, with a per-layer report and measured fidelity."""
from __future__ import annotations

import contextlib
import json
import os

import click
import numpy as np

from engine.climain import progressbar, writable
from engine.dataspec import load_spec


@contextlib.contextmanager
def _running(error: type):
    """torch refusing the images the model is run on (1-channel images for a 3-channel model) as `error`."""
    try:
        yield
    except RuntimeError as e:
        raise error(f"the model cannot run these images ({str(e).strip().splitlines()[0]})") from None


def evaluate(model, graph, images: np.ndarray, labels: np.ndarray, mean, std, threads: int) -> dict:
    """Float and integer top-1 on the same images, and how often their top-1 agree."""
    import torch

    import engine
    from converter import float_batch_size, float_batches
    m = engine.from_graph(graph)
    bs = float_batch_size(model, 256)
    fpred, ipred = [], []
    with progressbar("evaluating", length=len(images)) as bar, torch.no_grad():
        for i, x in enumerate(float_batches(images, mean, std, bs)):
            fpred.append(model(x).argmax(1).numpy())
            ipred.append(m.run(images[i * bs:(i + 1) * bs], "c", threads).argmax(1))
            bar.update(len(x))
    f, q = np.concatenate(fpred), np.concatenate(ipred)
    return {"float_accuracy": round(float((f == labels).mean()), 6), "int_accuracy": round(float((q == labels).mean()), 6),
            "agreement": round(float((f == q).mean()), 6), "eval_images": int(len(labels))}


@click.command("convert")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Model file to write (.mfe).")
@click.option("--calib", help="Calibration images (dataset spec); default fashion-mnist:train:512 for a model trained on "
              "Fashion-MNIST (or of unknown origin).")
@click.option("--eval", "eval_spec", help="Measure float vs integer accuracy on this dataset spec, e.g. fashion-mnist:test.")
@click.option("--mulfree", is_flag=True, help="Signed power-of-two weights and shift-only requantisation: 0 multiplies.")
@click.option("--reduce-range", is_flag=True,
              help="Weights of dense convs (but the first) whose input can be negative in [-64, 64], not [-127, 127]: "
                   "AVX2 CPUs then run them with exact byte products (about 10% faster mbv2), for some "
                   "accuracy (the trade of ONNX Runtime's reduce_range).")
@click.option("--percentile", type=click.FloatRange(50, 100), help="Calibrate ranges to this percentile of |x| (default: max).")
@click.option("--layer-errors", type=click.IntRange(1, None), metavar="N",
              help="With --eval: per-layer error of the integer graph against the float model on the first N "
                   "eval images (numpy reference: slow; 100-300 is plenty).")
@click.option("--threads", type=click.IntRange(1, 256), default=os.cpu_count() or 1, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def convert(checkpoint: str, output: str, calib: str, eval_spec: str | None, mulfree: bool, reduce_range: bool,
            percentile: float | None, layer_errors: int | None, threads: int, as_json: bool) -> None:
    """Convert a PyTorch CHECKPOINT (project checkpoint, pickled nn.Module, or torch.export .pt2) into an
    integer model file.

    \b
    Example:
      python cli.py convert zoo/fmnist-mbv2-wht.pt -o wht.mfe --eval fashion-mnist:test
      python cli.py convert model.pt -o m.mfe --calib fashion-mnist:train:1024 --mulfree --json
      python cli.py convert zoo/fmnist-mbv2-wht.pt -o wht.mfe --eval fashion-mnist:test --layer-errors 200
    """
    if layer_errors and not eval_spec:
        raise click.UsageError("--layer-errors needs --eval (the images to measure on)")
    if os.path.exists(output) and os.path.exists(checkpoint) and os.path.samefile(output, checkpoint):
        raise click.ClickException(f"-o {output} would overwrite the checkpoint it converts")
    writable(output)
    from converter import ConvertError
    from converter import convert as run_convert
    from converter import load_source
    from engine import format as fmt
    from engine.inspect import report
    try:
        model, info = load_source(checkpoint)
        norm = info.get("normalization") or {"mean": [0.2860], "std": [0.3530]}
        evaluation = load_spec(eval_spec) if eval_spec else None  # a bad spec fails before the calibration
        trained_on = info.get("dataset", "fashion-mnist")
        if calib is None and trained_on != "fashion-mnist":
            raise ConvertError(f"{checkpoint} was trained on {trained_on}: give calibration images from it, "
                               f"e.g. --calib {trained_on}:DIR:train:512")
        images, _ = load_spec(calib or "fashion-mnist:train:512", default_split="train")
        with progressbar("calibrating", length=len(images)) as bar, _running(ConvertError):
            graph = run_convert(model, images, norm["mean"], norm["std"], mulfree=mulfree, reduce_range=reduce_range,
                                percentile=percentile,
                                meta={"source": os.path.basename(checkpoint), "arch": info.get("arch")},
                                progress=bar.update)
        result = {"model": output, "source": checkpoint, "mulfree": mulfree, "reduce_range": reduce_range,
                  **report(graph)}
        result.update({k: result["totals"][k] for k in ("params", "multiplies", "adds")})
        if evaluation:
            images, labels = evaluation
            with _running(ConvertError):
                result.update(evaluate(model, graph, images, labels, norm["mean"], norm["std"], threads))
            if layer_errors:
                from converter.diagnose import layer_errors as diagnose
                result["layer_errors"] = diagnose(model, graph, images[:layer_errors], norm["mean"], norm["std"])
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        fmt.save(graph, output)  # last: a failing command leaves no model behind
    except (ConvertError, ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e).splitlines()[0]) from None
    if as_json:
        click.echo(json.dumps(result))
        return
    fmt_row = "{:<34} {:<10} {:<14} {:>9} {:>12} {:>12}"
    click.echo(fmt_row.format("layer", "op", "output", "params", "multiplies", "adds"))
    for r in result["layers"]:
        click.echo(fmt_row.format(r["name"][:34], r["op"], "x".join(map(str, r["output"])), r["params"], r["multiplies"], r["adds"]))
    click.echo(fmt_row.format("total", "", "", result["params"], result["multiplies"], result["adds"]))
    click.echo(f"wrote {output} ({os.path.getsize(output)} bytes)")
    if result.get("layer_errors"):
        click.echo(f"per-layer relative error vs float on {layer_errors} images (end to end, isolated, saturated):")
        for r in result["layer_errors"]:
            click.echo(f"  {r['name'][:34]:<34} {r['op']:<8} {r['error']:>7.3f} {r['isolated']:>7.3f} "
                       f"{100 * r['saturated']:>6.2f}%")
    if eval_spec:
        click.echo(f"float accuracy {100 * result['float_accuracy']:.2f}%, integer accuracy {100 * result['int_accuracy']:.2f}%, "
                   f"agreement {100 * result['agreement']:.2f}% on {result['eval_images']} images")
