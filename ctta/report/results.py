"""A results directory as the reports read it: the collected records and protocol tables
(`load_results`), each study's finished eval and tune runs, and the study's intervals."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..run.store import collect, current_data_version
from .intervals import StudyIntervals
from .tables import protocol_tables

log = logging.getLogger(__name__)


@dataclass
class Results:
    """The collected records and protocol tables of one results directory."""

    records: pd.DataFrame
    runs: pd.DataFrame
    tune: pd.DataFrame
    summary: pd.DataFrame
    gap: pd.DataFrame


def load_results(root: str | Path) -> Results:
    """Read a results directory; a clear error when it holds no record."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such results directory")
    records = collect(root)
    if records.empty:
        raise UserError(f"{root}: no run records (run `ctta sweep launch` or `ctta run` first)")
    warn_outdated(records)
    t = protocol_tables(root)
    return Results(records, t["protocol_runs"], t["tune_table"], t["protocol_summary"], t["protocol_gap"])


def warn_outdated(records: pd.DataFrame) -> None:
    """One warning per scenario whose records scored older images than its code now makes:
    they still count; `ctta sweep launch --redo-outdated` does them again."""
    for name, versions in records.groupby("scenario")["scenario_data"]:
        current = current_data_version(name)
        if current is None:  # a plugin scenario that is not importable here: nothing to compare
            continue
        old = versions[versions < current]
        if len(old):
            log.warning(
                "%d records of scenario %r scored data version %s, the code is at %d: "
                "`ctta sweep launch --redo-outdated` does them again",
                len(old),
                name,
                "/".join(str(v) for v in sorted(old.unique())),
                current,
            )


def eval_records(res: Results, study: str) -> pd.DataFrame:
    """The finished eval runs of a study, one row per run, with its scored scenario ('case')."""
    if res.runs.empty:
        return pd.DataFrame()
    runs = res.runs[(res.runs.study == study) & (res.runs.phase == "eval") & (res.runs.status == "done")]
    runs = runs[["method", "case", "seed", "run_id"]].drop_duplicates("run_id")
    runs = runs.merge(res.records.drop(columns=["method", "seed"]), on="run_id", how="inner")
    if "peak_mb" in runs and "device" in runs:  # measured on GPUs only: CPU values (older records) were noise
        runs["peak_mb"] = runs["peak_mb"].where(runs["device"].astype(str).str.startswith("cuda"))
    return runs


def tune_records(res: Results, study: str) -> pd.DataFrame:
    """The finished tune runs of a study, one row per run, with its configuration and case."""
    if res.runs.empty:
        return pd.DataFrame()
    runs = res.runs[(res.runs.study == study) & (res.runs.phase == "tune") & (res.runs.status == "done")]
    runs = runs[["method", "config_id", "case", "seed", "run_id"]].drop_duplicates("run_id")
    return runs.merge(res.records.drop(columns=["method", "seed"]), on="run_id", how="inner")


def honest_studies(res: Results) -> list[str]:
    if res.summary.empty:
        return []
    return list(dict.fromkeys(res.summary.loc[res.summary.protocol != "oracle", "study"]))


def nothing_to_show(res: Results) -> str:
    """Why a store has no eval run for a leaderboard or a figure, in a few words."""
    studies = honest_studies(res)
    if not studies:
        return (
            "its records belong to no study of a sweep (leaderboards and figures rank a sweep's "
            "studies: `ctta sweep launch`; `ctta collect` tabulates single runs)"
        )
    runs = res.runs[res.runs.study.isin(studies)]
    counts = {
        phase: ", ".join(
            f"{n} {s}" for s, n in sorted(runs[runs.phase == phase].status.value_counts().items())
        )
        for phase in ("tune", "eval")
    }
    return (
        f"no eval run of {', '.join(studies)} has finished (tune runs: {counts['tune'] or 'none'}; eval "
        f"runs: {counts['eval'] or 'none planned yet'}); `ctta sweep status` says more"
    )


def study_intervals(res: Results, study: str, runs: pd.DataFrame) -> StudyIntervals:
    """The study's intervals, paired with its oracle study's eval runs when one measures it."""
    oracle = None
    if not res.gap.empty:
        measured = res.gap[res.gap.study == study]
        if not measured.empty:
            oracle = eval_records(res, measured["oracle_study"].iloc[0])
    return StudyIntervals(runs, oracle)
