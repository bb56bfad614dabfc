"""Any Avalanche supervised strategy as a ctta method: `avalanche:<Strategy>`.

Lomonaco et al., "Avalanche: an End-to-End Library for Continual Learning" (CVPR-W 2021).
`avalanche:EWC`, `avalanche:LwF`, `avalanche:Replay`, `avalanche:GEM`, ... run the strategy
class of that name from `avalanche.training` on ctta's scenarios, scored by ctta's engine
like every other method. The strategy's own keyword arguments (ewc_lambda, mode, mem_size,
alpha, ...) are the method's hyperparameters, next to the shared training recipe: the
backbone with a linear head over all classes, ctta's optimiser (SGD with momentum 0.9 by
default) and cosine step-size schedule per task, and Avalanche's `MaskedCrossEntropy` over
the classes seen so far (`criterion: seen`, the same masking as ctta's methods; `all` is
Avalanche's plain cross-entropy over every output). Each ctta task becomes one Avalanche
experience with its index and class timeline; no evaluation or logging runs inside
Avalanche. Avalanche is imported only when such a method is created.

`ctta show method avalanche:EWC` lists a strategy's hyperparameters. Required arguments
without a default here must be given (`-H name=value`); the error says which. A strategy keeps
its state in plain Python objects (EWC's importances, LwF's previous model, replay buffers),
which a checkpoint of tensors cannot hold: an interrupted `avalanche:*` run restarts from its
first task.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from typing import Any, ClassVar, Literal

from torch import nn

from ctta import Method, Task, hp, register_method
from ctta.kit import UserError, choices_error, make_optimizer

# Strategy arguments that ctta sets itself.
MANAGED = {
    "self", "model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size",
    "device", "plugins", "evaluator", "eval_every", "base_kwargs", "kwargs", "input_size",
}  # fmt: skip
# Defaults (and search spaces) where Avalanche has none or one that does not fit a ctta
# backbone. EWC's lambda multiplies sum F (theta - theta*)^2 without the 1/2 of ctta's `ewc`
# (ctta lam = 2 ewc_lambda).
DEFAULTS: dict[tuple[str, str], tuple[Any, tuple]] = {
    ("EWC", "ewc_lambda"): (500.0, (50.0, 150.0, 500.0, 1500.0)),
    ("SynapticIntelligence", "si_lambda"): (1.0, (0.1, 1.0, 10.0)),
    ("LwF", "alpha"): (1.0, (0.5, 1.0, 2.0)),
    ("LwF", "temperature"): (2.0, (1.0, 2.0)),
    ("GEM", "patterns_per_exp"): (20, (20,)),
    ("AGEM", "patterns_per_exp"): (20, (20,)),
    ("AGEM", "sample_size"): (64, (64,)),
    ("CWRStar", "cwr_layer_name"): ("head", ("head",)),
}
SIMPLE_TYPES = (bool, int, float, str)
# Strategies that cannot run as a ctta method, and why.
UNSUPPORTED = {
    **dict.fromkeys(
        ("AETraining", "AR1", "CoPE", "ER_AML", "ExpertGateStrategy", "GenerativeReplay", "ICaRL",
         "LearningToPrompt", "LFL", "PackNet", "PNNStrategy", "SCR", "StreamingLDA", "VAETraining"),
        "it builds or needs a network of its own, not a backbone with a linear head",
    ),
    "JointTraining": "it trains once on the whole stream; ctta's `joint` is the upper bound",
    "BiC": "Avalanche 0.6 passes verbose= to torch's MultiStepLR, which torch 2.x no longer accepts",
    "FeatureReplay": "it expects the model as a sequence of layers ending in the classifier",
}  # fmt: skip


class CosinePerTask:
    """Avalanche plugin: within every experience, the step size follows ctta's cosine schedule
    (per iteration, from the base lr down to 0). Duck-typed, so this module imports no Avalanche."""

    def __init__(self, lr: float, epochs: int):
        self.lr, self.epochs = lr, epochs
        self.total, self.step = 1, 0

    def _set(self, strategy, lr: float) -> None:
        for group in strategy.optimizer.param_groups:
            group["lr"] = lr

    def before_training_exp(self, strategy, **kwargs):
        batches = math.ceil(len(strategy.experience.dataset) / strategy.train_mb_size)
        self.total, self.step = max(1, self.epochs * batches), 0
        self._set(strategy, self.lr)

    def after_training_iteration(self, strategy, **kwargs):
        self.step += 1
        self._set(strategy, self.lr * (1 + math.cos(math.pi * min(self.step, self.total) / self.total)) / 2)


class AvalancheMethod(Method):
    """Base of the generated `avalanche:<Strategy>` methods."""

    strategy_name: ClassVar[str] = "?"
    strategy_kwargs: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()
    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    resumable = False

    def setup(self, backbone, info):
        import avalanche.training
        from avalanche.training.plugins import EvaluationPlugin

        h = self.hparams
        missing = [k for k in self.required if getattr(h, k) is None]
        if missing:
            raise UserError(
                f"method {self.name!r} needs hyperparameter {missing[0]!r} (set it with -H {missing[0]}=...)"
            )
        self.model = backbone
        backbone.reset_head(info.num_classes)
        strategy_cls = getattr(avalanche.training, self.strategy_name)
        kwargs = {k: getattr(h, k) for k in self.strategy_kwargs}
        accepted = inspect.signature(strategy_cls.__init__).parameters
        if "input_size" in accepted:  # GSS
            kwargs["input_size"] = [3, info.image_size, info.image_size]
        if "criterion" in accepted:
            kwargs["criterion"] = (
                nn.CrossEntropyLoss()
                if h.criterion == "all"
                else avalanche.training.MaskedCrossEntropy(mask=h.criterion)
            )
        with warnings.catch_warnings():  # ctta keeps the scores; Avalanche's loggers stay off on purpose
            warnings.filterwarnings("ignore", message="No loggers specified")
            evaluator = EvaluationPlugin(loggers=[])
        self.strategy = strategy_cls(
            model=backbone,
            optimizer=make_optimizer(backbone.parameters(), h.optimizer, h.lr, h.weight_decay),
            train_mb_size=h.batch_size,
            train_epochs=h.epochs,
            eval_mb_size=256,
            device=info.device,
            plugins=[CosinePerTask(h.lr, h.epochs)] if h.schedule == "cosine" else [],
            evaluator=evaluator,
            **kwargs,
        )
        self._seen: list[int] = []

    def learn(self, task: Task) -> dict[str, float]:
        # Avalanche 0.6 warns about its own plugin API on every task, and its deprecation
        # decorator resets the filters first (simplefilter "once"), so an ignore filter is not
        # enough: catch everything, drop its own deprecations, pass the rest on.
        with warnings.catch_warnings(record=True) as caught:
            self.strategy.train(self._experience(task), eval_streams=[])
        for w in caught:
            if not (issubclass(w.category, DeprecationWarning) and "avalanche" in w.filename):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return {"steps": float(self.strategy.clock.train_exp_iterations)}

    def _experience(self, task: Task):
        from avalanche.benchmarks.scenarios.generic_scenario import CLExperience
        from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_classification_dataset

        exp = CLExperience(current_experience=task.index, origin_stream=None)
        # a plain attribute, not DatasetExperience's read-only property: BiC replaces it
        exp.dataset = _make_taskaware_classification_dataset(
            task.train, task_labels=0, targets=task.train.targets
        )
        exp.classes_in_this_experience = list(task.classes)
        exp.previous_classes = list(self._seen)
        self._seen = sorted(set(self._seen) | set(task.seen_classes))
        exp.classes_seen_so_far = list(self._seen)
        exp.future_classes = sorted(set(range(self.info.num_classes)) - set(self._seen))
        return exp

    def predict(self, x):
        self.model.eval()
        return self.model(x)


_GENERATED: dict[str, type[AvalancheMethod]] = {}


@register_method("avalanche", family=True)
def avalanche_method(strategy: str) -> type[AvalancheMethod]:
    """The ctta method class running Avalanche strategy `strategy` (e.g. EWC, LwF, Replay)."""
    if strategy not in _GENERATED:
        _GENERATED[strategy] = _generate(strategy)
    return _GENERATED[strategy]


def strategy_names() -> list[str]:
    import avalanche.training
    from avalanche.training.templates import SupervisedTemplate

    return sorted(
        n
        for n, obj in vars(avalanche.training).items()
        if inspect.isclass(obj) and issubclass(obj, SupervisedTemplate) and n not in UNSUPPORTED
    )


def _generate(strategy: str) -> type[AvalancheMethod]:
    import avalanche.training

    if strategy in UNSUPPORTED:
        raise UserError(
            f"Avalanche strategy {strategy!r} does not run as a ctta method: {UNSUPPORTED[strategy]}"
        )
    names = strategy_names()
    if strategy not in names:
        raise choices_error("Avalanche strategy", strategy, names)
    cls = getattr(avalanche.training, strategy)
    fields, kwargs, required = [], [], []
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in MANAGED or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        if (strategy, name) in DEFAULTS:
            default, space = DEFAULTS[(strategy, name)]
        elif param.default is param.empty:
            default, space = None, (None,)
            required.append(name)
        elif param.default is None or type(param.default) in SIMPLE_TYPES:
            default, space = param.default, (param.default,)
        else:
            continue  # an object default (a buffer policy, a model): not a hyperparameter
        ann = param.annotation
        ann = {t.__name__: t for t in SIMPLE_TYPES}.get(ann, ann) if isinstance(ann, str) else ann
        kinds = {t for t in (ann, type(default)) if t in SIMPLE_TYPES}
        kind = float if float in kinds else kinds.pop() if kinds else Any
        kind = kind | None if default is None and kind is not Any else kind
        fields.append((name, kind, hp(default, space=space, doc=f"Avalanche {strategy}({name}=...)")))
        kwargs.append(name)
    common = [
        ("lr", float, hp(0.01, space=(0.003, 0.01, 0.03), doc="step size", gt=0)),
        ("epochs", int, hp(3, doc="passes over each task's data (train_epochs)", ge=1)),
        ("batch_size", int, hp(64, doc="mini-batch size (train_mb_size)", ge=1)),
        ("optimizer", str, hp("sgd", doc="sgd (momentum 0.9), adam or adamw")),
        ("weight_decay", float, hp(0.0, doc="weight decay", ge=0)),
        (
            "schedule",
            Literal["cosine", "constant"],
            hp("cosine", doc="step size per task: cosine to 0, or constant"),
        ),
        (
            "criterion",
            Literal["seen", "new", "all"],
            hp("seen", doc="cross-entropy over seen, new or all classes"),
        ),
    ]
    taken = {f[0] for f in fields}
    qualname = f"Avalanche_{strategy}"
    hparams = dataclasses.make_dataclass(
        "HParams", [f for f in common if f[0] not in taken] + fields, namespace={"__module__": __name__}
    )
    hparams.__qualname__ = f"{qualname}.HParams"
    method = type(
        qualname,
        (AvalancheMethod,),
        {
            "__module__": __name__,
            "__qualname__": qualname,
            "__doc__": f"Avalanche's {strategy} strategy ({cls.__module__}).",
            "HParams": hparams,
            "strategy_name": strategy,
            "strategy_kwargs": tuple(kwargs),
            "required": tuple(required),
        },
    )
    method.name = f"avalanche:{strategy}"
    return method


def __getattr__(attr: str):
    # Generated classes are found by name when one is unpickled (pickled by reference).
    if attr.startswith("Avalanche_"):
        return avalanche_method(attr[len("Avalanche_") :])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
