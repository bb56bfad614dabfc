"""The architectures of the RobustBench models that test-time adaptation papers use, with the
module names and buffers of RobustBench's model zoo, so its checkpoints load unchanged.

RobustBench's package (`robustbench` on PyPI, 1.1.1) cannot serve here: it pins timm==1.0.9
(ctta uses a newer timm) and its `import robustbench` needs `autoattack`, which is on GitHub
only. So the few architectures below are written out, after RobustBench's
`model_zoo/architectures` (Apache-2.0): `WideResNet` after TRADES (Zhang et al. 2019, MIT),
`CifarResNeXt` after AugMix's (Hendrycks et al. 2020; Xuanyi Dong, MIT), and ImageNet
models as torchvision networks behind an input normaliser (RobustBench's `normalize_model`).
Every model takes images in [0, 1]; those trained on normalised inputs normalise inside.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def _initialise(net: nn.Module, kaiming_linear: bool) -> None:
    """RobustBench's initialisation (what the tests' random models start from): He-normal
    convolutions, unit BatchNorm, zero biases (and He-normal linear weights in ResNeXt)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.normal_(0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels)))
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            if kaiming_linear:
                nn.init.kaiming_normal_(m.weight)
            m.bias.data.zero_()


class _WideBasic(nn.Module):
    """Pre-activation basic block of RobustBench's WideResNet (`BasicBlock`)."""

    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.equalInOut = in_planes == out_planes
        self.convShortcut = (
            None if self.equalInOut else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.equalInOut:
            out = self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x)))))
            return x + self.conv2(out)
        x = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(x)))
        return self.convShortcut(x) + self.conv2(out)


