"""The intervals of a study's leaderboard: bootstrap replicates (`ctta.report.stats`) of every
metric of every method on every scored scenario, of each method's study score, and of its
protocol gap and rank change against the study's oracle.

`StudyIntervals(runs, oracle_runs)` takes a study's finished eval records (one row per run:
method, case, seed, metrics, and for test-time runs the per-batch `online_n`,
`online_correct`, `online_domain`) and, when an oracle study measures it, the oracle's. All
replicates of a study share one `Bootstrap`, so gaps and ranks are paired.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from ..plan.metrics import LOWER_IS_BETTER
from .stats import Bootstrap, interval, point_online, ranks

SEED_METRICS_COST = ("wall_s", "peak_mb")


class StudyIntervals:
    def __init__(self, runs: pd.DataFrame, oracle_runs: pd.DataFrame | None = None, replicates: int = 1000):
        self.runs = runs
        self.oracle_runs = oracle_runs if oracle_runs is not None and not oracle_runs.empty else None
        self.test_time = runs["kind"].iloc[0] == "test_time"
        self.boot = Bootstrap(sorted(runs["seed"].unique()), replicates=replicates)

    # -- one metric of one method on one scored scenario -------------------------------------
    def replicates(self, case: str, method: str, metric: str, oracle: bool = False) -> np.ndarray:
        """Bootstrap replicates of `metric` (a record metric, `vs_source` or a cost)."""
        return self._replicates(case, method, metric, oracle)

    @functools.cache  # noqa: B019  (one instance per table, dropped with it)
    def _replicates(self, case: str, method: str, metric: str, oracle: bool) -> np.ndarray:
        rows = self._rows(case, method, oracle)
        if self.test_time and (metric in ("online_acc", "online_err") or metric.startswith("acc@")):
            batches, mask = _online(rows, metric[4:] if metric.startswith("acc@") else None)
            acc = self.boot.online(case, batches, mask)
            return 100.0 - acc if metric == "online_err" else acc
        if metric == "vs_source":
            return self._replicates(case, method, "online_acc", oracle) - self._replicates(
                case, "source", "online_acc", oracle
            )
        values = {int(s): float(v) for s, v in zip(rows["seed"], rows[metric]) if _finite(v)}
        return self.boot.seed_mean(values)

    def point(self, case: str, method: str, metric: str) -> float:
        """The estimate the replicates resample (the mean over seeds, as in the tables)."""
        rows = self._rows(case, method, False)
        if self.test_time and metric.startswith("acc@"):
            return point_online(*_online(rows, metric[4:]))
        if metric == "vs_source":
            return self.point(case, method, "online_acc") - self.point(case, "source", "online_acc")
        return float(rows[metric].mean())

    def interval(self, case: str, method: str, metric: str) -> tuple[float, float]:
        return interval(self.replicates(case, method, metric))

    # -- a method's study score, its protocol gap and rank change -----------------------------
    def score(self, method: str, metric: str, oracle: bool = False, cases=None) -> np.ndarray:
        """Replicates of the study score: the mean over scored scenarios (or over `cases`) of
        each one's metric."""
        cases = list(dict.fromkeys(self.runs["case"])) if cases is None else list(cases)
        return np.mean([self.replicates(c, method, metric, oracle) for c in cases], axis=0)

    def point_score(self, method: str, metric: str, cases=None) -> float:
        cases = list(dict.fromkeys(self.runs["case"])) if cases is None else list(cases)
        return float(np.mean([self.point(c, method, metric) for c in cases]))

    def gap_table(self, metric: str, methods: list[str]) -> pd.DataFrame:
        """Per method: the intervals of its honest and oracle study scores and ranks, of the
        protocol gap and of the rank change, and the probability (over replicates) that the
        method's rank differs between oracle and separated tuning (`rank_change_p`)."""
        if self.oracle_runs is None:
            return pd.DataFrame(index=methods)
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        higher = metric not in LOWER_IS_BETTER
        honest = np.array([self.score(m, metric) for m in methods])
        oracle = np.array([self.score(m, metric, oracle=True) for m in methods])
        rank_honest, rank_oracle = ranks(honest, higher), ranks(oracle, higher)
        if not np.isfinite(oracle).any(axis=1).all():  # the oracle has not scored every method yet
            rank_oracle = np.full_like(rank_oracle, np.nan)
        replicates = {
            "honest": honest,
            "oracle": oracle,
            "gap": sign * (oracle - honest),
            "rank_honest": rank_honest,
            "rank_oracle": rank_oracle,
            "rank_change": rank_honest - rank_oracle,
        }
        rows = {}
        for i, m in enumerate(methods):
            row = {}
            for name, values in replicates.items():
                row[f"{name}_lo"], row[f"{name}_hi"] = interval(values[i])
            change = replicates["rank_change"][i]
            defined = np.isfinite(change)
            row["rank_change_p"] = float((change[defined] != 0).mean()) if defined.any() else math.nan
            rows[m] = row
        return pd.DataFrame.from_dict(rows, orient="index")

    def order_flip(self, metric: str, a: str, b: str) -> float:
        """Probability over replicates that methods `a` and `b` are ordered differently under
        separated and oracle tuning (the Reality Check's rank reversal)."""
        honest = self.score(a, metric) - self.score(b, metric)
        oracle = self.score(a, metric, oracle=True) - self.score(b, metric, oracle=True)
        defined = np.isfinite(honest) & np.isfinite(oracle)
        return (
            float((np.sign(honest[defined]) != np.sign(oracle[defined])).mean())
            if defined.any()
            else math.nan
        )

    @functools.cache  # noqa: B019
    def _rows(self, case: str, method: str, oracle: bool) -> pd.DataFrame:
        runs = self.oracle_runs if oracle else self.runs
        return runs[(runs["case"] == case) & (runs["method"] == method)]


def _online(rows: pd.DataFrame, domain: str | None) -> tuple[dict, dict | None]:
    """Per seed, the runs' per-batch (sizes, correct counts), and the batches of `domain`.
    Column by column: `itertuples` on the wide record frame costs one pandas lookup per column."""
    seeds = [int(s) for s in rows["seed"]]
    batches = dict(zip(seeds, zip(rows["online_n"], rows["online_correct"])))
    if domain is None:
        return batches, None
    return batches, {s: [d == domain for d in doms] for s, doms in zip(seeds, rows["online_domain"])}


def _finite(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and math.isfinite(float(v))


def tune_intervals(tune_runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The interval of every searched configuration's tune score (the mean over tune scenarios
    of the mean over tune seeds), one row per `config_id`."""
    if tune_runs.empty:
        return pd.DataFrame(columns=["config_id", "score_lo", "score_hi"])
    iv = StudyIntervals(tune_runs.assign(method=tune_runs["config_id"]))
    rows = []
    for config in tune_runs["config_id"].unique():
        lo, hi = interval(iv.score(config, metric))
        rows.append({"config_id": config, "score_lo": lo, "score_hi": hi})
    return pd.DataFrame(rows)
