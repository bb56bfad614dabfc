"""HFT: half fine-tuning, transferred from LLMs to ViTs.

Hui, Zhang, Wang, Xu, Sun, Wu: "HFT: Half Fine-Tuning for Large Language Models" (2024).
At every task boundary half of the parameters are drawn anew and frozen; the other half is
fine-tuned (cross-entropy over the classes seen so far, as `finetune`). The paper draws per
transformer layer and per parameter category; on a timm ViT block that is

- self-attention: 2 of {q, k, v, proj} frozen (q, k and v are row slices of timm's fused
  `qkv` projection; HFT splits it into three parameters, so a frozen slice gets no gradient,
  no momentum and no weight decay, and stays bit-identical);
- MLP: 1 of {fc1, fc2} frozen;
- normalisation: 1 of {norm1, norm2} frozen.

That freezes half of every block's parameters (exactly half of the attention and MLP
weights). The embeddings (patch embedding, class token, position embedding) are configurable:
`draw` freezes them at a task with probability 1/2 (the paper's "half" applied to them as one
category), `train` or `freeze` always. The classifier head and the final norm always train.
Every draw uses its own seed (derived from the run seed and the task index); both are logged
and kept in `self.draws` (part of the state dict, so a resumed run keeps them too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ctta import Method, Task, hp, register_method
from ctta.kit import Recipe, cross_entropy_on, derive_seed, fit_task

log = logging.getLogger(__name__)

EMBEDDINGS = ("patch_embed", "cls_token", "pos_embed", "reg_token")
HFT_STREAM = 0x48465420  # separates HFT's draws from other uses of the run seed


class SplitQKV(nn.Module):
    """timm's fused qkv projection with q, k and v as separate parameters (same output)."""

    PARTS = ("q", "k", "v")

    def __init__(self, qkv: nn.Linear):
        super().__init__()
        weights = qkv.weight.detach().chunk(3)
        biases = qkv.bias.detach().chunk(3) if qkv.bias is not None else (None,) * 3
        for part, w, b in zip(self.PARTS, weights, biases):
            self.register_parameter(f"{part}_weight", nn.Parameter(w.clone()))
            self.register_parameter(f"{part}_bias", None if b is None else nn.Parameter(b.clone()))

    def part(self, name: str) -> list[nn.Parameter]:
        return [p for p in (getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias")) if p is not None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = torch.cat([getattr(self, f"{p}_weight") for p in self.PARTS])
        bias = None if self.q_bias is None else torch.cat([getattr(self, f"{p}_bias") for p in self.PARTS])
        return F.linear(x, weight, bias)


def block_groups(block: nn.Module) -> dict[str, dict[str, list[nn.Parameter]]]:
    """The parameter categories of one timm ViT block, each a choice among named members."""
    attn, mlp = block.attn, block.mlp
    return {
        "attn": {**{p: attn.qkv.part(p) for p in SplitQKV.PARTS}, "proj": list(attn.proj.parameters())},
        "mlp": {"fc1": list(mlp.fc1.parameters()), "fc2": list(mlp.fc2.parameters())},
        "norm": {"norm1": list(block.norm1.parameters()), "norm2": list(block.norm2.parameters())},
    }


FROZEN_PER_GROUP = {"attn": 2, "mlp": 1, "norm": 1}


@register_method("hft")
class HFT(Method):
    """Half fine-tuning: a freshly drawn half of every block frozen at each task (Hui et al. 2024)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    requires = frozenset({"vit"})

    @dataclass
    class HParams(Recipe):
        embeddings: Literal["draw", "train", "freeze"] = hp(
            "draw", doc="patch/class/position embeddings: frozen with probability 1/2, never, or always"
        )

    def setup(self, backbone, info):
        self.model = backbone
        backbone.reset_head(info.num_classes)
        vit = backbone.model
        for block in vit.blocks:
            if not isinstance(block.attn.qkv, SplitQKV):
                block.attn.qkv = SplitQKV(block.attn.qkv)
        self.draws: list[dict] = []

    def get_extra_state(self) -> dict:
        return {"draws": self.draws}

    def set_extra_state(self, state: dict) -> None:
        self.draws = list(state["draws"])

    def draw(self, task_index: int) -> dict:
        """Freeze a freshly drawn half of every block (and maybe the embeddings); unfreeze the rest."""
        seed = derive_seed(self.info.seed, HFT_STREAM, task_index)
        rng = np.random.default_rng(seed)
        vit = self.model.model
        self.model.requires_grad_(True)
        frozen_names: list[list[str]] = []
        for block in vit.blocks:
            names = []
            for group, members in block_groups(block).items():
                choice = sorted(rng.choice(list(members), FROZEN_PER_GROUP[group], replace=False).tolist())
                for name in choice:
                    for p in members[name]:
                        p.requires_grad_(False)
                names += choice
            frozen_names.append(names)
        mode = self.hparams.embeddings
        freeze_embeddings = mode == "freeze" or (mode == "draw" and bool(rng.integers(2)))
        for name, p in vit.named_parameters():
            if name.split(".")[0] in EMBEDDINGS:
                p.requires_grad_(not freeze_embeddings)
        record = {
            "task": task_index,
            "seed": seed,
            "blocks": frozen_names,
            "embeddings_frozen": freeze_embeddings,
        }
        self.draws.append(record)
        log.info(
            "hft task %d (seed %d): frozen %s; embeddings frozen: %s",
            task_index,
            seed,
            frozen_names,
            freeze_embeddings,
        )
        return record

    def learn(self, task: Task) -> dict[str, float]:
        record = self.draw(task.index)
        self.model.train()
        loss = cross_entropy_on(self.model, classes=list(task.seen_classes))
        out = fit_task(self, self.model.parameters(), task, loss)
        blocks = self.model.model.blocks
        frozen = sum(p.numel() for b in blocks for p in b.parameters() if not p.requires_grad)
        out["frozen_block_fraction"] = frozen / sum(p.numel() for b in blocks for p in b.parameters())
        out["mask_seed"] = float(record["seed"])
        return out

    def predict(self, x):
        self.model.eval()
        return self.model(x)
