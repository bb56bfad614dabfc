"""The public contract between scenarios, methods, protocols and the engine.

A Scenario builds a stream. A continual-learning stream is a list of `Task`s (labelled
training data of new classes or a new domain); the engine keeps each task's test data and
scores the method on everything seen so far after every task. A test-time stream is a
sequence of `TestBatch`es that carry inputs only: labels stay inside the engine, so no
method can read them. A Method declares its hyperparameters and search space as a
dataclass, gets a backbone and the stream's `StreamInfo` in `setup`, then `learn(task)`
and/or `predict(x)`.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from ._cache import content_key
from .config import as_dict, build_config, hp, search_space
from .errors import UserError
from .registry import METHODS

if TYPE_CHECKING:
    from .backbones import Backbone
    from .data import ImageData
    from .spec import Case, RunSpec

STREAM_KINDS = ("class_incremental", "domain_incremental", "test_time")


@dataclass(frozen=True)
class StreamInfo:
    """What a method may know about its stream before it starts."""

    kind: str  # one of STREAM_KINDS
    num_classes: int  # size of the label space over the whole stream
    class_names: tuple[str, ...]
    image_size: int
    seed: int
    device: torch.device
    num_tasks: int = 0  # continual learning: number of tasks
    source: ImageData | None = None  # test-time: the labelled data the source model was trained on
    extra: dict[str, Any] = field(default_factory=dict)  # scenario-specific facts (shots, ways, domains)


@dataclass(frozen=True)
class Task:
    """One continual-learning task: labelled training data of new classes (or a new domain)."""

    index: int
    train: ImageData
    classes: tuple[int, ...]  # classes introduced by this task (all classes, for domains)
    seen_classes: tuple[int, ...]  # every class seen up to and including this task
    domain: str | None = None


@dataclass(frozen=True)
class TestBatch:
    """A batch of a test-time stream: inputs only. `index` and `domain` are for reporting."""

    __test__ = False  # not a pytest test class

    x: torch.Tensor
    index: int
    domain: str


@dataclass
class ContinualStream:
    """A task stream; `tests[i]` is the test data of task i, held by the engine."""

    info: StreamInfo
    tasks: list[Task]
    tests: list[ImageData]

    def data(self) -> Iterator[tuple[str, ImageData]]:
        """Every dataset the stream uses, for disjointness checks."""
        for t in self.tasks:
            yield f"task{t.index}/train", t.train
        for i, d in enumerate(self.tests):
            yield f"task{i}/test", d


@dataclass
class TestStream:
    """A test-time stream. `batches()` yields (TestBatch, labels); only the engine calls it."""

    __test__ = False

    info: StreamInfo
    num_batches: int
    batches: Callable[[], Iterator[tuple[TestBatch, torch.Tensor]]]
    reset_on_domain_change: bool = False  # the "single" setting: the model is reset between shifts
    key: str = (
        ""  # content key of the stream (scenario config, seed, image size): names cached batch features
    )
    test: ImageData | None = None  # the clean test samples the stream is made of

    def data(self) -> Iterator[tuple[str, ImageData]]:
        if self.info.source is not None:
            yield "source", self.info.source
        if self.test is not None:
            yield "test", self.test


class Method(nn.Module):
    """Base class of every method. Subclasses declare `HParams` (a dataclass whose fields use
    `ctta.hp(default, space=...)`) and implement `setup`, `predict` and, for continual
    learning, `learn`. A method never sees test labels, the results store, or the protocol
    phase it runs in.

    Keep modules the method trains or uses as attributes (it is an `nn.Module`), freeze what
    it does not train, and store an optimiser at `self.optimizer`: then `reset()` restores
    the state right after `setup`, and checkpoints capture everything.
    """

    name: ClassVar[str] = "?"
    stream_kinds: ClassVar[frozenset[str]] = frozenset(STREAM_KINDS)
    requires: ClassVar[frozenset[str]] = frozenset()  # backbone capabilities, see Backbone.capabilities
    # True for methods that keep the backbone frozen: the engine then calls
    # predict_features(penultimate features) instead of predict(x), and caches the features
    # across the runs of a sweep.
    features_only: ClassVar[bool] = False
    # True for test-time methods that train their own source model from info.source (ITTA):
    # the engine then skips its standard (cached, cross-entropy) source training.
    trains_source: ClassVar[bool] = False
    # True when the method is reset at every domain boundary of the stream, as the "single"
    # setting does for every method (ITTA's reset=per_domain sets it per instance).
    reset_on_domain_change: bool = False

    @dataclass
    class HParams:
        pass

    def __init__(self, **hparams: Any):
        super().__init__()
        self.hparams = build_config(self.HParams, hparams, f"method {self.name!r}")
        self.info: StreamInfo | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._initial: dict | None = None

    @classmethod
    def search_space(cls) -> dict[str, tuple]:
        return search_space(cls.HParams)

    @classmethod
    def check_compatible(cls, backbone: Backbone, info: StreamInfo) -> None:
        """Raise a UserError saying precisely why this method cannot run here."""
        if info.kind not in cls.stream_kinds:
            raise UserError(
                f"method {cls.name!r} does not run on {info.kind} streams "
                f"(it supports: {', '.join(sorted(cls.stream_kinds))})"
            )
        missing = sorted(cls.requires - backbone.capabilities())
        if missing:
            from .backbones import CAPABILITIES

            meaning = "; ".join(f"{c} = {CAPABILITIES.get(c, '?')}" for c in missing)
            raise UserError(
                f"method {cls.name!r} needs a backbone with {', '.join(missing)}; "
                f"backbone {backbone.name!r} has {', '.join(sorted(backbone.capabilities())) or 'none'} "
                f"({meaning})"
            )

    # -- the contract ------------------------------------------------------------------
    def setup(self, backbone: Backbone, info: StreamInfo) -> None:
        """Take the backbone (already on `info.device`) and the stream's facts."""
        raise NotImplementedError

    def learn(self, task: Task) -> dict[str, float]:
        """Train on one continual-learning task; return floats to log (losses, steps)."""
        return {}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes] for inputs in [0, 1]. A test-time method may adapt on x first."""
        raise NotImplementedError

    def predict_features(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the backbone's penultimate features (methods with `features_only`)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Back to the state right after setup (test-time methods: the source model)."""
        if self._initial is None:
            raise RuntimeError("reset() before save_initial_state()")
        self.load_state_dict(self._initial["model"])
        if self.optimizer is not None and self._initial["optim"] is not None:
            self.optimizer.load_state_dict(copy.deepcopy(self._initial["optim"]))

    def save_initial_state(self) -> None:
        """Remember the current state as what `reset()` returns to (the engine calls it after setup)."""
        optim = self.optimizer.state_dict() if self.optimizer is not None else None
        self._initial = {"model": copy.deepcopy(self.state_dict()), "optim": copy.deepcopy(optim)}

    # -- helpers -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.info.device if self.info is not None else torch.device("cpu")

    def trainable_parameters(self) -> int:
        """Number of parameters this method updates (those with requires_grad)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class Scenario:
    """Base class of scenarios: declared options in `Config`, and `build` making a stream.

    `build` is deterministic given `seed`; the same seed gives every method the same stream.
    """

    name: ClassVar[str] = "?"
    kind: ClassVar[str] = "class_incremental"
    # A tiny instance (options) and the tiny backbones it runs with: every registered method
    # is tested on every compatible debug scenario (see ctta.testing).
    debug: ClassVar[dict[str, Any] | None] = None
    debug_backbones: ClassVar[tuple[str, ...]] = ("debug_vit",)

    @dataclass
    class Config:
        pass

    def __init__(self, **config: Any):
        self.config = build_config(self.Config, config, f"scenario {self.name!r}")

    def build(self, *, seed: int, image_size: int, device: torch.device) -> ContinualStream | TestStream:
        raise NotImplementedError

    def stream_key(self, seed: int, image_size: int) -> str:
        """Content key of the stream this scenario builds for (seed, image size)."""
        return content_key(
            {"scenario": self.name, "config": as_dict(self.config), "seed": seed, "size": image_size}
        )


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
        tune_seeds: tuple[int, ...] = hp((0,), doc="seeds of the tune phase")
        eval_seeds: tuple[int, ...] = hp((1, 2, 3), doc="seeds of the evaluation phase")
        metric: str = hp("auto", doc="what selects and scores; auto: last_acc (CL), online_acc (TTA)")
        search: Literal["grid", "random"] = hp("grid", doc="the whole grid, or random draws from it")
        samples: int = hp(0, doc="random search: configurations per method (0 = the whole grid)")
        search_seed: int = hp(0, doc="random search: seed of the draw")

    def __init__(self, study: str = "", where: str = "", **config: Any):
        from .protocol_results import metric_direction
        from .search import method_spaces
        from .spec import resolve_backbone

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
        from .spec import resolve_cases

        return resolve_cases(getattr(self.config, option), self.config.backbone, f"{self.where}: {option}")

    def configurations(self, method: str) -> list[dict[str, Any]]:
        """The resolved hyperparameters (method spec) of every configuration searched."""
        from .search import configurations
        from .spec import resolve_method

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
        from .protocol_results import choose, config_scores

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
