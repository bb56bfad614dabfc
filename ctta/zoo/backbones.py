"""The offline backbones, registered by name: `tiny_vit` and `tiny_clip` (the stand-ins for an
ImageNet ViT and a web-pretrained CLIP, pretrained by `ctta pretrain vit|clip` on glyph
material no benchmark scores; their weights ship with ctta), `small_cnn` (a BatchNorm CNN that
test-time streams train from scratch as their source model), and the random `debug_vit` and
`debug_clip` for tests.
"""

from __future__ import annotations

from pathlib import Path

from ..core.registry import register_backbone
from ..models.backbone import Backbone, file_fingerprint, load_state_dict
from ..models.clip import ClipBackbone
from ..models.timm_models import from_timm
from . import weights as zoo_weights
from .architectures import (
    DEBUG_CLIP,
    DEBUG_VIT,
    GLYPH_MEAN,
    GLYPH_STD,
    TINY_CLIP,
    TINY_VIT,
    SmallCNN,
    glyph_clip,
    vit,
)
from .pretrain_clip import pretrain_tiny_clip
from .pretrain_vit import pretrain_tiny_vit


@register_backbone("tiny_vit")
def tiny_vit(pretrained: bool = True, weights: str | None = None) -> Backbone:
    """timm ViT (32 px, patch 4, width 96, depth 4, 3 heads; 0.45 M parameters), pretrained by
    `ctta pretrain vit` on glyph classes disjoint from every benchmark's; the weights ship with
    ctta (`weights=<file>` loads others, e.g. a rebuilt set)."""
    model = vit(TINY_VIT)
    if weights or pretrained:
        weights = zoo_weights.checked(weights) if weights else zoo_weights.shipped("tiny_vit")
        state = {k: v for k, v in load_state_dict(weights).items() if not k.startswith("head.")}
        model.load_state_dict(state)
    backbone = from_timm(model, name="tiny_vit", image_size=32, mean=GLYPH_MEAN, std=GLYPH_STD)
    backbone.weights_fingerprint = file_fingerprint(weights) if weights else None
    return backbone


@register_backbone("debug_vit")
def debug_vit() -> Backbone:
    """A randomly initialised 2-block ViT on 16 px inputs, for fast tests."""
    return from_timm(vit(DEBUG_VIT), name="debug_vit", image_size=16, mean=GLYPH_MEAN, std=GLYPH_STD)


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


@register_backbone("tiny_clip")
def tiny_clip(pretrained: bool = True, weights: str | None = None) -> ClipBackbone:
    """Offline tiny CLIP (open_clip config ctta-tiny-clip: 32 px ViT, patch 4, width 64, 4
    layers; text transformer width 64, 3 layers, context 32, embeddings of 64; 0.37 M
    parameters besides the 3.2 M of the token table), pretrained by `ctta pretrain clip` on
    glyph renditions no benchmark uses, with captions naming every character; the weights
    ship with ctta (`weights=<file>` loads others). The configuration is an ordinary open_clip
    config, so `open_clip.create_model("ctta-tiny-clip", pretrained=<the weights>)` loads it
    outside ctta too."""
    if weights or pretrained:
        weights = str(zoo_weights.checked(weights) if weights else zoo_weights.shipped("tiny_clip"))
    backbone = glyph_clip(TINY_CLIP, weights, "tiny_clip")
    backbone.weights_fingerprint = file_fingerprint(weights) if weights else None
    return backbone


@register_backbone("debug_clip")
def debug_clip() -> ClipBackbone:
    """A randomly initialised 2-layer CLIP (open_clip config ctta-debug-clip) on 16 px inputs, for tests."""
    return glyph_clip(DEBUG_CLIP, None, "debug_clip")


PRETRAINED = {"vit": ("tiny_vit", pretrain_tiny_vit), "clip": ("tiny_clip", pretrain_tiny_clip)}


def pretrain(what: str, out: str | Path) -> tuple[Path, dict, list[str]]:
    """Build an offline backbone's weights again (`ctta pretrain vit|clip`) into folder `out`;
    returns the weights path, the manifest's report, and its scores next to the shipped ones."""
    if what not in PRETRAINED:
        raise ValueError(f"unknown pretraining target {what!r}; valid choices: {', '.join(PRETRAINED)}")
    name, build = PRETRAINED[what]
    state, report = build()
    path = zoo_weights.save(Path(out), name, state, report)
    return path, report, zoo_weights.compare(report, zoo_weights.manifest(name), tuple(report["scores"]))
