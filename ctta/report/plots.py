"""Figures for papers: pure functions of a results store's records and protocol tables.

One function per figure; each takes a DataFrame (eval records of one scored scenario, or a
protocol table) and returns a matplotlib Figure sized for a two-column paper (3.4 in per
column, 7 in across). `method_colors` gives every method one colour in every figure.
`write_figures` draws every figure that the store's studies allow, as PNG and PDF.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..core.errors import UserError  # noqa: E402
from .intervals import tune_intervals  # noqa: E402
from .results import (  # noqa: E402
    Results,
    eval_records,
    honest_studies,
    load_results,
    nothing_to_show,
    study_intervals,
    tune_records,
)
from .stats import Bootstrap, interval  # noqa: E402

log = logging.getLogger(__name__)

COLUMN, PAGE = 3.4, 7.0  # inches: one column, full width of a two-column paper
plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7, "figure.dpi": 150})


def method_colors(methods) -> dict[str, tuple]:
    """One colour per method, stable for a store: its sorted method names index tab20, the ten
    dark hues first (tab20 pairs a dark and a light shade of each hue)."""
    cmap = plt.get_cmap("tab20")
    order = [*range(0, 20, 2), *range(1, 20, 2)]
    return {m: cmap(order[i % 20]) for i, m in enumerate(sorted(set(methods)))}


def _legend_right(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1), frameon=False)


def accuracy_curve(runs: pd.DataFrame, colors: dict) -> plt.Figure:
    """1. Accuracy on all seen classes (domains) after each task, mean over seeds, band = 95 %
    bootstrap interval over seeds."""
    fig, ax = plt.subplots(figsize=(COLUMN * 1.4, 2.4))
    boot = Bootstrap(sorted(runs["seed"].unique()))
    for method, group in runs.groupby("method"):
        acc = np.array(group["acc_seen"].tolist(), dtype=float)
        mean, x = acc.mean(0), np.arange(1, acc.shape[1] + 1)
        ax.plot(x, mean, marker="o", ms=3, color=colors[method], label=method)
        if len(acc) > 1:
            bounds = np.array(
                [interval(boot.seed_mean(dict(zip(group["seed"], acc[:, t])))) for t in range(acc.shape[1])]
            )
            ax.fill_between(x, bounds[:, 0], bounds[:, 1], color=colors[method], alpha=0.2, lw=0)
    seen = "domains" if _domain_incremental(runs) else "classes"
    ax.set(xlabel="after task", ylabel=f"accuracy on seen {seen} (%)", ylim=(0, 100))
    ax.set_xticks(x)
    _legend_right(fig, ax)
    fig.tight_layout()
    return fig


def _domain_incremental(runs: pd.DataFrame) -> bool:
    return runs["kind"].iloc[0] == "domain_incremental"


def mean_matrix(group: pd.DataFrame) -> np.ndarray:
    """Mean accuracy matrix over seeds (NaN above the diagonal: tasks not yet seen). Domain-
    incremental runs score every domain, before the first task too: that row comes first."""
    rows = [
        ([list(r["acc_initial"])] if isinstance(r.get("acc_initial"), list) else []) + list(r["acc_matrix"])
        for _, r in group.iterrows()
    ]
    mats = [np.array([[np.nan if v is None else v for v in row] for row in m], dtype=float) for m in rows]
    stack = np.stack(mats)
    seen = ~np.isnan(stack)
    with np.errstate(invalid="ignore"):  # 0 / 0 above the diagonal stays NaN
        return np.where(seen, stack, 0).sum(0) / seen.sum(0)


def accuracy_matrices(runs: pd.DataFrame) -> plt.Figure:
    """2. Accuracy-matrix heatmap per method: row i = after task i, column j = task j; for
    domain-incremental runs the full domain x domain matrix (future domains above the
    diagonal) under a first row "start" (before the first task)."""
    methods = sorted(runs["method"].unique())
    cols = min(4, len(methods))
    rows = -(-len(methods) // cols)
    domains = _domain_incremental(runs)
    height = 2.1 if domains else 1.8  # room for domain names
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE, height * rows + 0.3), squeeze=False)
    for ax in axes.flat[len(methods) :]:
        ax.axis("off")
    # one domain order in every run: name the domains; orders drawn per seed: number them
    orders = {tuple(o) for o in runs["domain_order"]} if domains and "domain_order" in runs else set()
    names = list(orders.pop()) if len(orders) == 1 else None
    for i, (ax, method) in enumerate(zip(axes.flat, methods)):
        m = mean_matrix(runs[runs.method == method])
        im = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        ax.set_title(method)
        n = m.shape[1]
        if domains:
            # every panel has the same axes: names on the outer ones only, so none overlap
            labels = names or [str(j) for j in range(1, n + 1)]
            left, bottom = i % cols == 0, i + cols >= len(methods)
            ax.set_xticks(range(n), labels if bottom else [], rotation=45, ha="right", fontsize=6)
            ax.set_yticks(range(m.shape[0]), ["start", *labels][: m.shape[0]] if left else [], fontsize=6)
            ax.set(xlabel="domain j" if bottom else "", ylabel="after domain i" if left else "")
        else:
            ax.set(xlabel="task j", ylabel="after task i")
            ax.set_xticks(range(n), range(1, n + 1))
            ax.set_yticks(range(m.shape[0]), range(1, m.shape[0] + 1))
    fig.colorbar(im, ax=axes, label="accuracy (%)", shrink=0.8)
    return fig


def _whiskers(table: pd.DataFrame, column: str) -> np.ndarray:
    """Asymmetric error bars [[below], [above]] from `<column>_lo` and `<column>_hi`."""
    return np.array([table[column] - table[f"{column}_lo"], table[f"{column}_hi"] - table[column]])


def gap_bars(gap: pd.DataFrame, colors: dict) -> plt.Figure:
    """3. Honest score (tuned elsewhere) beside the oracle score (hatched: tuned on the scored
    data), with 95 % bootstrap intervals."""
    gap = gap.dropna(subset=["honest", "oracle"]).sort_values("honest", ascending=False)
    fig, ax = plt.subplots(figsize=(COLUMN * 1.4, 2.4))
    x = np.arange(len(gap))
    c = [colors[m] for m in gap["method"]]
    ax.bar(
        x - 0.2,
        gap["honest"],
        0.4,
        yerr=_whiskers(gap, "honest"),
        color=c,
        capsize=2,
        label="honest (separated tuning)",
    )
    ax.bar(
        x + 0.2,
        gap["oracle"],
        0.4,
        yerr=_whiskers(gap, "oracle"),
        color=c,
        alpha=0.45,
        hatch="//",
        capsize=2,
        label="oracle (tuned on scored data)",
    )
    ax.set_xticks(x, gap["method"], rotation=30, ha="right")
    ax.set_ylabel(f"{gap['metric'].iloc[0]} (%)")
    _legend_right(fig, ax)
    fig.tight_layout()
    return fig


def rank_shift(gap: pd.DataFrame, colors: dict) -> plt.Figure:
    """4. Slope chart: each method's rank under oracle tuning and under separated tuning, with
    the 95 % bootstrap interval of each rank (whiskers) and, for a method whose rank changes,
    the share p of replicates in which its two ranks differ."""
    gap = gap.dropna(subset=["rank_honest", "rank_oracle"])
    fig, ax = plt.subplots(figsize=(COLUMN * 1.2, 0.25 * len(gap) + 1.2))
    for _, r in gap.iterrows():
        color = colors[r["method"]]
        ax.plot([0, 1], [r["rank_oracle"], r["rank_honest"]], marker="o", color=color)
        for x, name in ((0, "rank_oracle"), (1, "rank_honest")):
            if f"{name}_lo" in r and np.isfinite(r[f"{name}_lo"]):
                ax.vlines(x, r[f"{name}_lo"], r[f"{name}_hi"], color=color, lw=3, alpha=0.3)
        label = r["method"]
        if r["rank_honest"] != r["rank_oracle"] and np.isfinite(r.get("rank_change_p", np.nan)):
            label += f" (p={r['rank_change_p']:.2f})"
        ax.annotate(label, (1, r["rank_honest"]), xytext=(6, 0), textcoords="offset points", va="center")
        ax.annotate(
            f"{int(r['rank_oracle'])}",
            (0, r["rank_oracle"]),
            xytext=(-10, 0),
            textcoords="offset points",
            va="center",
            ha="right",
        )
    ax.set_xticks([0, 1], ["oracle tuning", "separated tuning"])
    ax.set_xlim(-0.3, 1.6)
    ax.invert_yaxis()
    ax.set_ylabel("rank (1 = best)")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def sensitivity(tune: pd.DataFrame, colors: dict) -> plt.Figure:
    """5. Tune-phase score of every configuration of each method with its 95 % bootstrap
    interval (over tune seeds and, for online accuracy, test batches; a single tune seed of a
    continual-learning study has none), the chosen one starred."""
    methods = [m for m, g in tune.groupby("method") if g["score"].notna().sum() > 1] or sorted(
        tune["method"].unique()
    )
    cols = min(3, len(methods))
    rows = -(-len(methods) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PAGE, 1.7 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(methods) :]:
        ax.axis("off")
    metric = tune["metric"].iloc[0]
    for ax, method in zip(axes.flat, methods):
        g = tune[tune.method == method].reset_index(drop=True)
        x = np.arange(len(g))
        yerr = _whiskers(g, "score") if "score_lo" in g else None
        ax.errorbar(x, g["score"], yerr=yerr, marker="o", ms=3, color=colors[method], capsize=2)
        chosen = g.index[g["chosen"].fillna(False).astype(bool)]
        ax.scatter(chosen, g.loc[chosen, "score"], marker="*", s=80, color="k", zorder=3, label="chosen")
        ax.set_xticks(x, [_short(c) for c in g["config"]], rotation=30, ha="right", fontsize=6)
        ax.set_title(method)
        ax.set_ylabel(f"tune {metric} (%)")
    fig.tight_layout()
    return fig


def _short(config: str) -> str:
    return config.replace('"', "").strip("{}").replace(", ", "\n") or "defaults"


def tta_errors(runs: pd.DataFrame, colors: dict) -> plt.Figure:
    """6. Test-time: error per shift type per method (heatmap), and online accuracy over the
    stream (moving average over batches, mean over seeds), domain boundaries dashed."""
    domains = [c for c in runs.columns if c.startswith("acc@") and runs[c].notna().any()]
    err = 100 - runs.groupby("method")[domains].mean()
    err.columns = [c[4:] for c in domains]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(PAGE, 0.28 * len(err) + 1.8), width_ratios=(1, 1.3))
    im = ax1.imshow(err.values, cmap="magma_r", vmin=0, vmax=100, aspect="auto")
    ax1.set_xticks(range(err.shape[1]), err.columns, rotation=30, ha="right")
    ax1.set_yticks(range(len(err)), err.index)
    for (i, j), v in np.ndenumerate(err.values):
        ax1.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6, color="w" if v > 50 else "k")
    fig.colorbar(im, ax=ax1, label="error (%)")
    for method, group in runs.groupby("method"):
        curves = [
            np.array(c, float) / np.array(n, float) * 100
            for c, n in zip(group["online_correct"], group["online_n"])
        ]
        acc = np.mean(curves, 0)
        k = max(1, len(acc) // 20)
        smooth = np.convolve(acc, np.ones(k) / k, mode="valid")
        ax2.plot(np.arange(len(smooth)) + k, smooth, color=colors[method], label=method, lw=1)
    labels = runs["online_domain"].iloc[0]
    for i in range(1, len(labels)):
        if labels[i] != labels[i - 1]:
            ax2.axvline(i + 0.5, color="grey", ls="--", lw=0.6)  # between batch i and i + 1
    ax2.set(xlabel="test batch", ylabel="online accuracy (%)", ylim=(0, 100))
    _legend_right(fig, ax2)
    fig.tight_layout()
    return fig


def cost_vs_score(table: pd.DataFrame, colors: dict, metric: str) -> plt.Figure:
    """7. Score against wall time per run (log scale), one point per method."""
    fig, ax = plt.subplots(figsize=(COLUMN * 1.3, 2.4))
    for _, r in table.iterrows():
        ax.scatter(r["wall_s"], r[metric], color=colors[r["method"]], s=20)
        ax.annotate(
            r["method"], (r["wall_s"], r[metric]), xytext=(3, 3), textcoords="offset points", fontsize=6
        )
    ax.set_xscale("log")
    ax.set(xlabel="wall time per run (s, log scale)", ylabel=f"{metric} (%)")
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- the whole store
def figures(res: Results) -> Iterator[tuple[str, plt.Figure]]:
    """(file stem, figure) for everything the store's honest studies allow, one at a time so
    that a caller can save and close each before the next is drawn."""
    colors = method_colors(res.records["method"])
    for study in honest_studies(res):
        runs = eval_records(res, study)
        if runs.empty:
            log.info("%s: no finished eval runs, no figures", study)
            continue
        continual = runs["kind"].iloc[0] != "test_time"
        cases = list(dict.fromkeys(runs["case"]))
        for i, case in enumerate(cases):
            label = case if re.fullmatch(r"[\w.-]+", case) else str(i + 1)  # a test label, or its position
            tag = study if len(cases) == 1 else f"{study}-{label}"
            here = runs[runs.case == case]
            if continual:
                yield f"{tag}-1-accuracy-curve", accuracy_curve(here, colors)
                yield f"{tag}-2-accuracy-matrix", accuracy_matrices(here)
            else:
                yield f"{tag}-6-test-time", tta_errors(here, colors)
        gap = res.gap[res.gap.study == study] if not res.gap.empty else pd.DataFrame()
        if gap.empty or gap["oracle"].isna().all():
            log.info("%s: no oracle study measures its gap: figures 3 and 4 skipped", study)
        else:
            intervals = study_intervals(res, study, runs).gap_table(
                gap["metric"].iloc[0], list(gap["method"])
            )
            gap = gap.join(intervals, on="method")
            yield f"{study}-3-protocol-gap", gap_bars(gap, colors)
            yield f"{study}-4-rank-shift", rank_shift(gap, colors)
        tune = res.tune[(res.tune.study == study)] if not res.tune.empty else pd.DataFrame()
        if not tune.empty and tune["score"].notna().any():
            tune = tune.merge(
                tune_intervals(tune_records(res, study), tune["metric"].iloc[0]), on="config_id", how="left"
            )
            yield f"{study}-5-sensitivity", sensitivity(tune, colors)
        metric = "last_acc" if continual else "online_acc"
        per_method = runs.groupby("method")[[metric, "wall_s"]].mean().reset_index()
        yield f"{study}-7-cost-vs-score", cost_vs_score(per_method, colors, metric)


def write_figures(results: str | Path, out: str | Path) -> list[Path]:
    """Draw every figure of a results directory into `out` as PNG and PDF; returns the paths."""
    res = load_results(results)
    out = Path(out)
    paths = []
    for stem, fig in figures(res):
        out.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            paths.append(out / f"{stem}.{ext}")
            fig.savefig(paths[-1], bbox_inches="tight")
        plt.close(fig)
    if not paths:
        raise UserError(f"{results}: nothing to draw: {nothing_to_show(res)}")
    return paths
