"""What test-time methods share: resets (episodic, periodic), the entropy objective, and
Tent's model configuration (test-batch normalisation, only norm affine parameters train)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .api import Method
from .config import hp
from .params import norm_affine_parameters, train_only, use_batch_statistics
from .training import make_optimizer


def softmax_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of softmax(logits) per row, in nats."""
    return -(logits.softmax(1) * logits.log_softmax(1)).sum(1)


def adapt_norm_layers(
    model: nn.Module, optimizer: str, lr: float, params: list[nn.Parameter] | None = None
) -> torch.optim.Optimizer:
    """Tent's configuration of `model`: BatchNorm layers normalise with the test batch's
    statistics, everything is frozen except `params` (default: the affine parameters of every
    normalisation layer), and an optimiser over them is returned."""
    use_batch_statistics(model)
    params = train_only(norm_affine_parameters(model) if params is None else params, model)
    return make_optimizer(params, optimizer, lr)


class AdaptiveMethod(Method):
    """Base of test-time methods that change the model as the stream goes.

    Subclasses implement `adapt(x)`: adapt on the batch and return its logits (the online
    prediction). Every such method can be reset to the source model before every batch
    (`episodic`) or every `reset_every` batches; the scenario may also reset it at domain
    boundaries (the "single" setting).
    """

    stream_kinds = frozenset({"test_time"})

    @dataclass
    class HParams:
        episodic: bool = hp(False, doc="reset to the source model before every batch")
        reset_every: int = hp(0, doc="reset to the source model every N batches (0 = never)")

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
