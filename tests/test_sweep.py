"""Sweep files and protocols: expansion, selection, separation checks, failures, tables."""

import json
import math
from dataclasses import dataclass

import pandas as pd
import pytest

from ctta import UserError, hp
from ctta.cli import main
from ctta.methods.simplecil import SimpleCIL
from ctta.plan.spec import RunSpec
from ctta.report.tables import protocol_tables
from ctta.run.store import Store
from ctta.sweep.launch import launch
from ctta.sweep.launchers import DebugLauncher
from ctta.sweep.studies import load_sweep
from helpers import CL_DEBUG, TTA_DEBUG, cl_half, temporary_method, write_sweep

TUNE_EVAL = {
    "protocol": "tune_eval",
    "tune": cl_half("first_half"),
    "eval": cl_half("second_half"),
    "methods": {"finetune": {"lr": [0.003, 0.01, 0.03], "epochs": 1}, "simplecil": {}},
}
DEFAULTS = {"backbone": "debug_vit", "tune_seeds": [0], "eval_seeds": [1, 2]}


def _done(run, score):
    return {"run_id": run.run_id, "status": "done", "metrics": {"last_acc": score}}


def _failed(run):
    return {"run_id": run.run_id, "status": "failed", "error": "RuntimeError: boom"}


def test_plan_expands_the_grid_then_adds_eval_runs_of_the_chosen_configuration(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", {"cil": TUNE_EVAL}, defaults=DEFAULTS))
    planned = sweep.plan({})
    assert [r.phase for r in planned] == ["tune"] * 4  # 3 finetune configs + 1 simplecil, 1 tune seed
    first = planned[0]
    expected = RunSpec.parse(
        {
            "scenario": cl_half("first_half"),
            "method": {"name": "finetune", "lr": 0.003, "epochs": 1},
            "backbone": "debug_vit",
            "seed": 0,
        }
    )
    assert first.run_id == expected.run_id  # a run is named by the hash of its canonical spec
    assert sweep.waiting(planned) == {"cil": 4}

    scores = {0.003: 10.0, 0.01: 30.0, 0.03: 20.0}
    records = {r.run_id: _done(r, scores.get(r.spec.method.get("lr"), 50.0)) for r in planned[:3]}
    planned = sweep.plan(records)  # simplecil still tuning: only finetune is evaluated
    evals = [r for r in planned if r.phase == "eval"]
    assert [(r.method, r.spec.method["lr"], r.spec.seed) for r in evals] == [
        ("finetune", 0.01, 1),
        ("finetune", 0.01, 2),
    ]
    assert all(r.spec.scenario["classes"] == "second_half" for r in evals)
    records.update({r.run_id: _done(r, 40.0) for r in planned if r.method == "simplecil"})
    assert [r.method for r in sweep.plan(records) if r.phase == "eval"] == ["finetune"] * 2 + [
        "simplecil"
    ] * 2


def test_more_seeds_or_grid_points_only_add_runs(tmp_path):
    small = load_sweep(write_sweep(tmp_path / "a.yaml", {"cil": TUNE_EVAL}, defaults=DEFAULTS))
    bigger = {
        **TUNE_EVAL,
        "methods": {"finetune": {"lr": [0.003, 0.01, 0.03, 0.1], "epochs": 1}, "simplecil": {}},
    }
    big = load_sweep(
        write_sweep(tmp_path / "b.yaml", {"cil": bigger}, defaults={**DEFAULTS, "tune_seeds": [0, 5]})
    )
    a, b = {r.run_id for r in small.plan({})}, {r.run_id for r in big.plan({})}
    assert a < b and len(b) == 2 * 5


def test_random_search_draws_a_growing_prefix_of_the_grid(tmp_path):
    def configs(samples):
        study = {**TUNE_EVAL, "search": "random", "samples": samples, "search_seed": 3}
        sweep = load_sweep(write_sweep(tmp_path / f"r{samples}.yaml", {"cil": study}, defaults=DEFAULTS))
        return [r.spec.method["lr"] for r in sweep.plan({}) if r.method == "finetune"]

    two, three = configs(2), configs(3)
    assert len(two) == 2 and three[:2] == two and sorted(three) == [0.003, 0.01, 0.03]


def test_a_failed_configuration_is_never_chosen(tmp_path):
    sweep = load_sweep(
        write_sweep(tmp_path / "s.yaml", {"cil": TUNE_EVAL}, defaults={**DEFAULTS, "tune_seeds": [0, 1]})
    )
    tune = [r for r in sweep.plan({}) if r.method == "finetune"]
    best = [r for r in tune if r.spec.method["lr"] == 0.01]
    records = {r.run_id: _done(r, 90.0) for r in best}
    records[best[1].run_id] = _failed(best[1])  # one seed of the best configuration failed
    records.update({r.run_id: _done(r, 20.0 + 10 * r.spec.seed) for r in tune if r not in best})
    evals = [r for r in sweep.plan(records) if r.phase == "eval"]
    assert {r.spec.method["lr"] for r in evals} == {0.003}  # first of the tied survivors
    tables = _tables(sweep, records)
    row = tables["tune_table"].set_index("config").loc['{"lr": 0.01}']
    assert not row["chosen"] and row["failed"] == 1 and "boom" in row["why"]

    records = {r.run_id: _failed(r) for r in tune}  # every configuration failed
    assert not [r for r in sweep.plan(records) if r.phase == "eval" and r.method == "finetune"]
    summary = _tables(sweep, records)["protocol_summary"].set_index("method")
    assert summary.loc["finetune", "state"] == "no configuration finished"


def _tables(sweep, records):
    from ctta.report.tables import study_tables

    return study_tables(sweep.studies[0], records)


def test_oracle_gap_and_rank_change(tmp_path):
    studies = {"cil": TUNE_EVAL, "cil_oracle": {"protocol": "oracle", "of": "cil"}}
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", studies, defaults=DEFAULTS))
    honest, oracle = sweep.studies
    assert oracle.cases["tune"] == honest.cases["eval"] and oracle.tune_seeds == (1, 2)
    # tune data: lr 0.003 looks best for finetune; on the scored data lr 0.03 is best
    tune_scores = {0.003: 60.0, 0.01: 50.0, 0.03: 40.0}
    eval_scores = {0.003: 30.0, 0.01: 45.0, 0.03: 70.0}
    records = {}
    for r in sweep.plan({}):
        table = tune_scores if r.study == "cil" else eval_scores
        records[r.run_id] = _done(r, table.get(r.spec.method.get("lr"), 50.0))
    store = Store(tmp_path / "res")
    sweep.prepare(store)  # writes the study definitions that collect reads
    specs = {r.run_id: r.spec.as_dict() for r in sweep.plan({})}
    for run_id, rec in records.items():
        store.write_record({**rec, "spec": specs[run_id]})
    gap = protocol_tables(store.root)["protocol_gap"].set_index("method")
    assert gap.loc["finetune", "honest"] == 30.0 and gap.loc["finetune", "oracle"] == 70.0
    assert gap.loc["finetune", "gap"] == 40.0 and gap.loc["simplecil", "gap"] == 0.0
    assert (gap.loc["finetune", "rank_honest"], gap.loc["finetune", "rank_oracle"]) == (2.0, 1.0)
    assert gap.loc["finetune", "rank_change"] == 1.0 and gap.loc["simplecil", "rank_change"] == -1.0


BAD_FILES = [
    ("studies: {cil: {protocol: tune_eval, tune: [}", "malformed YAML"),
    (
        {"cil": {**TUNE_EVAL, "methods": {"tnet": {}}}},
        "studies.cil: methods.tnet: unknown method 'tnet'; valid choices: ",
    ),
    (
        {"cil": {**TUNE_EVAL, "tune": {**cl_half("first_half"), "name": "class_incremetal"}}},
        "studies.cil: tune: scenario: unknown scenario 'class_incremetal'; valid choices: class_incremental",
    ),
    ({"cil": {**TUNE_EVAL, "backbone": "debug_vt"}}, "studies.cil: backbone: unknown backbone 'debug_vt'"),
    (
        {"cil": {**TUNE_EVAL, "methods": {"finetune": {"lr": []}}}},
        "studies.cil: methods.finetune.lr: empty search space",
    ),
    (
        {"cil": {**TUNE_EVAL, "methods": {"finetune": {"lr": [0.1, "fast"]}}}},
        "studies.cil: methods.finetune.lr[1]: option 'lr': expected a number, got 'fast'",
    ),
    (
        {"cil": {**TUNE_EVAL, "methods": {"finetune": {"steps": [1]}}}},
        "studies.cil: methods.finetune: unknown hyperparameter 'steps'; valid options: lr, epochs",
    ),
    (
        {"cil": {**TUNE_EVAL, "protocol": "tune_evaluate"}},
        "studies.cil: protocol: unknown protocol 'tune_evaluate'",
    ),
    ({"cil": {**TUNE_EVAL, "eval": None}}, "studies.cil: eval: expected a scenario"),
    (
        {"cil": {**TUNE_EVAL, "metric": "accuracy"}},
        "studies.cil: metric: unknown class_incremental metric 'accuracy'",
    ),
    (
        {"cil": {**TUNE_EVAL, "methods": {"tent": {}}}},
        "studies.cil: methods.tent: does not run on class_incremental",
    ),
    ({"o": {"protocol": "oracle", "of": "cil"}}, "studies.o: of: unknown study 'cil'; valid choices: (none)"),
    (
        {"cil": {**TUNE_EVAL, "tune": {**cl_half("first_half"), "dataset": "digts"}}},
        "studies.cil: tune: scenario: dataset: unknown dataset 'digts'",
    ),
]


@pytest.mark.parametrize("content, message", BAD_FILES)
def test_bad_sweep_files_fail_with_one_line_naming_file_and_key(tmp_path, capsys, content, message):
    path = tmp_path / "bad.yaml"
    if isinstance(content, str):
        path.write_text(content)
    else:
        write_sweep(path, content, defaults=DEFAULTS)
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "plan", str(path), "--results", str(tmp_path / "res")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ctta: error: {path}") and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "res").exists()  # nothing ran, nothing was written


@pytest.mark.parametrize(
    "change, message",
    [
        ({"eval": cl_half("all")}, "classes 0, 1, 2, 3, 4 occur in both phases"),
        (
            {"eval": cl_half("first_half", initial=2), "disjoint_classes": False},
            "samples of the eval data also occur",
        ),
        ({"eval": cl_half("second_half", initial=1)}, "the streams differ in shape"),
    ],
)
def test_phases_that_are_not_separated_are_refused_before_any_run(tmp_path, change, message):
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", {"cil": {**TUNE_EVAL, **change}}, defaults=DEFAULTS))
    with pytest.raises(UserError, match="tune and eval phases are not separated") as err:
        launch(sweep, Store(tmp_path / "res"), DebugLauncher(tmp_path / "res"))
    assert message in str(err.value)
    assert not (tmp_path / "res" / "runs").exists()


@dataclass
class _FlakyHP(SimpleCIL.HParams):
    mode: str = hp("ok", space=("ok", "nan", "raise"), doc="ok, or diverge (NaN logits), or raise")
    scale: float = hp(1.0, space=(1.0, 2.0), doc="multiplies the logits (no effect on the argmax)")


class _Flaky(SimpleCIL):
    """simplecil whose hyperparameters make some configurations diverge or raise."""

    HParams = _FlakyHP

    def learn(self, task):
        if self.hparams.mode == "raise":
            raise RuntimeError("raised on purpose")
        return super().learn(task)

    def predict_features(self, features):
        logits = super().predict_features(features) * self.hparams.scale
        return logits * math.nan if self.hparams.mode == "nan" else logits


def test_sweep_end_to_end_with_failing_configurations(tmp_path, capsys, monkeypatch):
    from ctta.models.backbone import Backbone

    rows = []
    features = Backbone.features
    monkeypatch.setattr(Backbone, "features", lambda self, x: rows.append(len(x)) or features(self, x))
    study = {**TUNE_EVAL, "methods": {"flaky": {}}}
    path = write_sweep(
        tmp_path / "s.yaml",
        {"cil": study, "cil_oracle": {"protocol": "oracle", "of": "cil"}},
        defaults={**DEFAULTS, "eval_seeds": [1]},
    )
    res = str(tmp_path / "res")
    with temporary_method("flaky", _Flaky):
        main(["sweep", "launch", path, "--results", res, "--launcher", "debug"])
        out = capsys.readouterr().out
        assert "12 runs finished in this launch: 4 done, 8 failed, 0 not run" in out
        assert "raised on purpose" in out and "non-finite logits" in out
        main(["sweep", "status", path, "--results", res])
        out = capsys.readouterr().out
        assert "12 distinct runs: 4 done, 8 failed, 0 running, 0 pending" in out
        main(["collect", res])
    tune = pd.read_csv(tmp_path / "res" / "tune_table.csv")
    tune = tune[tune.study == "cil"].set_index("config")
    assert list(tune.index[tune.chosen]) == ['{"mode": "ok", "scale": 1.0}']  # first of two equal scores
    assert tune["why"].str.contains("RuntimeError: raised on purpose").sum() == 2
    assert tune["why"].str.contains("non-finite logits").sum() == 2
    summary = pd.read_csv(tmp_path / "res" / "protocol_summary.csv").set_index("study")
    assert summary.loc["cil", "state"] == "complete" and summary.loc["cil", "check_passed"]
    assert summary.loc["cil", "gap"] == summary.loc["cil", "oracle"] - summary.loc["cil", "score"] >= 0
    # every eval run carries the separation check, next to its record
    store = Store(res)
    runs = pd.read_csv(tmp_path / "res" / "protocol_runs.csv")
    (eval_run,) = runs[(runs.study == "cil") & (runs.phase == "eval")]["run_id"]
    note = json.loads((store.run_dir(eval_run) / "protocol" / "cil.json").read_text())
    assert note["phases"] == ["eval"] and note["check"]["passed"] and note["check"]["shared_samples"] == 0
    assert note["check"]["required"] == ["disjoint_samples", "disjoint_classes", "same_shape"]
    # frozen-backbone features were computed once per dataset, not once per configuration
    once = sum(rows)
    rows.clear()
    with temporary_method("flaky", _Flaky):
        ok_only = {**study, "methods": {"flaky": {"mode": "ok", "scale": 1.0}}}
        launch(
            load_sweep(
                write_sweep(tmp_path / "t.yaml", {"cil": ok_only}, defaults={**DEFAULTS, "eval_seeds": [1]})
            ),
            Store(tmp_path / "fresh"),
            DebugLauncher(tmp_path / "fresh"),
        )
    assert once == sum(rows) > 0


def test_launch_again_runs_nothing_and_retry_failed_reruns_failures(tmp_path, capsys):
    study = {**TUNE_EVAL, "methods": {"flaky": {"mode": ["ok", "raise"], "scale": 1.0}}}
    path = write_sweep(tmp_path / "s.yaml", {"cil": study}, defaults={**DEFAULTS, "eval_seeds": [1]})
    res = str(tmp_path / "res")
    with temporary_method("flaky", _Flaky):
        main(["sweep", "launch", path, "--results", res, "--launcher", "debug"])
        first = {p: p.read_bytes() for p in (tmp_path / "res" / "runs").glob("*/record.json")}
        capsys.readouterr()
        main(["sweep", "launch", path, "--results", res, "--launcher", "debug"])
        assert "0 runs finished in this launch" in capsys.readouterr().out
        main(["sweep", "launch", path, "--results", res, "--launcher", "debug", "--retry-failed"])
        assert "1 runs finished in this launch: 0 done, 1 failed" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in first}
    changed = [p for p in first if first[p] != after[p]]
    assert len(first) == 3 and len(changed) == 1  # only the failed run was redone
    assert json.loads(after[changed[0]])["status"] == "failed"


