"""LAME: Laplacian-regularised maximum-likelihood estimation of the batch's labels.

Boudiaf, Mueller, Ben Ayed, Bertinetto: "Parameter-free Online Test-time Adaptation"
(CVPR 2022). Output-only: the model is never changed and no gradient is computed. For a
batch with source softmax p (N×K) and L2-normalised penultimate features, LAME solves

    min_Y  sum_i KL(y_i || p_i) - λ/2 sum_ij w_ij y_i·y_j,   y_i in the simplex,

by the concave-convex procedure: Y₀ = p, then repeatedly Y = softmax(log p + λ·W·Y), at most
100 iterations, stopping when the energy E(Y) = Σ Y·(−log p) − λ·Σ Y·WY + Σ Y·log Y changes by
at most 1e-8 relative. Affinities W over the batch's features:

- `knn` (default, k = 5): w_ij = 1 when j is among the k nearest neighbours of i (self
  excluded); not symmetrised, as in the paper's code;
- `rbf`: exp(−d_ij² / 2σ²), σ = the mean distance to the k-th nearest neighbour;
- `linear`: XXᵀ of the normalised features.

Batches of one image have no neighbours and keep the source prediction. Since the backbone
is frozen, the method is `features_only`: sweeps over its search space reuse the cached
penultimate features of the stream.

Deviation: the reference code takes σ from the (k−1)-th neighbour (its top-k includes the
point itself); we use the k-th neighbour excluding self, as the paper's text says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from ctta import Method, hp, register_method
from ctta.kit import freeze

MAX_STEPS = 100
TOLERANCE = 1e-8


def affinity(features: torch.Tensor, kind: str, k: int) -> torch.Tensor:
    """N×N affinity of L2-normalised features (distances by torch.cdist, never an N×N×D tensor)."""
    n = features.shape[0]
    if kind == "linear":
        return features @ features.T
    dist = torch.cdist(features, features)
    k = min(k, n - 1)
    if k < 1:  # a batch of one image has no neighbours
        return torch.zeros(n, n, dtype=features.dtype, device=features.device)
    others = dist.clone().fill_diagonal_(float("inf"))  # neighbours exclude the point itself
    near = others.topk(k, dim=1, largest=False)
    if kind == "knn":
        return torch.zeros_like(dist).scatter_(1, near.indices, 1.0)
    if kind == "rbf":
        sigma = near.values[:, -1].mean().clamp_min(1e-12)
        return torch.exp(-(dist**2) / (2 * sigma**2))
    raise ValueError(f"unknown affinity {kind!r}; valid choices: knn, rbf, linear")


def energy(y: torch.Tensor, unary: torch.Tensor, w: torch.Tensor, lam: float) -> float:
    """E(Y) = Σ Y·unary − λ·Σ Y·(W Y) + Σ Y·log Y."""
    return float((y * unary).sum() - lam * (y * (w @ y)).sum() + (y * y.clamp_min(1e-20).log()).sum())


def laplacian_optimization(
    log_p: torch.Tensor, w: torch.Tensor, lam: float = 1.0
) -> tuple[torch.Tensor, int]:
    """(logits whose softmax is the LAME assignment Y, iterations used) for source log-probabilities."""
    y = log_p.softmax(1)
    logits = log_p
    previous = float("inf")
    for step in range(1, MAX_STEPS + 1):
        logits = log_p + lam * (w @ y)
        y = logits.softmax(1)
        e = energy(y, -log_p, w, lam)
        if step > 1 and abs(e - previous) <= TOLERANCE * abs(previous):
            return logits, step
        previous = e
    return logits, MAX_STEPS


@register_method("lame")
class LAME(Method):
    """Laplacian adjustment of the frozen model's outputs, per batch (Boudiaf et al., CVPR 2022)."""

    stream_kinds = frozenset({"test_time"})
    requires = frozenset({"head", "features"})
    features_only = True

    @dataclass
    class HParams:
        affinity: Literal["knn", "rbf", "linear"] = hp(
            "knn", space=("knn", "rbf", "linear"), doc="affinity between the batch's features"
        )
        k: int = hp(5, space=(1, 3, 5), doc="neighbours of the knn affinity (and σ of rbf)", ge=1)
        lam: float = hp(1.0, doc="λ: weight of the Laplacian term (the paper fixes 1)", ge=0)

    def setup(self, backbone, info):
        self.model = freeze(backbone).eval()
        self.iterations: list[int] = []  # per batch, for diagnostics

    @torch.no_grad()
    def predict_features(self, features):
        h = self.hparams
        log_p = self.model.head(features).log_softmax(1)
        w = affinity(F.normalize(features, dim=1), h.affinity, h.k)
        logits, steps = laplacian_optimization(log_p, w, h.lam)
        self.iterations.append(steps)
        return logits

    @torch.no_grad()
    def predict(self, x):
        return self.predict_features(self.model.features(x))
