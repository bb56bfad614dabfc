"""Fault injection: bad input is refused up front with one line, and nothing runs or is written.

Each test feeds one thing users actually wrote (numbers in exponent notation, values out of
range, broken data, a device the machine lacks, an empty store, a standard-library callable)
and asserts the exit code, the message and what was (not) run or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from ctta import UserError, hp
from ctta.cli import main
from ctta.core.config import build_config, check_value, load_yaml, parse_assignments
from ctta.data.datasets import load_dataset
from ctta.data.images import ImageData
from helpers import CL_DEBUG, TTA_DEBUG, cl_half, write_sweep

CL = ["--scenario", "class_incremental", "-S", "dataset=digits", "-S", "increment=5"]
CL += ["-S", "train_per_class=8", "-S", "test_per_class=4"]


def refused(capsys, *args: str) -> str:
    """Run the CLI; assert it exits with status 2 and one line without a traceback; that line."""
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def files_under(path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# --------------------------------------------------------------------------- 1. numbers
@pytest.mark.parametrize(
    "text, value", [("1e-3", 0.001), ("1e6", 1e6), ("1E-3", 0.001), ("-2.5e-4", -2.5e-4), ("+3E+2", 300.0)]
)
def test_exponent_notation_is_a_float_everywhere(tmp_path, text, value):
    assert parse_assignments((f"lr={text}",), "method") == {"lr": value}
    path = tmp_path / "spec.yaml"
    path.write_text(f"method: {{name: tent, lr: {text}}}\nlist: [{text}, 1, a]\n")
    assert load_yaml(path) == {"method": {"name": "tent", "lr": value}, "list": [value, 1, "a"]}
    # what YAML 1.1 already read stays as it was
    assert parse_assignments(("a=1", "b=0.5", "c=1e", "d=x1e3", "e=[1,2]"), "m") == {
        "a": 1,
        "b": 0.5,
        "c": "1e",
        "d": "x1e3",
        "e": [1, 2],
    }


def test_exponent_notation_on_the_command_line_names_the_same_run(tmp_path, capsys):
    results = tmp_path / "res"
    common = [*CL, "--method", "finetune", "--backbone", "debug_vit", "--results", str(results)]
    main(["run", *common, "-H", "lr=1e-3", "-H", "epochs=1"])
    assert ": done" in capsys.readouterr().out
    main(["run", *common, "-H", "lr=0.001", "-H", "epochs=1"])
    assert "already recorded (done), not run again" in capsys.readouterr().out
    assert len(list((results / "runs").iterdir())) == 1


def test_exponent_notation_in_a_sweep_file(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(
        "defaults: {backbone: debug_vit, tune_seeds: [0], eval_seeds: [1]}\n"
        "studies:\n  s:\n    protocol: oracle\n"
        "    scenarios: {name: class_incremental, dataset: digits, increment: 5}\n"
        "    methods: {finetune: {lr: [1e-3, 3E-2], weight_decay: 5e-4}}\n"
    )
    main(["sweep", "plan", str(path), "--json"])
    import json

    configs = {json.loads(line)["spec"]["method"]["lr"] for line in capsys.readouterr().out.splitlines()}
    assert configs == {0.001, 0.03}


# --------------------------------------------------------------------------- 2. ranges
@dataclass
class HP:
    k: int = hp(5, space=(1, 5), doc="neighbours", ge=1)
    p: float = hp(0.5, doc="a probability", ge=0, le=1)
    lr: float = hp(0.1, doc="step", gt=0)
    maybe: int | None = hp(None, ge=0)
    seeds: tuple[int, ...] = hp((0,), ge=0)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"k": 0}, "m: option 'k': expected k >= 1, got 0"),
        ({"k": -3}, "m: option 'k': expected k >= 1, got -3"),
        ({"p": 1.5}, "m: option 'p': expected 0 <= p <= 1, got 1.5"),
        ({"lr": 0}, "m: option 'lr': expected lr > 0, got 0.0"),
        ({"maybe": -1}, "m: option 'maybe': expected maybe >= 0, got -1"),
        ({"seeds": [1, -2]}, "m: option 'seeds': expected seeds >= 0, got (1, -2)"),
    ],
)
def test_values_out_of_range_are_refused(values, message):
    with pytest.raises(UserError) as err:
        build_config(HP, values, "m")
    assert str(err.value) == message
    with pytest.raises(UserError, match="expected"):
        name, value = next(iter(values.items()))
        check_value(HP, name, value, "m")


def test_values_in_range_and_none_pass():
    c = build_config(HP, {"k": 1, "p": 0, "lr": 1e-9, "maybe": None, "seeds": [0, 7]}, "m")
    assert (c.k, c.p, c.lr, c.maybe, c.seeds) == (1, 0.0, 1e-9, None, (0, 7))


def test_a_declared_default_or_space_outside_the_range_is_a_bug():
    with pytest.raises(TypeError, match="value 0 is outside the declared range value >= 1"):
        hp(0, ge=1)
    with pytest.raises(TypeError, match="value 2 is outside"):
        hp(0.5, space=(0.5, 2), ge=0, le=1)


TTA_RUN = ["--scenario", "corruption", "--backbone", "small_cnn"]
CL_RUN = [*CL, "--backbone", "debug_vit"]
OUT_OF_RANGE = [
    ([*TTA_RUN, "--method", "lame", "-H", "k=0"], "method 'lame': option 'k': expected k >= 1, got 0"),
    ([*TTA_RUN, "--method", "lame", "-H", "k=-3"], "method 'lame': option 'k': expected k >= 1, got -3"),
    (
        [*TTA_RUN, "--method", "tent", "-H", "lr=-1e-3"],
        "method 'tent': option 'lr': expected lr > 0, got -0.001",
    ),
    (
        [*TTA_RUN, "--method", "tent", "-S", "batch_size=-5"],
        "option 'batch_size': expected batch_size >= 1, got -5",
    ),
    ([*TTA_RUN, "--method", "cotta", "-H", "rst=1.5"], "option 'rst': expected 0 <= rst <= 1, got 1.5"),
    (
        [*TTA_RUN, "--method", "tent", "-S", "severity=6"],
        "option 'severity': expected 0 <= severity <= 5, got 6",
    ),
    (
        [*TTA_RUN, "--method", "tent", "--seed", "-1"],
        "seed must be an integer in 0..2**32-1 (NumPy's seeds), got -1",
    ),
    (
        [*CL_RUN, "--method", "ewc", "-H", "lam=-100"],
        "method 'ewc': option 'lam': expected lam >= 0, got -100.0",
    ),
    (
        [*CL_RUN, "--method", "finetune", "-H", "batch_size=-5"],
        "option 'batch_size': expected batch_size >= 1, got -5",
    ),
    ([*CL_RUN, "--method", "finetune", "-H", "epochs=0"], "option 'epochs': expected epochs >= 1, got 0"),
]


@pytest.mark.parametrize("args, message", OUT_OF_RANGE)
def test_out_of_range_on_the_command_line_runs_nothing(tmp_path, capsys, args, message):
    err = refused(capsys, "run", *args, "--results", str(tmp_path))
    assert err.startswith("ctta: error: command line: ") and err.endswith(message), err
    assert files_under(tmp_path) == []


def test_out_of_range_search_values_fail_when_the_sweep_is_loaded(tmp_path, capsys):
    path = write_sweep(
        tmp_path / "s.yaml",
        {"s": {"protocol": "oracle", "scenarios": dict(CL_DEBUG), "methods": {"lame": {"k": [1, 3, 0]}}}},
        defaults={"backbone": "debug_vit"},
    )
    for command in ("plan", "launch"):
        err = refused(capsys, "sweep", command, path, "--results", str(tmp_path / "res"))
        assert err == f"ctta: error: {path}: studies.s: methods.lame.k[2]: option 'k': expected k >= 1, got 0"
    assert files_under(tmp_path / "res") == []


def test_show_method_states_the_range(capsys):
    main(["show", "method", "lame"])
    out = capsys.readouterr().out
    assert "k = 5  search: [1, 3, 5]  range: k >= 1" in out
    assert "lam = 1.0  range: lam >= 0" in out
    main(["show", "scenario", "corruption"])
    assert "severity = 5  range: 0 <= severity <= 5" in capsys.readouterr().out


# --------------------------------------------------------------------------- 3. data checks
def digits_arrays(n_per_class: int = 12, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(classes), n_per_class)
    return rng.random((len(y), 8, 8), dtype=np.float32), y


def test_non_finite_pixels_fail_the_run_before_anything_is_written(tmp_path, capsys):
    x, y = digits_arrays()
    x[[3, 17, 40]] = np.nan
    x[41, 0, 0] = np.inf
    np.savez(tmp_path / "nan.npz", images=x, labels=y)
    results = tmp_path / "res"
    dataset = f"dataset={{name: arrays, path: {tmp_path / 'nan.npz'}}}"
    err = refused(
        capsys,
        "run",
        "--scenario",
        "class_incremental",
        "-S",
        dataset,
        "-S",
        "increment=5",
        "--method",
        "simplecil",
        "--backbone",
        "debug_vit",
        "--results",
        str(results),
    )
    assert (
        err
        == f"ctta: error: {tmp_path / 'nan.npz'}: images: non-finite pixel values (NaN or inf) in images 3, 17, 40, 41"
    )
    assert files_under(results) == []


def test_pixels_outside_0_1_name_the_images():
    x, y = digits_arrays(classes=2)
    x[5, 0, 0] = -0.5
    with pytest.raises(UserError) as err:
        ImageData.from_arrays(x, y, name="mine")
    assert str(err.value).startswith("mine: float images must lie in [0, 1] (got -0.5")
    assert "in images 5); give unnormalised images" in str(err.value)


def test_labels_outside_the_classes_name_the_samples(tmp_path):
    x, y = digits_arrays(classes=3)
    with pytest.raises(UserError) as err:
        ImageData.from_arrays(x, y, ["a", "b"], name="mine")
    assert str(err.value) == (
        "mine: 12 samples have a class id outside 0..1 (2 class names): samples 24, 25, 26, 27, 28 (+7 more); ids 2"
    )
    y = y.astype(float)
    y[[4, 9]] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(UserError, match=r"d.npz: labels: NaN or inf at samples 4, 9$"):
        load_dataset({"name": "arrays", "path": str(tmp_path / "d.npz")}, "train", 8)


def test_test_classes_without_training_images_are_refused(tmp_path, capsys):
    x, y = digits_arrays(classes=4)
    train = y != 3
    np.savez(tmp_path / "gap.npz", x_train=x[train], y_train=y[train], x_test=x, y_test=y)
    dataset = f"dataset={{name: arrays, path: {tmp_path / 'gap.npz'}}}"
    results = tmp_path / "res"
    for scenario, method, backbone in (
        (["--scenario", "class_incremental", "-S", "increment=2"], "simplecil", "debug_vit"),
        (["--scenario", "corruption", "-S", "corruptions=[contrast]"], "tent", "small_cnn"),
    ):
        err = refused(
            capsys,
            "run",
            *scenario,
            "-S",
            dataset,
            "--method",
            method,
            "--backbone",
            backbone,
            "--results",
            str(results),
        )
        assert err.endswith(
            f"{tmp_path / 'gap.npz'}: classes '3' have test images but no training images "
            "(test samples 36, 37, 38, 39, 40 (+7 more)); no model can learn them"
        ), err
    assert files_under(results) == []


def nan_factory(split: str):
    """A factory dataset whose items 2 and 5 hold NaN pixels."""
    x, y = digits_arrays(n_per_class=4, classes=2)
    x[[2, 5]] = np.nan
    return [(torch.from_numpy(img)[None], int(label)) for img, label in zip(x, y)]


def test_non_finite_pixels_of_a_factory_dataset_name_the_item():
    with pytest.raises(UserError) as err:
        load_dataset(f"{__name__}:nan_factory", "train", 8)
    assert (
        str(err.value)
        == f"dataset '{__name__}:nan_factory': non-finite pixel values (NaN or inf) in images 2"
    )


# --------------------------------------------------------------------------- 4. sweep launch
SMALL = {"backbone": "debug_vit", "eval_seeds": [1]}


def small_sweep(tmp_path, **second) -> str:
    cl = {**CL_DEBUG, "train_per_class": 8, "test_per_class": 4}
    studies = {"a": {"protocol": "oracle", "scenarios": cl, "methods": {"simplecil": {}}}}
    if second:
        studies["b"] = {"protocol": "oracle", **second}
    return write_sweep(tmp_path / "s.yaml", studies, defaults=SMALL)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal of a device this machine lacks")
@pytest.mark.parametrize("launcher", ["local", "debug"])
def test_sweep_launch_refuses_a_missing_device_before_writing(tmp_path, capsys, launcher):
    results = tmp_path / "res"
    err = refused(
        capsys,
        "sweep",
        "launch",
        small_sweep(tmp_path),
        "--results",
        str(results),
        "--device",
        "cuda",
        "--launcher",
        launcher,
    )
    assert err == "ctta: error: device 'cuda' requested but CUDA is not available; valid choices: auto, cpu"
    assert files_under(results) == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "0"], "--threads must be at least 1, got 0"),
        (
            ["--threads", "1", "--launcher", "debug"],
            "--threads applies to --launcher local only (slurm: --cpus-per-task)",
        ),
    ],
)
def test_sweep_launch_refuses_bad_thread_counts_before_writing(tmp_path, capsys, args, message):
    results = tmp_path / "res"
    err = refused(capsys, "sweep", "launch", small_sweep(tmp_path), "--results", str(results), *args)
    assert err == f"ctta: error: {message}"
    assert files_under(results) == []


def test_local_workers_get_the_threads_asked_for():
    from ctta.sweep.launchers import make_launcher, usable_cores

    assert make_launcher("local", "unused", jobs=2, threads=1).threads == 1
    assert make_launcher("local", "unused", jobs=2).threads == max(1, usable_cores() // 2)


def test_device_names_are_checked_for_slurm_but_not_its_gpus(tmp_path):
    from ctta.sweep.launchers import make_launcher

    make_launcher("slurm", tmp_path, device="cuda:1")  # the nodes have GPUs this machine may lack
    with pytest.raises(UserError, match=r"^unknown device 'gpu'; valid choices: auto, cpu, cuda, cuda:N$"):
        make_launcher("slurm", tmp_path, device="gpu")
    assert files_under(tmp_path) == []


def test_a_failing_check_of_a_later_study_writes_no_study_file(tmp_path, capsys):
    tta = {**TTA_DEBUG, "corruptions": ["contrast"]}
    path = small_sweep(tmp_path, scenarios=tta, methods={"bn_adapt": {}})  # debug_vit has no BatchNorm
    results = tmp_path / "res"
    err = refused(capsys, "sweep", "launch", path, "--results", str(results), "--launcher", "debug")
    assert err.startswith(f"ctta: error: {path}: studies.b: scenario 'corruption[")
    assert "method 'bn_adapt' needs a backbone with batchnorm; backbone 'debug_vit' has" in err
    assert files_under(results) == []


# --------------------------------------------------------------------------- 5. empty figures
def test_plot_and_leaderboard_of_a_store_without_studies_say_why(tmp_path, capsys):
    results = tmp_path / "res"
    main(["run", *CL, "--method", "simplecil", "--backbone", "debug_vit", "--results", str(results)])
    capsys.readouterr()
    before = files_under(results)
    why = "its records belong to no study of a sweep (leaderboards and figures rank a sweep's studies: "
    err = refused(capsys, "plot", str(results), "--out", str(tmp_path / "figures"))
    assert err.startswith(f"ctta: error: {results}: nothing to draw: {why}")
    err = refused(capsys, "leaderboard", str(results))
    assert err.startswith(f"ctta: error: {results}: nothing to rank: {why}")
    assert not (tmp_path / "figures").exists() and files_under(results) == before


def test_plot_before_any_eval_run_finished_says_what_is_missing(tmp_path, capsys):
    from ctta.run.store import Store
    from ctta.sweep.launch import launch
    from ctta.sweep.launchers import make_launcher
    from ctta.sweep.studies import load_sweep

    study = {"protocol": "tune_eval", "tune": cl_half("first_half"), "eval": cl_half("second_half")}
    path = write_sweep(tmp_path / "s.yaml", {"s": {**study, "methods": ["simplecil"]}}, defaults=SMALL)
    store = Store(tmp_path / "res")
    launch(load_sweep(path), store, make_launcher("debug", store.root))
    for run_dir in (store.root / "runs").iterdir():  # forget the eval run: tuning finished, eval pending
        if '"eval"' in (run_dir / "protocol" / "s.json").read_text():
            (run_dir / "record.json").unlink()
    err = refused(capsys, "plot", str(store.root))
    assert err == (
        f"ctta: error: {store.root}: nothing to draw: no eval run of s has finished (tune runs: 1 done; "
        "eval runs: 1 pending); `ctta sweep status` says more"
    )
    assert not (store.root / "figures").exists()


# --------------------------------------------------------------------------- 6. named callables
NOT_A_FACTORY = "not a factory; name a function or class of your own module that returns a torch.nn.Module"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--backbone", "os:system", "-B", "command=touch {marker}"],
            "backbone: backbone 'os:system': 'os' is a module of Python's standard library, ",
        ),
        (
            ["--backbone", "builtins:exec", "-B", "source=open('{marker}', 'w')"],
            "backbone: backbone 'builtins:exec': 'builtins' is a module of Python's standard library, ",
        ),
        (
            ["--backbone", "side_effects:system", "-B", "command=touch {marker}"],
            "backbone: backbone 'side_effects:system': side_effects:system is a built-in function, ",
        ),
        (
            ["--backbone", "side_effects:run", "-B", "args=[touch, {marker}]"],
            "backbone: backbone 'side_effects:run': side_effects:run is from Python's standard library, ",
        ),
        (
            ["--backbone", "small_cnn", "-S", "dataset={{name: subprocess:run, args: [touch, {marker}]}}"],
            "scenario: dataset: dataset 'subprocess:run': 'subprocess' is a module of Python's standard library, ",
        ),
    ],
)
def test_standard_library_callables_are_refused_unrun(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "side_effects.py").write_text("from os import system\nfrom subprocess import run\n")
    marker = tmp_path / "ran"
    args = [a.format(marker=marker) for a in args]
    err = refused(capsys, "run", "--scenario", "corruption", "--method", "tent", *args, "--results", "res")
    assert (
        err
        == f"ctta: error: command line: {message}{NOT_A_FACTORY} (backbones) or a torch Dataset (datasets)"
    )
    assert not marker.exists() and files_under(tmp_path / "res") == []


def test_user_code_is_imported_only_after_the_rest_of_the_spec_is_valid(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "imported"
    (tmp_path / "late_nets.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n\ndef build():\n    raise SystemExit('called')\n"
    )
    for bad in (["-S", "batch_size=0"], ["-H", "lr=-1"], ["-S", "dataset=digts"], ["--seed", "-3"]):
        refused(
            capsys,
            "run",
            "--scenario",
            "corruption",
            "--method",
            "tent",
            "--backbone",
            "late_nets:build",
            *bad,
            "--results",
            "res",
        )
        assert not marker.exists(), bad
    assert files_under(tmp_path / "res") == []


# --------------------------------------------------------------------------- 7. peak memory
def test_cpu_runs_record_no_peak_memory(tmp_path):
    from ctta.run import execute

    record = execute({"scenario": CL_DEBUG, "method": "simplecil", "backbone": "debug_vit", "seed": 0})
    assert record["status"] == "done"
    assert record["peak_mb"] is None and record["peak_mb_kind"] == "not_measured_on_cpu"


def test_leaderboards_show_cpu_peak_memory_as_na_and_never_bold_it():
    import pandas as pd

    from ctta.report.leaderboard import display_table
    from ctta.report.results import Results, eval_records

    def peaks(device: str, values: dict[str, list[float]]) -> list:
        runs = pd.DataFrame(
            [
                {
                    "study": "s",
                    "phase": "eval",
                    "status": "done",
                    "method": m,
                    "case": "c",
                    "seed": i,
                    "run_id": f"{m}{i}",
                }
                for m, ps in values.items()
                for i in range(len(ps))
            ]
        )
        records = pd.DataFrame(
            [
                {"run_id": f"{m}{i}", "method": m, "seed": i, "device": device, "peak_mb": p}
                for m, ps in values.items()
                for i, p in enumerate(ps)
            ]
        )
        runs = eval_records(Results(records, runs, *[pd.DataFrame()] * 3), "s")
        table = runs.groupby("method", as_index=False)["peak_mb"].mean()
        return display_table(table)["peak mem (MB)"].tolist()

    # what CPU records of older stores hold: resident-set noise (0.0 to 12.5 MB for one run)
    assert peaks("cpu", {"a": [0.0, 12.5], "b": [0.0, 0.0]}) == ["n/a", "n/a"]
    assert peaks("cuda:0", {"a": [40.0, 42.0], "b": [30.0, 30.0]}) == ["41.0", "**30.0**"]
