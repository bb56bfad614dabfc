"""Leaderboards: pure functions of a results store's records and protocol tables.

`leaderboards(results)` gives one table per (study, scored scenario) of every honest study
(oracle studies only feed the gap columns): method rows; the mean over seeds of the
scenario kind's metrics with 95 % bootstrap intervals (`ctta.report.intervals`); seeds, the
chosen hyperparameters, trainable parameters, wall time, peak memory (of GPU runs; n/a on
the CPU); and, where an oracle study measures it, the oracle score, the protocol gap
(oracle − honest) and the rank change, with their intervals. A study with several scored
scenarios also gets an overview table, one column per scenario (e.g. the accuracy under a non-i.i.d. stream).
`write_leaderboards` writes them as Markdown, one standalone sortable HTML page, CSV and JSON.
"""

from __future__ import annotations

import html
import json
import math
import re
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..plan.metrics import LOWER_IS_BETTER
from .claims import evaluate_claims
from .claims import markdown as claims_markdown
from .intervals import StudyIntervals
from .results import Results, eval_records, honest_studies, load_results, nothing_to_show, study_intervals
from .stats import interval

CL_METRICS = ("avg_inc_acc", "last_acc", "forgetting_max", "bwt")
DIL_METRICS = (*CL_METRICS, "fwt")
TTA_METRICS = ("online_acc", "online_err", "vs_source")
COST = ("trainable_params", "wall_s", "peak_mb")
LABELS = {
    "avg_inc_acc": "avg inc acc (%)",
    "last_acc": "last acc (%)",
    "forgetting_max": "forgetting (pts)",
    "bwt": "BWT (pts)",
    "fwt": "FWT (pts)",
    "online_acc": "online acc (%)",
    "online_err": "online err (%)",
    "vs_source": "vs source (pts)",
    "trainable_params": "trainable params",
    "wall_s": "wall (s)",
    "peak_mb": "peak mem (MB)",
    "oracle": "oracle score",
    "gap": "protocol gap (pts)",
    "rank_change": "rank change",
}


def higher_is_better(column: str) -> bool:
    return column not in LOWER_IS_BETTER | {"trainable_params", "wall_s", "peak_mb"}


def metric_columns(runs: pd.DataFrame) -> list[str]:
    kind = runs["kind"].iloc[0]
    if kind == "test_time":
        domains = sorted(
            {c for c in runs.columns if c.startswith("acc@") and runs[c].notna().any()},
            key=lambda c: list(runs.columns).index(c),
        )
        return [*domains, *TTA_METRICS]
    return list(DIL_METRICS if kind == "domain_incremental" else CL_METRICS)


def case_table(runs: pd.DataFrame, summary: pd.DataFrame, intervals: StudyIntervals) -> pd.DataFrame:
    """One scored scenario: a row per method; `<metric>` (the mean over seeds) with its 95 %
    interval `<metric>_lo`, `<metric>_hi`; costs; the chosen configuration; and the oracle
    score, protocol gap and rank change with their intervals."""
    case = runs["case"].iloc[0]
    runs = runs.copy()
    metrics = [m for m in metric_columns(runs) if m in runs or m == "vs_source"]
    if "source" not in set(runs["method"]):
        metrics = [m for m in metrics if m != "vs_source"]
    methods = sorted(runs["method"].unique())
    rows = []
    for method in methods:
        row: dict = {"method": method}
        for m in (*metrics, *(c for c in COST[1:] if c in runs)):
            row[m] = intervals.point(case, method, m)
            row[f"{m}_lo"], row[f"{m}_hi"] = intervals.interval(case, method, m)
        mine = runs[runs.method == method]
        row["seeds"] = mine["seed"].nunique()
        row["trainable_params"] = mine["trainable_params"].mean() if "trainable_params" in mine else math.nan
        rows.append(row)
    table = pd.DataFrame(rows).set_index("method")
    info = summary.set_index("method")
    table["hparams"] = info["chosen_config"].reindex(table.index)
    for c in ("oracle", "gap", "rank_change"):
        table[c] = info[c].reindex(table.index) if c in info else math.nan
    metric = summary["metric"].iloc[0] if not summary.empty else None
    if metric is not None and "gap" in info and info["gap"].notna().any():
        table = table.join(intervals.gap_table(metric, methods))
    return table.reset_index()


