"""Claims and their verdicts on constructed results, where the answer is known by construction."""

import numpy as np
import pandas as pd

from ctta.report.claims import evaluate_claims
from ctta.report.results import Results

SEEDS = range(5)


def _tta_runs(accuracy: dict[tuple[str, str], float], noise: float = 0.0, batches: int = 20, size: int = 50):
    """Records of a test-time study: per (method, order), every batch of every seed has about
    `accuracy` % right (plus binomial-like noise of `noise` points)."""
    rng = np.random.default_rng(0)
    records, runs = [], []
    for (method, order), acc in accuracy.items():
        for seed in SEEDS:
            p = np.clip(acc / 100 + noise / 100 * rng.standard_normal(batches), 0, 1)
            correct = np.round(p * size).astype(int).tolist()
            run_id = f"{method}-{order}-{seed}"
            records.append(
                {
                    "run_id": run_id,
                    "kind": "test_time",
                    "scenario": "corruption",
                    "sc.order": order,
                    "online_n": [size] * batches,
                    "online_correct": correct,
                    "online_domain": ["gaussian_noise"] * batches,
                    "online_acc": 100 * sum(correct) / (size * batches),
                    "method": method,
                    "seed": seed,
                }
            )
            runs.append(_run("tta", method, order, seed, run_id))
    return records, runs


def _run(study, method, case, seed, run_id):
    return {"study": study, "phase": "eval", "status": "done", "method": method, "case": case, "seed": seed,
            "run_id": run_id}  # fmt: skip


def _results(records, runs, studies=("tta",), gap=None) -> Results:
    summary = pd.DataFrame([{"study": s, "protocol": "cross_scenario"} for s in studies])
    return Results(
        pd.DataFrame(records),
        pd.DataFrame(runs),
        pd.DataFrame(),
        summary,
        pd.DataFrame() if gap is None else gap,
    )


def _verdicts(res: Results) -> dict[str, str]:
    table = evaluate_claims(res)
    return dict(zip(table["claim"], table["verdict"]))


def test_test_time_claims_hold_where_the_data_say_so():
    records, runs = _tta_runs(
        {
            ("source", "iid"): 50,
            ("tent", "iid"): 70,
            ("bn_adapt", "iid"): 68,
            ("lame", "iid"): 50.5,
            ("source", "dirichlet"): 50,
            ("tent", "dirichlet"): 30,
            ("bn_adapt", "dirichlet"): 32,
            ("lame", "dirichlet"): 60,
        },  # fmt: skip
        noise=3,
    )
    verdicts = _verdicts(_results(records, runs))
    assert verdicts["lame_iid_and_non_iid"] == "holds"
    assert verdicts["bn_tent_iid_vs_non_iid"] == "holds"
    assert verdicts["mos_l2_ewc_finetune"] == "not measured"  # no class-incremental study
    table = evaluate_claims(_results(records, runs)).set_index("claim")
    assert (
        "tent [order=iid] > source [order=iid] (online_acc): 6"
        in table.loc["bn_tent_iid_vs_non_iid", "evidence"]
    )


def test_a_claim_that_the_data_contradict_does_not_hold():
    # LAME 5 points below the source model on i.i.d. streams: beyond the 1-point margin
    records, runs = _tta_runs(
        {
            ("source", "iid"): 55,
            ("lame", "iid"): 50,
            ("tent", "iid"): 60,
            ("source", "class_sorted"): 55,
            ("lame", "class_sorted"): 58,
            ("tent", "class_sorted"): 40,
        },  # fmt: skip
        noise=1,
    )
    assert _verdicts(_results(records, runs))["lame_iid_and_non_iid"] == "does not hold"


def test_noise_larger_than_the_effect_is_inconclusive():
    records, runs = _tta_runs(
        {
            ("source", "iid"): 50,
            ("lame", "iid"): 49,
            ("tent", "iid"): 50,
            ("source", "dirichlet"): 50,
            ("lame", "dirichlet"): 51,
            ("tent", "dirichlet"): 50,
        },  # fmt: skip
        noise=40,
        batches=4,
    )
    assert _verdicts(_results(records, runs))["lame_iid_and_non_iid"] == "inconclusive"


def test_lame_is_compared_with_tent_on_each_label_correlated_order():
    """LAME beats Tent on class-sorted streams but not on Dirichlet ones: each order is its own
    comparison, and one that does not hold decides the claim. Without i.i.d. streams the claim
    is not measured."""
    accuracy = {
        ("source", "iid"): 50,
        ("lame", "iid"): 50,
        ("tent", "iid"): 60,
        ("lame", "class_sorted"): 58,
        ("tent", "class_sorted"): 40,
        ("lame", "dirichlet"): 41,
        ("tent", "dirichlet"): 57,
    }
    table = evaluate_claims(_results(*_tta_runs(accuracy, noise=1))).set_index("claim")
    row = table.loc["lame_iid_and_non_iid"]
    assert row["verdict"] == "does not hold"
    assert "tent [order=class_sorted] (online_acc): 57.9 vs 40.1, d = +17.8" in row["evidence"]
    assert "tent [order=dirichlet] (online_acc): 41.0 vs 57.0, d = -16.0" in row["evidence"]
    without_iid = {k: v for k, v in accuracy.items() if k[1] != "iid"}
    assert _verdicts(_results(*_tta_runs(without_iid)))["lame_iid_and_non_iid"] == "not measured"


