"""Backbone stages on users' networks: found by name or structure, behind features(), declared
with `stages=`, or absent (SAR then adapts every norm layer, ITTA refuses); runs record them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ctta import UserError
from ctta.kit import backbone_stages, find_stages, lower_norm_layers, probe_stages
from ctta.models.factory import create_backbone
from ctta.run.engine import execute
from helpers import TTA_DEBUG

ITTA = pytest.importorskip("ctta.methods.itta")


class Residual(nn.Module):
    """conv-BN-ReLU-conv-BN plus the input (zero-padded channels, strided: CIFAR option A)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.stride, self.pad = stride, cout - cin

    def forward(self, x):
        skip = F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.pad))
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + skip)


class CifarResNet(nn.Module):
    """ResNet-20's layout (stem, layer1..3 of residual blocks, linear head), one block per stage."""

    def __init__(self, names=("layer1", "layer2", "layer3"), width: int = 4):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        widths = [width, width, 2 * width, 4 * width]
        for i, name in enumerate(names):
            setattr(self, name, nn.Sequential(Residual(widths[i], widths[i + 1], 1 if i == 0 else 2)))
        self.names = names
        self.linear = nn.Linear(widths[len(names)], 10)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for name in self.names:
            h = getattr(self, name)(h)
        return self.linear(F.adaptive_avg_pool2d(h, 1).flatten(1))


class WithFeatures(CifarResNet):
    """The same network declaring `features(x)`: ctta's trunk then calls that method."""

    def features(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        for name in self.names:
            h = getattr(self, name)(h)
        return F.adaptive_avg_pool2d(h, 1).flatten(1)

    def forward(self, x):
        return self.linear(self.features(x))


class Plain(nn.Module):
    """Nothing to recognise: loose conv and BN layers, activations in forward."""

    def __init__(self):
        super().__init__()
        self.conv_a, self.norm_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.norm_b = nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8)
        self.linear = nn.Linear(8, 10)

    def forward(self, x):
        h = F.relu(self.norm_b(self.conv_b(F.relu(self.norm_a(self.conv_a(x))))))
        return self.linear(h.mean((2, 3)))


def backbone(net, **options):
    torch.manual_seed(0)
    return create_backbone({"model": net, "normalize": "none", "image_size": 16, **options})


def paths(b):
    stages = find_stages(b)
    return None if stages is None else (list(stages.paths), stages.rule)


def test_stages_are_found_by_name_behind_features_and_by_structure():
    assert paths(backbone(CifarResNet())) == (["layer1", "layer2", "layer3"], "named")
    features = backbone(WithFeatures())
    assert type(features.trunk).__name__ == "FeaturesTrunk"  # the trunk wraps the network...
    assert paths(features) == (["layer1", "layer2", "layer3"], "named")  # ...which is searched
    assert paths(backbone(CifarResNet(names=("layer1", "layer2")))) == (["layer1", "layer2"], "named")
    # unconventional names: the Sequential containers of residual blocks
    assert paths(backbone(CifarResNet(names=("res_a", "res_b", "res_c")))) == (
        ["res_a", "res_b", "res_c"],
        "structural",
    )
    assert paths(create_backbone("small_cnn"))[1] == "conv-norm-activation"
    clip = find_stages(create_backbone("debug_clip"))  # the text tower never runs on images
    assert clip.rule == "structural" and all(p.startswith("visual.") for p in clip.paths)
    assert [s.shape for s in probe_stages(features, 16)] == [(4, 16, 16), (8, 8, 8), (16, 4, 4)]


def test_declared_stages_win_and_are_checked():
    b = backbone(WithFeatures(), stages="layer1, layer2")
    assert paths(b) == (["layer1", "layer2"], "declared")
    assert paths(backbone(Plain(), stages=["conv_a", "norm_b"])) == (["conv_a", "norm_b"], "declared")
    with pytest.raises(
        UserError, match=r"stages='layer4' is not a module .*: conv1, bn1, layer1, layer1\.0, "
    ):
        backbone(CifarResNet(), stages="layer1,layer4")
    unused = WithFeatures()
    unused.spare = nn.Conv2d(3, 3, 1)  # registered, never called
    with pytest.raises(UserError, match=r"declared stage 'spare' does not run"):
        find_stages(backbone(unused, stages="spare"))


def test_a_network_without_stages_sar_adapts_every_norm_layer_itta_refuses():
    b = backbone(Plain())
    assert find_stages(b) is None
    assert [n for n, _ in lower_norm_layers(b, None)] == ["norm_a", "norm_b"]
    with pytest.raises(
        UserError, match=r"cannot tell its stages .* declare them with the backbone option stages="
    ):
        backbone_stages(b)
    info = type("Info", (), {"kind": "test_time"})()
    with pytest.raises(UserError, match="stages="):
        ITTA.ITTA.check_compatible(b, info)


def test_sar_keeps_the_top_stage_of_a_cifar_resnet_frozen():
    b = backbone(WithFeatures())
    layers = [n for n, _ in lower_norm_layers(b, find_stages(b))]
    assert layers == ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2"]


@pytest.mark.parametrize("net, stages", [(WithFeatures, None), (Plain, None), (Plain, "norm_a,norm_b")])
def test_runs_record_the_stages_and_the_adapted_layers(net, stages):
    options = {"stages": stages} if stages else {}
    record = execute(
        {
            "scenario": {**TTA_DEBUG, "corruptions": ["contrast"], "test_per_class": 2},
            "method": "sar",
            "backbone": {"model": net(), "normalize": "none", "image_size": 16, **options},
        },
        device="cpu",
    )
    assert record["status"] == "done", record.get("error")
    lower = ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1", "layer2.0.bn2"]
    expected = {
        (WithFeatures, None): (["layer1", "layer2", "layer3"], lower),
        (Plain, None): ([], ["norm_a", "norm_b"]),
        (Plain, "norm_a,norm_b"): (["norm_a", "norm_b"], ["norm_a"]),
    }[net, stages]
    assert (record["backbone_stages"], record["adapted_norm_layers"]) == expected
    assert record["metrics"] and record["spec"]["method"]["name"] == "sar"  # the engine's keys stay