def overview_table(runs: pd.DataFrame, intervals: StudyIntervals) -> pd.DataFrame:
    """A study with several scored scenarios: the main metric per scenario and their mean,
    each with its interval."""
    metric = "online_acc" if runs["kind"].iloc[0] == "test_time" else "last_acc"
    cases = list(dict.fromkeys(runs["case"]))
    rows = []
    for method in sorted(runs["method"].unique()):
        row: dict = {"method": method}
        for case in cases:
            col = f"{metric}@{case}"
            row[col] = intervals.point(case, method, metric)
            row[f"{col}_lo"], row[f"{col}_hi"] = intervals.interval(case, method, metric)
        row[f"{metric}_mean"] = sum(row[f"{metric}@{c}"] for c in cases) / len(cases)
        row[f"{metric}_mean_lo"], row[f"{metric}_mean_hi"] = interval(intervals.score(method, metric))
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboards(res: Results) -> dict[tuple[str, str], pd.DataFrame]:
    """{(study, scored scenario): table} for every honest study with finished eval runs;
    ('<study>', 'overview') too when a study scores several scenarios."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for study in honest_studies(res):
        runs = eval_records(res, study)
        if runs.empty:
            continue
        intervals = study_intervals(res, study, runs)
        summary = res.summary[res.summary.study == study]
        cases = list(dict.fromkeys(runs["case"]))
        for case in cases:
            out[(study, case)] = case_table(runs[runs.case == case], summary, intervals)
        if len(cases) > 1:
            out[(study, "overview")] = overview_table(runs, intervals)
    return out


# --------------------------------------------------------------------------- rendering
UNRANKED = {"method", "seeds", "hparams", "gap", "rank_change"}
BOUNDS = ("_lo", "_hi", "_p")


def _marks(table: pd.DataFrame, column: str) -> list[bool]:
    """Which rows to mark best in `column`: the best value as shown, and every row whose 95 %
    interval overlaps the best row's (a difference the intervals cannot tell from noise). None
    marked when there is nothing to choose between."""
    if column in UNRANKED or column == "hparams":
        return [False] * len(table)
    shown = table[column].map(
        lambda v: float(_number(column, v).replace(",", "")) if _finite(v) else math.nan
    )
    if shown.dropna().nunique() < 2:
        return [False] * len(table)
    best = shown.idxmax() if higher_is_better(column) else shown.idxmin()
    if f"{column}_lo" not in table:
        return (shown == shown[best]).tolist()
    lo, hi = table[f"{column}_lo"], table[f"{column}_hi"]
    return [bool(shown[i] == shown[best] or (lo[i] <= hi[best] and lo[best] <= hi[i])) for i in table.index]


def _cells(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strings for people ('mean [lo, hi]' cells, headers with units) and, of the same shape,
    which cells to mark best."""
    shown = pd.DataFrame({"method": table["method"]})
    marks = pd.DataFrame({"method": False}, index=table.index)
    for c in table.columns:
        if c == "method" or c.endswith(BOUNDS) or c.endswith("_std"):
            continue
        cells = []
        for _, row in table.iterrows():
            v = row[c]
            if c == "hparams":
                cells.append(v if isinstance(v, str) else "")
            elif not _finite(v):
                cells.append("n/a" if c == "peak_mb" else "–")
            else:
                text = _number(c, v)
                lo, hi = row.get(f"{c}_lo"), row.get(f"{c}_hi")
                if _finite(lo) and _finite(hi):
                    text += f" [{_number(c, lo)}, {_number(c, hi)}]"
                if _finite(row.get(f"{c}_p")):
                    text += f" p={row[f'{c}_p']:.2f}"
                cells.append(text)
        label = LABELS.get(c, f"{c} (%)" if c.startswith("acc@") else c)
        shown[label], marks[label] = cells, _marks(table, c)
    return shown, marks


