"""Any torch.nn.Module as a backbone: finding the head, normalisation, checkpoints, names."""

from __future__ import annotations

import argparse
import copy
import textwrap

import pytest
import timm
import torch
from torch import nn

from ctta import UserError
from ctta.core.registry import BACKBONES
from ctta.models.factory import create_backbone
from ctta.models.user import _python_objects, from_module
from ctta.plan.spec import resolve_backbone
from ctta.run.engine import execute
from helpers import TTA_DEBUG


class Named(nn.Module):
    """Head under a conventional name, BatchNorm in the trunk."""

    def __init__(self, classes=5):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
        )
        self.linear = nn.Linear(4, classes)

    def forward(self, x):
        return self.linear(self.body(x))


class DeclaresFeatures(nn.Module):
    """`features(x)` + a final linear layer; another linear layer registered after the head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 6, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(6, 3)
        self.aux = nn.Linear(6, 6)  # an auxiliary layer the forward pass never uses

    def features(self, x):
        return self.conv(x)

    def forward(self, x):
        return self.out(self.features(x))


class VGGLike(nn.Module):
    """torchvision's layout: `features` is a submodule of unpooled maps, the head ends a Sequential."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class Scaled(Named):
    """The output is not the last linear layer's: nothing to detect."""

    def forward(self, x):
        return 2 * super().forward(x)


NETS = {  # factory, options, head, feature dim, has BatchNorm
    "conventional name": (Named, {}, "linear", 4, True),
    "features() method": (DeclaresFeatures, {}, "out", 6, False),
    "torchvision layout (features module, classifier.3)": (VGGLike, {}, "classifier.3", 8, False),
    "timm pretrained_cfg (head.fc)": (
        lambda: timm.create_model("test_convnext", num_classes=4),
        {"image_size": 64},
        "head.fc",
        None,
        False,
    ),
    "timm ViT": (lambda: timm.create_model("test_vit", num_classes=4), {}, "head", 64, False),
}


@pytest.mark.parametrize("case", NETS)
def test_head_and_trunk_are_found_and_reproduce_the_network(case):
    make, options, head_name, dim, batchnorm = NETS[case]
    torch.manual_seed(0)
    net = make().eval()
    original = copy.deepcopy(net)
    head = net.get_submodule(head_name)
    options = options if case == "timm ViT" else {"normalize": "none", "image_size": 16, **options}
    backbone = from_module(net, name="n", **options).eval()
    assert backbone.head is head and backbone.head_is_trained
    assert backbone.feature_dim == head.in_features == (dim or head.in_features)
    x = torch.rand(3, 3, backbone.image_size, backbone.image_size)
    with torch.no_grad():
        assert torch.allclose(backbone(x), original(backbone.normalize(x)), atol=1e-5)
        assert backbone.features(x).shape == (3, backbone.feature_dim)
    assert (backbone.kind == "vit") == (case == "timm ViT")
    if case == "timm ViT":  # input size and statistics from timm's pretrained_cfg
        assert backbone.image_size == net.pretrained_cfg["input_size"][-1] == 160
        assert backbone.mean.flatten().tolist() == pytest.approx(net.pretrained_cfg["mean"])
    assert ("batchnorm" in backbone.capabilities()) == batchnorm


def test_an_undetectable_classifier_says_what_to_declare():
    with pytest.raises(UserError) as err:
        from_module(Scaled(), name="s", normalize="none", image_size=16)
    assert str(err.value) == (
        "backbone 's' (Scaled): cannot tell its classifier: no nn.Linear whose output is the network's "
        "output (tried linear); declare head=<name of the final nn.Linear> (its linear layers: linear), "
        "or head=none to use the whole output as features"
    )
    headless = from_module(Scaled(), name="s", normalize="none", image_size=16, head="none")
    assert headless.head is None and headless.feature_dim == 5 and not headless.head_is_trained
    with pytest.raises(
        UserError, match=r"head='body' is a Sequential, not an nn.Linear; its linear layers: linear"
    ):
        from_module(Named(), name="n", normalize="none", image_size=16, head="body")
    with pytest.raises(UserError, match=r"head='fc' is no such module; its linear layers: linear"):
        from_module(Named(), name="n", normalize="none", image_size=16, head="fc")
    with pytest.raises(UserError, match=r"declare image_size=<the input size the model was trained on>"):
        from_module(Named(), name="n", normalize="none")
    with pytest.raises(UserError, match=r"must return a \[batch, outputs\] tensor, got tuple"):
        from_module(nn.Sequential(nn.Identity(), _Pair()), name="p", normalize="none", image_size=8)


