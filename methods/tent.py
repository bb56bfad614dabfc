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
from ctta.adaptation import AdaptiveMethod, adapt_norm_layers, softmax_entropy


@register_method("tent")
class Tent(AdaptiveMethod):
    """Entropy minimisation of norm affine parameters (Wang et al., ICLR 2021)."""

    requires = frozenset({"norm"})

    @dataclass
    class HParams(AdaptiveMethod.HParams):
        lr: float = hp(1e-3, space=(1e-4, 1e-3, 1e-2), doc="step size on the norm affine parameters")
        optimizer: str = hp("adam", doc="adam (CIFAR setting) or sgd (ImageNet setting, momentum 0.9)")
        steps: int = hp(1, doc="gradient steps per test batch")

    def setup(self, backbone, info):
        self.info = info
        self.model = backbone
        self.optimizer = adapt_norm_layers(backbone, self.hparams.optimizer, self.hparams.lr)

    def adapt(self, x):
        for _ in range(self.hparams.steps):
            logits = self.model(x)
            loss = softmax_entropy(logits).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return logits.detach()
