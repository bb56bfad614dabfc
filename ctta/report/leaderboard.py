"""Leaderboards: pure functions of a results store's records and protocol tables.

`leaderboards(results)` gives one table per (study, scored scenario) of every honest study
(oracle studies only feed the gap columns): method rows; mean ± std over seeds of the
scenario kind's metrics; seeds, the chosen hyperparameters, trainable parameters, wall time,
peak memory; and, where an oracle study measures it, the oracle score, the protocol gap
(oracle − honest) and the rank change. A study with several scored scenarios also gets an
overview table, one column per scenario (e.g. the accuracy under a non-i.i.d. stream).
`write_leaderboards` writes them as Markdown, one standalone sortable HTML page, CSV and JSON.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.errors import UserError
from ..plan.metrics import LOWER_IS_BETTER
from ..run.store import collect
from .tables import protocol_tables

CL_METRICS = ("avg_inc_acc", "last_acc", "forgetting_max", "bwt")
TTA_METRICS = ("online_acc", "online_err", "vs_source")
COST = ("trainable_params", "wall_s", "peak_mb")
LABELS = {
    "avg_inc_acc": "avg inc acc (%)",
    "last_acc": "last acc (%)",
    "forgetting_max": "forgetting (pts)",
    "bwt": "BWT (pts)",
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
    t = protocol_tables(root)
    return Results(records, t["protocol_runs"], t["tune_table"], t["protocol_summary"], t["protocol_gap"])


def higher_is_better(column: str) -> bool:
    return column not in LOWER_IS_BETTER | {"trainable_params", "wall_s", "peak_mb"}


def eval_records(res: Results, study: str) -> pd.DataFrame:
    """The finished eval runs of a study, one row per run, with its scored scenario ('case')."""
    if res.runs.empty:
        return pd.DataFrame()
    runs = res.runs[(res.runs.study == study) & (res.runs.phase == "eval") & (res.runs.status == "done")]
    runs = runs[["method", "case", "seed", "run_id"]].drop_duplicates("run_id")
    return runs.merge(res.records.drop(columns=["method", "seed"]), on="run_id", how="inner")


def honest_studies(res: Results) -> list[str]:
    if res.summary.empty:
        return []
    return list(dict.fromkeys(res.summary.loc[res.summary.protocol != "oracle", "study"]))


def metric_columns(runs: pd.DataFrame) -> list[str]:
    kind = runs["kind"].iloc[0]
    if kind == "test_time":
        domains = sorted(
            {c for c in runs.columns if c.startswith("acc@") and runs[c].notna().any()},
            key=lambda c: list(runs.columns).index(c),
        )
        return [*domains, *TTA_METRICS]
    return list(CL_METRICS)


def case_table(runs: pd.DataFrame, summary: pd.DataFrame) -> pd.DataFrame:
    """One scored scenario: a row per method, `<metric>` (mean) and `<metric>_std` columns."""
    runs = runs.copy()
    if runs["kind"].iloc[0] == "test_time":
        source = runs[runs.method == "source"].groupby("seed")["online_acc"].mean()
        runs["vs_source"] = runs["online_acc"] - runs["seed"].map(source)
    metrics = [m for m in metric_columns(runs) if m in runs]
    grouped = runs.groupby("method")
    table = grouped[metrics].mean()
    std = grouped[metrics].std(ddof=1).add_suffix("_std")
    table = table.join(std)
    table["seeds"] = grouped["seed"].nunique()
    for c in COST:
        table[c] = grouped[c].mean() if c in runs else math.nan
    info = summary.set_index("method")
    table["hparams"] = info["chosen_config"].reindex(table.index)
    for c in ("oracle", "gap", "rank_change"):
        table[c] = info[c].reindex(table.index) if c in info else math.nan
    return table.reset_index()


def overview_table(runs: pd.DataFrame) -> pd.DataFrame:
    """A study with several scored scenarios: the main metric per scenario and their mean."""
    metric = "online_acc" if runs["kind"].iloc[0] == "test_time" else "last_acc"
    per_case = runs.pivot_table(index="method", columns="case", values=metric, aggfunc="mean")
    per_case.columns = [f"{metric}@{c}" for c in per_case.columns]
    per_case[f"{metric}_mean"] = per_case.mean(axis=1)
    return per_case.reset_index()


def leaderboards(res: Results) -> dict[tuple[str, str], pd.DataFrame]:
    """{(study, scored scenario): table} for every honest study with finished eval runs;
    ('<study>', 'overview') too when a study scores several scenarios."""
    out: dict[tuple[str, str], pd.DataFrame] = {}
    for study in honest_studies(res):
        runs = eval_records(res, study)
        if runs.empty:
            continue
        summary = res.summary[res.summary.study == study]
        cases = list(dict.fromkeys(runs["case"]))
        for case in cases:
            out[(study, case)] = case_table(runs[runs.case == case], summary)
        if len(cases) > 1:
            out[(study, "overview")] = overview_table(runs)
    return out


# --------------------------------------------------------------------------- rendering
UNRANKED = {"method", "seeds", "hparams", "gap", "rank_change"}


def _best(table: pd.DataFrame, column: str):
    """The best value of a column as shown (rounded as in the table, so that values that look
    equal are marked alike); None when there is nothing to choose between."""
    if column in UNRANKED:
        return None
    values = table[column].dropna().map(lambda v: _number(column, v))
    values = values.map(lambda t: float(t.replace(",", "")))
    if values.nunique() < 2:
        return None
    return values.max() if higher_is_better(column) else values.min()


def _cells(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Strings for people ('mean ± std' cells, headers with units) and, of the same shape, which
    cells hold their column's best value."""
    shown = pd.DataFrame({"method": table["method"]})
    marks = pd.DataFrame({"method": False}, index=table.index)
    for c in table.columns:
        if c in ("method",) or c.endswith("_std"):
            continue
        best = _best(table, c)
        cells, marked = [], []
        for _, row in table.iterrows():
            v = row[c]
            if c == "hparams":
                cells.append(v if isinstance(v, str) else "")
            elif v is None or (isinstance(v, float) and math.isnan(v)):
                cells.append("–")
            else:
                text = _number(c, v)
                marked.append(best is not None and float(text.replace(",", "")) == best)
                sd = row.get(f"{c}_std")
                if sd is not None and isinstance(sd, float) and not math.isnan(sd):
                    text += f" ± {sd:.1f}"
                cells.append(text)
                continue
            marked.append(False)
        label = LABELS.get(c, f"{c} (%)" if c.startswith("acc@") else c)
        shown[label], marks[label] = cells, marked
    return shown, marks


