"""cross_scenario: choose hyperparameters on validation scenarios, score on different test scenarios.

Boudiaf, Mueller, Ben Ayed, Bertinetto: "Parameter-free Online Test-time Adaptation" (LAME,
CVPR 2022), Section 5: hyperparameters of every method are tuned once on a set of validation
scenarios (ImageNet-C with the four held-out corruptions, i.i.d. and non-i.i.d. streams) and
then kept fixed on test scenarios that differ in shift type, stream structure, dataset and
architecture. A method's configuration is chosen by its mean metric over the validation
scenarios (each scenario weighs the same); its score is the mean over the test scenarios.

The check requires that no test scenario is one of the validation scenarios (same scenario
and backbone); sample disjointness is recorded, and required with `disjoint_samples: true`
(LAME's validation and test streams may reuse images under other shifts).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctta import Protocol, UserError, hp, register_protocol
from ctta.kit import compare, scored_data


@register_protocol("cross_scenario")
class CrossScenario(Protocol):
    """Tune on validation scenarios, score on other test scenarios (Boudiaf et al., LAME)."""

    @dataclass
    class Config(Protocol.Config):
        validation: Any = hp(None, doc="the scenarios that choose the hyperparameters")
        test: Any = hp(None, doc="the scenarios that score (none of them a validation scenario)")
        disjoint_samples: bool = hp(False, doc="also require that no test sample occurs in validation")

    def tune_cases(self):
        return self.cases_of("validation")

    def eval_cases(self):
        return self.cases_of("test")

    def check(self, tune, scored) -> dict:
        seen = {(repr(c.scenario), repr(c.backbone)): c.label for c in self.cases["tune"]}
        for case in self.cases["eval"]:
            if (repr(case.scenario), repr(case.backbone)) in seen:
                raise UserError(f"{self.where}: test scenario {case.label!r} is also a validation scenario")
        facts = compare(scored_data(tune), scored_data(scored))
        if self.config.disjoint_samples and facts["shared_samples"]:
            raise UserError(
                f"{self.where}: {facts['shared_samples']} test samples also occur in the validation "
                f"scenarios, and disjoint_samples is true"
            )
        required = ["distinct_scenarios"] + ["disjoint_samples"] * self.config.disjoint_samples
        return {"passed": True, "required": required, **facts}
