"""The statistics behind every interval, against cases computed by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from ctta.report.stats import Bootstrap, interval, overlaps, point_online, ranks


def test_percentile_interval_of_known_values():
    # numpy's linear percentile of 0..99: the 2.5th is 2.475, the 97.5th is 96.525
    assert interval(np.arange(100)) == pytest.approx((2.475, 96.525))
    assert interval(np.full(50, 7.0)) == (7.0, 7.0)
    assert interval(np.array([np.nan, 1.0, np.nan])) == (1.0, 1.0)
    assert all(math.isnan(v) for v in interval(np.array([np.nan])))


def test_overlap_and_ranks():
    assert overlaps((0, 1), (1, 2)) and not overlaps((0, 1), (1.5, 2)) and overlaps((0, 5), (1, 2))
    assert not overlaps((math.nan, 1), (0, 2))
    # replicate 0: 3 > 1 = 1 -> ranks 1, 2, 2; replicate 1: 0 < 2 < 5 -> 3, 2, 1
    got = ranks(np.array([[3.0, 0.0], [1.0, 2.0], [1.0, 5.0]]), higher_is_better=True)
    assert got.tolist() == [[1, 3], [2, 2], [2, 1]]
    assert ranks(np.array([[3.0], [1.0]]), higher_is_better=False).tolist() == [[2], [1]]


def test_seed_mean_resamples_seeds_with_replacement():
    # Two seeds with values 0 and 10: a resample draws (0,0), (0,10), (10,0) or (10,10), so the
    # replicate mean is 0, 5 or 10 with probabilities 1/4, 1/2, 1/4, and the 95 % interval is [0, 10].
    boot = Bootstrap([1, 2], replicates=4000, seed=3)
    reps = boot.seed_mean({1: 0.0, 2: 10.0})
    values, counts = np.unique(reps, return_counts=True)
    assert values.tolist() == [0.0, 5.0, 10.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert interval(reps) == (0.0, 10.0)
    # a missing seed is left out of the replicates that draw it (undefined when only it is drawn)
    reps = boot.seed_mean({1: 4.0})
    assert np.unique(reps[np.isfinite(reps)]).tolist() == [4.0]
    assert np.isnan(reps).mean() == pytest.approx(0.25, abs=0.03)


def test_online_accuracy_resamples_batches_weighted_by_their_size():
    # One seed, batches of 30 and 10 samples, all right and all wrong. Drawing two batches:
    # (a, a) -> 100 %, (a, b) -> 30/40 = 75 %, (b, b) -> 0 %, with probabilities 1/4, 1/2, 1/4.
    boot = Bootstrap([0], replicates=4000, seed=1)
    runs = {0: ([30, 10], [30, 0])}
    reps = boot.online("case", runs)
    values, counts = np.unique(np.round(reps, 6), return_counts=True)
    assert values.tolist() == [0.0, 75.0, 100.0]
    assert counts / counts.sum() == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    assert point_online(runs) == 75.0
    # within a domain (the first batch only) nothing varies; a replicate without it is undefined
    mask = {0: [True, False]}
    reps = boot.online("case", runs, mask)
    assert np.unique(reps[np.isfinite(reps)]).tolist() == [100.0]
    assert np.isnan(reps).mean() == pytest.approx(0.25, abs=0.03)
    assert point_online(runs, mask) == 100.0


def test_replicates_are_paired_across_methods_and_reproducible():
    seeds = [0, 1, 2]
    rng = np.random.default_rng(0)
    n = {s: rng.integers(5, 20, size=12) for s in seeds}
    worse = {s: (n[s] * rng.uniform(0.2, 0.8, size=12)).astype(int) for s in seeds}
    better = {s: np.minimum(worse[s] + 1, n[s]) for s in seeds}  # one more right in every batch
    boot = Bootstrap(seeds, replicates=500, seed=0)
    a = boot.online("c", {s: (n[s], better[s]) for s in seeds})
    b = boot.online("c", {s: (n[s], worse[s]) for s in seeds})
    assert (a > b).all()  # the same draws for both methods: the better one wins every replicate
    again = Bootstrap(seeds, replicates=500, seed=0).online("c", {s: (n[s], better[s]) for s in seeds})
    assert np.array_equal(a, again)
    # another case gets its own batch draws, but the same seed draws
    other = boot.online("d", {s: (n[s], better[s]) for s in seeds})
    assert not np.array_equal(a, other)


def _cl_runs(scores: dict[str, list[float]], case: str = "c") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"method": m, "case": case, "seed": s, "kind": "class_incremental", "last_acc": v}
            for m, values in scores.items()
            for s, v in enumerate(values)
        ]
    )


def test_protocol_gap_and_rank_change_intervals_on_paired_replicates():
    from ctta.report.intervals import StudyIntervals

    honest = _cl_runs({"a": [50, 51, 52, 53, 54], "b": [40, 41, 42, 43, 44]})
    # the oracle lifts b by 20 points on every seed, so b overtakes a in every replicate
    oracle = _cl_runs({"a": [50, 51, 52, 53, 54], "b": [60, 61, 62, 63, 64]})
    iv = StudyIntervals(honest, oracle, replicates=300)
    gaps = iv.gap_table("last_acc", ["a", "b"])
    assert gaps.loc["a", ["gap_lo", "gap_hi"]].tolist() == [0, 0]
    assert gaps.loc["b", ["gap_lo", "gap_hi"]].tolist() == pytest.approx([20, 20])
    assert gaps.loc["a", "rank_change_p"] == 1.0 and gaps.loc["b", "rank_change_p"] == 1.0
    assert gaps.loc["b", ["rank_change_lo", "rank_change_hi"]].tolist() == [1, 1]
    assert iv.order_flip("last_acc", "a", "b") == 1.0
    assert iv.point("c", "b", "last_acc") == 42.0
    lo, hi = iv.interval("c", "b", "last_acc")
    assert 40 <= lo < 42 < hi <= 44


def test_a_rank_change_within_the_noise_is_uncertain():
    from ctta.report.intervals import StudyIntervals

    honest = _cl_runs({"a": [50, 40, 60, 45, 55], "b": [49, 52, 47, 51, 50]})
    oracle = _cl_runs({"a": [50, 40, 60, 45, 55], "b": [51, 52, 49, 53, 51]})  # b +1.2 points
    iv = StudyIntervals(honest, oracle, replicates=500)
    p = iv.order_flip("last_acc", "a", "b")
    assert 0.1 < p < 0.9  # the swap happens in some replicates, not in all


def test_no_rank_change_while_the_oracle_has_not_scored_every_method():
    from ctta.report.intervals import StudyIntervals
    from ctta.report.tables import gap_table

    honest = _cl_runs({"a": [50, 51, 52, 53, 54], "b": [60, 61, 62, 63, 64]})
    oracle = _cl_runs({"a": [50, 51, 52, 53, 54]})  # b's oracle runs are still to come
    gaps = StudyIntervals(honest, oracle, replicates=100).gap_table("last_acc", ["a", "b"])
    assert gaps.loc["a", ["gap_lo", "gap_hi"]].tolist() == [0, 0]  # a's gap is measured
    assert np.isnan(gaps.loc["a", "rank_change_lo"]) and np.isnan(gaps.loc["a", "rank_change_p"])
    summary = pd.DataFrame(
        [
            {
                "study": s,
                "method": m,
                "metric": "last_acc",
                "protocol": "tune_eval",
                "score": v,
                "score_std": 0.0,
                "chosen_config": "{}",
                "rank": r,
            }
            for s, m, v, r in (("cil", "a", 52, 2), ("cil", "b", 62, 1), ("cil_oracle", "a", 52, 1))
        ]  # fmt: skip
    )
    table = gap_table(summary, {"cil_oracle": "cil"}).set_index("method")
    assert table.loc["a", "gap"] == 0 and np.isnan(table.loc["a", "rank_change"])