class _Pair(nn.Module):
    def forward(self, x):
        return x, x


def test_normalisation_belongs_to_the_spec():
    x = torch.rand(2, 3, 16, 16)
    raw = from_module(Named(), name="n", normalize="none", image_size=16)
    assert raw.mean is None and torch.equal(raw.normalize(x), x)
    stats = from_module(Named(), name="n", mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], image_size=16)
    assert torch.allclose(stats.normalize(x), (x - 0.5) / 0.25)
    imagenet = from_module(Named(), name="n", normalize="imagenet", image_size=16)
    assert imagenet.std.flatten().tolist() == pytest.approx([0.229, 0.224, 0.225])
    with pytest.raises(
        UserError, match=r"declare the input normalisation .*normalize=<none\|imagenet\|inception\|clip>"
    ):
        from_module(Named(), name="n", image_size=16)
    with pytest.raises(UserError, match="give normalize or mean/std, not both"):
        from_module(Named(), name="n", image_size=16, normalize="none", mean=[0.5] * 3, std=[0.5] * 3)
    with pytest.raises(UserError, match="unknown normalize 'cifar'; valid choices: none, imagenet"):
        from_module(Named(), name="n", image_size=16, normalize="cifar")
    timm_raw = create_backbone({"name": "timm:test_resnet", "normalize": "none", "image_size": 32})
    assert timm_raw.mean is None


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """`byo_unit.py` in a folder on sys.path, removed again afterwards."""
    (tmp_path / "byo_unit.py").write_text(
        textwrap.dedent('''
            from torch import nn

            def build(classes=5, depth=1):
                """A tiny BatchNorm CNN."""
                layers = [nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()] * depth
                return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, classes))

            def needs(width):
                return build()
        ''')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    import sys

    sys.modules.pop("byo_unit", None)


def test_checkpoint_formats_load_without_user_code(user_module):
    torch.manual_seed(1)
    net = create_backbone({"name": "byo_unit:build", "normalize": "none", "image_size": 8}).model
    trained = {k: v for k, v in nn.Sequential(*net, nn.Identity()).state_dict().items()}
    trained = {**trained, "5.weight": torch.randn(5, 4), "5.bias": torch.randn(5)}
    layouts = {
        "dataparallel.pt": {"state_dict": {f"module.{k}": v for k, v in trained.items()}},
        "lightning.ckpt": {"epoch": 3, "state_dict": {f"model.{k}": v for k, v in trained.items()}},
        "compiled.pt": {f"_orig_mod.{k}": v for k, v in trained.items()},
    }
    x = torch.rand(2, 3, 8, 8)
    outputs = []
    for file, obj in layouts.items():
        torch.save(obj, user_module / file)
        spec = {
            "name": "byo_unit:build",
            "normalize": "none",
            "image_size": 8,
            "weights": str(user_module / file),
        }
        backbone = create_backbone(spec).eval()
        assert torch.equal(backbone.head.weight, trained["5.weight"])
        outputs.append(backbone(x))
    assert all(torch.equal(outputs[0], o) for o in outputs)

    base = {"name": "byo_unit:build", "normalize": "none", "image_size": 8}
    with pytest.raises(UserError, match=r"does not fit: size mismatch for 5.weight"):
        create_backbone({**base, "classes": 3, "weights": str(user_module / "compiled.pt")})
    torch.save({k: v for k, v in trained.items() if not k.startswith("1.")}, user_module / "partial.pt")
    with pytest.raises(
        UserError,
        match=r"does not fit: missing keys 1.weight, 1.bias, 1.running_mean, 1.running_var, "
        r"unexpected keys \(none\); pass strict=false",
    ):
        create_backbone({**base, "weights": str(user_module / "partial.pt")})
    loose = create_backbone({**base, "weights": str(user_module / "partial.pt"), "strict": False})
    assert torch.equal(loose.head.weight, trained["5.weight"])

    torch.save({"state_dict": trained, "args": argparse.Namespace(lr=0.1)}, user_module / "pickled.pt")
    with pytest.raises(UserError, match=r"pass weights_only=false if you trust the file"):
        create_backbone({**base, "weights": str(user_module / "pickled.pt")})
    trusted = create_backbone({**base, "weights": str(user_module / "pickled.pt"), "weights_only": False})
    assert torch.equal(trusted.head.weight, trained["5.weight"])


def test_factory_names_resolve_unambiguously(user_module):
    assert BACKBONES.get("timm:test_resnet").__doc__.startswith("Any timm model by name")  # a family wins
    spec = resolve_backbone({"name": "byo_unit:build", "normalize": "none", "image_size": 8, "depth": 2})
    assert spec["depth"] == 2 and spec["classes"] == 5 and spec["weights"] is None  # defaults filled in
    with pytest.raises(
        UserError, match=r"unknown option 'width'; valid options: image_size, mean, std, normalize, "
    ):
        resolve_backbone({"name": "byo_unit:build", "width": 3})
    with pytest.raises(UserError, match=r"backbone 'byo_unit:needs': missing a required argument: 'width'"):
        create_backbone({"name": "byo_unit:needs", "normalize": "none", "image_size": 8})
    with pytest.raises(
        UserError, match=r"module 'byo_unit' has no attribute 'biuld'; its callables: build, needs"
    ):
        resolve_backbone("byo_unit:biuld")
    with pytest.raises(UserError) as err:
        resolve_backbone("no_such_module_xyz:build")
    assert "unknown backbone 'no_such_module_xyz:build'; valid choices: debug_clip, debug_vit" in str(
        err.value
    )
    assert str(err.value).endswith(
        "or module.path:factory: a Python callable returning a torch.nn.Module "
        "(importable: installed, on PYTHONPATH or in the current folder)"
    )


def test_a_module_object_runs_through_the_python_api_and_is_never_changed():
    torch.manual_seed(2)
    net = Named(classes=10)
    before = copy.deepcopy(net.state_dict())
    backbone = {"model": net, "normalize": "none", "image_size": 16}
    scenario = {**TTA_DEBUG, "corruptions": ["gaussian_noise"]}
    runs = [
        execute({"scenario": scenario, "method": m, "backbone": backbone, "seed": 0})
        for m in ("source", {"name": "tent", "lr": 0.1}, "source")
    ]
    assert all(r["status"] == "done" for r in runs)
    assert runs[0]["spec"]["backbone"]["name"].startswith("python:Named-")
    assert runs[0]["online_correct"] == runs[2]["online_correct"]  # tent adapted its own copy
    assert runs[1]["trainable_params"] == 2 * 4
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.linear.bias.data += 1  # other weights: another run identity
    assert resolve_backbone(net)["name"] != runs[0]["spec"]["backbone"]["name"]
    with pytest.raises(
        UserError, match=r"was a module object of another Python process; pass the object again"
    ):
        _python_objects("Named-000000000000")


def test_methods_say_precisely_what_a_model_lacks():
    scenario = {**TTA_DEBUG, "corruptions": ["gaussian_noise"]}
    no_stats = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, affine=False, track_running_stats=False), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(4, 10),
    )  # fmt: skip
    backbone = {"model": no_stats, "normalize": "none", "image_size": 16}
    with pytest.raises(
        UserError, match=r"method 'bn_adapt' needs a backbone with batchnorm; .* has features, head "
    ):
        execute({"scenario": scenario, "method": "bn_adapt", "backbone": backbone})
    with pytest.raises(
        UserError, match=r"method 'tent' needs a backbone with norm; .*norm = normalisation layers"
    ):
        execute({"scenario": scenario, "method": "tent", "backbone": backbone})
    three = {"model": Named(classes=3), "normalize": "none", "image_size": 16}
    with pytest.raises(UserError, match=r"comes with a trained head over 3 classes, but the stream has 10; "):
        execute({"scenario": scenario, "method": "source", "backbone": three})
    retrained = execute(
        {"scenario": scenario, "method": "source", "backbone": {**three, "trained_head": False}}
    )
    assert retrained["status"] == "done"  # a source model over 10 classes is trained on the stream's data
