"""The CLI contract: commands, JSON keys, backends agreeing, one-line errors with exit 1."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import engine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args, ok=True):
    p = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), *args], capture_output=True, text=True, cwd=ROOT)
    if ok:
        assert p.returncode == 0, p.stderr
    return p


def test_help_lists_commands():
    out = cli("--help").stdout
    for name in ("train", "convert", "run", "inspect", "bench", "cross-compile"):
        assert name in out
    for name in ("run", "inspect"):
        assert "Example" in cli(name, "--help").stdout


def test_run_backends_agree_on_default_model():
    c = json.loads(cli("run", "--json").stdout)
    ref = json.loads(cli("run", "--backend", "ref", "--json").stdout)
    threaded = json.loads(cli("run", "--json", "--threads", "2", "--batch", "7").stdout)
    for key in ("model", "backend", "n", "predictions", "logits_sha256", "accuracy", "latency_ms"):
        assert key in c
    assert c["n"] == 300 and len(c["predictions"]) == 300
    assert c["logits_sha256"] == ref["logits_sha256"] == threaded["logits_sha256"]


def test_run_on_npy_and_dataset(tmp_path):
    x = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))["images"][:5]
    np.save(tmp_path / "x.npy", x)
    out = json.loads(cli("run", "--input", str(tmp_path / "x.npy"), "--json").stdout)
    assert out["n"] == 5 and "accuracy" not in out
    ds = json.loads(cli("run", "--dataset", "fashion-mnist:test:50", "--json").stdout)
    assert ds["n"] == 50 and 0 <= ds["accuracy"] <= 1


def test_engine_and_cli_alone(tmp_path):
    """What the cross-compile README has a board copy: engine/ and cli.py, no other package. run and inspect
    work there and agree with the full checkout; the commands of absent packages are not listed."""
    import shutil
    shutil.copytree(os.path.join(ROOT, "engine"), tmp_path / "engine")
    shutil.copy(os.path.join(ROOT, "cli.py"), tmp_path)
    x = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))["images"][:7]
    np.save(tmp_path / "x.npy", x)
    model = os.path.join(ROOT, "zoo", "default.mfe")
    alone = lambda *a: subprocess.run([sys.executable, "cli.py", *a], capture_output=True, text=True, cwd=tmp_path)
    p = alone("run", model, "--input", "x.npy", "--json")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["logits_sha256"] == json.loads(cli("run", "--input", str(tmp_path / "x.npy"), "--json").stdout)["logits_sha256"]
    assert alone("inspect", model).returncode == 0
    commands = alone("--help").stdout.split("Commands:")[1]
    assert "run" in commands and "cross-compile" in commands and "train" not in commands and "convert" not in commands


def test_inspect_counts():
    rep = json.loads(cli("inspect", os.path.join(ROOT, "zoo", "every-op.mfe"), "--json").stdout)
    ops = {r["op"] for r in rep["layers"]}
    assert {"wht", "hdw", "sumpool", "conv2d", "linear", "add", "avgpool", "clamp", "requantize"} <= ops
    scaled = {n.name: n.attrs["scaled"] for n in engine.load(os.path.join(ROOT, "zoo", "every-op.mfe")).graph.nodes
              if n.op == "wht"}
    for r in rep["layers"]:
        assert {"name", "op", "params", "multiplies", "adds"} <= set(r)
        if r["op"] in ("wht", "hdw", "sumpool"):  # a wht multiplies only by its per-coefficient scales
            assert (r["multiplies"] > 0) == bool(scaled.get(r["name"])) and r["adds"] > 0
    assert rep["totals"]["multiplies"] == sum(r["multiplies"] for r in rep["layers"]) > 0


@pytest.mark.parametrize("args,words", [
    (("run", "missing.mfe"), "No such file"),
    (("run", "--input", "nothere.npy"), "cannot read"),
    (("convert", "nothere.pt", "-o", "x.mfe"), "no such file"),
    (("run", "--dataset", "mnist"), "unknown dataset"),
])
def test_errors_are_one_line(args, words):
    p = cli(*args, ok=False)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], p.stderr


def test_output_problems_fail_before_the_work(tmp_path):
    """convert, train and bench --plot check where they will write (and convert its --eval spec) before
    calibrating, training or measuring; a failing convert leaves no model behind."""
    (tmp_path / "file").write_text("")
    blocked = str(tmp_path / "file" / "m.mfe")  # a folder that cannot be made: a file is in the way
    ckpt = os.path.join(ROOT, "zoo", "fmnist-mbv2.pt")
    cases = [(("convert", ckpt, "-o", blocked), "cannot write"),
             (("convert", ckpt, "-o", ckpt), "would overwrite the checkpoint"),
             (("convert", ckpt, "-o", str(tmp_path / "newdir") + os.sep), "not a file name"),
             (("convert", ckpt, "-o", ""), "not a file name"),
             (("convert", "nothere.pt", "-o", str(tmp_path / "made" / "m.mfe")), "no such file"),
             (("convert", ckpt, "-o", str(tmp_path / "e.mfe"), "--eval", "cifar10:/nowhere"), "not found"),
             (("train", "--arch", "resnet20", "--epochs", "1", "-o", blocked), "cannot write"),
             (("bench", "--only", "seed", "--quick", "--plot", blocked), "cannot write")]
    for args, words in cases:
        p = cli(*args, ok=False)
        lines = p.stderr.strip().splitlines()  # the error alone: no progress of work begun
        assert p.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, p.stderr)
    assert not (tmp_path / "e.mfe").exists() and not (tmp_path / "made").exists()  # no model, no stray folder


def test_dataset_spec_forms():
    from engine.dataspec import load_spec
    assert load_spec("fashion-mnist:5")[0].shape == (5, 28, 28, 1)  # the split left out
    assert len(load_spec("fashion-mnist:train:7", "test")[1]) == 7
    for bad, words in (("fashion-mnist:0", "positive"), ("fashion-mnist:x", "split"), ("mnist", "unknown dataset")):
        with pytest.raises(ValueError, match=words):
            load_spec(bad)


def test_convert_asks_for_the_training_data(tmp_path):
    """A checkpoint trained on another data set than Fashion-MNIST is not calibrated on Fashion-MNIST by default."""
    import torch
    ckpt = torch.load(os.path.join(ROOT, "zoo", "fmnist-resnet20.pt"), map_location="cpu", weights_only=False)
    ckpt["dataset"] = "cifar10"
    torch.save(ckpt, tmp_path / "c.pt")
    p = cli("convert", str(tmp_path / "c.pt"), "-o", str(tmp_path / "c.mfe"), ok=False)
    assert p.returncode == 1 and "trained on cifar10" in p.stderr and "--calib cifar10:DIR:train" in p.stderr


def test_debug_shows_where_a_wrapped_error_began(tmp_path):
    p = cli("--debug", "convert", "nothere.pt", "-o", str(tmp_path / "x.mfe"), ok=False)
    assert p.returncode == 1 and "Traceback" in p.stderr and p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "Traceback" not in cli("convert", "nothere.pt", "-o", str(tmp_path / "x.mfe"), ok=False).stderr


def test_bare_program_prints_its_help():
    p = cli()
    assert p.returncode == 0 and p.stdout.startswith("Usage:") and "Commands:" in p.stdout and not p.stderr


def test_wrong_input_shape(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 32, 32, 3), np.uint8))
    p = cli("run", "--input", str(tmp_path / "bad.npy"), ok=False)
    assert p.returncode == 1 and "does not match" in p.stderr
