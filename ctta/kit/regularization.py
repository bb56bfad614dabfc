"""Quadratic parameter regularisation for continual learning: L2 and EWC.

One penalty, `lam/2 * sum_i w_i (theta_i - anchor_i)^2`, over the parameters a glob filter
selects (`blocks.*.attn.*` by default, or `visual.transformer.resblocks.*.attn.*` in an open_clip
image tower: the self-attention weights of a ViT's blocks, where
Smith et al. found it works best on pretrained ViTs). The weights w are 1 for L2 and the
diagonal Fisher information for EWC (Kirkpatrick et al., PNAS 2017), accumulated over tasks
with an optional decay (online EWC, Schwarz et al. 2018). The anchor is the weights after
the previous task, or the pretrained weights. Only the filtered parameters are copied, so the
memory is proportional to them, not to the model.

`RegularizedFinetuning` is the method body that `methods/l2.py` and `methods/ewc.py` share.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ..api import Method, Task
from ..core.config import hp
from ..core.errors import UserError
from ..data.images import ImageData, iterate
from .params import named_matching, timm_named_parameters, train_only
from .training import Recipe, cross_entropy_on, fit_task

log = logging.getLogger(__name__)

FISHER_ESTIMATORS = ("batch", "sample")  # by a pass over the data; TrainingFisher is the third


class ParameterRegularizer(nn.Module):
    """`lam/2 * sum_i w_i (theta_i - anchor_i)^2` over named parameters.

    `fisher=False` is L2 (w = 1, active from the first task); `fisher=True` is EWC (w = the
    accumulated diagonal Fisher, active once a task's Fisher has been added). Anchors and
    importances are buffers and the active flag extra state, so they are in the method's
    state dict (and its checkpoints); the regularised parameters are referenced, not
    registered again.
    """

    def __init__(
        self,
        named: list[tuple[str, nn.Parameter]],
        *,
        lam: float,
        anchor: Literal["previous", "pretrained"],
        fisher: bool,
        decay: float = 1.0,
    ):
        super().__init__()
        self.names = [n for n, _ in named]
        self.params = [p for _, p in named]  # a plain list: nn.Module does not register it
        self.lam, self.anchor, self.decay = lam, anchor, decay
        # the weights at setup: the "pretrained" anchor, and the "previous" one before task 0
        for i, p in enumerate(self.params):
            self.register_buffer(f"anchor_{i}", p.detach().clone())
            if fisher:
                self.register_buffer(f"importance_{i}", torch.zeros_like(p))
        self.fisher = fisher
        self.active = not fisher

    @property
    def anchors(self) -> list[torch.Tensor]:
        return [getattr(self, f"anchor_{i}") for i in range(len(self.params))]

    @property
    def importance(self) -> list[torch.Tensor] | None:
        return [getattr(self, f"importance_{i}") for i in range(len(self.params))] if self.fisher else None

    def get_extra_state(self) -> dict:
        return {"active": self.active}

    def set_extra_state(self, state: dict) -> None:
        self.active = bool(state["active"])

    def stored_numel(self) -> int:
        """Numbers this regulariser keeps (anchors and importances)."""
        n = sum(a.numel() for a in self.anchors)
        return n * 2 if self.importance is not None else n

    def start_task(self) -> None:
        """With the `previous` anchor, anchor at the weights the new task starts from."""
        if self.anchor == "previous":
            with torch.no_grad():
                torch._foreach_copy_(self.anchors, [p.detach() for p in self.params])

    def penalty(self) -> torch.Tensor:
        if not self.active or self.lam == 0:
            return torch.zeros((), device=self.anchors[0].device)
        diffs = [p - a for p, a in zip(self.params, self.anchors)]
        if self.importance is None:
            total = sum((d * d).sum() for d in diffs)
        else:
            total = sum((w * d * d).sum() for w, d in zip(self.importance, diffs))
        return 0.5 * self.lam * total

    @torch.no_grad()
    def add_penalty_gradient(self) -> None:
        """.grad += d penalty / d theta = lam * w * (theta - anchor): the penalty's gradient added
        in place, without building an autograd graph for it (fit's before_step hook)."""
        if not self.active or self.lam == 0:
            return
        diffs = torch._foreach_sub([p.detach() for p in self.params], self.anchors)
        if self.importance is not None:
            torch._foreach_mul_(diffs, self.importance)
        for p, d in zip(self.params, diffs):
            if p.grad is None:
                p.grad = d.mul_(self.lam)
            else:
                p.grad.add_(d, alpha=self.lam)

    @torch.no_grad()
    def add_importance(self, fisher: list[torch.Tensor]) -> None:
        """importance <- decay * importance + fisher (EWC after each task)."""
        torch._foreach_mul_(self.importance, self.decay)
        torch._foreach_add_(self.importance, fisher)
        self.active = True


def fisher_diagonal(
    model: nn.Module,
    params: list[nn.Parameter],
    data: ImageData,
    *,
    classes: list[int],
    estimator: str,
    batch_size: int,
    device: torch.device,
) -> list[torch.Tensor]:
    """Diagonal empirical Fisher of the cross-entropy (over `classes`) w.r.t. the given parameters.

    - `batch`: mean over mini-batches of the squared gradient of the mini-batch mean loss
      (Smith et al.'s and Avalanche's estimator; cheap, but it under-estimates the Fisher by
      about the batch size because per-sample gradients partly cancel in the mean);
    - `sample`: mean over samples of the squared per-sample gradient (the textbook empirical
      Fisher), computed in batches with torch.func.vmap.
    The model is in eval mode (no dropout) while the Fisher is computed.
    """
    if estimator not in FISHER_ESTIMATORS:
        raise UserError(
            f"unknown Fisher estimator {estimator!r}; valid choices: {', '.join(FISHER_ESTIMATORS)}"
        )
    fisher = [torch.zeros_like(p) for p in params]
    was_training = model.training
    model.eval()
    count = 0
    if estimator == "batch":
        loss_fn = cross_entropy_on(model, classes)
        for x, y in iterate(data, batch_size, device=device):
            grads = torch.autograd.grad(loss_fn(x, y), params)
            torch._foreach_add_(fisher, [g * g for g in grads])
            count += 1
    else:
        from torch.func import functional_call, grad, vmap

        module_names = {id(p): n for n, p in model.named_parameters()}
        keys = [module_names[id(p)] for p in params]

        def sample_loss(values, x, y):
            def forward(inp):
                return functional_call(model, dict(zip(keys, values)), (inp,))

            return cross_entropy_on(forward, classes)(x[None], y[None])

        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
        detached = tuple(p.detach() for p in params)
        # vmap has no batching rule for the fused attention kernels: timm's explicit path instead
        fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]
        for m in fused:
            m.fused_attn = False
        try:
            for x, y in iterate(data, batch_size, device=device):
                grads = per_sample(detached, x, y)
                torch._foreach_add_(fisher, [(g * g).sum(0) for g in grads])
                count += len(y)
        finally:
            for m in fused:
                m.fused_attn = True
    model.train(was_training)
    torch._foreach_div_(fisher, max(count, 1))
    return fisher


class TrainingFisher:
    """A before_step hook of `fit`: squared mini-batch gradients of the task loss during the
    last epoch of training, so the Fisher costs no extra pass over the data (as EWC++,
    Chaudhry et al., ECCV 2018, estimates it during training). Call it before the penalty's
    gradient is added. The estimate is at the weights of each step of the last epoch rather
    than at the end of the task."""

    def __init__(self, params: list[nn.Parameter], first_step: int):
        self.params, self.first_step, self.step, self.count = params, first_step, 0, 0
        self.sums = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def __call__(self) -> None:
        if self.step >= self.first_step:
            for acc, p in zip(self.sums, self.params):
                if p.grad is not None:
                    acc.addcmul_(p.grad, p.grad)
            self.count += 1
        self.step += 1

    def fisher(self) -> list[torch.Tensor]:
        return [s / max(self.count, 1) for s in self.sums]


class RegularizedFinetuning(Method):
    """Fine-tuning with a quadratic penalty on filtered parameters (the body of `l2` and `ewc`).

    Trains (`train: filtered`) the filtered parameters and the classifier head, or (`train:
    all`) the whole backbone with only the filtered parameters regularised, by cross-entropy
    over the classes seen so far (as `finetune`) plus the penalty. Subclasses choose the
    penalty's weights in `make_regularizer` and update them in `end_task`.

    The penalty's gradient is added to `.grad` directly (`add_penalty_gradient`), the same
    update as back-propagating it, without an autograd graph over the regularised weights.
    Gradient descent on the penalty is stable only while lr * lam * w_max stays below about
    2 (1 + momentum), i.e. 3.8 for SGD with momentum 0.9: beyond, the run diverges and is
    recorded as failed. The search spaces stay inside that range at the default step sizes.
    """

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})

    @dataclass
    class HParams(Recipe):
        lam: float = hp(
            100.0, space=(1.0, 10.0, 100.0), doc="lambda: penalty lam/2 * sum w (theta - anchor)^2", ge=0
        )
        params: tuple[str, ...] = hp(
            ("blocks.*.attn.*", "visual.transformer.resblocks.*.attn.*"),
            doc="globs over parameter names: the regularised parameters (default: the self-attention "
            "weights of a timm or an open_clip ViT)",
        )
        train: Literal["filtered", "all"] = hp(
            "filtered", doc="train the filtered parameters and the head, or the whole backbone"
        )
        anchor: Literal["previous", "pretrained"] = hp(
            "previous", doc="pull towards the weights after the previous task, or the pretrained ones"
        )

    def setup(self, backbone, info):
        self.model = backbone
        backbone.reset_head(info.num_classes)
        h = self.hparams
        named = named_matching(timm_named_parameters(backbone), h.params)
        if not named:
            names = [n for n, _ in timm_named_parameters(backbone)]
            example = next((n for n in names if n.startswith("blocks.")), names[0])
            raise UserError(
                f"method {self.name!r}: params {list(h.params)} match no parameter of backbone "
                f"{backbone.name!r} (names look like {example!r})"
            )
        if h.train == "filtered":
            train_only([p for _, p in named] + list(backbone.head.parameters()), backbone)
        self.regularizer = self.make_regularizer(named)
        log.info(
            "%s regularises %d tensors (%d numbers stored)",
            self.name,
            len(named),
            self.regularizer.stored_numel(),
        )

    def make_regularizer(self, named: list[tuple[str, nn.Parameter]]) -> ParameterRegularizer:
        return ParameterRegularizer(named, lam=self.hparams.lam, anchor=self.hparams.anchor, fisher=False)

    def learn(self, task: Task) -> dict[str, float]:
        reg = self.regularizer
        reg.start_task()
        ce = cross_entropy_on(self.model, classes=list(task.seen_classes))
        self.model.train()
        # `loss` in the log is the cross-entropy; the penalty enters through its gradient
        out = fit_task(self, self.model.parameters(), task, ce, before_step=self.before_step(task))
        with torch.no_grad():
            out["penalty"] = float(reg.penalty())
        return {**out, **self.end_task(task)}

    def before_step(self, task: Task) -> Callable[[], None]:
        """What runs between backward and optimiser step: adding the penalty's gradient."""
        return self.regularizer.add_penalty_gradient

    def end_task(self, task: Task) -> dict[str, float]:
        """Update the penalty after training on `task`; returns floats to log."""
        return {}

    def predict(self, x):
        self.model.eval()
        return self.model(x)
