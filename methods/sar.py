"""SAR: sharpness-aware and reliable entropy minimisation, with model recovery.

Niu, Wu, Zhang, Wen, Chen, Zhao, Tan: "Towards Stable Test-Time Adaptation in Dynamic Wild
World" (ICLR 2023). Per test batch:

1. reliable samples: entropy below E₀ = 0.4·ln K (`e_margin` · ln K);
2. sharpness-aware step (SAM, Foret et al. 2021): the gradient g of their mean entropy moves
   the parameters to θ + ρ·g/‖g‖; there the entropy of the same samples is recomputed, the
   samples still below E₀ are kept, and the gradient of their mean entropy at the perturbed
   point updates θ (SGD, momentum 0.9);
3. model recovery: an exponential moving average (0.9) of that second loss; when it falls
   below `reset_constant` (collapse to confident trivial solutions), the model is reset to
   the source model.

Parameters: the affine parameters of the normalisation layers outside the top quarter of
the backbone's stages and outside the final norm (the reference code skips ResNet-50's
layer4 and ViT-B's blocks 9-11; `ctta.kit.lower_norm_layers`); BatchNorm uses test-batch
statistics. Deviation: on a network whose stages cannot be found (`ctta.kit.find_stages`; the
backbone option `stages=` declares them), every norm layer adapts, with a warning. The run
record names the stages (`backbone_stages`, empty then) and the adapted layers
(`adapted_norm_layers`). The returned prediction is the first forward's, before the update.
A batch without a reliable sample changes nothing (the reference code steps with zero
gradients and momentum only).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch

from ctta import hp, register_method
from ctta.kit import NormAdaptationMethod, find_stages, lower_norm_layers, softmax_entropy

log = logging.getLogger(__name__)


@register_method("sar")
class SAR(NormAdaptationMethod):
    """Sharpness-aware reliable entropy minimisation with model recovery (Niu et al., ICLR 2023)."""

    requires = frozenset({"norm"})

    @dataclass
    class HParams(NormAdaptationMethod.HParams):
        lr: float = hp(
            1e-3, space=(1e-4, 1e-3, 1e-2), doc="SGD step size (the paper: 2.5e-4 ResNet, 1e-3 ViT)", gt=0
        )
        rho: float = hp(0.05, doc="SAM neighbourhood radius", ge=0)
        e_margin: float = hp(0.4, doc="E₀ as a fraction of ln(num_classes)", ge=0)
        reset_constant: float = hp(
            0.2, space=(0.1, 0.2), doc="reset when the loss EMA falls below this", ge=0
        )
        top_fraction: float = hp(0.25, doc="fraction of top stages whose norm layers stay frozen", ge=0, le=1)
        optimizer: Literal["adam", "sgd"] = hp("sgd", doc="base optimiser of SAM: sgd (momentum 0.9) or adam")

    def adapted_parameters(self, backbone):
        stages = find_stages(backbone)
        if stages is None:
            log.warning(
                "sar: no stages found in backbone %r, so every norm layer adapts; declare them with the "
                "backbone option stages=<module paths> to keep the top stages frozen",
                backbone.name,
            )
        layers = lower_norm_layers(backbone, stages, self.hparams.top_fraction)
        self.record_fields = {
            "backbone_stages": list(stages.paths) if stages else [],
            "adapted_norm_layers": [name for name, _ in layers],
        }
        self.params = [p for _, m in layers for p in (m.weight, m.bias) if p is not None]
        return self.params

    def setup(self, backbone, info):
        super().setup(backbone, info)
        h = self.hparams
        self.e0 = h.e_margin * math.log(info.num_classes)
        self.register_buffer("loss_ema", torch.full((), float("nan"), device=info.device))
        self.recoveries = 0  # model resets triggered by the EMA, for diagnostics

    def adapt(self, x):
        h = self.hparams
        logits = self.model(x)
        entropy = softmax_entropy(logits)
        reliable = entropy < self.e0
        if not reliable.any():
            return logits.detach()
        grads = torch.autograd.grad(entropy[reliable].mean(), self.params)
        norm = torch.sqrt(sum((g**2).sum() for g in grads))
        steps = [h.rho * g / (norm + 1e-12) for g in grads]
        with torch.no_grad():
            for p, e in zip(self.params, steps):
                p.add_(e)
        second = softmax_entropy(self.model(x))[reliable]
        second = second[second < self.e0]
        self.optimizer.zero_grad(set_to_none=True)
        if len(second):
            second.mean().backward()
        with torch.no_grad():
            for p, e in zip(self.params, steps):
                p.sub_(e)
        if len(second):
            self.optimizer.step()
            value = second.mean().detach()
            self.loss_ema.copy_(torch.where(self.loss_ema.isnan(), value, 0.9 * self.loss_ema + 0.1 * value))
            if self.loss_ema < h.reset_constant:
                self.reset()
                self.recoveries += 1
        return logits.detach()
