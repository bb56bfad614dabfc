"""SHOT-IM: information maximisation on the feature extractor, classifier frozen.

Liang, Hu, Feng: "Do We Really Need to Access the Source Data? Source Hypothesis Transfer
for Unsupervised Domain Adaptation" (ICML 2020). The source classifier ("hypothesis") is
kept; the feature extractor is trained to make each prediction confident and the batch's
predictions diverse:

    L = E_x[H(p(x))] − H(E_x[p(x)])        (conditional entropy − marginal entropy)

SHOT-IM is SHOT without its clustering pseudo-labels. Here it runs online, as in the
test-time benchmarks that report it (TTAB, Zhao et al. ICML 2023): one update of the whole
feature extractor per test batch (BatchNorm layers normalise with batch statistics, as in
SHOT's target training), and the returned prediction is the one computed before the batch's (last) update, as in Tent.

Deviation: SHOT trains for epochs over the whole unlabelled target set with SGD (lr 1e-2,
momentum 0.9); online, each batch is seen once, with Adam by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ctta import hp, register_method
from ctta.kit import NormAdaptationMethod, softmax_entropy


def information_maximization(logits: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean per-sample entropy minus the entropy of the mean prediction (SHOT's L_ent + L_div)."""
    mean = logits.softmax(1).mean(0)
    return softmax_entropy(logits).mean() + (mean * torch.log(mean + eps)).sum()


@register_method("shot_im")
class ShotIM(NormAdaptationMethod):
    """Information maximisation of the feature extractor, frozen classifier (Liang et al., ICML 2020)."""

    @dataclass
    class HParams(NormAdaptationMethod.HParams):
        lr: float = hp(1e-4, space=(1e-5, 1e-4, 1e-3), doc="step size on the feature extractor", gt=0)
        optimizer: Literal["adam", "sgd"] = hp(
            "adam", doc="adam, or sgd (momentum 0.9) as in SHOT's offline training"
        )
        steps: int = hp(1, doc="gradient steps per test batch", ge=1)

    def adapted_parameters(self, backbone):
        return list(backbone.trunk.parameters())  # the whole feature extractor; the head stays

    def loss(self, logits):
        return information_maximization(logits)
