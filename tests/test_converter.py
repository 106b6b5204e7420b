"""Converter: every supported layer maps to integer ops that track the float model; clear refusals."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

import engine
from converter import ConvertError, convert
from training.layers import WHT, HadamardDepthwise, StructuredConv2d
from training.models import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = np.load(os.path.join(ROOT, "zoo", "fashion-mnist-sample.npz"))
IMAGES, LABELS = SAMPLE["images"], SAMPLE["labels"]
MEAN, STD = [0.286], [0.353]


def randomise_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Untrained BatchNorms are identities; give them real statistics (negative scales too)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
            m.weight.data.copy_((torch.rand(m.num_features, generator=g) + 0.5) * torch.where(
                torch.rand(m.num_features, generator=g) < 0.2, -1.0, 1.0))
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
        if isinstance(m, WHT):
            m.T.data.copy_(torch.rand(m.n, generator=g) * 0.3)
            if m.V is not None:  # factors past 1 (the converter moves 2^ceil(log2 max|V|) out) and negative ones
                m.V.data.copy_((torch.rand(m.n, generator=g) * 2.5 + 0.2) * torch.where(
                    torch.rand(m.n, generator=g) < 0.2, -1.0, 1.0))
    return model.eval()


def float_logits(model: nn.Module, images: np.ndarray) -> np.ndarray:
    x = (torch.from_numpy(images.transpose(0, 3, 1, 2)).float() / 255 - MEAN[0]) / STD[0]
    with torch.no_grad():
        return model(x).numpy()


def fidelity(model: nn.Module, **kw) -> tuple[float, float, engine.Model]:
    g = convert(model, IMAGES[:128], MEAN, STD, **kw)
    m = engine.from_graph(g)
    q = m.run(IMAGES, "c").astype(float)
    np.testing.assert_array_equal(m.run(IMAGES[:8], "ref"), q[:8])
    f = float_logits(model, IMAGES)
    return float(np.corrcoef(f.ravel(), q.ravel())[0, 1]), float((f.argmax(1) == q.argmax(1)).mean()), m


class Every(nn.Module):
    """One of each supported layer, in both WHT orderings and modes (one with scales) and both Hadamard operators."""
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1, groups=16), nn.BatchNorm2d(16), nn.ReLU())
        self.wht = nn.Sequential(WHT(16, 24, "smooth", "walsh", scale=True), nn.BatchNorm2d(24), nn.ReLU6())
        self.hdw = nn.Sequential(HadamardDepthwise(24, 1, "min"), nn.BatchNorm2d(24), nn.ReLU6())
        self.hdw_ef = nn.Sequential(HadamardDepthwise(24, 2, "ef"), nn.BatchNorm2d(24))
        self.wht_res = WHT(24, 24, "soft", "hadamard", residual=True)
        self.structured = StructuredConv2d(24, 16, 3, 1, 1, c_prime=12, k_prime=2)
        self.pw = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16 * 7 * 7, 10)

    def forward(self, x):
        x = self.hdw(self.wht(self.dw(self.stem(x))))
        x = self.wht_res(self.hdw_ef(x))
        y = self.structured(x)
        x = torch.relu(y + self.pw(y))
        return self.head(torch.flatten(x, 1))


def test_every_layer_tracks_float():
    torch.manual_seed(0)
    corr, agree, m = fidelity(randomise_stats(Every()))
    assert corr > 0.99 and agree > 0.9, (corr, agree)
    ops = {n.op for n in m.graph.nodes}
    assert {"conv2d", "wht", "hdw", "sumpool", "add", "affine", "linear"} <= ops


@pytest.mark.parametrize("arch,cfg", [("mbv2", {"width": 0.5}), ("mbv2-wht", {"width": 0.5}),
                                      ("mbv2-wht", {"width": 0.5, "wht_scale": True}),
                                      ("mbv2-thesis", {"width": 0.5}), ("resnet20-structured", {})])
def test_project_models_convert(arch, cfg):
    torch.manual_seed(1)
    corr, agree, _ = fidelity(randomise_stats(build(arch, in_channels=1, **cfg)))
    assert corr > 0.95 and agree > 0.9, (corr, agree)


class TorchvisionStyleMBV2Block(nn.Module):
    """A block written the way torchvision writes MobileNet-V2 (Conv2dNormActivation, use_res_connect)."""
    def __init__(self, inp, hidden, oup, stride):
        super().__init__()
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Sequential(nn.Conv2d(inp, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)),
            nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden),
                          nn.ReLU6(inplace=True)),
            nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


def test_stock_modules_convert():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)),
        TorchvisionStyleMBV2Block(16, 64, 16, 1), TorchvisionStyleMBV2Block(16, 64, 24, 2),
        TorchvisionStyleMBV2Block(24, 96, 24, 1), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(1),
        nn.Dropout(0.2), nn.Linear(24, 10))
    corr, agree, _ = fidelity(randomise_stats(model))
    assert corr > 0.99 and agree > 0.9, (corr, agree)


@pytest.mark.parametrize("wht_scale", [False, True])
def test_mulfree_has_no_multiplies(wht_scale):
    from engine.inspect import report
    torch.manual_seed(3)
    model = randomise_stats(build("mbv2-wht", in_channels=1, width=0.5, wht_scale=wht_scale))
    corr, _, m = fidelity(model, mulfree=True)
    rep = report(m.graph)
    assert rep["totals"]["multiplies"] == 0 and rep["totals"]["adds"] > 0
    assert corr > 0.5  # powers of two are coarse before fine-tuning; the graph still tracks the float model


def test_reduce_range_narrows_the_weights_of_convs_on_signed_inputs():
    torch.manual_seed(5)
    model = randomise_stats(build("mbv2", in_channels=1, width=0.5))
    corr, agree, m = fidelity(model, reduce_range=True)
    g = m.graph
    convs = [n for n in g.nodes if n.op == "conv2d" and n.attrs["groups"] == 1]
    # a dense conv's input is signed when its producer does not clamp at >= 0; the first conv (on the image) keeps 127
    producer = {n.output: n for n in g.nodes}
    signed = {n.name: n.inputs[0] != g.input and producer[n.inputs[0]].attrs.get("act_lo", -128) < 0 for n in convs}
    tops = {n.name: int(np.abs(n.blobs["weight"].astype(int)).max()) for n in convs}
    assert {name for name, s in signed.items() if s} and {name for name, s in signed.items() if not s}
    for name, top in tops.items():
        assert top == (64 if signed[name] else 127), (name, top)
    assert corr > 0.99 and agree > 0.9, (corr, agree)
    assert g.meta["reduce_range"] is True


def test_short_multiplier():
    from engine.quant import INT32_MAX, SHORT_BITS, short_multiplier
    rng = np.random.default_rng(0)
    for real, bound in zip(2.0 ** rng.uniform(-20, 2, 300), rng.integers(1, 1 << 20, 300)):
        got = short_multiplier(real, int(bound))
        if got is None:  # even SHORT_BITS bits would overflow: 2^(SHORT_BITS-1) * bound, or a shift past 31
            assert (1 << (SHORT_BITS - 1)) * bound > INT32_MAX // 2 or real < 2.0 ** (SHORT_BITS - 32)
            continue
        m, s = got
        assert 0 <= s <= 31 and m * bound + ((1 << s) >> 1) <= INT32_MAX
        assert abs(m / 2**s - real) <= real * 2.0 ** -SHORT_BITS
        # the most precise: one more bit would break the bound (or the shift limit)
        assert s == 31 or (2 * m - 1) * bound + (1 << s) > INT32_MAX


def test_convs_take_one_requant_form_per_layer():
    """Short multipliers (the C backend's int32 requantisation) where every channel of a conv proves its
    accumulators fit, else 31-bit ones for the whole layer: a SIMD tile never mixes the two."""
    from engine.quant import INT32_MAX
    torch.manual_seed(6)
    corr, agree, m = fidelity(randomise_stats(build("mbv2", in_channels=1, width=0.5)))
    forms = []
    for n in m.graph.nodes:
        if n.op != "conv2d":
            continue
        w, b = n.blobs["weight"].astype(np.int64), n.blobs["bias"].astype(np.int64)
        bound = np.abs(b) + 128 * np.abs(w).reshape(len(w), -1).sum(1)
        mult, shift = n.blobs["mult"].astype(np.int64), n.blobs["shift"].astype(np.int64)
        short = (shift <= 31) & (mult * bound + ((1 << shift) >> 1) <= INT32_MAX)
        assert short.all() or (mult >= 1 << 30).all(), n.name
        forms.append(bool(short.all()))
    assert any(forms) and not all(forms)  # the depthwise convs fit; wide 1x1s do not
    assert corr > 0.99 and agree > 0.9, (corr, agree)


def test_residual_wht_with_large_scales_is_refused():
    m = WHT(8, 8, "soft", residual=True, scale=True)
    m.V.data.fill_(1.5)
    with pytest.raises(ConvertError, match="residual WHT layer needs its scales V within"):
        convert(nn.Sequential(nn.Conv2d(1, 8, 3, 1, 1), m, nn.Flatten(1), nn.Linear(8 * 28 * 28, 10)).eval(),
                IMAGES[:8], MEAN, STD)


def test_unsupported_module_is_named():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sequential(nn.Conv2d(4, 4, 1), nn.GELU()))
    with pytest.raises(ConvertError, match=r"unsupported module 1\.1 \(torch\.nn\.GELU\)"):
        convert(model, IMAGES[:8], MEAN, STD)


def test_cli_convert_checkpoint(tmp_path):
    torch.manual_seed(4)
    model = randomise_stats(build("mbv2-wht", in_channels=1, width=0.25))
    ckpt = {"format": "mfcnn-checkpoint", "format_version": 1, "arch": "mbv2-wht",
            "config": {"in_channels": 1, "width": 0.25}, "state_dict": model.state_dict(),
            "normalization": {"mean": MEAN, "std": STD}, "test_accuracy": None, "epochs": 0}
    torch.save(ckpt, tmp_path / "m.pt")
    p = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "convert", str(tmp_path / "m.pt"), "-o",
                        str(tmp_path / "m.mfe"), "--calib", "fashion-mnist:train:64", "--eval", "fashion-mnist:test:200",
                        "--layer-errors", "16", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert [r["name"] for r in out["layer_errors"]] == [r["name"] for r in out["layers"]]
    assert all(0 <= r["error"] < 1 and 0 <= r["isolated"] < 1 for r in out["layer_errors"])
    for key in ("float_accuracy", "int_accuracy", "agreement", "params", "multiplies", "adds", "layers", "totals"):
        assert key in out
    assert out["eval_images"] == 200 and out["agreement"] > 0.8
    run = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "run", str(tmp_path / "m.mfe"), "--json"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and json.loads(run.stdout)["n"] == 300
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "cli.py"), "convert", str(tmp_path / "none.pt"), "-o",
                          str(tmp_path / "x.mfe")], capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1


def test_layer_errors_point_at_a_broken_layer():
    """The diagnosis finds the one node whose weights were damaged: its own (isolated) error jumps, the
    layers before it are untouched, and the first layer's end-to-end error is its isolated error."""
    from converter.diagnose import layer_errors
    torch.manual_seed(6)
    model = randomise_stats(Every())
    g = convert(model, IMAGES[:64], MEAN, STD)
    good = layer_errors(model, g, IMAGES[:16], MEAN, STD)
    assert good[0]["error"] == good[0]["isolated"] and max(r["isolated"] for r in good) < 0.2, good
    k = next(i for i, n in enumerate(g.nodes) if n.op == "hdw")
    g.nodes[k].blobs["weight"] = -g.nodes[k].blobs["weight"]
    bad = layer_errors(model, g, IMAGES[:16], MEAN, STD)
    j = next(i for i, r in enumerate(bad) if r["name"] == g.nodes[k].name)
    assert bad[:j] == good[:j] and bad[j]["isolated"] > 0.5 and good[j]["isolated"] < 0.2


def test_torch_export_program(tmp_path):
    """A .pt2 from torch.export (aten-level graph, parameters as graph attributes) converts too."""
    from converter import load_source
    torch.manual_seed(5)
    model = randomise_stats(nn.Sequential(
        nn.Conv2d(1, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(), nn.Conv2d(8, 8, 3, 2, 1, groups=8),
        nn.ReLU(), nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(0.2), nn.Linear(16, 10)))
    torch.export.save(torch.export.export(model, (torch.zeros(1, 1, 28, 28),)), tmp_path / "m.pt2")
    exported, _ = load_source(str(tmp_path / "m.pt2"))
    m = engine.from_graph(convert(exported, IMAGES[:32], MEAN, STD))
    assert [n.op for n in m.graph.nodes] == ["conv2d", "conv2d", "conv2d", "avgpool", "linear"]
    q = m.run(IMAGES[:50], "c").astype(float)
    f = float_logits(model, IMAGES[:50])
    assert np.corrcoef(f.ravel(), q.ravel())[0, 1] > 0.99
