"""Where a backbone's stages end: insertion points for modules that act between stages.

A stage is a unit of the network whose output is a feature map (CNN: [B, C, H, W]) or a token
sequence (ViT: [B, N, D]). Methods insert adaptive modules after stages (ITTA), mix feature
statistics there (MixStyle), or keep the top stages frozen (SAR). `find_stages` looks in
`backbone.network` (the network as its author wrote it, also behind a `features(x)` method)
and takes the first of these rules that gives modules which run in `backbone.features(x)`:

1. declared: the backbone option `stages=layer1,layer2,layer3` (module paths);
2. named: `blocks`, `stages` or `layers` (a non-empty Sequential or ModuleList, one stage per
   element: timm ViTs, EfficientNet, ConvNeXt, Swin), or `layer1`, `layer2`, ... (any count:
   ResNets, CIFAR ResNets), on the network or else on its shallowest submodule that has them;
3. structural: the outermost Sequential/ModuleList containers whose elements are all blocks
   (modules with submodules and parameters, such as residual blocks): each container is a
   stage, or each of its blocks where there is only one container;
4. conv-norm-activation: in a Sequential of layers, every activation right after a norm layer
   ends a stage (small_cnn).

Modules that do not run in `features(x)` (a CLIP's text tower) are never stages. Where no rule
applies, `find_stages` returns None and `backbone_stages` raises an error that says how to
declare them; SAR then adapts every norm layer (`lower_norm_layers`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..core.errors import UserError
from ..models.backbone import NORM_TYPES, module_paths

CONTAINERS = (nn.Sequential, nn.ModuleList)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.ELU, nn.Hardswish, nn.Mish)
STAGE_NAMES = ("blocks", "stages", "layers")


@dataclass(frozen=True)
class Stages:
    """The modules that end a backbone's stages (input to output), their paths in
    `backbone.network`, and the rule that found them."""

    paths: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    rule: str  # declared, named, structural or conv-norm-activation


def find_stages(backbone) -> Stages | None:
    """The backbone's stages by the rules of this module's docstring; None where none applies."""
    net = backbone.network
    ran = _run_order(backbone)
    declared = getattr(backbone, "stage_paths", None)  # absent from backbones pickled before it existed
    if declared is not None:
        modules = [net.get_submodule(p) for p in declared]
        idle = [p for p, m in zip(declared, modules) if m not in ran]
        if idle:
            raise UserError(
                f"backbone {backbone.name!r}: declared stage {idle[0]!r} does not run in the network's "
                f"forward pass to its features; its module paths: {module_paths(net)}"
            )
        return Stages(tuple(declared), tuple(modules), "declared")
    paths = {m: n for n, m in reversed(list(net.named_modules()))}  # a shared module: its first path
    for rule, group in _candidates(net, ran):
        if group and all(m in ran for m in group):
            group = sorted(group, key=ran.__getitem__)  # input to output, as they run
            return Stages(tuple(paths[m] for m in group), tuple(group), rule)
    return None


def backbone_stages(backbone) -> Stages:
    """`find_stages`, or a UserError saying how to declare them."""
    stages = find_stages(backbone)
    if stages is None:
        raise UserError(
            f"backbone {backbone.name!r}: cannot tell its stages (no blocks/stages/layers, no layer1.., no "
            f"Sequential of blocks or of conv-norm-activation layers); declare them with the backbone option "
            f"stages=<module paths, input to output>; its module paths: {module_paths(backbone.network)}"
        )
    return stages


def stage_modules(backbone) -> list[nn.Module]:
    """The modules whose outputs end the backbone's stages, from input to output."""
    return list(backbone_stages(backbone).modules)


