"""The one supervised training loop.

Methods that fine-tune (finetune, joint, regularisers, adapters), the source models of
test-time streams and the commands that pretrain backbones all go through `fit`, so
optimisers, schedules and NaN checks behave the same everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from ..core.config import hp
from ..core.progress import bar as progress_bar
from ..data.images import ImageData, iterate

if TYPE_CHECKING:
    from ..api import Method, Task

log = logging.getLogger(__name__)

Optimizer = Literal["sgd", "adam", "adamw"]  # what `make_optimizer` builds; hyperparameters use this type


class NonFiniteLoss(FloatingPointError):
    """Training diverged; the engine records the run as failed with this reason."""


def trainable_groups(params: Iterable[nn.Parameter | dict]) -> list[dict]:
    """Parameters (or optimiser parameter groups `{"params": [...], "lr": ...}`) as parameter
    groups holding only parameters with requires_grad; empty groups are dropped."""
    params = list(params)
    groups = [g for g in params if isinstance(g, dict)]
    loose = [p for p in params if not isinstance(p, dict)]
    if loose:
        groups.insert(0, {"params": loose})
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    return [g for g in groups if g["params"]]


def make_optimizer(
    params: Iterable[nn.Parameter | dict],
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> torch.optim.Optimizer:
    """An optimiser over the trainable parameters (or parameter groups, which may set their own lr)."""
    params = trainable_groups(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid choices: {', '.join(get_args(Optimizer))}")


def fit(
    params: Iterable[nn.Parameter | dict],
    data: ImageData,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    optimizer: str = "sgd",
    weight_decay: float = 0.0,
    seed: int = 0,
    device: torch.device | str = "cpu",
    schedule: str = "cosine",
    warmup: float = 0.0,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
    desc: str | None = None,
) -> dict[str, float]:
    """Minimise `loss_fn(x, y)` over `epochs` passes of `data`; returns {'loss': last-epoch mean, 'steps': n}.

    `params` may be optimiser parameter groups (e.g. a head at a tenth of the step size).
    `before_step` runs between the backward pass and the optimiser step (gradients in
    `.grad`, e.g. to accumulate a Fisher estimate); `after_step` after each optimiser step
    (e.g. to merge adapters). `desc` names a progress bar over the steps (shown where the
    command line shows bars). Raises NonFiniteLoss when the loss becomes NaN or infinite.
    """
    params = trainable_groups(params)
    if not params:
        return {"loss": float("nan"), "steps": 0}
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    steps_per_epoch = max(1, math.ceil(len(data) / batch_size))
    total = epochs * steps_per_epoch
    sched = None
    if schedule == "cosine":
        # Linear warmup over the first `warmup` fraction of steps, then cosine decay to zero.
        ramp = int(warmup * total)

        def factor(step: int) -> float:
            if step < ramp:
                return (step + 1) / ramp
            return 0.5 * (1 + math.cos(math.pi * (step - ramp) / max(1, total - ramp)))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    step, last = 0, float("nan")
    bar = progress_bar(total, desc or "", unit="step", enabled=desc is not None)
    for epoch in range(epochs):
        running, count = 0.0, 0
        for x, y in iterate(data, batch_size, shuffle=True, seed=seed * 1000 + epoch, device=device):
            loss = loss_fn(x, y)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss became {loss.item()} at step {step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if before_step is not None:
                before_step()
            opt.step()
            if sched is not None:
                sched.step()
            if after_step is not None:
                after_step()
            running += loss.item() * len(y)
            count += len(y)
            step += 1
            bar.update(1)
        last = running / max(count, 1)
    bar.close()
    return {"loss": last, "steps": step}


@dataclass
class Recipe:
    """The supervised recipe that training methods share: derive a method's HParams from it
    (`class HParams(Recipe)`, redeclaring a field to change its default) and train with
    `fit_task`."""

    lr: float = hp(0.01, space=(0.003, 0.01, 0.03), doc="step size", gt=0)
    epochs: int = hp(3, doc="passes over each task's data", ge=1)
    batch_size: int = hp(64, doc="mini-batch size", ge=1)
    optimizer: Optimizer = hp("sgd", doc="sgd (momentum 0.9), adam or adamw")
    weight_decay: float = hp(0.0, doc="weight decay", ge=0)


def fit_task(
    method: Method,
    params: Iterable[nn.Parameter | dict],
    task: Task,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    data: ImageData | None = None,
    **options,
) -> dict[str, float]:
    """`fit` on a task's training data (or `data`) with the method's `Recipe` hyperparameters,
    seeded by the run seed and the task index."""
    h = method.hparams
    return fit(
        params,
        task.train if data is None else data,
        loss_fn,
        epochs=h.epochs,
        batch_size=h.batch_size,
        lr=h.lr,
        optimizer=h.optimizer,
        weight_decay=h.weight_decay,
        seed=method.info.seed + task.index,
        device=method.device,
        **options,
    )


def cross_entropy_on(
    model: Callable[[torch.Tensor], torch.Tensor],
    classes: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
):
    """Loss closure: cross-entropy of `model(x)`, restricted to `classes` when given (the
    standard "mask the logits of classes absent from the task" of class-incremental training)."""

    def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(x)
        if classes is not None:
            mask = torch.full((logits.shape[1],), float("-inf"), device=logits.device)
            mask[classes] = 0.0
            logits = logits + mask
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing)

    return loss