def _cl_results(forgetting: dict[str, list[float]]) -> Results:
    records, runs = [], []
    for method, values in forgetting.items():
        for seed, v in zip(SEEDS, values):
            run_id = f"{method}-{seed}"
            records.append({"run_id": run_id, "kind": "class_incremental", "scenario": "class_incremental",
                            "forgetting_max": v, "method": method, "seed": seed})  # fmt: skip
            runs.append(_run("cil", method, "glyphs", seed, run_id))
    return _results(records, runs, studies=("cil",))


def test_lower_is_better_metrics_compare_in_the_right_direction():
    assert (
        _verdicts(_cl_results({"finetune": [70, 72, 71, 69, 70], "hft": [50, 52, 49, 51, 50]}))[
            "hft_forgets_less"
        ]
        == "holds"
    )
    assert (
        _verdicts(_cl_results({"finetune": [50, 52, 49, 51, 50], "hft": [70, 72, 71, 69, 70]}))[
            "hft_forgets_less"
        ]
        == "does not hold"
    )


def test_reality_check_needs_a_pair_whose_order_flips():
    records, runs = [], []
    scores = {("honest", "a"): [60, 61, 62, 63, 64], ("honest", "b"): [50, 51, 52, 53, 54],
              ("oracle", "a"): [60, 61, 62, 63, 64], ("oracle", "b"): [70, 71, 72, 73, 74]}  # fmt: skip
    for (phase, method), values in scores.items():
        study = "cil" if phase == "honest" else "cil_oracle"
        for seed, v in zip(SEEDS, values):
            run_id = f"{phase}-{method}-{seed}"
            records.append({"run_id": run_id, "kind": "class_incremental", "scenario": "class_incremental",
                            "last_acc": v, "method": method, "seed": seed})  # fmt: skip
            runs.append(_run(study, method, "glyphs", seed, run_id))
    gap = pd.DataFrame(
        [
            {
                "study": "cil",
                "oracle_study": "cil_oracle",
                "method": m,
                "metric": "last_acc",
                "honest": np.mean(scores[("honest", m)]),
                "oracle": np.mean(scores[("oracle", m)]),
            }  # fmt: skip
            for m in "ab"
        ]
    )
    res = _results(records, runs, studies=("cil",), gap=gap)
    table = evaluate_claims(res).set_index("claim")
    assert table.loc["reality_check", "verdict"] == "holds"
    assert (
        "a vs b" in table.loc["reality_check", "evidence"]
        and "100%" in table.loc["reality_check", "evidence"]
    )


def test_reality_check_waits_for_an_oracle_study_that_has_not_finished():
    records = [{"run_id": f"r{s}", "kind": "class_incremental", "scenario": "class_incremental",
                "last_acc": 50.0 + s, "method": "a", "seed": s} for s in SEEDS]  # fmt: skip
    runs = [_run("cil", "a", "glyphs", s, f"r{s}") for s in SEEDS]
    gap = pd.DataFrame(
        [
            {
                "study": "cil",
                "oracle_study": "cil_oracle",
                "method": m,
                "metric": "last_acc",
                "honest": 52.0,
                "oracle": np.nan,
            }
            for m in "ab"
        ]  # fmt: skip
    )
    table = evaluate_claims(_results(records, runs, studies=("cil",), gap=gap)).set_index("claim")
    assert table.loc["reality_check", "verdict"] == "not measured"


def test_hfts_claim_is_tested_on_domain_incremental_studies_too():
    records, runs = [], []
    for method, forgetting in (("hft", [2.0, 3.0, 2.5, 2.0, 3.5]), ("finetune", [9.0, 8.0, 10.0, 9.5, 8.5])):
        for seed, v in zip(SEEDS, forgetting):
            run_id = f"{method}-{seed}"
            records.append({"run_id": run_id, "kind": "domain_incremental", "scenario": "domain_incremental",
                            "forgetting_max": v, "method": method, "seed": seed})  # fmt: skip
            runs.append(_run("dil", method, "glyph_domains", seed, run_id))
    table = evaluate_claims(_results(records, runs, studies=("dil",))).set_index("claim")
    assert table.loc["hft_forgets_less", "study"] == "dil"
    assert table.loc["hft_forgets_less", "verdict"] == "holds"
