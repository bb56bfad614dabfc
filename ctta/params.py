"""Choosing, freezing and configuring parameters: the pieces every adaptation method shares."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

from torch import nn

from .backbones import NORM_TYPES


def freeze(module: nn.Module) -> nn.Module:
    """requires_grad=False on every parameter of `module`."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def named_matching(module: nn.Module, patterns: Sequence[str]) -> list[tuple[str, nn.Parameter]]:
    """Parameters whose name matches any glob in `patterns` (e.g. 'blocks.*.attn.*')."""
    return [
        (n, p) for n, p in module.named_parameters() if any(fnmatch.fnmatchcase(n, pat) for pat in patterns)
    ]


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
