#!/usr/bin/env python3
"""mfe: a multiplication-free integer CNN engine. `python cli.py --help` lists the commands."""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import sys
import time

import click
import numpy as np

ROOT = os.path.dirname(os.path.realpath(__file__))  # through a symlink to cli.py too
DEFAULT_MODEL = os.path.join(ROOT, "zoo", "default.mfe")
SAMPLE = os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz")


def fail(msg: str) -> None:
    raise click.ClickException(msg)


def load_model(path: str | None):
    import engine
    return engine.load(path or DEFAULT_MODEL)


def load_inputs(input_path: str | None, dataset: str | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Images (and labels where known) from a .npy/.npz file, a dataset spec, or the embedded sample."""
    if input_path and dataset:
        fail("give --input or --dataset, not both")
    if dataset:
        from engine.dataspec import load_spec
        try:
            images, labels = load_spec(dataset)
        except (ValueError, OSError, EOFError) as e:  # a missing package, a damaged or truncated file
            fail(str(e).splitlines()[0] if str(e).strip() else f"cannot read {dataset}: {type(e).__name__}")
        return images, labels, dataset
    path = input_path or SAMPLE
    images, labels = read_array_file(path)
    if labels is not None and (np.ndim(labels) != 1 or np.ndim(images) < 1 or len(labels) != len(images)):
        fail(f"{path}: labels of shape {np.shape(labels)} do not match images of shape {np.shape(images)}")
    return images, labels, path


def read_array_file(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """images (and labels) from a .npy or an .npz with 'images' (and 'labels'); one-line errors."""
    import zipfile
    import zlib
    import stat
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not block
        with os.fdopen(fd, "rb") as f:
            regular = stat.S_ISREG(os.fstat(f.fileno()).st_mode)
            magic = f.read(6) if regular else b""
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}")
    if not regular:
        fail(f"cannot read {path}: not a regular file")
    if not (magic.startswith(b"\x93NUMPY") or magic.startswith(b"PK\x03\x04")):
        fail(f"cannot read {path}: not a .npy or .npz file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return data, None
        with data:
            if "images" not in data.files:
                fail(f"{path}: an .npz input needs an 'images' array (and optionally 'labels')")
            return data["images"], (data["labels"] if "labels" in data.files else None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        fail(f"cannot read {path}: {why}")


def logits_sha256(logits: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(logits, dtype="<i4").tobytes()).hexdigest()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Quantised, multiplication-free CNN inference: WHT layers, integer thresholds,
    Hadamard depthwise ops and int8 convolutions on a small C backend.

    \b
    Example:
      python cli.py run --json            # the embedded default model on sample images
      python cli.py inspect               # per-layer multiplies and adds
    """
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="uint8 NHWC .npy (or .npz with images/labels).")
@click.option("--dataset", help="fashion-mnist[:train|test][:N] (Debian package) or cifar10:DIR[:train|test][:N].")
@click.option("--backend", type=click.Choice(["ref", "c", "cuda"]), default="c", show_default=True)
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--batch", type=click.IntRange(1, 1 << 20), default=64, show_default=True, help="Images per call.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def run(model: str | None, input_path: str | None, dataset: str | None, backend: str, threads: int, batch: int,
        as_json: bool) -> None:
    """Run MODEL (default: the embedded zoo model) on images and report predictions.

    \b
    Example:
      python cli.py run --json
      python cli.py run zoo/default.mfe --dataset fashion-mnist:test:1000 --threads 2
    """
    import engine
    m = load_model(model)
    images, labels, source = load_inputs(input_path, dataset)
    try:
        u8 = m.prepare_input(images)
        m.check_backend(backend)
    except (engine.InputError, engine.BackendError) as e:
        fail(str(e))
    outs, times = [], []
    from engine.climain import progressbar
    with progressbar("running", range(0, len(u8), batch), show=len(u8) > batch) as starts:
        for s in starts:
            t0 = time.perf_counter()
            outs.append(m.run(u8[s:s + batch], backend=backend, threads=threads))
            times.append((time.perf_counter() - t0) * 1e3)
    logits = np.concatenate(outs)
    preds = logits.reshape(len(logits), -1).argmax(1)
    med = statistics.median(times)
    result = {"model": m.name, "backend": backend, "threads": threads, "batch": batch, "n": int(len(u8)),
              "input": source, "predictions": preds.tolist(), "logits_sha256": logits_sha256(logits),
              "latency_ms": {"per_batch_median": round(med, 4), "per_image": round(med / min(batch, len(u8)), 5)}}
    if backend != "ref":
        result["isa"] = m.native(backend).isa  # c: the instruction set; cuda: the device
    if labels is not None:
        result["accuracy"] = round(float((preds == np.asarray(labels)[:len(preds)]).mean()), 6)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(f"model     {m.name}")
    click.echo(f"backend   {backend} ({result.get('isa', 'numpy')}), {threads} thread(s), batch {batch}")
    click.echo(f"images    {result['n']} from {source}")
    if "accuracy" in result:
        click.echo(f"accuracy  {100 * result['accuracy']:.2f}%")
    click.echo(f"latency   {med:.3f} ms per batch (median), {result['latency_ms']['per_image']:.4f} ms per image")
    click.echo(f"logits    sha256 {result['logits_sha256']}")
    click.echo("predicted " + " ".join(map(str, preds[:20].tolist())) + (" ..." if len(preds) > 20 else ""))


@cli.command()
@click.argument("model", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def inspect(model: str | None, as_json: bool) -> None:
    """Per-layer op, shapes, parameters, multiplies and adds of MODEL (default: the zoo model).

    \b
    Example:
      python cli.py inspect
      python cli.py inspect zoo/default.mfe --json
    """
    from engine.inspect import report
    m = load_model(model)
    rep = report(m.graph)
    if as_json:
        click.echo(json.dumps({"model": m.name, **rep}))
        return
    fmt = "{:<4} {:<22} {:<10} {:<16} {:<12} {:>9} {:>12} {:>12}"
    click.echo(fmt.format("#", "name", "op", "input", "output", "params", "multiplies", "adds"))
    for i, r in enumerate(rep["layers"]):
        shp = lambda s: "x".join(map(str, s))
        click.echo(fmt.format(i, r["name"][:22], r["op"], "+".join(shp(s) for s in r["input"]), shp(r["output"]),
                              r["params"], r["multiplies"], r["adds"]))
    t = rep["totals"]
    click.echo(fmt.format("", "total", "", "", "", t["params"], t["multiplies"], t["adds"]))
    click.echo(f"peak activation memory: {rep['peak_activation_bytes']} bytes per image")


def _register() -> None:
    """The commands that live in other packages. A board that has only engine/ and cli.py (see the
    cross-compile README) gets run, inspect and cross-compile; a package that is there must import."""
    import importlib
    for module, name in (("benchmarks.command", "bench"), ("converter.command", "convert"),
                         ("engine.crosscmd", "cross_compile"), ("training.command", "train")):
        if os.path.isdir(os.path.join(ROOT, module.split(".")[0])):
            cli.add_command(getattr(importlib.import_module(module), name))


_register()


def main(argv: list[str] | None = None) -> int:
    from engine.climain import standalone
    return standalone(cli, argv)


if __name__ == "__main__":
    sys.exit(main())
