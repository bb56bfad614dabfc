"""AdaptFormer adapters in the blocks of a timm ViT, with one adapter per task and routing.

Chen et al., "AdaptFormer: Adapting Vision Transformers for Scalable Visual Recognition"
(NeurIPS 2022): a bottleneck `up(dropout(relu(down(x)))) * scale` parallel to each block's
MLP, fed with the post-attention residual stream,

    x = x + attn(norm1(x));   x = x + mlp(norm2(x)) + adapter(x).

`down` is Kaiming-uniform initialised and `up` zero, so a fresh adapter leaves the pretrained
network unchanged. Each wrapped block holds a bank of adapters (MOS keeps one per task,
`finetune_adapter` one in all) and a `route`: None (no adapter), an int (every sample uses
that adapter), or a LongTensor [B] (each sample its own: batched adapter retrieval, one
forward pass for a batch whose samples use different adapters).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import hp
from ..core.errors import UserError
from .training import Recipe

BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


class Adapter(nn.Module):
    """AdaptFormer bottleneck d -> r -> d (ReLU, dropout), output scaled by `scale`."""

    def __init__(self, dim: int, rank: int, *, dropout: float = 0.1, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        self.dropout, self.scale = dropout, scale
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.dropout(F.relu(self.down(x)), self.dropout, self.training)
        return self.up(h) * self.scale


class AdaptedBlock(nn.Module):
    """A timm ViT block plus a bank of parallel adapters, one of which each sample goes through."""

    def __init__(self, block: nn.Module):
        super().__init__()
        missing = [p for p in BLOCK_PARTS if not hasattr(block, p)]
        if missing:
            raise UserError(
                f"adapters need timm ViT blocks ({', '.join(BLOCK_PARTS)}); "
                f"{type(block).__name__} lacks {', '.join(missing)}"
            )
        self.block = block
        self.adapters = nn.ModuleList()
        self.route: int | torch.Tensor | None = None

    def forward(self, x: torch.Tensor, **attn_kwargs) -> torch.Tensor:
        b = self.block
        x = x + b.drop_path1(b.ls1(b.attn(b.norm1(x), **attn_kwargs)))
        out = x + b.drop_path2(b.ls2(b.mlp(b.norm2(x))))
        if self.route is None:
            return out
        if isinstance(self.route, int):
            return out + self.adapters[self.route](x)
        return out + self.routed(x, self.route)

    def routed(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Sample i through adapter route[i], for the whole batch at once (no dropout: inference)."""
        bank = self.adapters
        down_w = torch.stack([a.down.weight for a in bank])[route]  # [B, r, d]
        down_b = torch.stack([a.down.bias for a in bank])[route]
        up_w = torch.stack([a.up.weight for a in bank])[route]  # [B, d, r]
        up_b = torch.stack([a.up.bias for a in bank])[route]
        h = F.relu(torch.einsum("bnd,brd->bnr", x, down_w) + down_b[:, None])
        return (torch.einsum("bnr,bdr->bnd", h, up_w) + up_b[:, None]) * bank[0].scale


def insert_adapters(vit: nn.Module) -> list[AdaptedBlock]:
    """Wrap every block of a timm ViT (`vit.blocks`) so it can hold adapters; idempotent."""
    if not hasattr(vit, "blocks"):
        raise UserError(f"adapters need a timm ViT with .blocks; got {type(vit).__name__}")
    for i, block in enumerate(vit.blocks):
        if not isinstance(block, AdaptedBlock):
            vit.blocks[i] = AdaptedBlock(block)
    return list(vit.blocks)


def add_adapter(
    blocks: list[AdaptedBlock], *, rank: int, dropout: float, scale: float, warm_start: bool
) -> int:
    """Append one adapter to every block (a copy of the last one when `warm_start`); its index."""
    for blk in blocks:
        if warm_start and len(blk.adapters):
            blk.adapters.append(copy.deepcopy(blk.adapters[-1]))
        else:
            dim = blk.block.norm2.normalized_shape[0]
            device = blk.block.norm2.weight.device
            blk.adapters.append(Adapter(dim, rank, dropout=dropout, scale=scale).to(device))
    return len(blocks[0].adapters) - 1


def set_route(blocks: list[AdaptedBlock], route: int | torch.Tensor | None) -> None:
    for blk in blocks:
        blk.route = route


def adapter_parameters(blocks: list[AdaptedBlock], index: int) -> list[nn.Parameter]:
    """The parameters of adapter `index` across all blocks, in a fixed order."""
    return [p for blk in blocks for p in blk.adapters[index].parameters()]


@torch.no_grad()
def mean_adapter(blocks: list[AdaptedBlock], indices: range) -> list[torch.Tensor]:
    """The element-wise mean of adapters `indices`, as tensors in `adapter_parameters` order."""
    stacks = zip(*(adapter_parameters(blocks, i) for i in indices))
    return [torch.stack(ps).mean(0) for ps in stacks]


@torch.no_grad()
def merge_toward(params: list[nn.Parameter], target: list[torch.Tensor], weight: float) -> None:
    """params <- (1 - weight) * params + weight * target, in place."""
    torch._foreach_lerp_(params, target, weight)


@dataclass
class AdapterRecipe(Recipe):
    """The training recipe of adapter methods (AdaptFormer on a frozen ViT, as in MOS)."""

    lr: float = hp(0.03, space=(0.01, 0.03, 0.05), doc="step size of the adapters", gt=0)
    epochs: int = hp(10, space=(5, 10, 20), doc="passes over each task's data", ge=1)
    batch_size: int = hp(48, doc="mini-batch size", ge=1)
    weight_decay: float = hp(5e-4, doc="weight decay (adapters and head)", ge=0)
    rank: int = hp(16, doc="adapter bottleneck width r", ge=1)
    adapter_dropout: float = hp(0.1, doc="dropout inside the adapters", ge=0, lt=1)
    adapter_scale: float = hp(0.1, doc="adapter output scale")
