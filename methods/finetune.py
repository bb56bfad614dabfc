"""Sequential fine-tuning: the lower bound every continual-learning paper reports.

The whole backbone and a linear head over all classes are trained by cross-entropy on each
task in turn, with the logits of classes not yet seen masked (old classes stay in the
softmax, as in PyCIL's `finetune`). Nothing protects old knowledge, so it forgets.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctta import Method, Task, register_method
from ctta.kit import Recipe, cross_entropy_on, fit_task


@register_method("finetune")
class Finetune(Method):
    """Sequential fine-tuning of backbone and head (lower bound)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})

    @dataclass
    class HParams(Recipe):
        pass

    def setup(self, backbone, info):
        self.model = backbone
        backbone.reset_head(info.num_classes)

    def learn(self, task: Task) -> dict[str, float]:
        self.model.train()
        loss = cross_entropy_on(self.model, classes=list(task.seen_classes))
        return fit_task(self, self.model.parameters(), task, loss)

    def predict(self, x):
        self.model.eval()
        return self.model(x)
