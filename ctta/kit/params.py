"""Choosing, freezing and configuring parameters: the pieces every adaptation method shares."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Sequence

from torch import nn

from ..models.backbone import NORM_TYPES


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad=False on every parameter of `module`."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def named_matching(
    module: nn.Module | Iterable[tuple[str, nn.Parameter]], patterns: Sequence[str]
) -> list[tuple[str, nn.Parameter]]:
    """Parameters (of a module, or (name, parameter) pairs) whose name matches any glob in
    `patterns` (e.g. 'blocks.*.attn.*')."""
    named = module.named_parameters() if isinstance(module, nn.Module) else module
    return [(n, p) for n, p in named if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)]


def timm_named_parameters(backbone: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """A Backbone's parameters named as timm names them: the trunk's without a prefix
    (`blocks.0.attn.qkv.weight`, `pos_embed`), the head's as `head.weight`, `head.bias`.
    Parameter filters of methods (`params: ["blocks.*.attn.*"]`) match these names."""
    yield from backbone.trunk.named_parameters()
    if backbone.head is not None:
        for n, p in backbone.head.named_parameters():
            yield f"head.{n}", p


def norm_layers(module: nn.Module) -> list[nn.Module]:
    return [m for m in module.modules() if isinstance(m, NORM_TYPES)]


def norm_affine_parameters(module: nn.Module) -> list[nn.Parameter]:
    """Scale and shift of every BatchNorm/LayerNorm/GroupNorm layer (what Tent adapts)."""
    return [p for m in norm_layers(module) for p in (m.weight, m.bias) if p is not None]


def use_batch_statistics(module: nn.Module) -> list[nn.Module]:
    """Make BatchNorm layers normalise with the statistics of the current batch and stop
    updating their running estimates (Tent's and BN adaptation's test-time BN)."""
    layers = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.train()
        m.track_running_stats = False
        m.running_mean, m.running_var = None, None
    return layers


def train_only(params: Iterable[nn.Parameter], module: nn.Module) -> list[nn.Parameter]:
    """Freeze `module`, then unfreeze exactly `params`; returns them."""
    freeze(module)
    params = list(params)
    for p in params:
        p.requires_grad_(True)
    return params
