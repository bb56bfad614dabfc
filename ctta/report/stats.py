"""Confidence intervals: a paired bootstrap over eval seeds and, for test-time streams, over test
batches. Pure functions of the numbers a store records.

One `Bootstrap` serves a whole study: it draws, once, which seeds every replicate resamples
(with replacement), and, for each scored scenario and seed, how often every test batch is
drawn. Every method, scenario and phase (honest and oracle) reuses the same draws, so
differences between methods, protocol gaps and ranks are computed on paired replicates; a
method that beats another on every seed and batch stays ahead in every replicate.

- `seed_mean(values)`: replicates of the mean over seeds of a per-seed value (continual-
  learning metrics, which the records keep per run, not per test sample; costs).
- `online(case, runs)`: replicates of the online accuracy: the mean over seeds of each seed's
  accuracy over its resampled batches (a batch's share is its number of samples), optionally
  within one domain.
- `interval(replicates)`: the 95 % percentile interval.

Percentile intervals of a bootstrap over few seeds are too narrow (3 seeds give 10 distinct
resamples); the study runs at least 5, and test-time streams add the batch level.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

LEVEL = 0.95
REPLICATES = 1000


def interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates (NaNs ignored; (nan, nan) if none)."""
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan, math.nan
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def overlaps(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two closed intervals share a point (NaN bounds never overlap)."""
    return bool(a[0] <= b[1] and b[0] <= a[1])


def ranks(replicates: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Competition ranks (1 = best, ties share the better rank) of each row (a method) in each
    column (a replicate) of a [methods, replicates] array; NaN rows get NaN."""
    values = np.asarray(replicates, dtype=float)
    signed = values if higher_is_better else -values
    better = signed[None, :, :] > signed[:, None, :]  # [i, j, b]: j beats i in replicate b
    out = 1.0 + better.sum(axis=1)
    out[~np.isfinite(values)] = np.nan
    return out


class Bootstrap:
    """Paired bootstrap replicates over the eval seeds of a study (and the test batches of
    each seed, for online accuracy). `seed` fixes the draws, so tables are reproducible."""

    def __init__(self, seeds: Sequence[int], replicates: int = REPLICATES, seed: int = 0):
        self.seeds = list(dict.fromkeys(int(s) for s in seeds))
        self.replicates = replicates
        self._rng = np.random.default_rng(seed)
        self.draws = self._rng.integers(len(self.seeds), size=(replicates, len(self.seeds)))
        self._weights: dict[tuple[str, int, int], np.ndarray] = {}

    def seed_mean(self, values: Mapping[int, float]) -> np.ndarray:
        """Replicates of the mean over seeds of `values` (seed -> value); a seed without a
        value is left out of the replicates that draw it."""
        per_seed = np.array([values.get(s, math.nan) for s in self.seeds], dtype=float)
        return _nanmean_rows(per_seed[self.draws])

    def online(
        self,
        case: str,
        runs: Mapping[int, tuple[Sequence[int], Sequence[int]]],
        mask: Mapping[int, Sequence[bool]] | None = None,
    ) -> np.ndarray:
        """Replicates of online accuracy (%) from `runs` (seed -> (samples per batch, correct
        per batch)): in each replicate, each drawn seed's batches are resampled with
        replacement and its accuracy is correct / samples over the drawn batches; the replicate
        is the mean over the drawn seeds. `mask` (seed -> per-batch booleans) restricts the
        accuracy to some batches (a domain). Batches are drawn per (case, seed), the same for
        every method scored on that stream."""
        slots = self.draws.shape[1]
        per_slot = np.full((self.replicates, slots), np.nan)
        for i, seed in enumerate(self.seeds):
            if seed not in runs:
                continue
            n, correct = (np.asarray(a, dtype=np.float32) for a in runs[seed])
            if mask is not None:
                keep = np.asarray(mask[seed], dtype=np.float32)
                n, correct = n * keep, correct * keep
            weights = self._batch_weights(case, seed, len(n))  # [replicates, slots, batches]
            total = weights @ n
            with np.errstate(invalid="ignore", divide="ignore"):
                acc = 100.0 * (weights @ correct) / total
            chosen = self.draws == i
            per_slot[chosen] = acc[chosen]
        return _nanmean_rows(per_slot)

    def _batch_weights(self, case: str, seed: int, batches: int) -> np.ndarray:
        key = (case, seed, batches)
        if key not in self._weights:
            slots = self.draws.shape[1]
            p = np.full(batches, 1.0 / batches)
            # float32 holds these small counts exactly, at half the memory
            draws = self._rng.multinomial(batches, p, size=(self.replicates, slots))
            self._weights[key] = draws.astype(np.float32)
        return self._weights[key]


def point_online(runs: Mapping[int, tuple[Sequence[int], Sequence[int]]], mask=None) -> float:
    """The online accuracy (%) the replicates resample: the mean over seeds of each seed's
    correct / samples (within `mask`'s batches)."""
    accs = []
    for seed, (n, correct) in runs.items():
        n, correct = np.asarray(n, dtype=float), np.asarray(correct, dtype=float)
        if mask is not None:
            keep = np.asarray(mask[seed], dtype=float)
            n, correct = n * keep, correct * keep
        if n.sum() > 0:
            accs.append(100.0 * correct.sum() / n.sum())
    return float(np.mean(accs)) if accs else math.nan


def _nanmean_rows(values: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)