class _NetworkBlock(nn.Module):
    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.layer = nn.Sequential(
            *[
                _WideBasic(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                for i in range(n)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    """WRN-depth-k for 32 px inputs (RobustBench's `WideResNet`, keys conv1, block1..3, bn1, fc)."""

    def __init__(self, depth: int = 28, num_classes: int = 10, widen_factor: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(3, channels[0], 3, 1, 1, bias=False)
        self.block1 = _NetworkBlock(n, channels[0], channels[1], 1)
        self.block2 = _NetworkBlock(n, channels[1], channels[2], 2)
        self.block3 = _NetworkBlock(n, channels[2], channels[3], 2)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(channels[3], num_classes)
        self.nChannels = channels[3]
        _initialise(self, kaiming_linear=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(self.relu(self.bn1(out)), 1)  # RobustBench: avg_pool2d(8) at 32 px
        return self.fc(out.flatten(1))


class _ResNeXtBottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, cardinality: int, base_width: int, stride=1, downsample=None
    ):
        super().__init__()
        dim = int(math.floor(planes * (base_width / 64.0)))
        self.conv_reduce = nn.Conv2d(inplanes, dim * cardinality, 1, 1, 0, bias=False)
        self.bn_reduce = nn.BatchNorm2d(dim * cardinality)
        self.conv_conv = nn.Conv2d(
            dim * cardinality, dim * cardinality, 3, stride, 1, groups=cardinality, bias=False
        )
        self.bn = nn.BatchNorm2d(dim * cardinality)
        self.conv_expand = nn.Conv2d(dim * cardinality, planes * 4, 1, 1, 0, bias=False)
        self.bn_expand = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn_reduce(self.conv_reduce(x)), inplace=True)
        out = F.relu(self.bn(self.conv_conv(out)), inplace=True)
        out = self.bn_expand(self.conv_expand(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(residual + out, inplace=True)


class CifarResNeXt(nn.Module):
    """ResNeXt-depth (cardinality × base width) for 32 px inputs (AugMix's, as in RobustBench)."""

    def __init__(self, depth: int = 29, cardinality: int = 4, base_width: int = 32, num_classes: int = 10):
        super().__init__()
        if (depth - 2) % 9:
            raise ValueError(f"CifarResNeXt depth must be 9n+2, got {depth}")
        blocks = (depth - 2) // 9
        self.cardinality, self.base_width, self.num_classes = cardinality, base_width, num_classes
        self.conv_1_3x3 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(64)
        self.inplanes = 64
        self.stage_1 = self._make_layer(64, blocks, 1)
        self.stage_2 = self._make_layer(128, blocks, 2)
        self.stage_3 = self._make_layer(256, blocks, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)  # RobustBench: AvgPool2d(8) at 32 px (no parameters)
        self.classifier = nn.Linear(256 * 4, num_classes)
        _initialise(self, kaiming_linear=True)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False), nn.BatchNorm2d(planes * 4)
            )
        layers = [
            _ResNeXtBottleneck(self.inplanes, planes, self.cardinality, self.base_width, stride, downsample)
        ]
        self.inplanes = planes * 4
        layers += [
            _ResNeXtBottleneck(self.inplanes, planes, self.cardinality, self.base_width)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn_1(self.conv_1_3x3(x)), inplace=True)
        x = self.avgpool(self.stage_3(self.stage_2(self.stage_1(x))))
        return self.classifier(x.flatten(1))


class _HalfNormalized:
    """AugMix's models take (x - 0.5) / 0.5; RobustBench subclasses the network with the
    constants as buffers `mu` and `sigma` (which its checkpoints do not hold)."""

    def _normalize_halves(self) -> None:
        self.register_buffer("mu", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("sigma", torch.full((1, 3, 1, 1), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward((x - self.mu) / self.sigma)


class AugMixWRN(_HalfNormalized, WideResNet):
    """RobustBench's `Hendrycks2020AugMix_WRN`: WRN-40-2 on half-normalised inputs."""

    def __init__(self, num_classes: int = 10):
        super().__init__(40, num_classes, 2)
        self._normalize_halves()


class AugMixResNeXt(_HalfNormalized, CifarResNeXt):
    """RobustBench's `Hendrycks2020AugMix_ResNeXt`: ResNeXt-29 (4 × 32d) on half-normalised inputs."""

    def __init__(self, num_classes: int = 10):
        super().__init__(29, 4, 32, num_classes)
        self._normalize_halves()


class ImageNormalizer(nn.Module):
    """RobustBench's input normaliser in front of its ImageNet models (buffers `mean`, `std`)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.as_tensor(std).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalize_model(model: nn.Module, mean, std) -> nn.Sequential:
    """RobustBench's `normalize_model`: Sequential(normalize, model)."""
    return nn.Sequential(OrderedDict([("normalize", ImageNormalizer(mean, std)), ("model", model)]))


def _imagenet(builder: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from torchvision import models

        return normalize_model(
            getattr(models, builder)(weights=None), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        )

    return build


def _standard_wrn() -> nn.Module:
    return WideResNet(28, 10, 10)


_AUGMIX = {
    f"{ds}/corruptions/Hendrycks2020AugMix_{name}": functools.partial(cls, classes)
    for ds, classes in (("cifar10", 10), ("cifar100", 100))
    for name, cls in (("WRN", AugMixWRN), ("ResNeXt", AugMixResNeXt))
}
_IMAGENET = {
    f"imagenet/{tm}/{name}": _imagenet(builder)
    for tm, names in (
        (
            "corruptions",
            {
                "Standard_R50": "resnet50",
                "Hendrycks2020AugMix": "resnet50",
                "Hendrycks2020Many": "resnet50",
                "Geirhos2018_SIN": "resnet50",
                "Geirhos2018_SIN_IN": "resnet50",
                "Geirhos2018_SIN_IN_IN": "resnet50",
                "Salman2020Do_50_2_Linf": "wide_resnet50_2",
            },
        ),
        (
            "Linf",
            {
                "Standard_R50": "resnet50",
                "Salman2020Do_R50": "resnet50",
                "Salman2020Do_50_2": "wide_resnet50_2",
            },
        ),
    )
    for name, builder in names.items()
}

# `<dataset>/<threat model>/<name>` -> a builder of the untrained architecture.
ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    **{f"cifar10/{tm}/Standard": _standard_wrn for tm in ("corruptions", "Linf", "L2")},
    **_AUGMIX,
    **_IMAGENET,
}
