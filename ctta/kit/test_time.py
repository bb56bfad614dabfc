"""What test-time methods share: resets (episodic, periodic), the entropy objective, and the
Tent family's base (test-batch normalisation, only chosen parameters train, one loss per
batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..api import Method
from ..core.config import hp
from .params import norm_affine_parameters, train_only, use_batch_statistics
from .training import make_optimizer


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of softmax(logits) per row, in nats."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def norm_adaptation_optimizer(
    model: nn.Module, optimizer: str, lr: float, params: list[nn.Parameter] | None = None
) -> torch.optim.Optimizer:
    """Configure `model` as Tent does and return the optimiser that adapts it: BatchNorm
    layers normalise with the test batch's statistics, everything is frozen except `params`
    (default: the affine parameters of every normalisation layer)."""
    use_batch_statistics(model)
    params = train_only(norm_affine_parameters(model) if params is None else params, model)
    return make_optimizer(params, optimizer, lr)


class TestTimeMethod(Method):
    """Base of test-time methods that change the model as the stream goes.

    Subclasses implement `adapt(x)`: adapt on the batch and return its logits (the online
    prediction). Every such method can be reset to the source model before every batch
    (`episodic`) or every `reset_every` batches; the scenario may also reset it at domain
    boundaries (the "single" setting).
    """

    __test__ = False  # not a pytest test class
    stream_kinds = frozenset({"test_time"})

    @dataclass
    class HParams:
        episodic: bool = hp(False, doc="reset to the source model before every batch")
        reset_every: int = hp(0, doc="reset to the source model every N batches (0 = never)", ge=0)

    def adapt(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.hparams.episodic:
            self.reset()
        logits = self.adapt(x)
        self._batches_seen = getattr(self, "_batches_seen", 0) + 1
        if self.hparams.reset_every and self._batches_seen % self.hparams.reset_every == 0:
            self.reset()
        return logits


class NormAdaptationMethod(TestTimeMethod):
    """Base of the methods that adapt as Tent does (Tent, pseudo-labelling, SHOT-IM, EATA, SAR).

    `setup` makes BatchNorm layers normalise with the test batch's statistics and trains only
    `adapted_parameters` (default: the affine parameters of every normalisation layer) with
    `optimizer` at `lr`. A subclass says which samples it learns from and how: `loss(logits)`
    returns the batch's loss, or None when no sample qualifies (then nothing changes). `adapt`
    takes `steps` gradient steps (one where a method declares no `steps`, as EATA and SAR) and
    returns the prediction made before the batch's (last) update, as Tent's reference code.
    """

    @dataclass
    class HParams(TestTimeMethod.HParams):
        lr: float = hp(1e-3, space=(1e-4, 1e-3, 1e-2), doc="step size on the adapted parameters", gt=0)
        optimizer: Literal["adam", "sgd"] = hp(
            "adam", doc="adam (CIFAR setting) or sgd (ImageNet setting, momentum 0.9)"
        )

    def adapted_parameters(self, backbone) -> list[nn.Parameter] | None:
        """What trains (None: the affine parameters of every normalisation layer)."""
        return None

    def setup(self, backbone, info):
        self.model = backbone
        self.optimizer = norm_adaptation_optimizer(
            backbone, self.hparams.optimizer, self.hparams.lr, self.adapted_parameters(backbone)
        )

    def loss(self, logits: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError

    def adapt(self, x):
        for _ in range(getattr(self.hparams, "steps", 1)):
            logits = self.model(x)
            loss = self.loss(logits)
            if loss is not None:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        return logits.detach()
