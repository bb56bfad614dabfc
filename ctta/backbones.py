"""Backbones: a feature extractor, a replaceable linear head, and the input normalisation.

Registered names: `timm:<model>` (any timm model; `pretrained: true` downloads, `weights:
<file>` loads a local checkpoint), `module.path:factory` and `python:*` (any torch.nn.Module a
user brings, see `ctta.user_models`), `tiny_vit` (a small timm ViT pretrained by `ctta pretrain
vit` on glyph classes that no benchmark uses, cached: the offline stand-in for an
ImageNet ViT), `debug_vit` (an even smaller randomly initialised ViT for tests) and
`small_cnn` (a BatchNorm CNN trained from scratch as a source model, so BN-based test-time
methods have something to adapt).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._cache import content_key
from .errors import UserError
from .registry import BACKBONES, register_backbone

log = logging.getLogger(__name__)

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)

# What methods may declare in `requires`, and what each means (used in error messages).
CAPABILITIES = {
    "features": "penultimate features",
    "head": "a replaceable linear head",
    "batchnorm": "BatchNorm layers with running statistics (track_running_stats=True)",
    "norm": "normalisation layers (BatchNorm, LayerNorm, GroupNorm) with an affine scale and shift",
    "vit": "a timm VisionTransformer (patch_embed, blocks)",
}

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
        kind: str = "generic",
        spec: dict | None = None,
    ):
        super().__init__()
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

    def capabilities(self) -> set[str]:
        """What methods may rely on; the names and their meaning are `CAPABILITIES`."""
        caps = {"head", "features"}
        mods = list(self.trunk.modules())
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats for m in mods):
            caps.add("batchnorm")
        if any(isinstance(m, NORM_TYPES) and getattr(m, "weight", None) is not None for m in mods):
            caps.add("norm")
        if self.kind == "vit":
            caps.add("vit")
        return caps


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


def create_backbone(spec: str | dict | nn.Module) -> Backbone:
    """Build a backbone from a name, a mapping `{name: ..., **options}`, or a torch.nn.Module
    (alone or as `{model: module, **options}`, see `ctta.user_models`)."""
    from .user_models import object_spec

    spec = object_spec(spec) or spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"backbone must be a name or a mapping with a 'name', got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    factory = BACKBONES.get(spec["name"])
    try:
        backbone = factory(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise UserError(f"backbone {spec['name']!r}: {exc}") from None
        raise
    backbone.spec = dict(spec)
    backbone.identity = content_key({"spec": backbone.spec, "weights": backbone.weights_fingerprint})
    return backbone


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


# --------------------------------------------------------------------------- timm models
def from_timm(
    model: nn.Module,
    *,
    name: str,
    kind: str | None = None,
    image_size: int | None = None,
    mean=None,
    std=None,
) -> Backbone:
    """Wrap a timm model: its classifier is removed; features are its pooled pre-logits."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if image_size is None:
        image_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406))
    std = std if std is not None else cfg.get("std", (0.229, 0.224, 0.225))
    feature_dim = model.num_features
    model.reset_classifier(0)
    if kind is None:
        kind = "vit" if hasattr(model, "blocks") and hasattr(model, "patch_embed") else "cnn"
    return Backbone(model, feature_dim, name=name, image_size=image_size, mean=mean, std=std, kind=kind)


@register_backbone("timm", family=True)
def _timm_family(model_name: str):
    """Any timm model: timm:<model name> (pretrained=true downloads, weights=<file> loads)."""

    def build(
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize: str | None = None,
        **model_kwargs: Any,
    ) -> Backbone:
        """Any timm model by name. `pretrained=true` downloads its weights (needs network);
        `weights=<file>` loads a local checkpoint instead. Input normalisation: the model's
        pretrained_cfg unless `mean`/`std` or `normalize` say otherwise."""
        import timm  # imported here: it doubles the start-up time of runs that need no timm model

        if model_name not in timm.list_models() and model_name not in timm.list_models(pretrained=True):
            close = timm.list_models(f"*{model_name[:4]}*")[:8]
            raise UserError(
                f"unknown timm model {model_name!r}; similar names: {', '.join(close) or '(none)'}"
            )
        if image_size is not None and "vit" in model_name:
            model_kwargs["img_size"] = image_size
        model = timm.create_model(model_name, pretrained=bool(pretrained) and weights is None, **model_kwargs)
        if weights:
            state = load_state_dict(weights)
            missing, unexpected = model.load_state_dict(state, strict=False)
            log.info("loaded %s: %d missing, %d unexpected keys", weights, len(missing), len(unexpected))
        cfg = model.pretrained_cfg
        mean, std = normalization(
            mean, std, normalize, (cfg["mean"], cfg["std"]), f"backbone 'timm:{model_name}'"
        )
        backbone = from_timm(model, name=f"timm:{model_name}", image_size=image_size, mean=mean, std=std)
        if mean is None:  # normalize=none: from_timm would fall back to the pretrained_cfg
            backbone.mean = backbone.std = None
        return backbone

    return build