def _candidates(net: nn.Module, ran: dict[nn.Module, int]) -> Iterator[tuple[str, list[nn.Module]]]:
    """(rule, modules) in the order the rules are tried."""
    shallow_first = sorted(net.named_modules(), key=lambda item: item[0].count(".") + bool(item[0]))
    for _, module in shallow_first:
        children = module._modules
        for name in STAGE_NAMES:
            seq = children.get(name)
            if isinstance(seq, CONTAINERS) and len(seq) > 0:
                yield "named", list(seq)
        numbered = []
        while isinstance(children.get(f"layer{len(numbered) + 1}"), nn.Module):
            numbered.append(children[f"layer{len(numbered) + 1}"])
        yield "named", numbered
    containers = [
        (n, m)
        for n, m in net.named_modules()
        if isinstance(m, CONTAINERS) and len(m) > 0 and all(_is_block(c) for c in m) and m in ran
    ]
    outermost = [m for n, m in containers if not any(n.startswith(f"{o}.") for o, _ in containers if o)]
    yield "structural", list(outermost[0]) if len(outermost) == 1 else outermost
    for _, module in shallow_first:
        if isinstance(module, nn.Sequential):
            layers = list(module)
            yield (
                "conv-norm-activation",
                [
                    b
                    for a, b in zip(layers, layers[1:])
                    if isinstance(a, NORM_TYPES) and isinstance(b, ACTIVATIONS)
                ],
            )


def _is_block(module: nn.Module) -> bool:
    return len(module._modules) > 0 and any(True for _ in module.parameters())


@torch.no_grad()
def _run_order(backbone) -> dict[nn.Module, int]:
    """Every module of the network that runs in `features(x)` on a probe batch, with the index
    of its last forward call (a container's: its last descendant's)."""
    net = backbone.network
    calls: dict[nn.Module, int] = {}
    counter = itertools.count()

    def record(module, args, output):
        calls[module] = next(counter)

    hooks = [m.register_forward_hook(record) for m in net.modules()]
    try:
        _probe_forward(backbone, 2, backbone.image_size)
    finally:
        for hook in hooks:
            hook.remove()
    order = {}
    for module in net.modules():
        last = [calls[m] for m in module.modules() if m in calls]
        if last:
            order[module] = max(last)
    return order


def _probe_forward(backbone, n: int, image_size: int, device: torch.device | str | None = None) -> None:
    """`backbone.features` in eval mode on n seeded random images (global random state untouched)."""
    device = device or next(backbone.parameters()).device
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, image_size, image_size, generator=gen).to(device)
    was_training = backbone.training
    backbone.eval()
    try:
        backbone.features(x)
    finally:
        backbone.train(was_training)


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
    try:
        _probe_forward(backbone, 4, image_size, device)
    finally:
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


def lower_norm_layers(
    backbone, stages: Stages | None, top_fraction: float = 0.25
) -> list[tuple[str, nn.Module]]:
    """(path in `backbone.network`, layer) of the normalisation layers with affine parameters
    outside the top `top_fraction` of `stages` and outside the final norm after the last stage
    (SAR's choice: ResNet-50 without layer4, ViT-B without blocks 9-11 and the final norm).
    Without stages (None): every such layer."""
    named = list(backbone.network.named_modules())
    layers = [(n, m) for n, m in named if isinstance(m, NORM_TYPES) and _has_affine(m)]
    if stages is None:
        return layers
    position = {m: i for i, (_, m) in enumerate(named)}
    ends = [max(position[m] for m in stage.modules() if m in position) for stage in stages.modules]
    first_top = len(ends) - math.ceil(len(ends) * top_fraction)
    below = []
    for name, layer in layers:
        stage = next((i for i, end in enumerate(ends) if position[layer] <= end), len(ends))
        if stage < first_top:
            below.append((name, layer))
    return below


def lower_norm_parameters(backbone, top_fraction: float = 0.25) -> list[nn.Parameter]:
    """Affine parameters of `lower_norm_layers` for the backbone's stages (every norm layer's
    where it has none)."""
    layers = lower_norm_layers(backbone, find_stages(backbone), top_fraction)
    return [p for _, m in layers for p in (m.weight, m.bias) if p is not None]


def _has_affine(layer: nn.Module) -> bool:
    return getattr(layer, "weight", None) is not None or getattr(layer, "bias", None) is not None
