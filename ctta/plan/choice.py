"""Choosing a configuration: how each run and each searched configuration scored, and the
configuration a protocol picks. Pure functions of the run records.

How a configuration is scored: the mean over cases of the per-case mean over seeds. A
configuration with any failed run is never chosen; while any tune run of a method is
unfinished, nothing is chosen for it. Ties go to the first configuration of the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def run_score(record: Mapping | None, metric: str) -> tuple[str, float, str | None]:
    """(status, score, error) of one run: 'pending' without a record; a done run whose record
    lacks the metric counts as failed."""
    if record is None:
        return "pending", math.nan, None
    if record["status"] != "done":
        return "failed", math.nan, record.get("error")
    value = record.get("metrics", {}).get(metric)
    if value is None or not math.isfinite(value):
        return "failed", math.nan, f"metric {metric!r} missing or not finite in the record"
    return "done", float(value), None


def aggregate(scores: Iterable[tuple[str, int, float]]) -> tuple[float, float, list[float]]:
    """(mean, std over seeds, per-seed scores) of (case, seed, score) triples: the mean over
    cases of per-case means; the spread is that of the per-seed means over cases."""
    by_seed: dict[int, list[float]] = {}
    by_case: dict[str, list[float]] = {}
    for case, seed, score in scores:
        by_seed.setdefault(seed, []).append(score)
        by_case.setdefault(case, []).append(score)
    if not by_case:
        return math.nan, math.nan, []
    per_seed = [float(np.mean(v)) for v in by_seed.values()]
    mean = float(np.mean([np.mean(v) for v in by_case.values()]))
    std = float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else 0.0
    return mean, std, per_seed


@dataclass
class ConfigScore:
    """How one configuration of a method did over a phase's runs."""

    method: dict[str, Any]
    config_id: str
    runs: int = 0
    done: int = 0
    failed: int = 0
    score: float = math.nan
    std: float = math.nan
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.done + self.failed == self.runs

    @property
    def eligible(self) -> bool:
        return self.done == self.runs


def config_scores(runs: Iterable, records: Mapping[str, dict], metric: str) -> list[ConfigScore]:
    """One ConfigScore per configuration among `runs` (PlannedRuns), in order of appearance."""
    out: dict[str, ConfigScore] = {}
    triples: dict[str, list] = {}
    for run in runs:
        cs = out.setdefault(run.config_id, ConfigScore(run.spec.method, run.config_id))
        status, score, error = run_score(records.get(run.run_id), metric)
        cs.runs += 1
        cs.done += status == "done"
        cs.failed += status == "failed"
        cs.error = cs.error or error
        if status == "done":
            triples.setdefault(run.config_id, []).append((run.case, run.spec.seed, score))
    for cid, cs in out.items():
        if cs.eligible:
            cs.score, cs.std, _ = aggregate(triples.get(cid, []))
    return list(out.values())


def choose(scores: list[ConfigScore], higher_is_better: bool) -> ConfigScore | None:
    """The best eligible configuration once every configuration has finished, else None."""
    if not scores or not all(s.finished for s in scores):
        return None
    eligible = [s for s in scores if s.eligible]
    if not eligible:
        return None
    sign = 1.0 if higher_is_better else -1.0
    return max(eligible, key=lambda s: sign * s.score)  # max keeps the first of equals
