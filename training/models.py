"""Model zoo builders: ``build(arch, **config) -> nn.Module``.

Architectures (inputs 1x28x28 Fashion-MNIST or 3x32x32 CIFAR-10, set with
``in_channels``; any spatial size >= 8 works because of global pooling):

* ``mbv2``: MobileNet-V2, CIFAR recipe (first conv 3x3 stride 1, the
  inverted-residual table of Sandler et al. with the 24-channel stage at
  stride 1), width multiplier ``width``.
* ``mbv2-wht``: seed 000's variant: the bottlenecks from ``wht_from`` on use
  ``WHT`` layers for their 1x1 convs and ``HadamardDepthwise`` for their 3x3
  depthwise convs, and the last 1x1 conv (320 -> 1280) is a WHT layer too.
  Default ``wht_from=12``: the final third of the 18 layers after the stem
  (17 bottlenecks + last conv), i.e. the last 96-channel block, the 160 and
  320 stages and the last conv: 510K parameters on CIFAR-10 (seed: 540K).  Every WHT/HadamardDepthwise is followed
  by a standard BatchNorm2d (foldable into a per-channel affine).
  ``wht_scale=True`` gives every WHT layer per-coefficient scales V (see
  ``WHT``): the learned channel mixing the plain layer lacks, n parameters
  per layer.
* ``mbv2-thesis``: seed 002's variant: only the last 1x1 conv 320 -> 1280 is a
  WHT layer (soft thresholding, Walsh ordering).  ``thesis_faithful=True``
  rebuilds the thesis' failing head (the WHT replaces conv+BN+ReLU6 and feeds
  the pooling/classifier directly; with ``last_channels=320`` and
  ``freeze_thresholds=True`` it has exactly the thesis' 1,814,922 parameters
  on CIFAR-10 plus nothing: its T were not trained); the default is the fixed head
  WHT -> BatchNorm2d -> ReLU6 (see training/README.md for the diagnosis).
* ``resnet20`` / ``resnet20-structured``: CIFAR ResNet-20 (He et al., option-A
  identity shortcuts); in the structured one every 3x3 conv of the residual
  blocks is a ``StructuredConv2d`` (C' = ceil(channel_ratio * C), N' = 2).
  The stem conv (1 or 3 input channels) stays ordinary.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .layers import WHT, HadamardDepthwise, StructuredConv2d

# t (expansion), c (channels), n (repeats), s (stride of first)
MBV2_CIFAR_CFG = [
    (1, 16, 1, 1),
    (6, 24, 2, 1),   # stride 2 in the ImageNet table; 1 for 32x32 / 28x28 inputs
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _conv_bn_act(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio, wht=False, wht_mode="smooth",
                 ordering="hadamard", dw_op="min", init_threshold="uniform", bn_eps=1e-5,
                 wht_scale=False):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            if wht:
                layers += [WHT(inp, hidden, wht_mode, ordering, init_threshold=init_threshold,
                               scale=wht_scale),
                           nn.BatchNorm2d(hidden, eps=bn_eps),
                           nn.ReLU6(inplace=True)]
            else:
                layers += [_conv_bn_act(inp, hidden, 1)]
        if wht:
            layers += [HadamardDepthwise(hidden, stride, dw_op), nn.BatchNorm2d(hidden),
                       nn.ReLU6(inplace=True)]
        else:
            layers += [_conv_bn_act(hidden, hidden, 3, stride, groups=hidden)]
        if wht:
            layers += [WHT(hidden, oup, wht_mode, ordering, init_threshold=init_threshold,
                               scale=wht_scale),
                       nn.BatchNorm2d(oup, eps=bn_eps)]
        else:
            layers += [nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        y = self.conv(x)
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: float = 1.0,
                 wht_from: int | None = None, wht_last: bool = False,
                 wht_mode: str = "smooth", ordering: str = "hadamard", dw_op: str = "min",
                 last_mode: str | None = None, last_ordering: str | None = None,
                 thesis_faithful: bool = False, wht_init_threshold: float | str = "uniform",
                 freeze_thresholds: bool = False, last_channels: int | None = None,
                 wht_bn_eps: float = 0.1, wht_scale: bool = False,
                 dropout: float = 0.2):
        super().__init__()
        inp = _make_divisible(32 * width)
        last = last_channels or _make_divisible(1280 * max(1.0, width))
        feats: list[nn.Module] = [_conv_bn_act(in_channels, inp, 3, 1)]
        idx = 0
        for t, c, n, s in MBV2_CIFAR_CFG:
            oup = _make_divisible(c * width)
            for i in range(n):
                use_wht = wht_from is not None and idx >= wht_from
                feats.append(InvertedResidual(inp, oup, s if i == 0 else 1, t, use_wht,
                                              wht_mode, ordering, dw_op, wht_init_threshold,
                                              wht_bn_eps, wht_scale))
                inp = oup
                idx += 1
        self.num_blocks = idx
        if wht_last:
            layer = WHT(inp, last, last_mode or wht_mode, last_ordering or ordering,
                        init_threshold=wht_init_threshold, scale=wht_scale)
            if thesis_faithful:
                feats.append(layer)          # thesis: WHT feeds the pooling directly
            else:
                feats.append(nn.Sequential(layer, nn.BatchNorm2d(last, eps=wht_bn_eps),
                                           nn.ReLU6(inplace=True)))
        else:
            feats.append(_conv_bn_act(inp, last, 1))
        self.features = nn.Sequential(*feats)
        if freeze_thresholds:
            for m in self.modules():
                if isinstance(m, WHT):
                    m.T.requires_grad_(False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(last, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self._classify(self.features(x))

    def forward_from(self, h, start: int):
        """Logits from ``h``, the output of ``features[:start]`` (a frozen backbone's
        features computed once and shared, see ``train --backbone``)."""
        return self._classify(self.features[start:](h))

    def _classify(self, x):
        return self.classifier(self.dropout(self.pool(x).flatten(1)))


class _ShortcutA(nn.Module):
    """Option-A shortcut: subsample by stride, zero-pad channels (no parameters)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad:
            x = F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
        return x


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, structured, channel_ratio, k_prime, struct_mode):
        super().__init__()

        def conv(a, b, s):
            if structured:
                return StructuredConv2d(a, b, 3, s, 1, c_prime=max(1, math.ceil(channel_ratio * a)),
                                        k_prime=k_prime, mode=struct_mode)
            return nn.Conv2d(a, b, 3, s, 1, bias=False)

        self.conv1, self.bn1 = conv(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv(cout, cout, 1), nn.BatchNorm2d(cout)
        self.shortcut = (_ShortcutA(cin, cout, stride) if stride != 1 or cin != cout
                         else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class ResNetCifar(nn.Module):
    def __init__(self, depth: int = 20, in_channels: int = 3, num_classes: int = 10,
                 width: float = 1.0, structured: bool = False, channel_ratio: float = 0.75,
                 k_prime: int = 2, struct_mode: str = "composite"):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError("depth must be 6n+2")
        nb = (depth - 2) // 6
        widths = [max(4, int(round(c * width))) for c in (16, 32, 64)]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        blocks = []
        cin = widths[0]
        for si, c in enumerate(widths):
            for bi in range(nb):
                s = 2 if si > 0 and bi == 0 else 1
                blocks.append(BasicBlock(cin, c, s, structured, channel_ratio, k_prime, struct_mode))
                cin = c
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.pool(self.layers(self.stem(x))).flatten(1)
        return self.classifier(x)


def _mbv2(**cfg):
    return MobileNetV2(**cfg)


def _mbv2_wht(**cfg):
    cfg.setdefault("wht_from", 12)
    cfg.setdefault("wht_last", True)
    return MobileNetV2(**cfg)


def _mbv2_thesis(**cfg):
    cfg.setdefault("wht_last", True)
    cfg.setdefault("last_mode", "soft")
    cfg.setdefault("last_ordering", "walsh")
    return MobileNetV2(**cfg)


def _resnet20(**cfg):
    return ResNetCifar(20, **cfg)


def _resnet20_structured(**cfg):
    cfg.setdefault("structured", True)
    return ResNetCifar(20, **cfg)


ARCHS = {
    "mbv2": _mbv2,
    "mbv2-wht": _mbv2_wht,
    "mbv2-thesis": _mbv2_thesis,
    "resnet20": _resnet20,
    "resnet20-structured": _resnet20_structured,
}


def build(arch: str, **config) -> nn.Module:
    """Build an architecture by name; ``config`` are the builder's kwargs
    (e.g. in_channels=1, num_classes=10, width=1.0)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {', '.join(ARCHS)}")
    return ARCHS[arch](**config)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
