"""oracle: tune directly on the scored data, the common practice, kept only to measure its gap.

Most papers report each method with the configuration that scores best on the very stream it
is scored on. This protocol does exactly that (every configuration runs on the scored
scenarios with the scored seeds; the best mean is reported) so that the *protocol gap*,
oracle score - honest score, and the change of rank between the two can be shown next to the
honest result. With `of: <study>` it takes the methods, search spaces, scored scenarios,
seeds and metric of an honest study of the same sweep file; its runs with the honest study's
chosen configuration are the honest eval runs themselves (same spec, same run), so the gap is
never negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctta import Protocol, hp, register_protocol


@register_protocol("oracle")
class Oracle(Protocol):
    """Tune on the scored data itself; measures the protocol gap of an honest study."""

    checks_data = False  # nothing is separated: there is nothing to check

    @dataclass
    class Config(Protocol.Config):
        scenarios: Any = hp(None, doc="the scored scenarios (given by 'of' when it is set)")
        of: str | None = hp(None, doc="the honest study whose gap this measures")

    @property
    def compares_with(self) -> str | None:
        return self.config.of

    def tune_cases(self):
        return self.cases_of("scenarios")

    def eval_cases(self):
        return self.tune_cases()

    @property
    def tune_seeds(self):
        return self.config.eval_seeds

    def check(self, tune, scored) -> dict:
        return {"passed": True, "required": [], "tuned_on_scored_data": True}