def test_redo_outdated_does_again_only_the_runs_scored_on_older_images(tmp_path, capsys):
    """A record without a data version (written before the corruption scenario's images changed)
    is set aside (kept beside the new one) and its run done again; nothing else is touched."""
    tta = {**TTA_DEBUG, "test_per_class": 2, "source_epochs": 1}
    studies = {
        "tta": {"protocol": "oracle", "scenarios": tta, "methods": {"source": {}}},
        "cil": {"protocol": "oracle", "scenarios": CL_DEBUG, "methods": {"simplecil": {}}},
    }
    path = write_sweep(tmp_path / "s.yaml", studies, defaults={**DEFAULTS, "eval_seeds": [1]})
    res = tmp_path / "res"
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug"])
    first = {p: p.read_bytes() for p in (res / "runs").glob("*/record.json")}
    old = next(p for p in first if json.loads(first[p])["spec"]["scenario"]["name"] == "corruption")
    record = json.loads(first[old])
    assert record["versions"]["scenario_data"] >= 1
    del record["versions"]["scenario_data"]
    old.write_text(json.dumps(record))
    first[old] = old.read_bytes()
    capsys.readouterr()
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug"])
    assert "0 runs finished in this launch" in capsys.readouterr().out
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug", "--redo-outdated"])
    assert "1 runs finished in this launch: 1 done" in capsys.readouterr().out
    assert [p for p in first if p.read_bytes() != first[p]] == [old]
    assert json.loads(old.read_bytes())["versions"]["scenario_data"] >= 1
    (aside,) = old.parent.glob("record.json.outdated-*")
    assert aside.read_bytes() == first[old]


