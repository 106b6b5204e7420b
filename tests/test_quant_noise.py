"""`train --quant-noise`: which tensors get the noise, its size, and the train option."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from training import checkpoint  # noqa: E402
from training.command import train  # noqa: E402
from training.layers import WHT, HadamardDepthwise  # noqa: E402
from training.models import build  # noqa: E402
from training.quant_noise import QuantNoise, rounded_modules  # noqa: E402
from training.zoo import _command  # noqa: E402

SMOKE = ["--max-batches", "2", "--test-limit", "64", "--batch-size", "16", "--quiet", "--threads", "1"]


def test_rounded_modules_of_a_residual_wht_block():
    block = build("mbv2-wht", in_channels=1, num_classes=10, width=0.5).features[15]
    assert block.use_res
    kinds = sorted(type(m).__name__ for m in rounded_modules(block))
    # expanding WHT, its affine+ReLU6, hdw, its affine+ReLU6, projecting WHT, its affine, the add
    assert kinds == sorted(["WHT", "ReLU6", "HadamardDepthwise", "ReLU6", "WHT", "BatchNorm2d",
                            "InvertedResidual"])
    assert sum(isinstance(m, (WHT, HadamardDepthwise)) for m in rounded_modules(block)) == 3


def test_noise_is_within_half_a_step_and_only_while_on():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 1), nn.BatchNorm2d(8)).eval()
    x = torch.randn(4, 3, 5, 5)
    clean = net(x)
    noise = QuantNoise(net, 2.0)
    assert torch.equal(net(x), clean)
    noise.on = True
    diff = net(x) - clean
    half = clean.abs().amax() * 2.0 / 127 / 2
    assert diff.abs().max() <= half * (1 + 1e-6) and diff.abs().max() > half / 2
    assert diff.std() > half / 4     # spread over the whole interval, not a constant shift
    noise.on = False
    assert torch.equal(net(x), clean)


def test_train_records_quant_noise_and_checks_it(tmp_path):
    out = str(tmp_path / "q.pt")
    r = CliRunner()
    res = r.invoke(train, ["--arch", "mbv2-wht", "--width", "0.5", "--epochs", "1",
                           "--quant-noise", "1.5", "-o", out] + SMOKE)
    assert res.exit_code == 0, res.output
    ck = checkpoint.read(out)
    assert ck["train_args"]["quant_noise"] == 1.5 and " --quant-noise 1.5 " in _command(ck)
    res = r.invoke(train, ["--arch", "mbv2", "--quant-noise", "-1", "-o", out])
    assert res.exit_code == 1 and "--quant-noise must be >= 0" in res.output
    res = r.invoke(train, ["--finetune-mulfree", out, "--quant-noise", "1", "-o", str(tmp_path / "m.pt")])
    assert res.exit_code == 1 and "do not combine" in res.output
