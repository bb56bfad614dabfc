"""Models researchers use, by name: `robustbench:<dataset>/<threat model>/<name>` from
RobustBench checkpoints on disk and `torchvision:<model>` with local weights.

Nothing downloads: the tests build the architectures with random weights, save them as
RobustBench (a state dict under `state_dict`, keys prefixed by DataParallel's `module.`, without
the normalisers' constant buffers) and torchvision (a plain state dict; a file in the torch hub
cache) save them, and load them by name through `ctta run`.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
from torch import nn

from ctta.cli import main
from ctta.core.errors import UserError
from ctta.core.registry import METHODS, create_scenario, list_methods
from ctta.models.factory import create_backbone
from ctta.models.robustbench_archs import ARCHITECTURES
from ctta.run.engine import execute

WRN = "cifar10/corruptions/Hendrycks2020AugMix_WRN"  # WRN-40-2, 2.2 M parameters: the smallest of the zoo
STREAM = {"corruptions": ["gaussian_noise"], "severity": 3, "test_per_class": 4, "batch_size": 20}


def save_robustbench(root, key: str, seed: int = 0) -> nn.Module:
    """A randomly initialised RobustBench architecture, saved as RobustBench stores it."""
    torch.manual_seed(seed)
    net = ARCHITECTURES[key]().eval()
    state = {f"module.{k}": v for k, v in net.state_dict().items() if k not in ("mu", "sigma")}
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "epoch": 200}, root / f"{key}.pt")
    return net


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("robustbench_models")
    return root, save_robustbench(root, WRN)


def cli_run(tmp_path, method: str, backbone: list[str], capsys) -> dict:
    args = ["run", "--scenario", "corruption", "-S", "dataset=digits"]
    args += [a for k, v in STREAM.items() for a in ("-S", f"{k}={json.dumps(v)}")]
    main([*args, "--method", method, *backbone, "--results", str(tmp_path / "res"), "--seed", "0"])
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("record: "))
    return json.loads(open(line.removeprefix("record: ")).read())


def own_predictions(net: nn.Module, mean=None, std=None) -> list[int]:
    """Correct answers per batch of the network itself (its own head, the given input
    statistics) on the test stream the runs above see."""
    scenario = create_scenario("corruption", dataset="digits", **STREAM)
    stream = scenario.build(seed=0, image_size=32, device=torch.device("cpu"))
    correct = []
    with torch.no_grad():
        for batch, y in stream.batches():
            x = (
                batch.x
                if mean is None
                else (batch.x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
            )
            correct.append(int((net(x).argmax(1) == y).sum()))
    return correct


def bn_affine_params(net: nn.Module) -> int:
    return sum(m.weight.numel() + m.bias.numel() for m in net.modules() if isinstance(m, nn.BatchNorm2d))


def test_a_robustbench_checkpoint_runs_by_name_with_tent(model_dir, tmp_path, capsys):
    root, net = model_dir
    backbone = ["--backbone", f"robustbench:{WRN}", "-B", f"model_dir={root}"]
    source = cli_run(tmp_path, "source", backbone, capsys)
    tent = cli_run(tmp_path, "tent", backbone, capsys)
    assert source["status"] == tent["status"] == "done", (source.get("error"), tent.get("error"))
    # The checkpoint's own head answers (no source model trained), on [0, 1] inputs: the
    # network normalises inside, with the buffers its checkpoint does not hold.
    assert source["online_correct"] == own_predictions(net)
    assert sum(source["online_n"]) == 40
    # Tent trains exactly the BatchNorm scales and shifts of WRN-40-2.
    assert tent["trainable_params"] == bn_affine_params(net) == 5408
    assert tent["online_correct"] != source["online_correct"]


def test_robustbench_backbone_declares_its_input(model_dir):
    root, net = model_dir
    backbone = create_backbone({"name": f"robustbench:{WRN}", "model_dir": str(root)})
    assert (backbone.image_size, backbone.mean, backbone.std) == (32, None, None)
    assert backbone.head_is_trained and backbone.head.out_features == 10
    assert backbone.capabilities() == {"features", "head", "batchnorm", "norm"}
    x = torch.rand(3, 3, 32, 32)
    backbone.eval()
    with torch.no_grad():
        assert torch.allclose(backbone(x), net(x), atol=1e-5)
        assert backbone.features(x).shape == (3, 128)


@pytest.mark.slow
def test_every_test_time_method_runs_on_a_robustbench_model(model_dir):
    root, _ = model_dir
    backbone = {"name": f"robustbench:{WRN}", "model_dir": str(root)}
    caps = create_backbone(backbone).capabilities()
    scenario = {"name": "corruption", "dataset": "digits", **STREAM, "test_per_class": 1, "batch_size": 10}
    # ITTA trains its own source model: one epoch on 20 images keeps it to seconds.
    scenario.update(source_per_class=2, source_epochs=1)
    methods = [
        m
        for m in list_methods()
        if not m.endswith(":*")
        and "test_time" in METHODS.get(m).stream_kinds
        and METHODS.get(m).requires <= caps
    ]
    assert {"source", "bn_adapt", "tent", "eata", "sar", "lame", "cotta"} <= set(methods)
    for method in methods:
        rec = execute({"scenario": scenario, "method": method, "backbone": backbone, "seed": 0}, device="cpu")
        assert rec["status"] == "done", (method, rec.get("error"))
        assert sum(rec["online_n"]) == 10
        if method == "sar":  # WideResNet's stages are found: the top one keeps its norm layers frozen
            assert rec["backbone_stages"] == ["block1.layer", "block2.layer", "block3.layer"]
            assert not any(name.startswith("block3") for name in rec["adapted_norm_layers"])


def test_a_trained_head_must_match_the_stream_and_a_missing_checkpoint_says_where(
    model_dir, tmp_path, capsys
):
    root, _ = model_dir
    save_robustbench(root, "cifar100/corruptions/Hendrycks2020AugMix_WRN")
    at = ["-B", f"model_dir={root}"]
    cases = [
        (
            ["robustbench:cifar100/corruptions/Hendrycks2020AugMix_WRN", *at],
            "backbone 'robustbench:cifar100/corruptions/Hendrycks2020AugMix_WRN' comes with a trained head "
            "over 100 classes, but the stream has 10",
        ),
        (
            ["robustbench:cifar10/corruptions/Standard", *at],
            f"backbone 'robustbench:cifar10/corruptions/Standard': checkpoint {root}/cifar10/corruptions/"
            f"Standard.pt does not exist; ctta downloads nothing. On a machine with network, `pip install "
            f"robustbench` (and its autoattack: pip install git+https://github.com/fra31/auto-attack), then "
            f"`python -c \"from robustbench.utils import load_model; load_model('Standard', model_dir='models', "
            f"dataset='cifar10', threat_model='corruptions')\"` writes models/cifar10/corruptions/Standard.pt",
        ),
        (
            ["robustbench:cifar10/Linf/Carmon2019Unlabeled"],
            "backbone 'robustbench:cifar10/Linf/Carmon2019Unlabeled': ctta builds cifar10/Linf models Standard; "
            "other RobustBench models need the robustbench package's zoo",
        ),
        (
            ["robustbench:cifar10/Standard"],
            "command line: backbone: backbone 'robustbench:cifar10/Standard': name a model as robustbench:<dataset>/<threat model>/<name>",
        ),
    ]
    for backbone, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(
                [
                    "run",
                    "--scenario",
                    "corruption",
                    "--method",
                    "source",
                    "--backbone",
                    *backbone,
                    "--results",
                    str(tmp_path),
                ]
            )
        err = capsys.readouterr().err
        assert exit_.value.code == 2, err
        assert err.startswith(f"ctta: error: {message}"), err
        assert len(err.strip().splitlines()) == 1


# sha1 of "key:shape" lines of each model's state dict as RobustBench 1.1.1's zoo builds it
# (computed with robustbench installed without its pinned dependencies): ctta's architectures
# must load its checkpoints unchanged. Outputs were compared too (max |difference| <= 1.2e-5).
ROBUSTBENCH_LAYOUTS = {
    "cifar10/corruptions/Standard": "580515cd25b8",
    "cifar10/Linf/Standard": "580515cd25b8",
    "cifar10/L2/Standard": "580515cd25b8",
    "cifar10/corruptions/Hendrycks2020AugMix_WRN": "698b0c18572c",
    "cifar10/corruptions/Hendrycks2020AugMix_ResNeXt": "b89cec8d358f",
    "cifar100/corruptions/Hendrycks2020AugMix_WRN": "ad0307d8bb9d",
    "cifar100/corruptions/Hendrycks2020AugMix_ResNeXt": "456f9acc7e5b",
    "imagenet/corruptions/Standard_R50": "16f3ab0036a8",
    "imagenet/corruptions/Hendrycks2020AugMix": "16f3ab0036a8",
    "imagenet/corruptions/Hendrycks2020Many": "16f3ab0036a8",
    "imagenet/corruptions/Geirhos2018_SIN": "16f3ab0036a8",
    "imagenet/corruptions/Geirhos2018_SIN_IN": "16f3ab0036a8",
    "imagenet/corruptions/Geirhos2018_SIN_IN_IN": "16f3ab0036a8",
    "imagenet/corruptions/Salman2020Do_50_2_Linf": "98c0c8c35a50",
    "imagenet/Linf/Standard_R50": "16f3ab0036a8",
    "imagenet/Linf/Salman2020Do_R50": "16f3ab0036a8",
    "imagenet/Linf/Salman2020Do_50_2": "98c0c8c35a50",
}


def test_architectures_have_robustbench_s_state_dict_layout():
    def layout(net: nn.Module) -> str:
        lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items())
        return hashlib.sha1(lines.encode()).hexdigest()[:12]

    with torch.device("meta"):  # shapes without memory or initialisation time
        assert {key: layout(build()) for key, build in ARCHITECTURES.items()} == ROBUSTBENCH_LAYOUTS


def test_a_checkpoint_that_does_not_fit_names_the_keys(tmp_path):
    path = tmp_path / "cifar10" / "corruptions" / "Hendrycks2020AugMix_ResNeXt.pt"
    path.parent.mkdir(parents=True)
    state = ARCHITECTURES[WRN]().state_dict()  # a WRN's weights under a ResNeXt's name
    torch.save({"state_dict": {k: v for k, v in state.items() if k.startswith("block1")}}, path)
    with pytest.raises(
        UserError,
        match=r"does not fit the architecture: missing keys conv_1_3x3.weight, .*unexpected keys block1",
    ):
        create_backbone(
            {
                "name": "robustbench:cifar10/corruptions/Hendrycks2020AugMix_ResNeXt",
                "model_dir": str(tmp_path),
            }
        )


def test_other_names_come_from_robustbench_s_zoo_when_it_imports(tmp_path, monkeypatch):
    """Names ctta does not build come from `robustbench.model_zoo` (here a stand-in with its
    layout: model_dicts[BenchmarkDataset][ThreatModel][name]["model"])."""
    import enum
    import sys
    import types

    class BenchmarkDataset(enum.Enum):
        cifar_10 = "cifar10"

    class ThreatModel(enum.Enum):
        Linf = "Linf"

    def small():
        return nn.Sequential(
            nn.Conv2d(3, 4, 3),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 10),
        )

    zoo = types.ModuleType("robustbench.model_zoo")
    zoo.model_dicts = {
        BenchmarkDataset.cifar_10: {ThreatModel.Linf: {"Tiny2024": {"model": small, "gdrive_id": "x"}}}
    }
    enums = types.ModuleType("robustbench.model_zoo.enums")
    enums.BenchmarkDataset, enums.ThreatModel = BenchmarkDataset, ThreatModel
    for name, module in (
        ("robustbench", types.ModuleType("robustbench")),
        ("robustbench.model_zoo", zoo),
        ("robustbench.model_zoo.enums", enums),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    torch.manual_seed(1)
    net = small()
    (tmp_path / "cifar10" / "Linf").mkdir(parents=True)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "cifar10" / "Linf" / "Tiny2024.pt")
    backbone = create_backbone({"name": "robustbench:cifar10/Linf/Tiny2024", "model_dir": str(tmp_path)})
    x = torch.rand(2, 3, 32, 32)
    backbone.eval(), net.eval()
    with torch.no_grad():
        assert torch.allclose(backbone(x), net(x))
    with pytest.raises(UserError, match="RobustBench has no model 'Tiny2025' for cifar10/Linf"):
        create_backbone({"name": "robustbench:cifar10/Linf/Tiny2025", "model_dir": str(tmp_path)})


# --------------------------------------------------------------------------- torchvision
def test_a_torchvision_model_with_a_weights_file_runs_by_name_with_tent(tmp_path, capsys):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "rn18.pt")
    backbone = [
        "--backbone",
        "torchvision:resnet18",
        "-B",
        f"weights={tmp_path / 'rn18.pt'}",
        "-B",
        "num_classes=10",
        "-B",
        "image_size=32",
    ]
    source = cli_run(tmp_path, "source", backbone, capsys)
    tent = cli_run(tmp_path, "tent", backbone, capsys)
    assert source["status"] == tent["status"] == "done", (source.get("error"), tent.get("error"))
    imagenet = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert source["online_correct"] == own_predictions(net, *imagenet)
    assert tent["trainable_params"] == bn_affine_params(net)


def test_torchvision_weights_by_name_only_from_the_torch_hub_cache(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        UserError,
        match=re.escape(
            f"weights ResNet18_Weights.IMAGENET1K_V1 are not in the torch hub cache ({tmp_path}/torch/hub/checkpoints/resnet18-f37072fd.pth); ctta downloads nothing"
        ),
    ):
        create_backbone({"name": "torchvision:resnet18", "weights": "IMAGENET1K_V1"})
    with pytest.raises(
        UserError,
        match="weights='IMAGENET1K_V9' is neither a file nor a weights name of ResNet18_Weights; valid choices: IMAGENET1K_V1, DEFAULT",
    ):
        create_backbone({"name": "torchvision:resnet18", "weights": "IMAGENET1K_V9"})
    with pytest.raises(
        UserError, match="unknown torchvision classifier 'resnet19'; similar names: resnet101"
    ):
        create_backbone({"name": "torchvision:resnet19"})
    torch.manual_seed(0)
    cached = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    backbone = create_backbone({"name": "torchvision:resnet18", "weights": "ResNet18_Weights.DEFAULT"})
    assert backbone.image_size == 224 and backbone.head_is_trained and backbone.head.out_features == 1000
    assert torch.allclose(backbone.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    assert torch.equal(backbone.trunk.conv1.weight, torch.load(cached)["conv1.weight"])


def test_a_torchvision_model_without_weights_gets_a_source_model_trained():
    backbone = create_backbone({"name": "torchvision:mobilenet_v3_small", "image_size": 32})
    assert not backbone.head_is_trained and backbone.feature_dim == 1024
    assert "batchnorm" in backbone.capabilities()


def test_building_a_model_never_downloads(tmp_path, monkeypatch):
    """What a zoo's builder asks torch.hub for is refused, with the file's place in the cache."""
    from ctta.models.backbone import no_downloads

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = "https://download.example/weights-0123.pth"
    with no_downloads("backbone 'x'"), pytest.raises(UserError) as err:
        torch.hub.load_state_dict_from_url(url)
    assert str(err.value) == (
        f"backbone 'x': building the model tried to download {url}; ctta downloads nothing: put the file at "
        f"{tmp_path}/hub/checkpoints/weights-0123.pth (torch.hub's cache) and run again"
    )
