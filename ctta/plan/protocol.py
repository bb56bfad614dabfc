"""The base of protocols: which scenario instances tune a method's hyperparameters, which
score it, and the runs a study needs given the records that exist (`Protocol.plan`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..core.config import build_config, hp
from ..core.errors import UserError
from ..core.files import content_key
from ..core.registry import METHODS
from .choice import choose, config_scores
from .metrics import metric_direction
from .search import configurations, method_spaces
from .spec import Case, RunSpec, resolve_backbone, resolve_cases, resolve_method

if TYPE_CHECKING:
    from ..api import ContinualStream, TestStream


class Protocol:
    """Base class of protocols: which scenario instances ("cases") tune a method's
    hyperparameters, which score it, and what separates the two.

    An instance is one *study* of a sweep file: a protocol with its methods (and their search
    spaces), its cases and its seeds. A subclass says which cases tune (`tune_cases`), which
    score (`eval_cases`), and proves the separation it promises (`check`); the rest is shared.
    `plan(records)` is a pure function of the finished records: every configuration of every
    method on every tune case and tune seed, and, for each method whose tune runs have all
    finished, its chosen configuration on every eval case and eval seed. A sweep can therefore
    be stopped and resumed, and plan/status/launch rerun, at any point.
    """

    name: ClassVar[str] = "?"
    compares_with: str | None = None  # the honest study whose protocol gap this one measures (oracle)
    checks_data: ClassVar[bool] = True  # False: `check` ignores the streams, which are then not built

    @dataclass
    class Config:
        methods: Any = hp(None, doc="method names, or a mapping name -> search-space overrides")
        backbone: Any = hp("debug_vit", doc="backbone of every scenario that names none")
        tune_seeds: tuple[int, ...] = hp((0,), doc="seeds of the tune phase", ge=0)
        eval_seeds: tuple[int, ...] = hp((1, 2, 3), doc="seeds of the evaluation phase", ge=0)
        metric: str = hp("auto", doc="what selects and scores; auto: last_acc (CL), online_acc (TTA)")
        search: Literal["grid", "random"] = hp("grid", doc="the whole grid, or random draws from it")
        samples: int = hp(0, doc="random search: configurations per method (0 = the whole grid)", ge=0)
        search_seed: int = hp(0, doc="random search: seed of the draw", ge=0)

    def __init__(self, study: str = "", where: str = "", **config: Any):
        self.study = study or self.name
        self.where = where or f"protocol {self.name!r}"
        self.config = build_config(type(self).Config, config, self.where)
        self.spaces = method_spaces(self.config.methods, self.where)
        resolve_backbone(self.config.backbone, f"{self.where}: backbone")
        for key in ("tune_seeds", "eval_seeds"):
            if not getattr(self.config, key):
                raise UserError(f"{self.where}: {key}: give at least one seed")
        self.cases = {"tune": self.tune_cases(), "eval": self.eval_cases()}
        kinds = {c.kind for cases in self.cases.values() for c in cases}
        if len(kinds) > 1:
            raise UserError(
                f"{self.where}: mixes stream kinds {', '.join(sorted(kinds))}; use one study per kind"
            )
        self.kind = kinds.pop()
        for method in self.spaces:
            cls = METHODS.get(method)
            if self.kind not in cls.stream_kinds:
                raise UserError(
                    f"{self.where}: methods.{method}: does not run on {self.kind} streams "
                    f"(it supports: {', '.join(sorted(cls.stream_kinds))})"
                )
        self.metric, self.higher_is_better = metric_direction(self.config.metric, self.kind, self.where)
        self._configs: dict[str, list[dict]] = {}
        self._tune: dict[str, list[PlannedRun]] = {}

    # -- what a protocol decides -----------------------------------------------------------
    def tune_cases(self) -> list[Case]:
        raise NotImplementedError

    def eval_cases(self) -> list[Case]:
        raise NotImplementedError

    @property
    def tune_seeds(self) -> tuple[int, ...]:
        return self.config.tune_seeds

    @property
    def eval_seeds(self) -> tuple[int, ...]:
        return self.config.eval_seeds

    def check(
        self, tune: list[ContinualStream | TestStream], scored: list[ContinualStream | TestStream]
    ) -> dict:
        """Prove the separation this protocol promises from the streams of both phases (every
        case and seed); raise UserError when it does not hold. The returned facts are stored
        with every eval run."""
        raise NotImplementedError

    # -- shared --------------------------------------------------------------------------------
    def cases_of(self, option: str) -> list[Case]:
        """The cases that config option `option` names (one scenario or a list; see resolve_cases)."""
        return resolve_cases(getattr(self.config, option), self.config.backbone, f"{self.where}: {option}")

    def configurations(self, method: str) -> list[dict[str, Any]]:
        """The resolved hyperparameters (method spec) of every configuration searched."""
        if method not in self._configs:
            c = self.config
            self._configs[method] = [
                resolve_method({"name": method, **values}, f"{self.where}: methods.{method}")
                for values in configurations(self.spaces[method], c.search, c.samples, c.search_seed)
            ]
        return self._configs[method]

    def _tune_runs(self, method: str) -> list[PlannedRun]:
        if method not in self._tune:  # they do not depend on the records: built once
            self._tune[method] = [
                PlannedRun(case.spec(cfg, seed), self.study, "tune", case.label)
                for cfg in self.configurations(method)
                for case in self.cases["tune"]
                for seed in self.tune_seeds
            ]
        return self._tune[method]

    def plan(self, records: Mapping[str, dict]) -> list[PlannedRun]:
        """The runs that should exist given the finished records (`run_id -> record`)."""
        runs: list[PlannedRun] = []
        for method in self.spaces:
            tune = self._tune_runs(method)
            runs += tune
            chosen = choose(config_scores(tune, records, self.metric), self.higher_is_better)
            if chosen is not None:
                runs += [
                    PlannedRun(case.spec(chosen.method, seed), self.study, "eval", case.label)
                    for case in self.cases["eval"]
                    for seed in self.eval_seeds
                ]
        return runs


@dataclass(frozen=True)
class PlannedRun:
    """A run that a study needs, and why: the study, the phase ('tune' or 'eval'), the case."""

    spec: RunSpec
    study: str
    phase: str
    case: str

    @functools.cached_property
    def run_id(self) -> str:
        return self.spec.run_id

    @property
    def method(self) -> str:
        return self.spec.method["name"]

    @functools.cached_property
    def config_id(self) -> str:
        return config_id(self.spec.method)


def config_id(method: Mapping[str, Any]) -> str:
    """Content key of a method configuration (name and every hyperparameter)."""
    return content_key(dict(method), 12)
