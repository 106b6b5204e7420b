"""Model builders, parameter budgets, op counts, checkpoint round trip."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
import pytest
import torch

from training import checkpoint
from training.analysis import op_counts
from training.layers import WHT, HadamardDepthwise, StructuredConv2d
from training.models import ARCHS, build, count_params

SHAPES = [(1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("shape", SHAPES)
def test_build_output_shape(arch, shape):
    torch.manual_seed(0)
    m = build(arch, in_channels=shape[0], num_classes=10)
    m.eval()
    with torch.no_grad():
        y = m(torch.randn(2, *shape))
    assert y.shape == (2, 10) and torch.isfinite(y).all()


def test_mbv2_param_counts_and_budget():
    full = count_params(build("mbv2", in_channels=3))
    assert full == 2_236_682          # torchvision-style MobileNet-V2, 10 classes (seed 002)
    wht = build("mbv2-wht", in_channels=3)
    assert count_params(wht) <= 0.25 * full
    assert sum(isinstance(m, WHT) for m in wht.modules()) == 2 * 5 + 1
    assert sum(isinstance(m, HadamardDepthwise) for m in wht.modules()) == 5
    thesis = build("mbv2-thesis", in_channels=3)
    w = [m for m in thesis.modules() if isinstance(m, WHT)]
    assert len(w) == 1 and (w[0].in_channels, w[0].out_channels, w[0].n) == (320, 1280, 2048)
    assert w[0].mode == "soft" and w[0].ordering == "walsh"
    assert count_params(thesis) < full
    rs = build("resnet20-structured", in_channels=3)
    assert sum(isinstance(m, StructuredConv2d) for m in rs.modules()) == 18
    assert count_params(rs) < count_params(build("resnet20", in_channels=3))


def test_width_multiplier():
    small = build("mbv2", in_channels=1, width=0.5)
    assert count_params(small) < count_params(build("mbv2", in_channels=1))
    assert small(torch.randn(1, 1, 28, 28)).shape == (1, 10)


def test_op_counts():
    full = op_counts(build("mbv2", in_channels=1), (1, 28, 28))
    assert full["multiply_free_share"] == 0 and full["mul_macs"] > 50e6
    wht = op_counts(build("mbv2-wht", in_channels=1), (1, 28, 28))
    assert 0 < wht["multiply_free_share"] < 1 and wht["mul_macs"] < full["mul_macs"]
    rs = op_counts(build("resnet20-structured", in_channels=1), (1, 28, 28))
    assert rs["free_ops"] > 0


def test_resnet20_structured_decomposes_exactly():
    torch.manual_seed(0)
    m = build("resnet20-structured", in_channels=1).double().eval()
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    for mod in m.modules():
        if isinstance(mod, StructuredConv2d):
            torch.nn.init.normal_(mod.alpha_p)
    with torch.no_grad():
        want = m(x)
        # swap every structured conv for its sum-pool + small conv decomposition
        for blk in m.layers:
            blk.conv1 = blk.conv1.decompose()
            blk.conv2 = blk.conv2.decompose()
        got = m(x)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9)


def test_checkpoint_roundtrip_fp16(tmp_path):
    torch.manual_seed(0)
    m = build("mbv2-wht", in_channels=1, width=0.5)
    ck = {"arch": "mbv2-wht", "config": {"in_channels": 1, "width": 0.5},
          "state_dict": m.state_dict(), "normalization": {"mean": [0.286], "std": [0.353]},
          "test_accuracy": 0.5, "epochs": 1, "optimizer": {"x": 1}}
    p = tmp_path / "a.pt"
    checkpoint.save(ck, str(p))
    m2, c2 = checkpoint.load(str(p))
    assert not m2.training and c2["arch"] == "mbv2-wht"
    q = tmp_path / "b.pt"
    checkpoint.export(str(p), str(q))
    m3, c3 = checkpoint.load(str(q))
    assert "optimizer" not in c3 and c3["state_dict"]["classifier.weight"].dtype == torch.float16
    assert all(v.dtype != torch.float16 for v in m3.state_dict().values())
    m.eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x))
        torch.testing.assert_close(m3(x), m(x), atol=0.05, rtol=0.05)


def test_thesis_reconstruction_matches_its_parameter_count():
    # Table 4.2 of seed 002: 1,814,922 parameters = MobileNet-V2 without the 320->1280 conv
    # and its BN, a 320->10 classifier, and no trained thresholds
    m = build("mbv2-thesis", in_channels=3, thesis_faithful=True, last_channels=320,
              freeze_thresholds=True)
    assert sum(p.numel() for p in m.parameters() if p.requires_grad) == 1_814_922
