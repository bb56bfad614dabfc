"""The seven figures on the committed fake store: the data drawn equals the records'."""

import re
import shutil
from pathlib import Path

import matplotlib.collections
import numpy as np
import pandas as pd
import pytest

from ctta.core.errors import UserError
from ctta.report.plots import (
    accuracy_curve,
    accuracy_matrices,
    cost_vs_score,
    figures,
    gap_bars,
    method_colors,
    rank_shift,
    write_figures,
)
from ctta.report.results import eval_records, load_results, study_intervals

FAKE = Path(__file__).parent / "data" / "fake_store"


@pytest.fixture(scope="module")
def res():
    return load_results(FAKE)


@pytest.fixture(scope="module")
def colors(res):
    return method_colors(res.records["method"])


def test_colours_are_one_per_method_and_distinct(colors):
    assert len(set(colors.values())) == len(colors) == 4


def test_accuracy_curve_draws_the_mean_over_seeds_with_a_band(res, colors):
    runs = eval_records(res, "cil")
    fig = accuracy_curve(runs, colors)
    ax = fig.axes[0]
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    for method, group in runs.groupby("method"):
        assert np.allclose(lines[method], np.mean(group["acc_seen"].tolist(), axis=0))
    assert sum(isinstance(c, matplotlib.collections.PolyCollection) for c in ax.collections) == 2
    single = accuracy_curve(runs.groupby("method").head(1), colors)  # one seed: no band
    assert not any(isinstance(c, matplotlib.collections.PolyCollection) for c in single.axes[0].collections)


def test_accuracy_matrix_heatmaps_show_the_mean_matrix(res):
    runs = eval_records(res, "cil")
    fig = accuracy_matrices(runs)
    by_title = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    for method, group in runs.groupby("method"):
        shown = by_title[method].get_images()[0].get_array().filled(np.nan)
        mats = np.array(
            [[[np.nan if v is None else v for v in row] for row in m] for m in group["acc_matrix"]], float
        )
        with np.errstate(invalid="ignore"):
            expected = np.nansum(mats, 0) / (~np.isnan(mats)).sum(0)
        assert np.allclose(shown, expected, equal_nan=True)


def test_gap_bars_and_rank_shift_follow_the_gap_table(res, colors):
    gap = res.gap[res.gap.study == "tta"]
    intervals = study_intervals(res, "tta", eval_records(res, "tta")).gap_table(
        "online_acc", list(gap["method"])
    )
    gap = gap.join(intervals, on="method")
    fig = gap_bars(gap, colors)
    heights = sorted(round(p.get_height(), 6) for p in fig.axes[0].patches)
    assert heights == sorted(round(v, 6) for v in [*gap["honest"], *gap["oracle"]])
    # the whiskers span each score's 95 % interval
    whiskers = sorted(
        tuple(np.round(seg[:, 1], 6))
        for c in fig.axes[0].collections
        if isinstance(c, matplotlib.collections.LineCollection)
        for seg in c.get_segments()
    )
    expected = sorted(
        (round(r[f"{k}_lo"], 6), round(r[f"{k}_hi"], 6))
        for _, r in gap.iterrows()
        for k in ("honest", "oracle")
    )
    assert whiskers == expected and any(lo < hi for lo, hi in expected)
    fig = rank_shift(gap, colors)
    ends = sorted((tuple(line.get_ydata())) for line in fig.axes[0].get_lines())
    assert ends == sorted(zip(gap["rank_oracle"], gap["rank_honest"]))


def test_cost_vs_score_is_log_scaled(colors):
    table = pd.DataFrame({"method": ["source", "tent"], "wall_s": [0.5, 5.0], "online_acc": [20.0, 40.0]})
    ax = cost_vs_score(table, colors, "online_acc").axes[0]
    assert ax.get_xscale() == "log"
    assert np.allclose(np.vstack([c.get_offsets() for c in ax.collections]), [[0.5, 20.0], [5.0, 40.0]])


def test_every_figure_kind_is_written_as_png_and_pdf(tmp_path):
    paths = write_figures(FAKE, tmp_path)
    stems = {p.stem for p in paths}
    kinds = {re.search(r"-(\d)-", stem).group(1) for stem in stems}
    assert kinds == {"1", "2", "3", "4", "5", "6", "7"}
    assert {p.suffix for p in paths} == {".png", ".pdf"} and len(paths) == 2 * len(stems)
    assert all(p.stat().st_size > 5000 for p in paths)


def test_store_without_oracle_skips_gap_figures(tmp_path, res):
    store = tmp_path / "store"
    shutil.copytree(FAKE, store)
    for f in (store / "studies").glob("*_oracle.json"):
        f.unlink()
    stems = {stem for stem, _ in figures(load_results(store))}
    assert not any("-3-" in s or "-4-" in s for s in stems) and any("-1-" in s for s in stems)


def test_empty_store_is_an_error(tmp_path):
    with pytest.raises(UserError, match="no run records"):
        write_figures(tmp_path, tmp_path / "out")
