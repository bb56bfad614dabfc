"""The backbone type every method receives: a feature extractor, a replaceable linear head,
and the input normalisation; plus what loading weights and naming input statistics share.

Backbones are built by name (`ctta.models.factory.create_backbone`): `timm:<model>`
(`ctta.models.timm_models`), `open_clip:<model>` (`ctta.models.clip`), any torch.nn.Module a
user brings (`ctta.models.user`), and the offline tiny backbones of `ctta.zoo`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args
from unittest import mock

import torch
from torch import nn

from ..core.errors import UserError
from ..core.files import content_key

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

# What a backbone is built like: methods that need a structure say so through capabilities
# (`ctta.api.CAPABILITIES`); `vit` means a timm VisionTransformer (patch_embed, blocks).
BackboneKind = Literal["vit", "cnn", "clip", "generic"]

# Input statistics a model spec may name instead of spelling out mean and std.
NORMALIZATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,  # the model takes images in [0, 1]
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


class Backbone(nn.Module):
    """`forward(x) = head(features(x))` for images x in [0, 1]; normalisation happens inside.

    `model` is the underlying network (a timm ViT exposes `model.blocks`, ...); `trunk` maps
    normalised images to [B, feature_dim] features (for timm models it is `model` itself with
    its classifier removed). `head` is a linear layer over `num_classes`, replaced by
    `reset_head`.
    """

    def __init__(
        self,
        trunk: nn.Module,
        feature_dim: int,
        *,
        name: str,
        image_size: int,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        head: nn.Linear | None = None,
        kind: BackboneKind = "generic",
        spec: dict | None = None,
    ):
        super().__init__()
        if kind not in get_args(BackboneKind):
            raise ValueError(
                f"unknown backbone kind {kind!r}; valid choices: {', '.join(get_args(BackboneKind))}"
            )
        self.trunk = trunk
        self.feature_dim = feature_dim
        self.name = name
        self.image_size = image_size
        self.kind = kind
        self.spec = spec or {"name": name}
        self.head = head
        self.head_is_trained = head is not None  # a head that came with the weights (a user's checkpoint)
        self.identity = content_key(self.spec)  # names cached features; create_backbone refines it
        self.weights_fingerprint: str | None = None  # set by factories that load a weights file
        self.stage_paths: tuple[str, ...] | None = None  # declared stages (`declare_stages`)
        if (mean is None) != (std is None):
            raise UserError(f"backbone {name!r}: give both mean and std, or neither (no normalisation)")
        self.register_buffer(
            "mean", None if mean is None else torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer(
            "std", None if std is None else torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        )

    @property
    def model(self) -> nn.Module:
        return self.trunk

    @property
    def network(self) -> nn.Module:
        """The network as its author wrote it: module paths (`stages=`, run records) are
        relative to it. The trunk, or the network behind a trunk that calls its `features(x)`."""
        return self.trunk.net if isinstance(self.trunk, FeaturesTrunk) else self.trunk

    def declare_stages(self, paths: str | Sequence[str] | None) -> None:
        """Declare the modules whose outputs end the backbone's stages (module paths in
        `network`, input to output; a comma-separated string or a list). None: found structurally."""
        if paths is None:
            self.stage_paths = None
            return
        names = [p.strip() for p in paths.split(",")] if isinstance(paths, str) else [str(p) for p in paths]
        names = [p for p in names if p]
        known = dict(self.network.named_modules())
        bad = [p for p in names if p not in known]
        if bad or not names:
            raise UserError(
                f"backbone {self.name!r}: stages={bad[0] if bad else '(none given)'!r} is not a module of the "
                f"network; its module paths: {module_paths(self.network)}"
            )
        self.stage_paths = tuple(names)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.mean is None else (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, feature_dim]."""
        return self.trunk(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise RuntimeError(f"backbone {self.name!r} has no head yet: call reset_head(num_classes)")
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> nn.Linear:
        """A fresh linear head over `num_classes` on the backbone's device."""
        device = next(self.trunk.parameters()).device
        self.head = nn.Linear(self.feature_dim, num_classes).to(device)
        self.head_is_trained = False
        return self.head

    def restrict_head(self, classes: Sequence[int]) -> None:
        """Keep the trained head's outputs `classes`, in this order (a 1000-way ImageNet head on
        ImageNet-R's 200 classes): the logits the official evaluations mask the output to."""
        old = self.head
        keep = torch.as_tensor(list(classes), dtype=torch.long, device=old.weight.device)
        head = nn.Linear(old.in_features, len(keep), bias=old.bias is not None)
        head = head.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            head.weight.copy_(old.weight[keep])
            if old.bias is not None:
                head.bias.copy_(old.bias[keep])
        self.head = head
        self.identity = content_key([self.identity, "classes", keep.tolist()])

    def capabilities(self) -> set[str]:
        """What methods may rely on; the names and their meaning are `ctta.api.CAPABILITIES`."""
        caps = {"head", "features"}
        mods = list(self.trunk.modules())
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in mods):
            caps.add("batchnorm")
        if any(isinstance(m, NORM_TYPES) and getattr(m, "weight", None) is not None for m in mods):
            caps.add("norm")
        if self.kind == "vit":
            caps.add("vit")
        return caps


