"""The convolutional patch embedding of the offline tiny ViT (its own module: imports timm)."""

from timm.layers import PatchEmbed
from torch import nn


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
