"""CoTTA: continual test-time adaptation with a mean teacher, augmentation averaging and
stochastic restore.

Wang, Fink, Van Gool, Dai: "Continual Test-Time Domain Adaptation" (CVPR 2022). Every
parameter of the student is trained (BatchNorm with test-batch statistics). Per test batch:

- the teacher (an exponential moving average of the student, α = `mt`) predicts the batch;
  when the source model's ("anchor") mean top-1 confidence on the batch is below the
  threshold `ap`, the teacher's prediction is instead the mean of its logits over
  `n_augment` random augmentations (`ctta.kit.tta_augment`);
- the student minimises the cross-entropy between the teacher's soft prediction and its own;
- the teacher moves towards the student: θ' ← α·θ' + (1 − α)·θ;
- stochastic restore: every element of every weight and bias returns to its source value
  with probability `rst`.

The teacher's (possibly augmentation-averaged) prediction is returned, as in the reference
code; the teacher and anchor normalise with test-batch statistics like the student (they
are copies of the configured model). Defaults are the CIFAR setting (Adam 1e-3, ap 0.92);
ImageNet uses ap 0.1 and SGD 0.01. Augmentations are drawn per image (see ctta/kit/augment.py),
and the augmented copies go through the teacher together (`ctta.kit.augmented_mean`, each
copy normalised with its own batch statistics, as the reference's one pass per copy).
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Literal

import torch

from ctta import hp, register_method
from ctta.kit import (
    TestTimeMethod,
    augmented_mean,
    freeze,
    make_optimizer,
    tta_augment,
    use_batch_statistics,
)


@register_method("cotta")
class CoTTA(TestTimeMethod):
    """Mean teacher with augmentation averaging and stochastic restore (Wang et al., CVPR 2022)."""

    @dataclass
    class HParams(TestTimeMethod.HParams):
        lr: float = hp(1e-3, space=(1e-4, 1e-3), doc="step size on every student parameter", gt=0)
        ap: float = hp(
            0.92,
            space=(0.1, 0.72, 0.92),
            doc="anchor confidence below which the teacher averages augmentations",
            ge=0,
            le=1,
        )
        mt: float = hp(0.999, doc="EMA factor of the teacher", ge=0, le=1)
        rst: float = hp(
            0.01, doc="probability of restoring each weight element to its source value", ge=0, le=1
        )
        n_augment: int = hp(32, doc="augmented views averaged by the teacher", ge=1)
        flip: bool = hp(True, doc="horizontal flips among the augmentations (off for text-like images)")
        optimizer: Literal["adam", "sgd"] = hp(
            "adam", doc="adam (CIFAR setting) or sgd (ImageNet setting, momentum 0.9)"
        )

    def setup(self, backbone, info):
        self.model = backbone
        use_batch_statistics(backbone)
        for p in backbone.parameters():
            p.requires_grad_(True)
        self.optimizer = make_optimizer(backbone.parameters(), self.hparams.optimizer, self.hparams.lr)
        self.teacher = freeze(copy.deepcopy(backbone))
        self.anchor = freeze(copy.deepcopy(backbone))
        self.restorable = [
            (p, q)
            for (n, p), q in zip(backbone.named_parameters(), self.anchor.parameters())
            if n.rsplit(".", 1)[-1] in ("weight", "bias")
        ]

    def adapt(self, x):
        h = self.hparams
        logits = self.model(x)
        with torch.no_grad():
            confidence = self.anchor(x).softmax(1).max(1).values.mean()
            if confidence < h.ap:
                augment = functools.partial(tta_augment, flip=h.flip)
                teacher = augmented_mean(self.teacher, x, h.n_augment, augment)
            else:
                teacher = self.teacher(x)
        loss = -(teacher.softmax(1) * logits.log_softmax(1)).sum(1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            for t, s in zip(self.teacher.parameters(), self.model.parameters()):
                t.mul_(h.mt).add_(s, alpha=1 - h.mt)
            for p, source in self.restorable:
                restore = torch.rand_like(p) < h.rst
                p.copy_(torch.where(restore, source, p))
        return teacher
