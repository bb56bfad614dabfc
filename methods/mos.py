"""MOS: model surgery for pretrained-model-based class-incremental learning.

Sun, Zhou, Zhao, Gan, Zhan, Ye: "MOS: Model Surgery for Pre-Trained Model-Based
Class-Incremental Learning" (AAAI 2025); reference code github.com/sun-hailong/AAAI25-MOS.

- The pretrained ViT stays frozen; every block gets an AdaptFormer adapter (ctta/kit/adapters.py;
  parallel to the MLP, rank 16, dropout 0.1, scale 0.1). Task t trains its own adapter,
  warm-started from task t-1's, and the linear head (at a tenth of the step size).
- Adapter merging: after every optimiser step the current adapter is pulled towards the
  mean of all previous adapters, W_t <- (1 - m) W_t + m mean(W_0..W_{t-1}), m = 0.1.
- Loss: cross-entropy over the task's new classes (old-class logits masked) plus `reg` times
  a contrastive term: the batch features and the stored class means, as rows of M, with
  CE(M M^T / temperature, identity) pushing each away from the others (0.1, 0.8).
- After each task: per-class Gaussian statistics of the task's features under its adapter
  (ctta/kit/class_stats.py); from task 1 on, the head is re-aligned on features sampled from the
  Gaussians of every seen class ("classifier alignment", head only); the prototype
  (cosine) classifier gets the new classes' mean features under the *first* adapter.
- Inference, self-refined adapter retrieval: the prototype classifier predicts a class,
  hence a task, hence an adapter; the head on that adapter's features predicts again; the
  adapter is switched to the newly predicted task, up to `max_iter` (4) head evaluations.
  Output: softmax(head logits) + softmax(prototype logits * (t + 1)) after task t.

Domain-incremental streams (an extension; the paper is class-incremental): every task brings
all classes in a new domain, so a class no longer names a task. Each (domain, class) pair
gets its own Gaussian, contrastive anchor and prototype under the first adapter; the head
stays one linear layer over the shared classes, aligned on features drawn from every
(domain, class) Gaussian labelled with its class. Retrieval: the nearest (domain, class)
prototype names the domain, hence the adapter, and the head on that adapter's features
answers; the refinement step is skipped (the head's class names no domain). The ensemble's
prototype logit of a class is its best cosine over the domains.

Deviations, deliberate: (1) the reference code also applies the merge in place inside every
forward pass, at evaluation too, so stored adapters keep drifting towards older ones each
time they are scored, and scores depend on how often one evaluates; here the merge is the
paper's, once after each optimiser step, and a finished task's adapter never changes.
(2) Retrieval is batched: one forward pass per iteration, over the samples whose adapter
changed, each sample through its own adapter (AdaptedBlock routing), instead of computing
every adapter's features for every sample and looping over samples in Python; it gives the
reference's predictions. (3) No data augmentation (ctta trains without it everywhere).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ctta import Method, Task, hp, register_method
from ctta.kit import (
    AdapterRecipe,
    GaussianClassStats,
    PrototypeHead,
    adapter_parameters,
    add_adapter,
    align_classifier,
    derive_seed,
    extract_features,
    fit_task,
    freeze,
    insert_adapters,
    mean_adapter,
    merge_toward,
    set_route,
)

MOS_STREAM = 0x4D4F53  # separates MOS's Gaussian sampling from other uses of the run seed


def contrastive_loss(features: torch.Tensor, anchors: torch.Tensor, temperature: float) -> torch.Tensor:
    """MOS's regulariser: rows M = [class means; batch features], CE(M M^T / T, identity)."""
    m = torch.cat([anchors, features])
    return F.cross_entropy(m @ m.T / temperature, torch.arange(len(m), device=m.device))


