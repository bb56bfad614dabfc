"""Joint training: the upper bound, trained on the union of all data seen so far.

At every task the model restarts from the pretrained backbone and a fresh head and is
trained on the training data of all tasks so far, so the score after task i is what
i.i.d. training on the same data reaches. Not a continual method: it keeps all data (a
resumed run takes it again from the tasks it had learnt).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ctta import Method, Task, hp, register_method
from ctta.kit import Recipe, cross_entropy_on, fit_task


@register_method("joint")
class Joint(Method):
    """Upper bound: retrain on all data seen so far (from the pretrained weights)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})

    @dataclass
    class HParams(Recipe):
        epochs: int = hp(3, doc="passes over the accumulated data at each task", ge=1)
        restart: bool = hp(True, doc="restart from the pretrained weights at every task (else continue)")

    def setup(self, backbone, info):
        self.model = backbone
        backbone.reset_head(info.num_classes)
        self._pretrained = copy.deepcopy(backbone.state_dict())
        self._seen: list = []  # the training data of past tasks, as views

    def learn(self, task: Task) -> dict[str, float]:
        h = self.hparams
        self._seen.append(task.train)
        if h.restart:
            self.model.load_state_dict(self._pretrained)
        data = self._seen[0].union(*self._seen[1:])
        self.model.train()
        loss = cross_entropy_on(self.model, classes=list(task.seen_classes))
        return fit_task(self, self.model.parameters(), task, loss, data=data)

    def resume(self, done: list[Task]) -> None:
        self._seen = [t.train for t in done]

    def predict(self, x):
        self.model.eval()
        return self.model(x)