class FeaturesTrunk(nn.Module):
    """Trunk of a network that declares a `features(x)` method: calls it."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)


def module_paths(net: nn.Module, depth: int = 2, limit: int = 24) -> str:
    """The module paths of `net` down to `depth` levels, for error messages."""
    paths = [n for n, _ in net.named_modules() if n and n.count(".") < depth]
    more = f" (+{len(paths) - limit} more)" if len(paths) > limit else ""
    return (", ".join(paths[:limit]) or "(none)") + more


def normalization(
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
    normalize: str | None,
    default: tuple | None,
    where: str,
) -> tuple[Sequence[float] | None, Sequence[float] | None]:
    """(mean, std) of a model spec: explicit `mean`/`std`, a named preset (`normalize`), or
    `default` (e.g. a timm model's pretrained_cfg). `default=None` means the spec must say."""
    if normalize is not None:
        if mean is not None or std is not None:
            raise UserError(f"{where}: give normalize or mean/std, not both")
        if normalize not in NORMALIZATIONS:
            raise UserError(
                f"{where}: unknown normalize {normalize!r}; valid choices: {', '.join(NORMALIZATIONS)}"
            )
        return NORMALIZATIONS[normalize] or (None, None)
    if mean is not None or std is not None:
        if mean is None or std is None or len(mean) != len(std):
            raise UserError(
                f"{where}: give mean and std as two lists of the same length (one value per channel)"
            )
        return mean, std
    if default is None:
        raise UserError(
            f"{where}: declare the input normalisation the model was trained with: mean=[r,g,b] "
            f"std=[r,g,b], or normalize=<{'|'.join(NORMALIZATIONS)}> (none: the model takes images in [0, 1])"
        )
    return default


@contextlib.contextmanager
def no_downloads(where: str):
    """Refuse every download through torch.hub (torchvision's and many zoos' weights) while
    a model is built: ctta never fetches weights by itself."""

    def refuse(url, dst, *args, **kwargs):
        raise UserError(
            f"{where}: building the model tried to download {url}; ctta downloads nothing: put the file "
            f"at {Path(torch.hub.get_dir()) / 'checkpoints' / Path(url).name} (torch.hub's cache) and run again"
        )

    with mock.patch.object(torch.hub, "download_url_to_file", refuse):
        yield


def file_fingerprint(path: str | Path) -> str:
    """sha1 of a weights file, so cached features follow the weights, not just the name."""
    return hashlib.sha1(Path(path).expanduser().read_bytes()).hexdigest()


def load_state_dict(path: str | Path, weights_only: bool = True) -> dict[str, torch.Tensor]:
    """A state dict from a checkpoint file, loaded with `torch.load(weights_only=True)` unless
    the caller trusts the file: unwrapped from `state_dict`/`model` keys (or from a pickled
    module), with the `module.` prefix of DataParallel/DDP and `_orig_mod.` of torch.compile
    removed."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        hint = (
            "; save a plain state dict with torch.save(model.state_dict()), or pass weights_only=false "
            "if you trust the file (it runs pickled code)"
            if weights_only
            else ""
        )
        raise UserError(
            f"checkpoint {path} cannot be loaded ({type(exc).__name__}: {str(exc).splitlines()[0]}){hint}"
        ) from None
    for key in ("state_dict", "model_state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(key), (dict, nn.Module)):
            obj = obj[key]
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"checkpoint {path} holds no state dict of tensors")
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix) :]: v for k, v in obj.items()}
    return obj
