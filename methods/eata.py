"""EATA: efficient anti-forgetting test-time adaptation.

Niu, Wu, Zhang, Chen, Zheng, Zhao, Tan: "Efficient Test-Time Model Adaptation without
Forgetting" (ICML 2022). Tent's parameters (normalisation affine parameters, BatchNorm with
test-batch statistics), trained on a filtered, weighted entropy:

- reliable samples: entropy below E₀ = 0.4·ln K;
- non-redundant samples: cosine similarity between the sample's softmax and the moving
  average m of the softmax of previously selected samples below ε (`d_margin`); m ← 0.9·m +
  0.1·mean(selected softmax) after each batch;
- weight 1 / exp(H(x) − E₀) on each selected sample's entropy;
- anti-forgetting: + β·Σ F_i (θ_i − θ_i⁰)², with F the diagonal Fisher information of the
  adapted parameters, estimated at setup on `fisher_size` in-distribution images with the
  model's own hard pseudo-labels (mean over batches of squared batch gradients, as the
  reference code). Our in-distribution images are the stream's source data (labels unused).

A batch with no selected sample changes nothing. The returned prediction is the one
computed before the batch's update. Defaults follow the CIFAR-10 setting (Adam 1e-3,
ε = 0.4, β = 1); ImageNet uses ε = 0.05, β = 2000 (both in the search space).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ctta import hp, register_method
from ctta.kit import NormAdaptationMethod, iterate, softmax_entropy

FISHER_BATCH = 64


@register_method("eata")
class EATA(NormAdaptationMethod):
    """Reliable, non-redundant entropy minimisation with a Fisher anti-forgetting term (Niu et al., ICML 2022)."""

    requires = frozenset({"norm"})

    @dataclass
    class HParams(NormAdaptationMethod.HParams):
        d_margin: float = hp(0.4, space=(0.05, 0.4), doc="ε: redundancy threshold on cosine similarity", ge=0)
        fisher_alpha: float = hp(1.0, space=(1.0, 2000.0), doc="β: weight of the Fisher regulariser", ge=0)
        e_margin: float = hp(0.4, doc="E₀ as a fraction of ln(num_classes)", ge=0)
        fisher_size: int = hp(
            2000, doc="in-distribution images for the Fisher estimate (0: no regulariser)", ge=0
        )

    def setup(self, backbone, info):
        super().setup(backbone, info)
        h = self.hparams
        self.params = [p for p in backbone.parameters() if p.requires_grad]
        self.e0 = h.e_margin * math.log(info.num_classes)
        self.register_buffer("mean_probs", torch.zeros(info.num_classes, device=info.device))
        self.register_buffer("has_mean", torch.zeros((), dtype=torch.bool, device=info.device))
        self.fisher = self._fisher() if h.fisher_size > 0 and info.source is not None else None
        self.anchor = [p.detach().clone() for p in self.params]

    def _fisher(self) -> list[torch.Tensor]:
        data = self.info.source
        pick = np.random.default_rng(self.info.seed).permutation(len(data))[: self.hparams.fisher_size]
        fisher = [torch.zeros_like(p) for p in self.params]
        batches = 0
        for x, _ in iterate(data.subset(np.sort(pick)), FISHER_BATCH, device=self.device):
            logits = self.model(x)
            grads = torch.autograd.grad(F.cross_entropy(logits, logits.argmax(1)), self.params)
            for f, g in zip(fisher, grads):
                f += g.detach() ** 2
            batches += 1
        return [f / max(batches, 1) for f in fisher]

    def loss(self, logits):
        h = self.hparams
        entropy = softmax_entropy(logits)
        probs = logits.detach().softmax(1)
        keep = entropy < self.e0
        if self.has_mean:
            keep &= F.cosine_similarity(probs, self.mean_probs[None], dim=1).abs() < h.d_margin
        if not keep.any():
            return None
        with torch.no_grad():  # the moving average of the selected samples' predictions
            batch_mean = probs[keep].mean(0)
            self.mean_probs.copy_(
                torch.where(self.has_mean, 0.9 * self.mean_probs + 0.1 * batch_mean, batch_mean)
            )
            self.has_mean.fill_(True)
        weight = torch.exp(-(entropy[keep].detach() - self.e0))
        loss = (entropy[keep] * weight).mean()
        if self.fisher is not None:
            loss = loss + h.fisher_alpha * sum(
                (f * (p - p0) ** 2).sum() for f, p, p0 in zip(self.fisher, self.params, self.anchor)
            )
        return loss
