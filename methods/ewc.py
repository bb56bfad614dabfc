"""EWC: fine-tuning with a Fisher-weighted quadratic pull towards the previous weights.

Kirkpatrick et al.: "Overcoming catastrophic forgetting in neural networks" (PNAS 2017), as
evaluated on pretrained ViTs by Smith, Tian, Halbe, Hsu, Kira: "A Closer Look at
Rehearsal-Free Continual Learning" (CVPR Workshops 2023). The loss on task t is the
cross-entropy over the classes seen so far plus

    lam/2 * sum_i F_i (theta_i - theta*_i)^2,      F <- decay * F + F_task  after every task,

over the filtered parameters (default `blocks.*.attn.*`). F_task is the diagonal empirical
Fisher of the task's training data at the end of the task, with the true labels, in eval
mode: `estimator: batch` averages squared mini-batch gradients (Smith et al.'s and
Avalanche's estimator), `estimator: sample` squared per-sample gradients (the textbook
empirical Fisher, about batch_size times larger: rescale lam), `estimator: train` the
squared mini-batch gradients of the last training epoch (EWC++-style, Chaudhry et al. 2018:
no extra pass over the data, one forward/backward pass per task less; the weights move
during that epoch, so it is not the end-of-task Fisher). decay = 1 sums the Fishers
of all tasks with one anchor, the weights after the previous task (`anchor: previous`) —
online EWC (Schwarz et al. 2018) with decay < 1. Kirkpatrick et al. keep one penalty per
task; with one anchor, memory stays at two copies of the filtered parameters however many
tasks pass. Task 0 is unregularised (no Fisher yet). The factor 1/2 is as in Kirkpatrick et
al.; Avalanche's EWC omits it, so its `ewc_lambda` equals our lam / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from ctta import Task, hp, register_method
from ctta.kit import ParameterRegularizer, RegularizedFinetuning, TrainingFisher, fisher_diagonal


@register_method("ewc")
class EWC(RegularizedFinetuning):
    """Fine-tuning with a diagonal-Fisher-weighted pull towards the previous weights (Kirkpatrick et al. 2017)."""

    @dataclass
    class HParams(RegularizedFinetuning.HParams):
        lam: float = hp(
            1e3, space=(1e2, 3e2, 1e3, 3e3), doc="lambda: penalty lam/2 * sum F (theta - anchor)^2", ge=0
        )
        estimator: Literal["batch", "sample", "train"] = hp(
            "batch",
            doc="Fisher: squared mini-batch gradients (paper), per-sample ones, or mini-batch ones"
            " of the last training epoch (no extra pass)",
        )
        decay: float = hp(1.0, doc="F <- decay * F + F_task after each task (1 = sum over tasks)", ge=0, le=1)
        fisher_batch_size: int = hp(
            64, doc="batch size of the Fisher pass (sets the 'batch' estimate's scale)", ge=1
        )

    def make_regularizer(self, named) -> ParameterRegularizer:
        h = self.hparams
        return ParameterRegularizer(named, lam=h.lam, anchor=h.anchor, fisher=True, decay=h.decay)

    def before_step(self, task: Task):
        if self.hparams.estimator != "train":
            return super().before_step(task)
        h, reg = self.hparams, self.regularizer
        collector = self._collector = TrainingFisher(
            reg.params, (h.epochs - 1) * math.ceil(len(task.train) / h.batch_size)
        )

        def hook():
            collector()  # the task loss's gradients, before the penalty's are added
            reg.add_penalty_gradient()

        return hook

    def end_task(self, task: Task) -> dict[str, float]:
        reg = self.regularizer
        if self.hparams.estimator == "train":
            fisher, self._collector = self._collector.fisher(), None
        else:
            fisher = fisher_diagonal(
                self.model,
                reg.params,
                task.train,
                classes=list(task.seen_classes),
                estimator=self.hparams.estimator,
                batch_size=self.hparams.fisher_batch_size,
                device=self.device,
            )
        reg.add_importance(fisher)
        total = sum(float(w.sum()) for w in reg.importance)
        return {"fisher_mean": total / sum(w.numel() for w in reg.importance)}
