"""Experiment trackers: `ctta run --tracker tensorboard|mlflow` and `ctta sweep launch --tracker`
log each run's config, per-batch or per-task metrics and final metrics; the tests read them back
(TensorBoard's EventAccumulator, MLflow's client on the file store) and compare with the record."""

from __future__ import annotations

import json
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ctta.cli import main
from ctta.run.store import Store
from helpers import TTA_DEBUG, cl_half, write_sweep

SMALL_CNN = ["--backbone", "small_cnn", "-B", "width=8", "-B", "image_size=16"]
CL = cl_half("first_half")


def scenario_args(scenario: dict) -> list[str]:
    return ["--scenario", scenario["name"]] + [
        a for k, v in scenario.items() if k != "name" for a in ("-S", f"{k}={json.dumps(v)}")
    ]


def run(tmp_path, capsys, args: list[str]) -> tuple[dict, str]:
    main(["run", *args, "--results", str(tmp_path / "res"), "--seed", "0"])
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("record: "))
    return json.loads(open(line.removeprefix("record: ")).read()), out


def tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def mlflow_runs(target: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{target}")
    exp = client.get_experiment_by_name(experiment)
    return client, client.search_runs([exp.experiment_id])


def online(record) -> tuple[list[float], list[float]]:
    """Per batch: the batch's accuracy and the online accuracy so far, from the record."""
    n, c = record["online_n"], record["online_correct"]
    return [100 * c[i] / n[i] for i in range(len(n))], [
        100 * sum(c[: i + 1]) / sum(n[: i + 1]) for i in range(len(n))
    ]


def test_tensorboard_holds_the_records_values(tmp_path, capsys):
    tta, out = run(
        tmp_path,
        capsys,
        [*scenario_args(TTA_DEBUG), "--method", "tent", *SMALL_CNN, "--tracker", "tensorboard"],
    )
    cl, _ = run(
        tmp_path,
        capsys,
        [*scenario_args(CL), "--method", "simplecil", "--backbone", "debug_vit", "--tracker", "tensorboard"],
    )
    assert tta["status"] == cl["status"] == "done"
    tb = tmp_path / "res" / "tensorboard"

    scalars = tensorboard_scalars(tb / "corruption" / "tent" / tta["run_id"])
    batch_acc, online_acc = online(tta)
    assert tta["online_n"] == [16, 16, 8] * 2  # 2 corruptions x 40 images in batches of 16
    assert list(scalars["batch/acc"].values()) == pytest.approx(batch_acc, abs=1e-4)  # float32 in event files
    assert list(scalars["batch/online_acc"]) == list(range(6))
    assert scalars["batch/online_acc"][5] == pytest.approx(tta["metrics"]["online_acc"], abs=1e-4)
    for name, value in tta["metrics"].items():
        assert scalars[f"metrics/{name.replace('@', '/')}"][0] == pytest.approx(value, abs=1e-4)
    assert scalars["costs/trainable_params"][0] == tta["trainable_params"]

    scalars = tensorboard_scalars(tb / "class_incremental" / "simplecil" / cl["run_id"])
    assert list(scalars["task/acc_seen"].values()) == pytest.approx(cl["acc_seen"], abs=1e-4)
    assert scalars["task/acc_on_task_0"] == pytest.approx(
        {0: cl["acc_matrix"][0][0], 1: cl["acc_matrix"][1][0]}, abs=1e-4
    )
    assert scalars["task/acc_on_task_1"] == pytest.approx({1: cl["acc_matrix"][1][1]}, abs=1e-4)
    assert scalars["metrics/avg_inc_acc"][0] == pytest.approx(cl["metrics"]["avg_inc_acc"], abs=1e-4)

    # The config is in the HParams plugin's data, the flattened spec.
    acc = EventAccumulator(str(tb / "class_incremental" / "simplecil" / cl["run_id"]))
    acc.Reload()
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    info = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    assert info.hparams["method.name"].string_value == "simplecil"
    assert info.hparams["scenario.classes"].string_value == "first_half"
    assert info.hparams["seed"].number_value == 0
    assert info.hparams["backbone.name"].string_value == "debug_vit"

    # Asking again for a run already recorded and logged logs nothing more.
    _, out = run(
        tmp_path,
        capsys,
        [*scenario_args(CL), "--method", "simplecil", "--backbone", "debug_vit", "--tracker", "tensorboard"],
    )
    assert "already recorded (done)" in out and "logged to" not in out


def test_mlflow_file_store_holds_the_records_values(tmp_path, capsys):
    target = tmp_path / "ml"
    track = ["--tracker", "mlflow", "--tracker-dir", str(target)]
    tta, _ = run(tmp_path, capsys, [*scenario_args(TTA_DEBUG), "--method", "tent", *SMALL_CNN, *track])
    cl, _ = run(
        tmp_path, capsys, [*scenario_args(CL), "--method", "simplecil", "--backbone", "debug_vit", *track]
    )
    client, runs = mlflow_runs(str(target), "res")  # one experiment per results store, named after it
    by_id = {r.data.tags["ctta.run_id"]: r for r in runs}
    assert set(by_id) == {tta["run_id"], cl["run_id"]}

    ml = by_id[tta["run_id"]]
    assert ml.info.status == "FINISHED" and ml.data.tags["ctta.status"] == "done"
    assert ml.info.run_name == "tent on corruption (small_cnn, seed 0)"
    assert ml.data.params["method.lr"] == str(tta["spec"]["method"]["lr"])
    assert ml.data.params["scenario.corruptions"] == '["gaussian_noise", "contrast"]'
    assert ml.data.params["backbone.width"] == "8"
    history = client.get_metric_history(ml.info.run_id, "batch/acc")
    batch_acc, online_acc = online(tta)
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == batch_acc  # float64: exact
    history = client.get_metric_history(ml.info.run_id, "batch/online_acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == online_acc
    for name, value in tta["metrics"].items():
        assert ml.data.metrics[f"metrics/{name.replace('@', '/')}"] == value
    assert ml.data.metrics["costs/wall_s"] == tta["wall_s"]

    ml = by_id[cl["run_id"]]
    history = client.get_metric_history(ml.info.run_id, "task/acc_seen")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == cl["acc_seen"]
    assert ml.data.metrics["metrics/last_acc"] == cl["metrics"]["last_acc"]


def test_a_sweep_logs_every_run_and_the_ones_recorded_before(tmp_path, capsys):
    study = {
        "protocol": "tune_eval",
        "tune": CL,
        "eval": cl_half("second_half"),
        "methods": {"simplecil": {}},
    }
    defaults = {"backbone": "debug_vit", "tune_seeds": [0, 1], "eval_seeds": [1]}
    path = write_sweep(tmp_path / "s.yaml", {"cil": study}, defaults=defaults)
    res = tmp_path / "res"
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug"])  # no tracker
    assert len(list(Store(res).records())) == 3  # two tune seeds, one eval seed
    capsys.readouterr()
    # Another eval seed, now with a tracker: the runs recorded before are logged first, the new
    # one as it finishes.
    path = write_sweep(tmp_path / "s.yaml", {"cil": study}, defaults={**defaults, "eval_seeds": [1, 2]})
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug", "--tracker", "mlflow"])
    out = capsys.readouterr().out
    assert f"logged 3 runs recorded before to mlflow ({res / 'mlruns'})" in out
    records = {r["run_id"]: r for r in Store(res).records()}
    assert len(records) == 4
    client, runs = mlflow_runs(str(res / "mlruns"), "res")
    assert sorted(r.data.tags["ctta.run_id"] for r in runs) == sorted(records)
    for r in runs:
        record = records[r.data.tags["ctta.run_id"]]
        assert r.data.metrics["metrics/last_acc"] == record["metrics"]["last_acc"]
        assert r.data.params["seed"] == str(record["spec"]["seed"])
        assert r.data.params["scenario.classes"] == record["spec"]["scenario"]["classes"]
    main(["sweep", "launch", path, "--results", str(res), "--launcher", "debug", "--tracker", "mlflow"])
    assert "logged" not in capsys.readouterr().out
    assert len(mlflow_runs(str(res / "mlruns"), "res")[1]) == 4


def test_tracker_errors_are_one_line(tmp_path, capsys, monkeypatch):
    base = ["run", *scenario_args(TTA_DEBUG), "--method", "source", *SMALL_CNN, "--results", str(tmp_path)]
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    cases = [
        (["--tracker", "mlflow"], "--tracker mlflow needs the mlflow package: pip install 'ctta[mlflow]'"),
        (["--tracker", "wandb"], "unknown tracker 'wandb'; valid choices: tensorboard, mlflow"),
        (["--tracker-dir", "x"], "--tracker-dir needs --tracker (tensorboard or mlflow)"),
        (
            ["--tracker", "tensorboard", "--tracker-dir", str(tmp_path / "file" / "tb")],
            f"--tracker tensorboard: cannot open {tmp_path / 'file' / 'tb'} (NotADirectoryError: [Errno 20] Not a directory: ",
        ),
    ]
    (tmp_path / "file").write_text("a file where the folder should go")
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_:
            main(base + args)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.startswith(f"ctta: error: {message}") and err.count("\n") == 1, (
            err
        )
    assert not (tmp_path / "runs").exists()  # refused before anything ran
