"""tune_eval: tune on one pool of data, score on a disjoint pool of the same scenario shape.

Cha & Cho, "Hyperparameters in Continual Learning: a Reality Check" (arXiv:2403.09066, TMLR
2025): the Generalizable Two-phase Evaluation Protocol. Both phases share the scenario
configuration (stream kind, number of tasks, classes per task, shots) but are built from
different data: for class-incremental learning, disjoint class pools (one half of the classes
tunes, the other half scores) or another dataset; for test-time streams, disjoint samples.
Every method runs its whole search space in the tune phase; the best configuration by the
study's metric then runs alone, over the eval seeds, in the eval phase, and only that scores.

Before any run, the protocol builds every stream of both phases (all cases and seeds) and
checks that no sample of the eval data (by content hash) occurs in the tune data, that no
class does either where classes must be disjoint (class-incremental streams, by default), and
that the shapes match. The check is stored with every eval run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ctta import Protocol, UserError, hp, register_protocol
from ctta.kit import compare, scored_data, stream_shape


@register_protocol("tune_eval")
class TuneEval(Protocol):
    """Separated tune and eval phases on disjoint data of the same shape (Cha & Cho, Reality Check)."""

    @dataclass
    class Config(Protocol.Config):
        tune: Any = hp(None, doc="the scenario(s) that tune: a spec or a list of specs")
        eval: Any = hp(None, doc="the scenario(s) that score: same shape, disjoint data")
        disjoint_classes: bool | None = hp(
            None, doc="require disjoint classes; default: for class-incremental"
        )
        same_shape: bool = hp(True, doc="require the same stream shape (tasks, classes per task, shots)")

    def tune_cases(self):
        return self.cases_of("tune")

    def eval_cases(self):
        return self.cases_of("eval")

    def check(self, tune, scored) -> dict:
        classes = self.config.disjoint_classes
        if classes is None:
            classes = self.kind == "class_incremental"
        facts = compare(scored_data(tune), scored_data(scored))
        shapes = {json.dumps(stream_shape(s), sort_keys=True) for s in (*tune, *scored)}
        problems = []
        if facts["shared_samples"]:
            problems.append(f"{facts['shared_samples']} samples of the eval data also occur in the tune data")
        if classes and facts["shared_classes"]:
            problems.append(f"classes {', '.join(facts['shared_classes'][:5])} occur in both phases")
        if self.config.same_shape and len(shapes) > 1:
            problems.append(f"the streams differ in shape: {' vs '.join(sorted(shapes))}")
        if problems:
            raise UserError(
                f"{self.where}: tune and eval phases are not separated: {'; '.join(problems)} "
                f"(set disjoint_classes: false or same_shape: false if that is intended)"
            )
        required = (
            ["disjoint_samples"] + ["disjoint_classes"] * classes + ["same_shape"] * self.config.same_shape
        )
        return {"passed": True, "required": required, **facts, "shape": json.loads(min(shapes))}
