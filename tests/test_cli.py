import subprocess
import sys

import pytest

from ctta.cli import main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ctta.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_list_methods_shows_the_core_six():
    out = run_cli("list", "methods")
    assert out.returncode == 0
    names = {line.split()[0] for line in out.stdout.splitlines()[1:]}
    assert {"finetune", "joint", "simplecil", "source", "bn_adapt", "tent"} <= names


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["run", "--scenario", "class_incremental", "--method", "tnet", "--backbone", "debug_vit"],
            "ctta: error: command line: method: unknown method 'tnet'; valid choices: ",
        ),
        (
            [
                "run",
                "--scenario",
                "class_incremental",
                "--method",
                "tent",
                "-H",
                "lr=fast",
                "--backbone",
                "debug_vit",
            ],
            "ctta: error: command line: method 'tent': option 'lr': expected a number, got 'fast'",
        ),
        (
            ["run", "--scenario", "class_incremental", "--method", "finetune", "--backbone", "debug_vitt"],
            "ctta: error: command line: backbone: unknown backbone 'debug_vitt'; valid choices: ",
        ),
        (
            [
                "run",
                "--scenario",
                "class_incremental",
                "--method",
                "finetune",
                "--backbone",
                "debug_vit",
                "--device",
                "tpu",
            ],
            "ctta: error: unknown device 'tpu'",
        ),
        (["collect", "/nonexistent/results"], "ctta: error: /nonexistent/results: no such results directory"),
    ],
)
def test_user_errors_are_one_line_without_traceback(args, message):
    out = run_cli(*args)
    assert out.returncode == 2
    assert out.stderr.startswith(message), out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


def test_malformed_yaml_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "spec.yaml"
    bad.write_text("scenario: class_incremental\nmethod: [finetune\nseed: 1\n")
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ctta: error: {bad}:") and "malformed YAML" in err


def test_run_from_yaml_then_collect(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "scenario: {name: class_incremental, dataset: digits, increment: 5, train_per_class: 8,"
        " test_per_class: 4}\nmethod: simplecil\nbackbone: debug_vit\nseed: 3\n"
    )
    main(["run", str(spec), "--results", str(tmp_path / "res")])
    out = capsys.readouterr().out
    assert "simplecil on class_incremental (debug_vit, seed 3): done" in out
    assert "record: " in out
    main(["run", str(spec), "--results", str(tmp_path / "res"), "-H", "batch_size=32"])
    main(["collect", str(tmp_path / "res")])
    out = capsys.readouterr().out
    assert "2 runs: 2 done" in out
    import pandas as pd

    df = pd.read_csv(tmp_path / "res" / "records.csv")
    assert sorted(df["hp.batch_size"]) == [32, 256]
    assert set(df["seed"]) == {3}
    assert df["avg_inc_acc"].between(0, 100).all()


def test_show_method_lists_hparams_and_space(capsys):
    main(["show", "method", "tent"])
    out = capsys.readouterr().out
    assert "lr = 0.001  search: [0.0001, 0.001, 0.01]" in out
    assert "episodic = False" in out
