"""Where a backbone's stages end: insertion points for modules that act between stages.

A stage is a unit of the trunk whose output is a feature map (CNN: [B, C, H, W]) or a token
sequence (ViT: [B, N, D]): the blocks of a timm ViT (also DeiT, EfficientNet's stage list),
`layer1..layer4` of a ResNet, `stages`/`layers` of ConvNeXt and Swin, the conv-BN-ReLU
stages of `small_cnn`. Methods insert adaptive modules after stages (ITTA), mix feature
statistics there (MixStyle), or keep the top stages frozen (SAR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import UserError
from .params import norm_layers


def stage_modules(backbone) -> list[nn.Module]:
    """The modules whose outputs end the trunk's stages, from input to output."""
    trunk = backbone.trunk
    for name in ("blocks", "stages", "layers"):
        seq = getattr(trunk, name, None)
        if isinstance(seq, (nn.Sequential, nn.ModuleList)) and len(seq) > 0:
            return list(seq)
    if all(hasattr(trunk, f"layer{i}") for i in range(1, 5)):
        return [getattr(trunk, f"layer{i}") for i in range(1, 5)]
    if isinstance(trunk, nn.Sequential) and any(isinstance(m, nn.ReLU) for m in trunk):
        return [m for m in trunk if isinstance(m, nn.ReLU)]  # small_cnn: conv-BN-ReLU stages
    raise UserError(
        f"backbone {backbone.name!r} has no known stage structure (ViT blocks, ResNet layer1..4, "
        f"ConvNeXt/Swin stages, small_cnn); valid choices: tiny_vit, debug_vit, small_cnn, timm:vit_*, timm:resnet*"
    )


@dataclass(frozen=True)
class StageOutput:
    """What a stage outputs, per sample: its shape, and whether every value was >= 0 on a
    random probe batch (a stage that ends in a ReLU, as ResNet and small_cnn stages; ViT
    tokens and ConvNeXt or Swin stages, which end in a residual sum, are signed)."""

    shape: tuple[int, ...]
    nonnegative: bool


@torch.no_grad()
def probe_stages(backbone, image_size: int, device: torch.device | str = "cpu") -> list[StageOutput]:
    """The output of every stage of `stage_modules(backbone)` on a seeded random batch (the
    global random state is left alone)."""
    stages = stage_modules(backbone)
    outputs: list[torch.Tensor] = []
    hooks = [s.register_forward_hook(lambda m, a, out: outputs.append(out)) for s in stages]
    was_training = backbone.training
    backbone.eval()
    try:
        gen = torch.Generator().manual_seed(0)
        backbone.features(torch.rand(4, 3, image_size, image_size, generator=gen).to(device))
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    return [StageOutput(tuple(out.shape[1:]), bool((out >= 0).all())) for out in outputs]


def add_stage_hooks(
    stages: list[nn.Module], fn: Callable[[int, torch.Tensor], torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Replace the output h of stage i by fn(i, h) on every forward; returns removable handles."""

    def hook_for(i):
        return lambda module, args, output: fn(i, output)

    return [stage.register_forward_hook(hook_for(i)) for i, stage in enumerate(stages)]


def lower_norm_parameters(backbone, top_fraction: float = 0.25) -> list[nn.Parameter]:
    """Affine parameters of the normalisation layers outside the top `top_fraction` of stages
    and outside the final norm after the last stage (SAR's choice: ResNet-50 without layer4,
    ViT-B without blocks 9-11 and the final norm)."""
    stages = stage_modules(backbone)
    position = {id(m): i for i, m in enumerate(backbone.trunk.modules())}
    ends = [max(position[id(m)] for m in stage.modules()) for stage in stages]
    first_top = len(stages) - math.ceil(len(stages) * top_fraction)
    params = []
    for layer in norm_layers(backbone.trunk):
        p = position[id(layer)]
        stage = next((i for i, end in enumerate(ends) if p <= end), len(stages))
        if stage < first_top:
            params += [q for q in (layer.weight, layer.bias) if q is not None]
    return params