# --------------------------------------------------------------------------- offline stand-ins
# The tiny ViT has a convolutional patch embedding ("Early convolutions help transformers see
# better", Xiao et al. 2021) and average pooling: with the 3-minute CPU pretraining budget
# (~700 AdamW steps) this doubled held-out accuracy (31% -> 60%) and the transfer of its
# features to benchmark glyphs (nearest-class-mean 15% -> 32%) over the plain patchify stem
# with a class token. The 4 transformer blocks are standard timm blocks.
TINY_VIT = dict(
    img_size=32,
    patch_size=4,
    embed_dim=96,
    depth=4,
    num_heads=3,
    mlp_ratio=4.0,
    embed_layer="conv_stem",
    class_token=False,
    global_pool="avg",
)
DEBUG_VIT = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)
GLYPH_MEAN, GLYPH_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def vit(config: dict, num_classes: int = 0) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer

    config = dict(config)
    if config.get("embed_layer") == "conv_stem":
        from .vit_stem import ConvStemPatchEmbed

        config["embed_layer"] = ConvStemPatchEmbed
    return VisionTransformer(num_classes=num_classes, **config)


def tiny_vit_path() -> Path:
    from ._cache import cache_dir
    from .pretrain import VIT_VERSION

    return cache_dir() / "backbones" / f"tiny_vit-v{VIT_VERSION}.pt"


@register_backbone("tiny_vit")
def tiny_vit(pretrained: bool = True, weights: str | None = None) -> Backbone:
    """timm ViT (32 px, patch 4, width 96, depth 4, 3 heads; 0.45 M parameters), pretrained by
    `ctta pretrain vit` on glyph classes disjoint from every benchmark's. Pretrains on first
    use (about 3 minutes on 2 idle CPU cores) and caches the weights."""
    model = vit(TINY_VIT)
    if weights or pretrained:
        if weights is None:
            from .pretrain import ensure_tiny_vit

            weights = ensure_tiny_vit()
        state = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("head.")}
        model.load_state_dict(state, strict=False)
    backbone = from_timm(model, name="tiny_vit", image_size=32, mean=GLYPH_MEAN, std=GLYPH_STD)
    backbone.weights_fingerprint = file_fingerprint(weights) if weights else None
    return backbone


@register_backbone("debug_vit")
def debug_vit() -> Backbone:
    """A randomly initialised 2-block ViT on 16 px inputs, for fast tests."""
    return from_timm(vit(DEBUG_VIT), name="debug_vit", image_size=16, mean=GLYPH_MEAN, std=GLYPH_STD)


class SmallCNN(nn.Sequential):
    """Four conv-BN-ReLU stages and global average pooling; 0.1 M parameters at width 32."""

    def __init__(self, width: int = 32):
        def stage(cin, cout, stride):
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        super().__init__(
            *stage(3, width, 1),
            *stage(width, width, 1),
            *stage(width, 2 * width, 2),
            *stage(2 * width, 4 * width, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.num_features = 4 * width


@register_backbone("small_cnn")
def small_cnn(width: int = 32, image_size: int = 32, weights: str | None = None) -> Backbone:
    """A small BatchNorm CNN, randomly initialised (the source model is trained from scratch)."""
    net = SmallCNN(width)
    if weights:
        net.load_state_dict(load_state_dict(weights))
    return Backbone(
        net,
        net.num_features,
        name="small_cnn",
        image_size=image_size,
        mean=GLYPH_MEAN,
        std=GLYPH_STD,
        kind="cnn",
    )
