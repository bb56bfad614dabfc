"""Gaussian class statistics of features, and classifier alignment on features sampled from them.

Exemplar-free class-incremental methods (SLCA, MOS, ...) keep, for every class, the mean and
covariance of its features, and after each task re-train the classifier head on features
drawn from these Gaussians for every class seen so far ("classifier alignment"), so old
classes are not out-voted by the new ones (Zhang et al., SLCA, ICCV 2023; Sun et al., MOS,
AAAI 2025). Means are also what contrastive regularisers compare new features to.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GaussianClassStats(nn.Module):
    """Per-class feature mean and covariance (full, or diagonal to save memory).

    The covariance is kept as its Cholesky factor (the standard deviations when diagonal),
    computed once per class, which is what sampling needs."""

    def __init__(self, feature_dim: int, num_classes: int, *, diagonal: bool = False, jitter: float = 1e-4):
        super().__init__()
        self.diagonal, self.jitter = diagonal, jitter
        shape = (num_classes, feature_dim) if diagonal else (num_classes, feature_dim, feature_dim)
        self.register_buffer("means", torch.zeros(num_classes, feature_dim))
        self.register_buffer("factors", torch.zeros(shape))
        self.register_buffer("known", torch.zeros(num_classes, dtype=torch.bool))

    @torch.no_grad()
    def update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Set the statistics of every class present in `labels` from its features; the
        covariance gets `jitter` on its diagonal so that it can be sampled from (MOS: 1e-4)."""
        for c in labels.unique().tolist():
            f = features[labels == c].double()
            d = f.shape[1]
            cov = torch.cov(f.T) if len(f) > 1 else torch.zeros(d, d, dtype=f.dtype, device=f.device)
            cov = cov + self.jitter * torch.eye(d, dtype=f.dtype, device=f.device)
            factor = cov.diagonal().sqrt() if self.diagonal else _cholesky(cov)
            self.means[c] = f.mean(0).to(self.means.dtype)
            self.factors[c] = factor.to(self.factors.dtype)
            self.known[c] = True

    def covariance(self, c: int) -> torch.Tensor:
        f = self.factors[c]
        return torch.diag(f * f) if self.diagonal else f @ f.T

    @torch.no_grad()
    def sample(
        self, classes: list[int], n: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """n features from each class's Gaussian: (features [len(classes) * n, D], labels)."""
        z = torch.randn(len(classes), n, self.means.shape[1], generator=generator).to(self.means.device)
        idx = torch.as_tensor(classes, device=self.means.device)
        scale = self.factors[idx]
        noise = z * scale[:, None] if self.diagonal else torch.einsum("cnj,cij->cni", z, scale)
        feats = self.means[idx][:, None] + noise
        return feats.reshape(-1, feats.shape[-1]), idx.repeat_interleave(n)


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Cholesky factor, adding jitter until it exists (covariances of few samples are near singular)."""
    eye = torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
    scale = float(cov.diagonal().mean().clamp(min=1e-12))
    for k in range(8):
        factor, info = torch.linalg.cholesky_ex(cov + (0.0 if k == 0 else scale * 10.0 ** (k - 8)) * eye)
        if int(info) == 0:
            return factor
    raise FloatingPointError("class covariance is not positive definite even with jitter")


def align_classifier(
    head: nn.Linear,
    stats: GaussianClassStats,
    classes: list[int],
    *,
    labels: torch.Tensor | None = None,
    epochs: int,
    samples_per_class: int,
    lr: float,
    weight_decay: float = 5e-4,
    momentum: float = 0.9,
    generator: torch.Generator,
) -> float:
    """Re-train `head` on features sampled from the class Gaussians of `classes`: every epoch
    draws `samples_per_class` features per class, shuffles them and takes mini-batches of
    `samples_per_class` (SGD with momentum, cosine schedule over epochs; MOS/SLCA recipe).
    Cross-entropy is over `classes` only. `labels` maps the entries of `stats` to head classes
    when they are not the same (one Gaussian per domain and class: entry -> class); `classes`
    then names entries. Returns the last epoch's mean loss."""
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    mask = torch.full((head.out_features,), float("-inf"), device=head.weight.device)
    mask[classes if labels is None else labels[classes]] = 0.0
    head.train()
    loss_sum = 0.0
    for _ in range(epochs):
        feats, targets = stats.sample(classes, samples_per_class, generator)
        targets = targets if labels is None else labels[targets]
        order = torch.randperm(len(targets), generator=generator).to(targets.device)
        feats, targets = feats[order], targets[order]
        loss_sum, batches = 0.0, math.ceil(len(targets) / samples_per_class)
        for i in range(batches):
            sl = slice(i * samples_per_class, (i + 1) * samples_per_class)
            loss = F.cross_entropy(head(feats[sl]) + mask, targets[sl])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item()
        sched.step()
    return loss_sum / max(batches, 1) if epochs else float("nan")