def display_table(table: pd.DataFrame, bold: tuple[str, str] = ("**", "**")) -> pd.DataFrame:
    """Strings for people, the best value per column wrapped in `bold`."""
    shown, marks = _cells(table)
    return shown.where(~marks, bold[0] + shown + bold[1])


def _number(column: str, v) -> str:
    if column in ("seeds", "trainable_params"):
        return f"{int(v):,}"
    if column == "rank_change":
        return f"{int(v):+d}"
    return f"{v:.1f}"


def _anchor(key: tuple[str, str]) -> str:
    return re.sub(r"[^a-z0-9]+", "-", " ".join(key).lower()).strip("-")


def _title(key: tuple[str, str], res: Results) -> str:
    study, case = key
    protocol = res.summary.loc[res.summary.study == study, "protocol"].iloc[0]
    return f"{study} ({protocol}): {case}"


def markdown(tables: dict, res: Results) -> str:
    parts = ["# Leaderboard", "", LEGEND, ""]
    for key, table in tables.items():
        parts += [f"## {_title(key, res)}", "", display_table(table).to_markdown(index=False), ""]
    return "\n".join(parts)


LEGEND = (
    "Mean ± standard deviation over eval seeds; **bold**: best per column. Hyperparameters were "
    "chosen by each study's protocol on data or scenarios other than the ones scored here. "
    "*protocol gap* = oracle score (tuned on the scored data itself) − honest score; *rank "
    "change* = honest rank − oracle rank (positive: the oracle flatters the method)."
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
td.best { font-weight: bold; background: #e3f4e1; }
"""


def html_page(tables: dict, res: Results) -> str:
    sections = []
    for key, table in tables.items():
        shown, marks = _cells(table)
        styler = shown.style.set_uuid(_anchor(key)).hide(axis="index")  # stable ids: files diff cleanly
        styler = styler.set_table_attributes('class="leaderboard"')
        styler = styler.set_td_classes(marks.replace({True: "best", False: ""}))
        sections.append(
            f'<section id="{_anchor(key)}"><h2>{html.escape(_title(key, res))}</h2>{styler.to_html()}</section>'
        )
    legend = html.escape(LEGEND).replace("**bold**", "<b>bold</b>")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>ctta leaderboard</title>'
        f"<style>{CSS}</style></head><body><h1>ctta leaderboard</h1><p>{legend}</p>"
        + "".join(sections)
        + f"<script>{SORT_JS}</script></body></html>\n"
    )


def write_leaderboards(results: str | Path, out: str | Path) -> list[Path]:
    """Write leaderboard.md, leaderboard.html, leaderboard.csv and leaderboard.json into `out`."""
    res = load_results(results)
    tables = leaderboards(res)
    if not tables:
        raise UserError(f"{results}: no finished eval runs of a protocol study to rank")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {"study": study, "scenario": case, **row}
        for (study, case), table in tables.items()
        for row in table.to_dict("records")
    ]
    flat = pd.DataFrame(rows)
    paths = [out / f"leaderboard.{ext}" for ext in ("md", "html", "csv", "json")]
    paths[0].write_text(markdown(tables, res))
    paths[1].write_text(html_page(tables, res))
    flat.to_csv(paths[2], index=False)
    paths[3].write_text(json.dumps(json.loads(flat.to_json(orient="records")), indent=1))
    return paths
