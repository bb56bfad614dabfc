"""Tent: test-time entropy minimisation of the normalisation layers' affine parameters.

Wang, Shelhamer, Liu, Olshausen, Darrell: "Tent: Fully Test-time Adaptation by Entropy
Minimization" (ICLR 2021). BatchNorm layers normalise with test-batch statistics; only the
scale and shift of normalisation layers (BN, and LN/GN for transformers as in later work)
are updated, by minimising the mean softmax entropy of the batch. The returned prediction
is the one computed before the batch's update, as in the reference implementation.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctta import hp, register_method
from ctta.kit import NormAdaptationMethod, softmax_entropy


@register_method("tent")
class Tent(NormAdaptationMethod):
    """Entropy minimisation of norm affine parameters (Wang et al., ICLR 2021)."""

    requires = frozenset({"norm"})

    @dataclass
    class HParams(NormAdaptationMethod.HParams):
        steps: int = hp(1, doc="gradient steps per test batch", ge=1)

    def loss(self, logits):
        return softmax_entropy(logits).mean()
