"""Splits of a dataset: disjoint pools of classes and samples, so that protocols can tune on
one and score on another, and stratified train/test holdouts for data that ships without a
split.

Pools are fixed independently of the run seed: `first_half` is the same set of classes (or
samples) for every seed, and never meets `second_half`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import UserError
from .images import ImageData

POOL_SEED = 0  # the fixed permutation behind sample pools; never the run seed
POOLS = ("all", "first_half", "second_half")


def class_pool(num_classes: int, pool: str | Sequence[int]) -> list[int]:
    """Class ids of a pool: 'all', 'first_half'/'second_half' (of the ids in dataset order),
    'a:b' (the id range a..b-1) or an explicit list of ids."""
    ids = list(range(num_classes))
    if isinstance(pool, str):
        half = num_classes // 2
        if pool == "all":
            return ids
        if pool == "first_half":
            return ids[:half]
        if pool == "second_half":
            return ids[half:]
        if ":" in pool:
            a, _, b = pool.partition(":")
            try:
                chosen = ids[int(a or 0) : int(b) if b else None]
            except ValueError:
                chosen = []
            if chosen:
                return chosen
        raise UserError(
            f"invalid class pool {pool!r}; valid choices: all, first_half, second_half, 'a:b', or a list of ids"
        )
    chosen = [int(c) for c in pool]
    bad = [c for c in chosen if not 0 <= c < num_classes]
    if bad or len(set(chosen)) != len(chosen) or not chosen:
        raise UserError(
            f"invalid class pool {list(pool)!r}: ids must be distinct and in 0..{num_classes - 1}"
        )
    return chosen


def sample_pool(data: ImageData, pool: str) -> ImageData:
    """'all', or one half of every class's samples under a fixed permutation (disjoint halves)."""
    if pool == "all":
        return data
    if pool not in POOLS:
        raise UserError(f"invalid sample pool {pool!r}; valid choices: {', '.join(POOLS)}")
    keep = np.zeros(len(data), dtype=bool)
    rng = np.random.default_rng(POOL_SEED)
    targets = data.targets
    for c in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == c))
        half = len(members) // 2
        keep[members[:half] if pool == "first_half" else members[half:]] = True
    return data.subset(keep)


def per_class(data: ImageData, k: int, seed: int) -> ImageData:
    """At most `k` samples of every class (all when k <= 0), chosen by `seed`."""
    if k <= 0:
        return data
    rng = np.random.default_rng(seed)
    targets = data.targets
    keep = np.concatenate([rng.permutation(np.flatnonzero(targets == c))[:k] for c in np.unique(targets)])
    return data.subset(np.sort(keep))


def holdout_split(labels: Sequence[int], split: str, test_fraction: float, seed: int) -> np.ndarray:
    """Stratified deterministic split for datasets that ship without one (e.g. ImageNet-R)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=int(round(len(members) * test_fraction)), replace=False)
        test[chosen] = True
    return np.flatnonzero(test if split == "test" else ~test)
