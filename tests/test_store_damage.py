"""A damaged store keeps working: every damaged file is reported in one warning line naming it,
set aside (kept as `<name>.damaged-<time>-<pid>`), its run counts as pending, and every command
goes on with the rest of the store."""

import json
import logging
import runpy
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ctta.cli import main
from ctta.run.store import Store

FAKE = Path(__file__).parent / "data" / "fake_store"
SWEEP = runpy.run_path(str(Path(__file__).parent / "data" / "make_fake_store.py"))["SWEEP"]

DAMAGES = {
    "truncated": lambda text: text[: len(text) // 2],
    "not a mapping": lambda text: "[1, 2]",
    "no run_id": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "run_id"}),
    "no status": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "status"}),
    "no spec": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "spec"}),
}
PROBLEMS = {
    "truncated": "JSONDecodeError: ",
    "not a mapping": "expected a mapping, got list",
    "no run_id": "missing key 'run_id'",
    "no status": "missing key 'status'",
    "no spec": "missing key 'spec'",
}


def _warnings(caplog) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return lines


def _about(lines: list[str], path: Path) -> list[str]:
    return [line for line in lines if f"{path} " in line]


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(path.name + ".damaged-*"))


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_record_is_set_aside_once_and_its_run_is_pending(tmp_path, caplog, damage):
    shutil.copytree(FAKE / "runs", tmp_path / "runs")
    store = Store(tmp_path)
    run_id = store.run_ids()[0]
    path = store.run_dir(run_id) / "record.json"
    text = path.read_text()
    path.write_text(DAMAGES[damage](text))
    assert store.status(run_id) == "pending"
    assert len(list(store.records())) == 17 and store.record(run_id) is None
    (line,) = _warnings(caplog)  # reported once, though read three times
    assert line.startswith(f"damaged {path} ({PROBLEMS[damage]}") and "\n" not in line
    assert line.endswith("; the run counts as pending")
    (aside,) = _aside(path)
    assert aside.name in line and aside.read_text() == DAMAGES[damage](text)  # kept, as it was


def test_every_command_goes_on_past_damaged_files(tmp_path, caplog, capsys):
    res = tmp_path / "fake_store"
    shutil.copytree(FAKE, res)
    (sweep_file := tmp_path / "fake_sweep.yaml").write_text(SWEEP)
    store = Store(res)
    cil = [r["run_id"] for r in store.records() if r["spec"]["scenario"]["name"] == "class_incremental"]
    damaged = {}
    for run_id, (kind, damage) in zip(cil, DAMAGES.items()):
        path = store.run_dir(run_id) / "record.json"
        path.write_text(damage(path.read_text()))
        damaged[kind] = path
    study = res / "studies" / "cil.json"
    study.write_text(study.read_text()[:40])
    spec_file = store.run_dir(cil[1]) / "spec.json"
    spec_file.write_text('{"scenario": ')
    marker = store.run_dir(cil[0]) / "running"
    marker.write_text("\x00\x01 not a claim")
    caplog.set_level(logging.WARNING)

    main(["collect", str(res)])
    lines = _warnings(caplog)
    for kind, path in damaged.items():
        (line,) = _about(lines, path)
        assert PROBLEMS[kind] in line and "\n" not in line and _aside(path)[0].name in line
    (line,) = _about(lines, study)
    assert "its tables are left out until a launch writes it again" in line and _aside(study)
    assert len(pd.read_csv(res / "records.csv")) == 18 - 5
    assert "13 runs: 13 done" in capsys.readouterr().out

    main(["leaderboard", str(res)])
    main(["plot", str(res)])
    assert _warnings(caplog) == []  # already set aside: nothing to say again
    assert (res / "leaderboard" / "leaderboard.md").exists()
    assert list((res / "figures").glob("tta-*.png"))

    main(["sweep", "status", str(sweep_file), "--results", str(res)])
    (line,) = _warnings(caplog)
    assert line.startswith(f"damaged {marker} (") and _aside(marker)
    assert "18 distinct runs: 13 done, 0 failed, 0 running, 5 pending" in capsys.readouterr().out

    main(["sweep", "launch", str(sweep_file), "--results", str(res), "--launcher", "debug"])
    (line,) = _warnings(caplog)
    assert line.startswith(f"damaged {spec_file} (JSONDecodeError") and line.endswith("it is written anew")
    assert "5 runs finished in this launch: 5 done" in capsys.readouterr().out
    assert json.loads(spec_file.read_text())["method"]["name"] in ("finetune", "simplecil")
    assert all(len(_aside(p)) == 1 for p in [*damaged.values(), study, spec_file, marker])  # all kept
    assert json.loads(study.read_text())["study"] == "cil"  # written again by the launch

    path = damaged["truncated"]
    spec = json.loads(path.read_text())["spec"]
    path.write_text("{")
    (spec_yaml := tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    main(["run", str(spec_yaml), "--results", str(res)])
    (line,) = _warnings(caplog)
    assert line.startswith(f"damaged {path} (JSONDecodeError") and len(_aside(path)) == 2
    out = capsys.readouterr().out
    assert ": done" in out and "already recorded" not in out
    assert json.loads(path.read_text())["status"] == "done"


def test_a_damaged_file_that_cannot_be_moved_is_reported_once(tmp_path, caplog, monkeypatch):
    shutil.copytree(FAKE / "runs", tmp_path / "runs")
    store = Store(tmp_path)
    run_id = store.run_ids()[0]
    path = store.run_dir(run_id) / "record.json"
    path.write_text("{")

    def read_only(src, dst):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr("os.rename", read_only)
    assert [store.status(run_id), store.status(run_id)] == ["pending", "pending"]
    (line,) = _warnings(caplog)
    assert (
        line.startswith(f"damaged {path} (")
        and "left in place (cannot move it: Read-only file system)" in line
    )
    assert path.read_text() == "{"
