"""RobustBench models as backbones: `robustbench:<dataset>/<threat model>/<name>` (e.g.
`robustbench:cifar10/corruptions/Standard`, the WRN-28-10 that Tent and CoTTA adapt on
CIFAR-10-C), from checkpoints on disk, never downloaded.

RobustBench keeps a model as `<model_dir>/<dataset>/<threat model>/<name>.pt` (what its
`load_model(name, model_dir, dataset, threat_model)` downloads), a state dict, nested under
`state_dict` or not, its keys prefixed by `module.` or `model.` or not. ctta reads the same
layout from `model_dir` (default `$CTTA_DATA/robustbench_models`, else
`<cache>/data/robustbench_models`). The architectures come from `ctta.models.robustbench_archs`
(the models test-time adaptation papers use, checked key for key and output for output against
RobustBench 1.1.1's zoo); any other name comes from the `robustbench` package's zoo when it is
importable. RobustBench models take images in [0, 1] (those trained on normalised inputs
normalise inside), so the backbone's normalisation is none; 32 px for CIFAR, 224 px for ImageNet.
`imagenet/*/Standard_R50` is torchvision's ResNet-50 (IMAGENET1K_V1), as in RobustBench: taken
from `model_dir` when there, else from the torch hub cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..core.errors import UserError, few
from ..core.files import data_dir
from ..core.registry import register_backbone
from .backbone import Backbone, file_fingerprint, load_state_dict, no_downloads
from .robustbench_archs import ARCHITECTURES
from .torchvision_models import hub_weights
from .user import from_module

DATASETS = {"cifar10": 32, "cifar100": 32, "imagenet": 224}  # dataset -> input size
THREAT_MODELS = ("Linf", "L2", "corruptions", "corruptions_3d")
# Constant buffers of RobustBench's input normalisers, which its checkpoints may lack.
NORM_BUFFERS = {"mu", "sigma", "mean", "std", "normalize.mean", "normalize.std"}


def default_model_dir() -> Path:
    return data_dir("robustbench_models")


def parse_name(key: str) -> tuple[str, str, str]:
    """(dataset, threat model, name) of `<dataset>/<threat model>/<name>`."""
    parts = key.split("/")
    if len(parts) != 3 or not all(parts):
        raise UserError(
            f"backbone 'robustbench:{key}': name a model as robustbench:<dataset>/<threat model>/<name>, "
            f"e.g. robustbench:cifar10/corruptions/Standard"
        )
    dataset, threat_model, name = parts
    if dataset not in DATASETS:
        raise UserError(
            f"backbone 'robustbench:{key}': unknown dataset {dataset!r}; valid choices: {', '.join(DATASETS)}"
        )
    if threat_model not in THREAT_MODELS:
        raise UserError(
            f"backbone 'robustbench:{key}': unknown threat model {threat_model!r}; valid choices: {', '.join(THREAT_MODELS)}"
        )
    return dataset, threat_model, name


def _robustbench_zoo():
    """RobustBench's model zoo (`model_dicts`, `BenchmarkDataset`, `ThreatModel`), or the reason
    it cannot be imported."""
    try:
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    except Exception as exc:  # not installed, or its `autoattack` import fails
        return None, f"{type(exc).__name__}: {exc}"
    return (model_dicts, BenchmarkDataset, ThreatModel), None


def architecture(dataset: str, threat_model: str, name: str, where: str) -> nn.Module:
    """The untrained network of a RobustBench model."""
    key = f"{dataset}/{threat_model}/{name}"
    if key in ARCHITECTURES:
        return ARCHITECTURES[key]()
    zoo, why = _robustbench_zoo()
    if zoo is not None:
        models, datasets, threats = zoo
        entry = models.get(datasets(dataset), {}).get(threats(threat_model), {}).get(name)
        if entry is not None:
            with no_downloads(where):
                return entry["model"]()
    built_in = [k.rpartition("/")[2] for k in ARCHITECTURES if k.startswith(f"{dataset}/{threat_model}/")]
    raise UserError(
        f"{where}: ctta builds {dataset}/{threat_model} models {few(built_in, 12)}; other RobustBench "
        f"models need the robustbench package's zoo, which cannot be imported here ({why})"
        if zoo is None
        else f"{where}: RobustBench has no model {name!r} for {dataset}/{threat_model}"
    )


def load_robustbench_weights(net: nn.Module, path: Path, weights_only: bool, where: str) -> None:
    """Load a RobustBench checkpoint as its `load_model` does: `module.` and `model.` prefixes
    dropped, ImageNet weights into the network behind the input normaliser; only the
    normaliser's constant buffers may be missing."""
    state = load_state_dict(path, weights_only=weights_only)
    for prefix in ("module.", "model."):
        state = {k.removeprefix(prefix): v for k, v in state.items()}
    target = (
        net.model if isinstance(getattr(net, "normalize", None), nn.Module) and hasattr(net, "model") else net
    )
    try:
        result = target.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even when strict=False
        detail = next((ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln), str(exc))
        raise UserError(f"{where}: checkpoint {path} does not fit: {detail}") from None
    missing = [k for k in result.missing_keys if k not in NORM_BUFFERS]
    if missing or result.unexpected_keys:
        raise UserError(
            f"{where}: checkpoint {path} does not fit the architecture: missing keys {few(missing, 4)}, "
            f"unexpected keys {few(result.unexpected_keys, 4)}"
        )


