"""Mulfree fine-tuning: the fake-quantised view computes what `convert --mulfree` builds, the one
power-of-two rule, and `train --init / --finetune-mulfree` (checkpoints in and out, one-line errors)."""
import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from test_converter import IMAGES, MEAN, STD, randomise_stats

import engine
from converter import convert
from converter.mulfree import (activation_scales, fake_quant, fold_batchnorm_, pow2_terms, pow2_weights,
                              set_activation_scales)
from engine.inspect import report
from training import checkpoint
from training.command import train
from training.models import build

SMOKE = ["--max-batches", "2", "--test-limit", "32", "--batch-size", "16", "--quiet", "--threads", "1"]


def tiny(seed: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_stats(build("mbv2-wht", in_channels=1, width=0.25))


def save_ckpt(model: nn.Module, path) -> str:
    torch.save({"format": "mfcnn-checkpoint", "format_version": 1, "arch": "mbv2-wht",
                "config": {"in_channels": 1, "width": 0.25}, "state_dict": model.state_dict(),
                "normalization": {"mean": MEAN, "std": STD}, "dataset": "fashion-mnist",
                "test_accuracy": None, "epochs": 1}, path)
    return str(path)


def test_view_is_the_integer_model():
    model = tiny()
    graph = convert(model, IMAGES[:32], MEAN, STD, mulfree=True)
    assert report(graph)["totals"]["multiplies"] == 0
    view = fake_quant(model, STD).eval()
    set_activation_scales(view, activation_scales(model, IMAGES[:32], MEAN, STD))
    q = engine.from_graph(graph).run(IMAGES[:96], "c").astype(float) * graph.tensors[graph.output].scale
    x = (torch.from_numpy(IMAGES[:96].transpose(0, 3, 1, 2)).float() / 255 - MEAN[0]) / STD[0]
    with torch.no_grad():
        v, f = view(x).numpy(), model(x).numpy()
    # the view tracks the integer model far more closely than the float model does
    assert np.corrcoef(v.ravel(), q.ravel())[0, 1] > 0.999
    assert (v.argmax(1) == q.argmax(1)).mean() >= 0.97
    assert np.abs(v - q).mean() < 0.5 * np.abs(f - q).mean()


def test_one_rule_for_weights():
    w = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    q, scale = pow2_weights(w, per_channel=True)
    mag = q.abs()[q != 0]
    assert torch.equal(torch.exp2(torch.log2(mag).round()), mag) and mag.max() == 64
    assert torch.equal(q.abs().amax((1, 2, 3)), torch.full((8,), 64.0, dtype=torch.float64))
    assert torch.equal(torch.exp2(torch.log2(scale).round()), scale)
    # the converter's integer weights are exactly this rule applied to the BatchNorm-folded weights
    torch.manual_seed(0)
    model = randomise_stats(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                          nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                                          nn.Linear(8 * 28 * 28, 10)))
    graph = convert(model, IMAGES[:16], MEAN, STD, mulfree=True)
    conv, bn = model[3], model[4]
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expect, _ = pow2_weights((conv.weight * s.view(-1, 1, 1, 1)).detach().double(), per_channel=True)
    np.testing.assert_array_equal(graph.nodes[1].blobs["weight"].transpose(0, 3, 1, 2), expect.numpy())


def test_wht_scales_are_sums_of_three_powers_of_two():
    """V becomes at most three signed powers of two: integers within 2^sshift in the graph, the same rule in
    the view, counted as shifts and adds (no multiply) by the op's cost."""
    from engine.ops.wht import TABLE_TERMS, naf_digits
    top = 2.0 ** 17
    v = torch.cat([torch.linspace(-1, 1, 2001, dtype=torch.float64), torch.tensor([1e-7, 0.0], dtype=torch.float64)]) * top
    q = pow2_terms(v, top)
    assert torch.equal(q, q.round()) and q.abs().max() <= top
    assert naf_digits(q.numpy().astype(np.int64)).max() <= TABLE_TERMS
    big = v.abs() >= 1
    assert ((q - v).abs()[big] / v.abs()[big]).max() < 2**-4  # one power of two alone is off by up to a third
    f = pow2_terms(v / top)  # the view: float terms, no cap
    assert ((f * top - v).abs()[big] / v.abs()[big]).max() < 2**-4
    torch.manual_seed(4)
    model = randomise_stats(build("mbv2-wht", in_channels=1, width=0.25, wht_scale=True))
    for m in model.modules():
        if getattr(m, "V", None) is not None:
            m.V.data.uniform_(-1, 1)
    graph = convert(model, IMAGES[:32], MEAN, STD, mulfree=True)
    cs = np.concatenate([n.blobs["cscale"] for n in graph.nodes if n.op == "wht" and n.attrs["scaled"]])
    assert cs.size and naf_digits(cs).max() == TABLE_TERMS  # not only powers of two
    assert report(graph)["totals"]["multiplies"] == 0


