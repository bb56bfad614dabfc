"""What the protocols conclude, as tables: pure functions of the results store.

A launched sweep leaves one definition per study in `<results>/studies/<study>.json` (its
protocol, resolved configuration and separation check). From those and the run records,
`protocol_tables(root)` rebuilds, for every study and method:

- `protocol_runs`: one row per run a study uses (phase, configuration, case, seed, score);
- `tune_table`: one row per searched configuration, its tune score and whether it was chosen;
- `protocol_summary`: the chosen configuration, the tune score, the eval-phase score over
  seeds, and for studies that an `oracle` study measures, the oracle score, the protocol gap
  (oracle - honest, in metric units, sign-adjusted so that positive means "oracle flatters")
  and the rank change;
- `protocol_gap`: those gap columns alone, one row per (honest study, method).

How configurations are scored and chosen is `ctta.plan.choice`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ..plan.choice import ConfigScore, aggregate, choose, config_scores, run_score
from ..plan.metrics import LOWER_IS_BETTER
from ..run.store import Store
from ..sweep.studies import load_studies

TABLES = ("protocol_runs", "tune_table", "protocol_summary", "protocol_gap")


def study_tables(protocol, records: Mapping[str, dict], check: dict | None = None) -> dict[str, pd.DataFrame]:
    """protocol_runs, tune_table and protocol_summary of one study (a Protocol instance)."""
    planned = protocol.plan(records)
    base = {
        "study": protocol.study,
        "protocol": protocol.name,
        "kind": protocol.kind,
        "metric": protocol.metric,
    }
    run_rows, tune_rows, summary_rows = [], [], []
    for run in planned:
        status, score, error = run_score(records.get(run.run_id), protocol.metric)
        run_rows.append(
            {
                **base,
                "phase": run.phase,
                "method": run.method,
                "config_id": run.config_id,
                "config": shown_config(protocol, run.spec.method),
                "case": run.case,
                "backbone": run.spec.backbone["name"],
                "seed": run.spec.seed,
                "run_id": run.run_id,
                "status": status,
                "error": error,
                "score": score,
            }
        )
    for method in protocol.spaces:
        tune = [r for r in planned if r.method == method and r.phase == "tune"]
        scores = config_scores(tune, records, protocol.metric)
        chosen = choose(scores, protocol.higher_is_better)
        ranks = _ranks([s.score if s.eligible else math.nan for s in scores], protocol.higher_is_better)
        for s, rank in zip(scores, ranks):
            tune_rows.append(
                {
                    **base,
                    "method": method,
                    "config_id": s.config_id,
                    "config": shown_config(protocol, s.method),
                    **{f"hp.{k}": _cell(v) for k, v in s.method.items() if k != "name"},
                    "runs": s.runs,
                    "done": s.done,
                    "failed": s.failed,
                    "score": s.score,
                    "score_std": s.std,
                    "rank": rank,
                    "chosen": chosen is not None and s.config_id == chosen.config_id,
                    "why": _why(s, chosen, scores, protocol),
                }
            )
        evals = [r for r in planned if r.method == method and r.phase == "eval"]
        ev = config_scores(evals, records, protocol.metric)
        summary_rows.append(
            _summary_row(base, protocol, method, scores, chosen, ev[0] if ev else None, evals, records, check)
        )
    return {
        "protocol_runs": pd.DataFrame(run_rows),
        "tune_table": pd.DataFrame(tune_rows),
        "protocol_summary": _with_ranks(pd.DataFrame(summary_rows), protocol.higher_is_better),
    }


def _summary_row(base, protocol, method, scores, chosen, ev, evals, records, check) -> dict:
    per_seed = []
    if ev is not None and ev.eligible:
        triples = [(r.case, r.spec.seed, run_score(records.get(r.run_id), protocol.metric)[1]) for r in evals]
        _, _, per_seed = aggregate(triples)
    if any(not s.finished for s in scores):
        state = "tuning"
    elif chosen is None:
        state = "no configuration finished"
    elif ev is None or not ev.finished:
        state = "evaluating"
    else:
        state = "complete" if ev.eligible else "eval failed"
    return {
        **base,
        "method": method,
        "state": state,
        "configs": len(scores),
        "configs_failed": sum(s.failed > 0 for s in scores),
        "tune_runs": sum(s.runs for s in scores),
        "chosen_config": shown_config(protocol, chosen.method) if chosen else None,
        "chosen_config_id": chosen.config_id if chosen else None,
        "chosen_hparams": json.dumps({k: v for k, v in chosen.method.items() if k != "name"})
        if chosen
        else None,
        "tune_score": chosen.score if chosen else math.nan,
        "eval_runs": ev.runs if ev else 0,
        "eval_done": ev.done if ev else 0,
        "eval_failed": ev.failed if ev else 0,
        "score": ev.score if ev and ev.eligible else math.nan,
        "score_std": ev.std if ev and ev.eligible else math.nan,
        "scores": per_seed,
        "check_passed": None if check is None else bool(check.get("passed")),
    }


def _with_ranks(df: pd.DataFrame, higher_is_better: bool) -> pd.DataFrame:
    if not df.empty:
        df["rank"] = _ranks(df["score"].tolist(), higher_is_better)
    return df


def _ranks(scores: list[float], higher_is_better: bool) -> list[float]:
    """Competition ranks (1 = best, ties share the better rank); NaN scores get no rank."""
    s = pd.Series(scores, dtype=float)
    return s.rank(ascending=not higher_is_better, method="min").tolist()


def shown_config(protocol, method: Mapping[str, Any]) -> str:
    """The searched hyperparameters of a configuration, as compact JSON (what tables show)."""
    space = protocol.spaces[method["name"]]
    return json.dumps({k: method[k] for k, v in space.items() if len(v) > 1}, sort_keys=False)


def _cell(v: Any) -> Any:
    return json.dumps(v) if isinstance(v, (list, dict)) else v


def _why(s: ConfigScore, chosen: ConfigScore | None, scores: list[ConfigScore], protocol) -> str:
    if not s.finished:
        return f"tuning: {s.runs - s.done - s.failed} of {s.runs} runs unfinished"
    if not s.eligible:
        return f"failed ({s.failed} of {s.runs} runs): {s.error}"
    if chosen is None:
        return "waiting for other configurations"
    word = "highest" if protocol.higher_is_better else "lowest"
    eligible = sum(x.eligible for x in scores)
    if s.config_id == chosen.config_id:
        return f"chosen: {word} mean {protocol.metric} among {eligible} finished configurations"
    return f"{protocol.metric} {s.score:.2f} vs chosen {chosen.score:.2f}"


def gap_table(summaries: pd.DataFrame, oracles: Mapping[str, str]) -> pd.DataFrame:
    """One row per (honest study, method) measured by an oracle study (`oracles`: oracle study ->
    honest study): honest and oracle score, gap and rank change."""
    rows = []
    for oracle_study, honest_study in oracles.items():
        honest = summaries[summaries["study"] == honest_study].set_index("method")
        oracle = summaries[summaries["study"] == oracle_study].set_index("method")
        for method in honest.index:
            h, o = honest.loc[method], oracle.loc[method] if method in oracle.index else None
            sign = 1.0 if h["metric"] not in LOWER_IS_BETTER else -1.0
            o_score = o["score"] if o is not None else math.nan
            rows.append(
                {
                    "study": honest_study,
                    "protocol": h["protocol"],
                    "oracle_study": oracle_study,
                    "method": method,
                    "metric": h["metric"],
                    "honest": h["score"],
                    "honest_std": h["score_std"],
                    "honest_config": h["chosen_config"],
                    "oracle": o_score,
                    "oracle_config": o["chosen_config"] if o is not None else None,
                    "gap": sign * (o_score - h["score"]),
                    "rank_honest": h["rank"],
                    "rank_oracle": o["rank"] if o is not None else math.nan,
                }
            )
    df = pd.DataFrame(rows)
    if not df.empty:
        # ranks compare only when the oracle scored every method (an oracle study still running
        # would rank its finished methods among themselves)
        partial = df.groupby("study")["oracle"].transform(lambda o: o.isna().any())
        df.loc[partial, "rank_oracle"] = math.nan
        df["rank_change"] = df["rank_honest"] - df["rank_oracle"]
    return df


# --------------------------------------------------------------------------- from the store
def protocol_tables(root: str | Path) -> dict[str, pd.DataFrame]:
    """Every study's tables under results directory `root` (empty tables if it has none)."""
    store = Store(root)
    studies = load_studies(store)
    records = {r["run_id"]: r for r in store.records()}
    parts: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES[:3]}
    for protocol, check in studies:
        for name, df in study_tables(protocol, records, check).items():
            parts[name].append(df)
    tables = {
        name: pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame() for name, dfs in parts.items()
    }
    oracles = {p.study: p.compares_with for p, _ in studies if p.compares_with}
    summary = tables["protocol_summary"]
    gap = gap_table(summary, oracles) if not summary.empty else pd.DataFrame()
    if not gap.empty:
        cols = [
            "study",
            "method",
            "oracle_study",
            "oracle",
            "oracle_config",
            "gap",
            "rank_oracle",
            "rank_change",
        ]
        extra = gap[cols].rename(columns={"rank_oracle": "oracle_rank"})
        tables["protocol_summary"] = summary.merge(extra, on=["study", "method"], how="left")
    tables["protocol_gap"] = gap
    return tables