def _missing(where: str, path: Path, dataset: str, threat_model: str, name: str) -> UserError:
    return UserError(
        f"{where}: checkpoint {path} does not exist; ctta downloads nothing. On a machine with network, "
        f"`pip install robustbench` (and its autoattack: pip install git+https://github.com/fra31/auto-attack), "
        f"then `python -c \"from robustbench.utils import load_model; load_model('{name}', model_dir='models', "
        f"dataset='{dataset}', threat_model='{threat_model}')\"` writes models/{dataset}/{threat_model}/{name}.pt: "
        f"copy it to {path}, or pass model_dir=<the folder holding {dataset}/>"
    )


@register_backbone("robustbench", family=True)
def _robustbench_family(key: str):
    """A RobustBench model: robustbench:<dataset>/<threat model>/<name>, from <model_dir>/<dataset>/<threat model>/<name>.pt."""
    dataset, threat_model, name = parse_name(key)

    def build(
        model_dir: str | None = None, image_size: int | None = None, weights_only: bool = True
    ) -> Backbone:
        """The RobustBench model `name` trained on `dataset` for `threat_model`, with the head
        it was trained with (its classes are the dataset's, in RobustBench's order). Its
        checkpoint is read from `model_dir` (RobustBench's layout); nothing is downloaded.
        `image_size` applies to ImageNet models only (CIFAR models take 32 px)."""
        where = f"backbone 'robustbench:{key}'"
        size = DATASETS[dataset]
        if image_size is not None and image_size != size and dataset != "imagenet":
            raise UserError(
                f"{where}: {dataset} models take {size} px images; image_size={image_size} cannot be used"
            )
        # RobustBench's load_model keeps 3D-corruption models in the corruptions folder
        folder = "corruptions" if threat_model == "corruptions_3d" else threat_model
        net = architecture(dataset, folder, name, where)
        path = Path(model_dir or default_model_dir()).expanduser() / dataset / folder / f"{name}.pt"
        if not path.is_file() and dataset == "imagenet" and name == "Standard_R50":
            _, path = hub_weights(
                "resnet50", "IMAGENET1K_V1", where, f"or put RobustBench's checkpoint at {path}"
            )
            net.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        elif not path.is_file():
            raise _missing(where, path, dataset, folder, name)
        else:
            load_robustbench_weights(net, path, weights_only, where)
        backbone = from_module(
            net, name=f"robustbench:{key}", image_size=image_size or size, normalize="none"
        )
        backbone.weights_fingerprint = file_fingerprint(path)
        return backbone

    return build