@register_method("mos")
class MOS(Method):
    """Per-task adapters with merging, classifier alignment and self-refined retrieval (Sun et al. 2025)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    requires = frozenset({"vit"})

    @dataclass
    class HParams(AdapterRecipe):
        head_lr_scale: float = hp(0.1, doc="the head trains at lr * head_lr_scale", ge=0)
        merge: float = hp(
            0.1, space=(0.0, 0.05, 0.1, 0.2), doc="m: pull towards the mean of previous adapters", ge=0, le=1
        )
        reg: float = hp(0.1, space=(0.0, 0.1, 0.3), doc="weight of the contrastive term", ge=0)
        temperature: float = hp(0.8, doc="temperature of the contrastive term", gt=0)
        ca_epochs: int = hp(30, doc="classifier alignment: epochs", ge=1)
        ca_lr: float = hp(0.005, doc="classifier alignment: SGD step size", gt=0)
        ca_samples: int = hp(
            240, doc="classifier alignment: features drawn per class and epoch (= batch)", ge=1
        )
        covariance: Literal["full", "diagonal"] = hp(
            "full", doc="class Gaussians: full or diagonal covariance"
        )
        max_iter: int = hp(4, doc="self-refined retrieval: at most this many head evaluations", ge=1)
        ensemble: bool = hp(True, doc="add the prototype classifier's softmax (x (t+1)) to the head's")

    def setup(self, backbone, info):
        self.model = freeze(backbone)
        self.blocks = insert_adapters(backbone.model)
        backbone.reset_head(info.num_classes)
        d, c = backbone.feature_dim, info.num_classes
        # Statistics and prototypes are kept per slot: a class (class-incremental), or a
        # (domain, class) pair, slot = task * classes + class (domain-incremental).
        self.domains = info.kind == "domain_incremental"
        slots = c * info.num_tasks if self.domains else c
        self.prototypes = PrototypeHead(d, slots).to(info.device)
        self.stats = GaussianClassStats(d, slots, diagonal=self.hparams.covariance == "diagonal").to(
            info.device
        )
        self.register_buffer("slot_task", torch.full((slots,), -1, dtype=torch.long, device=info.device))
        self.register_buffer("slot_class", torch.arange(slots, device=info.device) % c)

    def slot(self, labels: torch.Tensor, task: int) -> torch.Tensor:
        return labels + task * self.info.num_classes if self.domains else labels

    def get_extra_state(self) -> dict:
        return {"adapters": len(self.blocks[0].adapters)}

    def set_extra_state(self, state: dict) -> None:
        # before the adapters' weights load (children load after their parent): one per task learnt
        h = self.hparams
        while len(self.blocks[0].adapters) < state["adapters"]:
            add_adapter(
                self.blocks, rank=h.rank, dropout=h.adapter_dropout, scale=h.adapter_scale, warm_start=False
            )

    def learn(self, task: Task) -> dict[str, float]:
        h, t = self.hparams, task.index
        add_adapter(
            self.blocks, rank=h.rank, dropout=h.adapter_dropout, scale=h.adapter_scale, warm_start=True
        )
        for blk in self.blocks:
            for i, adapter in enumerate(blk.adapters):
                adapter.requires_grad_(i == t)
        set_route(self.blocks, t)
        current = adapter_parameters(self.blocks, t)
        after_step = None
        if t > 0 and h.merge > 0:
            target = mean_adapter(self.blocks, range(t))

            def after_step():
                merge_toward(current, target, h.merge)

        new = torch.as_tensor(task.classes, device=self.device)
        mask = torch.full((self.info.num_classes,), float("-inf"), device=self.device)
        mask[new] = 0.0
        old_means = self.stats.means[self.stats.known]

        def loss(x, y):
            feats = self.model.features(x)
            ce = F.cross_entropy(self.model.head(feats) + mask, y)
            return ce + h.reg * contrastive_loss(feats, old_means, h.temperature)

        self.model.train()
        groups = [{"params": current}, {"params": self.model.head.parameters(), "lr": h.lr * h.head_lr_scale}]
        out = fit_task(self, groups, task, loss, after_step=after_step)
        self.slot_task[self.slot(new, t)] = t
        feats, labels = extract_features(self.model, task.train, device=self.device, cache=False)
        self.stats.update(feats, self.slot(labels.to(self.device), t))
        if t > 0:
            generator = torch.Generator().manual_seed(derive_seed(self.info.seed, MOS_STREAM, t))
            out["ca_loss"] = align_classifier(
                self.model.head,
                self.stats,
                torch.nonzero(self.slot_task >= 0).flatten().tolist(),
                labels=self.slot_class if self.domains else None,
                epochs=h.ca_epochs,
                samples_per_class=h.ca_samples,
                lr=h.ca_lr,
                weight_decay=h.weight_decay,
                generator=generator,
            )
        set_route(self.blocks, 0)
        feats, labels = extract_features(self.model, task.train, device=self.device, cache=False)
        self.prototypes.update(feats, self.slot(labels.to(self.device), t))
        return out

    @torch.no_grad()
    def predict(self, x):
        self.model.eval()
        if not (self.slot_task >= 0).any():  # before the first task: the starting model
            set_route(self.blocks, None)
            return self.model(x)
        try:
            set_route(self.blocks, 0)
            proto = self.prototypes(self.model.features(x))
            logits = self.retrieve(x, self.slot_task[proto.argmax(1)])
        finally:
            set_route(self.blocks, 0)  # never leave a per-sample route behind
        if not self.hparams.ensemble:
            return logits
        if self.domains:  # a class's best cosine over the domains
            proto = proto.view(len(x), self.info.num_tasks, self.info.num_classes).amax(1)
        tasks = int(self.slot_task.max()) + 1
        return logits.softmax(1) + (proto * tasks).softmax(1)

    def retrieve(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Self-refined adapter retrieval, batched: head logits of each sample under the adapter
        of the task its previous prediction belongs to, until no sample switches (class-
        incremental; on domain-incremental streams the first answer is final)."""
        seen = torch.full((self.info.num_classes,), float("-inf"), device=x.device)
        seen[self.slot_class[self.slot_task >= 0]] = 0.0

        def head_logits(xs, r):
            set_route(self.blocks, r)
            return self.model.head(self.model.features(xs)) + seen

        logits = head_logits(x, route)
        for _ in range(0 if self.domains else self.hparams.max_iter - 1):
            proposed = self.slot_task[logits.argmax(1)]
            changed = proposed != route
            if not changed.any():
                break
            route = torch.where(changed, proposed, route)
            logits[changed] = head_logits(x[changed], route[changed])
        return logits
