"""The contract between scenarios, methods and the engine: streams, tasks, test batches, the
`Method` and `Scenario` base classes, and the capabilities a method may require of a backbone.

A Scenario builds a stream. A continual-learning stream is a list of `Task`s (labelled
training data of new classes or a new domain); the engine keeps each task's test data and
scores the method on everything seen so far after every task (domain-incremental streams:
on every domain, seen or not, before the first task too). A test-time stream is a
sequence of `TestBatch`es that carry inputs only: labels stay inside the engine, so no
method can read them. A Method declares its hyperparameters and search space as a
dataclass, gets a backbone and the stream's `StreamInfo` in `setup`, then `learn(task)`
and/or `predict(x)`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .core.config import as_dict, build_config, search_space
from .core.errors import UserError
from .core.files import content_key

if TYPE_CHECKING:
    from .data.images import ImageData
    from .models.backbone import Backbone

STREAM_KINDS = ("class_incremental", "domain_incremental", "test_time")

# What methods may declare in `requires`, and what each means (used in error messages);
# `Backbone.capabilities()` says which of these a backbone has.
CAPABILITIES = {
    "features": "penultimate features",
    "head": "a replaceable linear head",
    "batchnorm": "BatchNorm layers with running statistics (track_running_stats=True)",
    "norm": "normalisation layers (BatchNorm, LayerNorm, GroupNorm) with an affine scale and shift",
    "vit": "a timm VisionTransformer (patch_embed, blocks)",
    "clip": "a CLIP model: text encoder, tokenizer and logit scale (open_clip)",
}


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
    # Test-time: why no source model may be trained on `source` ('' = one may): the stream is a
    # released test set whose clean images are the stream's own, or it has no source data.
    source_training_refused: str = ""
    # The classes as ImageNet-1k class indices, when they are ImageNet wnids (ImageNet-R's 200):
    # the engine restricts a trained 1000-way head to them.
    imagenet_classes: tuple[int, ...] | None = None


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
    it does not train, keep tensors it updates as buffers, and store an optimiser at
    `self.optimizer`: then `reset()` restores the state right after `setup`, and a
    continual-learning run resumes from its checkpoint (`setup` again, then
    `load_state_dict`; other state goes into `get_extra_state` as tensors and plain values, or
    is rebuilt in `resume`).
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
    # False for methods whose state the state dict cannot hold (Avalanche strategies): their
    # continual-learning runs are not checkpointed and restart from the first task.
    resumable: ClassVar[bool] = True

    @dataclass
    class HParams:
        pass

    def __init__(self, **hparams: Any):
        super().__init__()
        self.hparams = build_config(self.HParams, hparams, f"method {self.name!r}")
        self.info: StreamInfo | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._initial: dict | None = None
        # Facts of this run the engine adds to its record (JSON values, e.g. the backbone
        # stages a method chose); the engine's own keys win a clash.
        self.record_fields: dict[str, Any] = {}

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
            meaning = "; ".join(f"{c} = {CAPABILITIES.get(c, '?')}" for c in missing)
            raise UserError(
                f"method {cls.name!r} needs a backbone with {', '.join(missing)}; "
                f"backbone {backbone.name!r} has {', '.join(sorted(backbone.capabilities())) or 'none'} "
                f"({meaning})"
            )

    # -- the contract ------------------------------------------------------------------
    def setup(self, backbone: Backbone, info: StreamInfo) -> None:
        """Take the backbone (already on `info.device`); `self.info` holds the stream's facts."""
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

    def resume(self, done: list[Task]) -> None:
        """Called when a run resumes from a checkpoint, after `setup` and `load_state_dict`, with
        the tasks learnt before the interruption (they are not learnt again): rebuild what the
        state dict cannot hold from them (e.g. `joint`'s training data so far)."""

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
    def attach(self, backbone: Backbone, info: StreamInfo) -> None:
        """What the engine does before the first task or batch: set `self.info`, call `setup`,
        and move the method to `info.device`."""
        self.info = info
        self.setup(backbone, info)
        self.to(info.device)

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
    # Raised when the same options start to give other images (a corruption's recipe changed):
    # caches keyed by the stream then miss the old ones, and records say which data they scored
    # (versions.scenario_data). Run ids do not change: old records count until
    # `ctta sweep launch --redo-outdated` sets them aside and does their runs again.
    data_version: ClassVar[int] = 0

    @dataclass
    class Config:
        pass

    def __init__(self, **config: Any):
        self.config = build_config(self.Config, config, f"scenario {self.name!r}")

    def build(self, *, seed: int, image_size: int, device: torch.device) -> ContinualStream | TestStream:
        raise NotImplementedError

    def stream_key(self, seed: int, image_size: int) -> str:
        """Content key of the stream this scenario builds for (seed, image size)."""
        key = {"scenario": self.name, "config": as_dict(self.config), "seed": seed, "size": image_size}
        if self.data_version:  # absent at 0, so the keys of unversioned scenarios stay as they were
            key["data_version"] = self.data_version
        return content_key(key)