def display_table(table: pd.DataFrame, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """Strings for people, the best values per column wrapped in `bold`."""
    shown, marks = _cells(table)
    return shown.where(~marks, bold[0] + shown + bold[1])


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(column: str, v) -> str:
    if column in ("seeds", "trainable_params"):
        return f"{int(v):,}"
    if column.startswith("rank_change"):
        return f"{int(round(v)):+d}"
    return f"{v:.1f}"


def _anchor(key: tuple[str, str]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", " ".join(key).lower()).strip("-")


def _title(key: tuple[str, str], res: Results) -> str:
    study, case = key
    protocol = res.summary.loc[res.summary.study == study, "protocol"].iloc[0]
    return f"{study} ({protocol}): {case}"


def markdown(tables: dict, res: Results, claims: pd.DataFrame) -> str:
    parts = ["# Leaderboard", "", LEGEND, ""]
    for key, table in tables.items():
        parts += [f"## {_title(key, res)}", "", display_table(table).to_markdown(index=False), ""]
    parts += ["## Claims", "", CLAIMS_LEGEND, "", claims_markdown(claims), ""]
    return "\n".join(parts)


LEGEND = (
    "Mean over eval seeds [95 % bootstrap interval over seeds and, for online accuracy, over test "
    "batches]; **bold**: the best value per column and every value whose interval overlaps the "
    "best one's. Hyperparameters were chosen by each study's protocol on data or scenarios other "
    "than the ones scored here. *protocol gap* = oracle score (tuned on the scored data itself) − "
    "honest score; *rank change* = honest rank − oracle rank (positive: the oracle flatters the "
    "method), with p = the share of bootstrap replicates in which the two ranks differ. *peak "
    "mem*: CUDA's peak allocated memory of GPU runs; n/a for CPU runs (not measured)."
)

CLAIMS_LEGEND = (
    "The seed papers' claims, tested on the studies above (`ctta claims`): d is the difference "
    "in the claimed direction with its 95 % paired bootstrap interval; the verdict rules are in "
    "ctta/report/claims.py."
)

SORT_JS = """
document.querySelectorAll("table.leaderboard").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, col) {
    th.style.cursor = "pointer";
    th.title = "sort";
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-sort") !== "asc";
      table.querySelectorAll("thead th").forEach(function (h) { h.removeAttribute("data-sort"); });
      th.setAttribute("data-sort", asc ? "asc" : "desc");
      function key(row) {
        var text = row.cells[col].textContent.replace(/,/g, "").trim();
        var num = parseFloat(text);
        return isNaN(num) ? text.toLowerCase() : num;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return typeof x === "number" ? -1 : 1; }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table.leaderboard { border-collapse: collapse; margin-bottom: 2em; font-size: 14px; }
table.leaderboard th, table.leaderboard td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
table.leaderboard td:first-child, table.leaderboard th:first-child { text-align: left; }
table.leaderboard th { background: #eef2f7; }
table.leaderboard th[data-sort="asc"]::after { content: " \\25B2"; }
table.leaderboard th[data-sort="desc"]::after { content: " \\25BC"; }
table.claims { border-collapse: collapse; font-size: 13px; }
table.claims th, table.claims td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
td.best { font-weight: bold; background: #e3f4e1; }
"""


def html_page(tables: dict, res: Results, claims: pd.DataFrame) -> str:
    sections = []
    for key, table in tables.items():
        shown, marks = _cells(table)
        styler = shown.style.set_uuid(_anchor(key)).hide(axis="index")  # stable ids: files diff cleanly
        styler = styler.set_table_attributes('class="leaderboard"')
        styler = styler.set_td_classes(marks.replace({True: "best", False: ""}))
        sections.append(
            f'<section id="{_anchor(key)}"><h2>{html.escape(_title(key, res))}</h2>{styler.to_html()}</section>'
        )
    claims_table = claims[["claim", "statement", "study", "evidence", "verdict", "comment"]]
    sections.append(
        f'<section id="claims"><h2>Claims</h2><p>{html.escape(CLAIMS_LEGEND)}</p>'
        + claims_table.style.set_uuid("claims")
        .hide(axis="index")
        .set_table_attributes('class="claims"')
        .to_html()
        + "</section>"
    )
    legend = html.escape(LEGEND).replace("**bold**", "<b>bold</b>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>ctta leaderboard</title>'
        f"<style>{CSS}</style></head><body><h1>ctta leaderboard</h1><p>{legend}</p>"
        + "".join(sections)
        + f"<script>{SORT_JS}</script></body></html>\n"
    )


def write_leaderboards(results: str | Path, out: str | Path) -> list[Path]:
    """Write leaderboard.md, leaderboard.html (both with the claims table), leaderboard.csv and
    leaderboard.json into `out`."""
    res = load_results(results)
    tables = leaderboards(res)
    if not tables:
        raise UserError(f"{results}: nothing to rank: {nothing_to_show(res)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"study": study, "scenario": case, **row}
        for (study, case), table in tables.items()
        for row in table.to_dict("records")
    ]
    flat = pd.DataFrame(rows)
    claims = evaluate_claims(res)
    paths = [out / f"leaderboard.{ext}" for ext in ("md", "html", "csv", "json")]
    paths[0].write_text(markdown(tables, res, claims))
    paths[1].write_text(html_page(tables, res, claims))
    flat.to_csv(paths[2], index=False)
    paths[3].write_text(json.dumps(json.loads(flat.to_json(orient="records")), indent=1))
    return paths
