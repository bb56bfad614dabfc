"""Classifier heads shared by methods: the class-prototype (nearest class mean) head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PrototypeHead(nn.Module):
    """Class means of features; logits are cosine similarities to them (SimpleCIL, MOS,
    RanPAC's prototype step). Classes without a prototype get -inf."""

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.register_buffer("sums", torch.zeros(num_classes, feature_dim))
        self.register_buffer("counts", torch.zeros(num_classes))

    @property
    def known(self) -> torch.Tensor:
        return self.counts > 0

    @property
    def prototypes(self) -> torch.Tensor:
        return self.sums / self.counts.clamp(min=1).unsqueeze(1)

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold `features` into the running mean of their classes (a class seen again in a new
        domain averages over all its images so far)."""
        self.sums.index_add_(0, labels, features.to(self.sums.dtype))
        self.counts.index_add_(0, labels, torch.ones_like(labels, dtype=self.counts.dtype))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(features, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
        return logits.masked_fill(~self.known, float("-inf"))