def test_fold_batchnorm_keeps_the_function():
    model = tiny()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        before = model(x)
        fold_batchnorm_(model)
        after = model(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)
    bn = model.features[0][1]  # the stem's BatchNorm now only shifts
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_finetune_mulfree_and_init_checkpoints(tmp_path, monkeypatch):
    import training.trainer as trainer
    monkeypatch.setattr(trainer, "MULFREE_CALIB", 16)
    model = tiny()
    src = save_ckpt(model, tmp_path / "src.pt")
    out = str(tmp_path / "mf.pt")
    res = CliRunner().invoke(train, ["--finetune-mulfree", src, "-o", out, "--lr", "1e-3"] + SMOKE,
                             catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ck = checkpoint.read(out)
    assert ck["arch"] == "mbv2-wht" and ck["config"] == {"in_channels": 1, "width": 0.25} and ck["epochs"] == 1
    assert ck["train_args"]["finetune_mulfree"] and ck["train_args"]["init"] == src
    assert 0 <= ck["mulfree_accuracy"] <= 1 and "mulfree_accuracy" in ck["history"][-1]
    assert ck["init_test_accuracy"] is None  # the source checkpoint's (it has none)
    before, after = model.state_dict(), ck["state_dict"]
    folded = fold_batchnorm_(copy.deepcopy(model)).state_dict()
    # BatchNorm statistics are folded into the convs, then frozen; the weights moved
    assert all(torch.equal(folded[k], after[k]) for k in before if "running_" in k)
    assert not torch.equal(folded["features.0.0.weight"], after["features.0.0.weight"])
    tuned, _ = checkpoint.load(out)
    for mulfree in (True, False):  # the fine-tuned checkpoint still converts both ways
        graph = convert(tuned, IMAGES[:32], MEAN, STD, mulfree=mulfree)
        assert (report(graph)["totals"]["multiplies"] == 0) == mulfree
    # --init: the checkpoint's weights, arch and config, a fresh run (LR 0 leaves the weights as they were)
    res = CliRunner().invoke(train, ["--init", src, "-o", str(tmp_path / "i.pt"), "--lr", "0", "--momentum", "0",
                                     "--weight-decay", "0"] + SMOKE, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    ck = checkpoint.read(str(tmp_path / "i.pt"))
    assert ck["config"]["width"] == 0.25 and not ck["train_args"]["finetune_mulfree"]
    assert torch.equal(ck["state_dict"]["features.0.0.weight"], before["features.0.0.weight"])


@pytest.mark.parametrize("args,message", [
    (["--init", "{d}/none.pt"], "no such file"),
    (["--init", "{d}/src.pt", "--finetune-mulfree", "{d}/src.pt"], "give one"),
    (["--finetune-mulfree", "{d}/src.pt", "--arch", "mbv2"], "holds arch 'mbv2-wht'"),
    (["--finetune-mulfree", "{d}/rs.pt"], "StructuredConv2d"),
    ([], "--arch is required"),
])
def test_errors_are_one_line(tmp_path, args, message):
    save_ckpt(tiny(), tmp_path / "src.pt")
    rs = build("resnet20-structured", in_channels=1, width=0.25)
    torch.save({"arch": "resnet20-structured", "config": {"in_channels": 1, "width": 0.25},
                "state_dict": rs.state_dict(), "normalization": {"mean": MEAN, "std": STD}}, tmp_path / "rs.pt")
    res = CliRunner().invoke(train, [a.format(d=tmp_path) for a in args] + ["-o", str(tmp_path / "x.pt")] + SMOKE)
    assert res.exit_code == 1 and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
