"""The architectures of the offline backbones: the tiny and debug ViTs (timm), the small
BatchNorm CNN, and the tiny and debug CLIPs (open_clip configurations), with the glyph
prompts the CLIPs are trained and queried with. No weights here: `ctta.zoo.backbones` loads
them, `ctta.zoo.pretrain_vit` and `ctta.zoo.pretrain_clip` train them.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from timm.layers import PatchEmbed
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..models.clip import ClipBackbone

log = logging.getLogger(__name__)

GLYPH_MEAN, GLYPH_STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)  # the input statistics of every glyph model

# --------------------------------------------------------------------------- ViTs
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


class ConvStemPatchEmbed(PatchEmbed):
    """timm's PatchEmbed with its stride-4 projection replaced by two stride-2 3x3 convolutions
    (GroupNorm, GELU) and a 1x1 projection: the same 8x8 token grid on 32 px inputs, with the
    locality prior that makes a ViT trainable from scratch on little data (Xiao et al., "Early
    convolutions help transformers see better", NeurIPS 2021). GroupNorm, not BatchNorm, so the
    tiny ViT stays free of batch statistics like an ImageNet ViT."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.patch_size != (4, 4):
            raise ValueError("the convolutional stem is built for patch size 4")
        d = self.proj.out_channels
        self.proj = nn.Sequential(
            nn.Conv2d(self.proj.in_channels, d // 2, 3, 2, 1),
            nn.GroupNorm(1, d // 2),
            nn.GELU(),
            nn.Conv2d(d // 2, d, 3, 2, 1),
            nn.GroupNorm(1, d),
            nn.GELU(),
            nn.Conv2d(d, d, 1),
        )


def vit(config: dict, num_classes: int = 0) -> VisionTransformer:
    """A timm VisionTransformer from one of the configurations above."""
    config = dict(config)
    if config.get("embed_layer") == "conv_stem":
        config["embed_layer"] = ConvStemPatchEmbed
    return VisionTransformer(num_classes=num_classes, **config)


# --------------------------------------------------------------------------- CNN
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


# --------------------------------------------------------------------------- CLIPs
TINY_CLIP = "ctta-tiny-clip"
DEBUG_CLIP = "ctta-debug-clip"

# Zero-shot prompts in the captions' own grammar (the character name is never dropped from a
# caption; its lead-in is one of these).
TEMPLATE = "the {}"
ENSEMBLE = ("the {}", "a picture of the {}", "an image of the {}", "a rendering of the {}", "{}")


class _RandomInitIsIntended(logging.Filter):
    """Turns open_clip's "No pretrained weights loaded" warning into an info message for the
    configurations that are random on purpose (debug_clip, tiny_clip before pretraining)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("No pretrained weights loaded"):
            log.info("%s", record.getMessage())
            return False
        return True


@functools.cache
def _add_configs() -> None:
    """Make the glyph CLIP configurations known to open_clip (`open_clip.create_model` by name)."""
    import open_clip

    open_clip.add_model_config(Path(__file__).with_name("clip_configs"))


def glyph_clip(config: str, weights: str | None, name: str) -> ClipBackbone:
    """One of the glyph CLIP configurations, with `weights` (None: random)."""
    import open_clip  # imported where used: it takes seconds, and most runs need no CLIP

    _add_configs()
    quiet = _RandomInitIsIntended()
    logging.getLogger().addFilter(quiet)  # open_clip warns on the root logger
    try:
        model = open_clip.create_model(
            config, pretrained=weights, force_preprocess_cfg={"mean": GLYPH_MEAN, "std": GLYPH_STD}
        )
    finally:
        logging.getLogger().removeFilter(quiet)
    return ClipBackbone(model, name=name, config=config, template=TEMPLATE, ensemble=ENSEMBLE)
