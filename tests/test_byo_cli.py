"""Bring your own model and data, through the `ctta` command only.

A user's module (a BatchNorm CNN), its DataParallel checkpoint and an .npz file sit in a
folder; `ctta run` is started in that folder, with nothing installed or put on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from own_code import CLASS_NAMES, MEAN, SIZE, STD, digits_split, model_options, write_user_project

from ctta.cli import main
from ctta.core.registry import create_scenario

# Issue 8's acceptance lists also `lame` (issue 5) and `l2` (issue 3): they join these lists
# when their branches are merged.
TTA_METHODS = ["source", "bn_adapt", "tent", "lame"]
CL_METHODS = {"simplecil": []}

CORRUPTION = {
    "name": "corruption",
    "dataset": {"name": "arrays", "path": "digits.npz"},
    "corruptions": ["gaussian_noise", "contrast"],
    "severity": 3,
    "batch_size": 64,
    "test_per_class": 20,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_project")
    net = write_user_project(folder)
    return folder, net


def ctta_processes(folder: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Run `ctta <args>` for every command at once, in `folder`, as a user would type them."""
    script = Path(sys.executable).with_name("ctta")
    exe = [str(script)] if script.exists() else [sys.executable, "-m", "ctta.cli"]
    env = {**os.environ, "CTTA_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)  # the user's module is found in the current folder
    procs = [
        subprocess.Popen(
            exe + args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    out = []
    for args, p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=300)
        out.append(subprocess.CompletedProcess(args, p.returncode, stdout, stderr))
    return out


def record_of(folder: Path, result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("record: "))
    return json.loads((folder / line.removeprefix("record: ")).read_text())


def scenario_args(scenario: dict) -> list[str]:
    args = ["--scenario", scenario["name"]]
    for key, value in scenario.items():
        if key != "name":
            args += ["-S", f"{key}={json.dumps(value)}"]
    return args


def test_tta_methods_on_an_npz_corruption_stream_with_a_dataparallel_checkpoint(project):
    folder, net = project
    commands = [
        [
            "run",
            *scenario_args(CORRUPTION),
            "--method",
            m,
            *model_options(),
            "--results",
            "res",
            "--seed",
            "3",
        ]
        for m in TTA_METHODS
    ]
    records = {m: record_of(folder, r) for m, r in zip(TTA_METHODS, ctta_processes(folder, commands))}
    for m, rec in records.items():
        assert rec["status"] == "done", (m, rec.get("error"))
        assert rec["spec"]["backbone"]["name"] == "byo_nets:build"
        assert sum(rec["online_n"]) == 2 * 10 * 20

    # `source` is the user's network as trained: recompute its predictions on the same stream
    # with the network itself (its own normalisation, its own head), outside ctta's model code.
    scenario = {**CORRUPTION, "dataset": {"name": "arrays", "path": str(folder / "digits.npz")}}
    scenario = {k: v for k, v in scenario.items() if k != "name"}
    stream = create_scenario("corruption", **scenario).build(
        seed=3, image_size=SIZE, device=torch.device("cpu")
    )
    assert stream.info.class_names == CLASS_NAMES
    with torch.no_grad():
        expected = [int((net((b.x - MEAN) / STD).argmax(1) == y).sum()) for b, y in stream.batches()]
    assert records["source"]["online_correct"] == expected
    assert records["source"]["trainable_params"] == 0

    # Test-batch statistics change the predictions; tent trains exactly the network's BN
    # scales and shifts (2 * (8 + 16)).
    assert records["bn_adapt"]["online_correct"] != expected
    assert records["bn_adapt"]["trainable_params"] == 0
    assert records["tent"]["trainable_params"] == 2 * (8 + 16)
    # LAME adapts no parameter; its Laplacian refinement changes some of the source's answers.
    assert records["lame"]["trainable_params"] == 0
    assert records["lame"]["online_correct"] != expected


def test_cl_methods_on_an_imagefolder_tree(project):
    from PIL import Image

    folder, _ = project
    for split in ("train", "test"):
        x, y = digits_split(split)
        for c, name in enumerate(CLASS_NAMES):
            (folder / "tree" / split / name).mkdir(parents=True)
            for i in np.flatnonzero(y == c)[:12]:
                Image.fromarray(x[i]).save(folder / "tree" / split / name / f"{i}.png")
    scenario = {
        "name": "class_incremental",
        "dataset": {"name": "imagefolder", "root": "tree"},
        "increment": 5,
    }
    commands = [
        ["run", *scenario_args(scenario), "--method", m, *hps, *model_options(), "--results", "res"]
        for m, hps in CL_METHODS.items()
    ]
    for m, result in zip(CL_METHODS, ctta_processes(folder, commands)):
        rec = record_of(folder, result)
        assert rec["status"] == "done", (m, rec.get("error"))
        matrix = rec["acc_matrix"]
        assert len(matrix) == 2 and matrix[0][1] is None and None not in matrix[1]
        assert rec["task_logs"] and len(rec["acc_seen"]) == 2
        assert matrix[0][0] > 100 / 5 + 20, (m, matrix)  # well above chance on the first 5 classes


def test_what_a_model_lacks_is_a_one_line_error(project, monkeypatch, capsys):
    folder, _ = project
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the current folder is added for byo_nets
    base = ["run", *scenario_args(CORRUPTION), "--results", "res"]
    mlp = ["--backbone", "byo_nets:build_mlp", "-B", "normalize=none", "-B", "image_size=16"]
    cases = [
        (
            ["--method", "bn_adapt", *mlp],
            "method 'bn_adapt' needs a backbone with batchnorm; backbone 'byo_nets:build_mlp' has features, "
            "head (batchnorm = BatchNorm layers with running statistics (track_running_stats=True))",
        ),
        (
            ["--method", "tent", *mlp],
            "method 'tent' needs a backbone with norm; backbone 'byo_nets:build_mlp' has features, head",
        ),
        (
            ["--method", "source", *model_options(), "-B", "num_classes=3"],
            "backbone 'byo_nets:build' (BNNet): checkpoint ckpt.pt does not fit: size mismatch for fc.weight",
        ),
        (
            ["--method", "source", "--backbone", "byo_nets:build", "-B", "num_classes=3", *mlp[2:]],
            "backbone 'byo_nets:build' comes with a trained head over 3 classes, but the stream has 10; ",
        ),
        (
            ["--method", "source", "--backbone", "byo_nets:build", "-B", "image_size=16"],
            "backbone 'byo_nets:build' (BNNet): declare the input normalisation the model was trained with",
        ),
        (
            ["--method", "source", "--backbone", "byo_nets:biuld"],
            "command line: backbone: backbone 'byo_nets:biuld': module 'byo_nets' has no attribute 'biuld'; "
            "its callables: BNNet, build, build_mlp",
        ),
    ]
    try:
        for args, message in cases:
            with pytest.raises(SystemExit) as exit_:
                main(base + args)
            err = capsys.readouterr().err
            assert exit_.value.code == 2, err
            assert err.startswith(f"ctta: error: {message}"), err
            assert len(err.strip().splitlines()) == 1
    finally:
        sys.modules.pop("byo_nets", None)
