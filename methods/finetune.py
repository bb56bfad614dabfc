"""Sequential fine-tuning: the lower bound every continual-learning paper reports.

The whole backbone and a linear head over all classes are trained by cross-entropy on each
task in turn, with the logits of classes not yet seen masked (old classes stay in the
softmax, as in PyCIL's `finetune`). Nothing protects old knowledge, so it forgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctta import Method, Task, hp, register_method
from ctta.training import cross_entropy_on, fit


@register_method("finetune")
class Finetune(Method):
    """Sequential fine-tuning of backbone and head (lower bound)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})

    @dataclass
    class HParams:
        lr: float = hp(0.01, space=(0.003, 0.01, 0.03), doc="SGD step size")
        epochs: int = hp(3, doc="passes over each task's data")
        batch_size: int = hp(64, doc="mini-batch size")
        optimizer: str = hp("sgd", doc="sgd (momentum 0.9), adam or adamw")
        weight_decay: float = hp(0.0, doc="weight decay")

    def setup(self, backbone, info):
        self.info = info
        self.model = backbone
        backbone.reset_head(info.num_classes)

    def learn(self, task: Task) -> dict[str, float]:
        h = self.hparams
        self.model.train()
        loss = cross_entropy_on(self.model, classes=list(task.seen_classes))
        return fit(
            self.model.parameters(),
            task.train,
            loss,
            epochs=h.epochs,
            batch_size=h.batch_size,
            lr=h.lr,
            optimizer=h.optimizer,
            weight_decay=h.weight_decay,
            seed=self.info.seed + task.index,
            device=self.device,
        )

    def predict(self, x):
        self.model.eval()
        return self.model(x)