def test_cross_scenario_refuses_a_test_scenario_that_is_a_validation_scenario(tmp_path):
    scenario = {**CL_DEBUG}
    study = {
        "protocol": "cross_scenario",
        "validation": [scenario],
        "test": [scenario, {**scenario, "increment": 2}],
        "methods": ["simplecil"],
    }
    sweep = load_sweep(write_sweep(tmp_path / "s.yaml", {"x": study}, defaults=DEFAULTS))
    with pytest.raises(
        UserError, match=r"test scenario 'class_incremental\[.*increment=5.*' is also a validation"
    ):
        sweep.prepare(None)


def test_launch_runs_only_the_named_studies_and_names_the_valid_ones(tmp_path, capsys):
    study = {**TUNE_EVAL, "methods": {"simplecil": {}}}
    path = write_sweep(
        tmp_path / "s.yaml",
        {"cil": study, "cil_oracle": {"protocol": "oracle", "of": "cil"}},
        defaults=DEFAULTS,
    )
    res = tmp_path / "res"
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug", "--study", "cil_oracle"])
    oracle_runs = {r.run_id for r in load_sweep(path).only(["cil_oracle"]).plan({})}
    assert {p.parent.name for p in (res / "runs").glob("*/record.json")} == oracle_runs
    assert sorted(p.name for p in (res / "studies").glob("*.json")) == ["cil_oracle.json"]
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug"])  # the rest, same store
    records = {r["run_id"]: r for r in Store(res).records()}
    assert {r.run_id for r in load_sweep(path).plan(records)} == set(records) > oracle_runs
    assert all(r["status"] == "done" for r in records.values())
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["sweep", "launch", path, "--results", str(res), "--study", "cl"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert "unknown study in" in err and "'cl'; valid choices: cil, cil_oracle" in err


def test_a_free_worker_skips_the_runs_of_a_family_whose_pilot_is_still_running():
    from types import SimpleNamespace

    from ctta.sweep.launchers import _Families

    def run(method, lr, backbone="tiny_vit"):
        spec = SimpleNamespace(method={"name": method, "lr": lr}, backbone={"name": backbone})
        return SimpleNamespace(spec=spec, name=f"{method}/{lr}/{backbone}")

    families = _Families()
    queue = [run("itta", 1), run("itta", 2), run("itta", 1, "small_cnn"), run("tent", 1)]
    first = queue.pop(families.pick(queue))
    second = queue.pop(families.pick(queue))
    assert (first.name, second.name) == ("itta/1/tiny_vit", "itta/1/small_cnn")  # another family
    assert queue.pop(families.pick(queue)).name == "tent/1/tiny_vit"
    assert families.pick(queue) == 0  # only a waiting family left: no worker is left idle
    families.finished(first)  # the pilot is done: its family runs freely
    assert queue[families.pick(queue)].name == "itta/2/tiny_vit"
