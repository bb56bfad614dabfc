"""Pseudo-labelling: self-training on the model's own confident hard labels.

Lee: "Pseudo-Label: The Simple and Efficient Semi-Supervised Learning Method for Deep Neural
Networks" (ICML 2013 workshop), as the test-time baseline of Tent (Wang et al., ICLR 2021)
and of Rusak et al., "If your data distribution shifts, use self-learning" (TMLR 2022). For
each test batch, the samples whose top softmax probability reaches `threshold` are trained
by cross-entropy towards their own argmax; the parameters are those Tent adapts (the affine
parameters of normalisation layers, BatchNorm with test-batch statistics). The returned
prediction is the one computed before the batch's update. A batch without a confident
sample changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ctta import hp, register_method
from ctta.kit import NormAdaptationMethod


@register_method("pseudo_label")
class PseudoLabel(NormAdaptationMethod):
    """Cross-entropy on confident hard pseudo-labels, norm affine parameters (Lee 2013)."""

    requires = frozenset({"norm"})

    @dataclass
    class HParams(NormAdaptationMethod.HParams):
        threshold: float = hp(
            0.9, space=(0.5, 0.7, 0.9), doc="minimum softmax confidence of a pseudo-label", ge=0, le=1
        )
        steps: int = hp(1, doc="gradient steps per test batch", ge=1)

    def loss(self, logits):
        confidence, labels = logits.detach().softmax(1).max(1)
        keep = confidence >= self.hparams.threshold
        return F.cross_entropy(logits[keep], labels[keep]) if keep.any() else None
