"""Leaderboards from the committed fake store (tests/data/make_fake_store.py): values against the
records themselves, the protocol gap, single-seed and empty stores, the CLI."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from ctta.core.errors import UserError
from ctta.report.leaderboard import leaderboards, write_leaderboards
from ctta.report.results import load_results
from ctta.run.store import collect

FAKE = Path(__file__).parent / "data" / "fake_store"


def run_cli(args, capsys):
    from ctta.cli import main

    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


@pytest.fixture(scope="module")
def tables():
    return leaderboards(load_results(FAKE))


def eval_runs(study):
    runs = pd.read_csv(FAKE / "protocol_runs.csv")
    ids = runs[(runs.study == study) & (runs.phase == "eval")]["run_id"]
    return collect(FAKE).set_index("run_id").loc[sorted(set(ids))]


def test_one_table_per_honest_study_with_every_method(tables):
    assert sorted(study for study, _ in tables) == ["cil", "tta"]
    for (study, _), table in tables.items():
        assert sorted(table["method"]) == sorted(eval_runs(study)["method"].unique())


def test_cl_columns_are_means_and_intervals_over_the_eval_seeds(tables):
    ((_, table),) = [(k, t) for k, t in tables.items() if k[0] == "cil"]
    runs = eval_runs("cil")
    for metric in ("avg_inc_acc", "last_acc", "forgetting_max", "bwt"):
        expected = runs.groupby("method")[metric]
        got = table.set_index("method")
        assert got[metric].to_dict() == pytest.approx(expected.mean().to_dict())
        # two seeds: a quarter of the resamples draw the lower one twice, a quarter the higher one,
        # so the 95 % percentile interval runs from the lower seed's value to the higher one's
        assert got[f"{metric}_lo"].to_dict() == pytest.approx(expected.min().to_dict())
        assert got[f"{metric}_hi"].to_dict() == pytest.approx(expected.max().to_dict())
    assert (table["seeds"] == 2).all()
    assert table.set_index("method").loc["simplecil", "trainable_params"] == 0


def test_tta_columns_per_shift_and_relative_to_source(tables):
    ((_, table),) = [(k, t) for k, t in tables.items() if k[0] == "tta"]
    runs = eval_runs("tta")
    t = table.set_index("method")
    for domain in ("acc@gaussian_noise", "acc@contrast", "online_acc", "online_err"):
        assert t[domain].to_dict() == pytest.approx(runs.groupby("method")[domain].mean().to_dict())
    source = runs[runs.method == "source"].set_index("seed")["online_acc"]
    tent = runs[runs.method == "tent"].set_index("seed")["online_acc"]
    assert t.loc["tent", "vs_source"] == pytest.approx((tent - source).mean())
    assert t.loc["source", "vs_source"] == 0


def test_gap_and_rank_change_come_from_the_oracle_study(tables):
    gap = pd.read_csv(FAKE / "protocol_gap.csv").set_index(["study", "method"])
    for (study, _), table in tables.items():
        for _, row in table.iterrows():
            assert row["gap"] == pytest.approx(gap.loc[(study, row["method"]), "gap"])
            assert row["gap"] >= 0  # the oracle's choice includes the honest one


def test_written_files(tmp_path):
    paths = write_leaderboards(FAKE, tmp_path)
    assert [p.name for p in paths] == [f"leaderboard.{e}" for e in ("md", "html", "csv", "json")]
    md = paths[0].read_text()
    assert md.count("\n## ") == 3 and "\n## Claims\n" in md and "| reality_check" in md  # 2 tables + claims
    assert "| simplecil" in md and " [" in md and "**" in md
    rows = json.loads(paths[3].read_text())
    assert {r["method"] for r in rows} == {"finetune", "simplecil", "source", "tent"}
    assert all(isinstance(r["online_acc" if r["study"] == "tta" else "last_acc"], float) for r in rows)
    csv = pd.read_csv(paths[2])
    assert pd.api.types.is_float_dtype(csv["last_acc"]) and len(csv) == 4
    assert {"last_acc_lo", "last_acc_hi", "online_acc_lo", "gap_lo", "rank_change_p"} <= set(csv.columns)


def test_best_value_per_column_is_marked(tables):
    ((_, table),) = [(k, t) for k, t in tables.items() if k[0] == "cil"]
    from ctta.report.leaderboard import display_table

    shown = display_table(table)
    best = table.loc[table["last_acc"].idxmax(), "method"]
    row = shown[shown.method == best].iloc[0]
    assert row["last acc (%)"].startswith("**")
    other = shown[shown.method != best].iloc[0]
    assert not other["last acc (%)"].startswith("**")


def test_bold_marks_every_value_whose_interval_overlaps_the_best_one():
    from ctta.report.leaderboard import display_table

    table = pd.DataFrame(
        {
            "method": ["a", "b", "c", "d"],
            "last_acc": [50.0, 48.0, 30.0, 44.0],
            "last_acc_lo": [45.0, 40.0, 25.0, 39.0],
            "last_acc_hi": [55.0, 52.0, 35.0, 44.9],  # d's interval ends just below a's
            "forgetting_max": [10.0, 20.0, 5.0, 5.0],  # lower is better; no intervals: ties marked
        }
    )
    shown = display_table(table).set_index("method")
    bold = {m for m in "abcd" if shown.loc[m, "last acc (%)"].startswith("**")}
    assert bold == {"a", "b"}
    assert shown.loc["b", "last acc (%)"] == "**48.0 [40.0, 52.0]**"
    assert {m for m in "abcd" if shown.loc[m, "forgetting (pts)"].startswith("**")} == {"c", "d"}


def test_gap_and_rank_change_carry_intervals(tables):
    for (_, _), table in tables.items():
        t = table.set_index("method")
        # the fake store's oracle picked the honest configurations: every replicate's gap is 0
        assert (t["gap_lo"] == 0).all() and (t["gap_hi"] == 0).all()
        assert (t["rank_change_p"] == 0).all()


def test_single_seed_and_no_oracle(tmp_path):
    store = tmp_path / "store"
    shutil.copytree(FAKE, store)
    for f in (store / "studies").glob("*_oracle.json"):  # a sweep without oracle studies
        f.unlink()
    runs = pd.read_csv(FAKE / "protocol_runs.csv")
    for run_id in runs[(runs.phase == "eval") & (runs.seed == 2)]["run_id"]:  # seed 2 never ran
        shutil.rmtree(store / "runs" / run_id, ignore_errors=True)
    tables = leaderboards(load_results(store))
    for table in tables.values():
        assert (table["seeds"] == 1).all()
        assert table["gap"].isna().all()
    cil = next(t for (study, _), t in tables.items() if study == "cil")
    assert (cil["last_acc_lo"] == cil["last_acc"]).all() and (cil["last_acc_hi"] == cil["last_acc"]).all()
    write_leaderboards(store, tmp_path / "out")


def test_empty_or_missing_store_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(UserError, match="no run records"):
        load_results(tmp_path)
    with pytest.raises(UserError, match="no such results directory"):
        load_results(tmp_path / "nope")
    code, out = run_cli(["leaderboard", str(tmp_path)], capsys)
    assert code == 2 and out.err.strip().count("\n") == 0 and "no run records" in out.err


def test_cli_writes_the_leaderboard(tmp_path, capsys):
    code, out = run_cli(["leaderboard", str(FAKE), "--out", str(tmp_path)], capsys)
    assert code == 0, out.err
    page = (tmp_path / "leaderboard.html").read_text()
    assert page.count('class="leaderboard"') == 2 and page.count('class="claims"') == 1


def test_records_of_older_scenario_data_are_named_in_one_warning(tmp_path, caplog):
    """Records written before a scenario's data_version went up (here: the fake store's corruption
    records set back to 0, as records from before data versions read) are named in one warning
    per scenario; records of the current version are not."""
    store = shutil.copytree(FAKE, tmp_path / "store")
    with caplog.at_level("WARNING", logger="ctta.report.results"):
        load_results(store)
    assert not caplog.records
    for path in (store / "runs").glob("*/record.json"):
        record = json.loads(path.read_text())
        if record["spec"]["scenario"]["name"] == "corruption":
            del record["versions"]["scenario_data"]
            path.write_text(json.dumps(record))
    with caplog.at_level("WARNING", logger="ctta.report.results"):
        load_results(store)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("9 records of scenario 'corruption' scored data version 0")
