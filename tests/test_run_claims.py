"""Each run executes once, whoever launches it: claims, heartbeats, stale claims, --reclaim."""

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import yaml

from ctta.cli import main
from ctta.core.registry import METHODS
from ctta.plan.spec import RunSpec
from ctta.run import claims
from ctta.run.engine import execute
from ctta.run.store import Store
from ctta.sweep.studies import load_sweep
from helpers import CL_DEBUG, cl_half, spec, write_sweep

SPEC = spec(CL_DEBUG, "simplecil")
RUN_ID = RunSpec.parse(SPEC).run_id


def _plant(store: Store, run_id: str, **info) -> "os.PathLike":
    marker = store.run_dir(run_id) / "running"
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"host": "node-7", "pid": 4242, "started": time.time(), **info}))
    return marker


def _warnings(caplog) -> list[str]:
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    caplog.clear()
    return lines


def _ended_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("dead", ["process gone", "heartbeat stale"])
def test_a_dead_claim_is_taken_over_with_one_line(store, caplog, dead):
    if dead == "process gone":
        holder, reason = (
            {"host": socket.gethostname(), "pid": _ended_pid()},
            "process {pid} on this host has ended",
        )
    else:
        holder, reason = {"heartbeat": time.time() - 301}, "no heartbeat for 301 s (stale after 300 s)"
    marker = _plant(store, RUN_ID, **holder)
    holder = json.loads(marker.read_text())
    assert store.status(RUN_ID) == "pending"  # a dead holder does not count as running
    record = execute(SPEC, store=store)
    assert record["status"] == "done" and not marker.exists()
    (line,) = _warnings(caplog)
    assert line.startswith(f"reclaimed {marker} from host {holder['host']}, pid {holder['pid']}, started ")
    assert line.endswith(reason.format(pid=holder["pid"]))


def test_a_claim_of_a_requeued_slurm_job_is_its_own_to_take_over(store, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    marker = _plant(store, RUN_ID, slurm_job="77", slurm_restart=1)  # another task of this allocation
    assert store.status(RUN_ID) == "running"
    marker.unlink()
    _plant(store, RUN_ID, slurm_job="77", slurm_restart=0)  # this job before it was requeued
    assert store.status(RUN_ID) == "pending"
    assert claims.read_holder(marker).stale() == "Slurm job 77 was requeued"


def test_a_live_claim_blocks_the_run_until_reclaim(tmp_path, caplog, capsys):
    store = Store(tmp_path / "res")
    marker = _plant(store, RUN_ID, heartbeat=time.time() - 200)
    assert store.status(RUN_ID) == "running"
    (spec_file := tmp_path / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    with pytest.raises(SystemExit) as exit:
        main(["run", str(spec_file), "--results", str(store.root)])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"ctta: error: run {RUN_ID} is running elsewhere (host node-7"
    )
    assert f"claim {marker}); wait for it to finish, or pass --reclaim to take it over" in err
    assert store.record(RUN_ID) is None and marker.exists()

    main(["run", str(spec_file), "--results", str(store.root), "--reclaim"])
    (line,) = _warnings(caplog)
    assert line.startswith(f"reclaimed {marker} from host node-7, pid 4242") and line.endswith("(--reclaim)")
    assert store.record(RUN_ID)["status"] == "done" and not marker.exists()


def test_launch_leaves_live_claims_to_their_holder_and_reclaim_takes_them(tmp_path, caplog, capsys):
    path = write_sweep(
        tmp_path / "s.yaml",
        {"cil": {"protocol": "oracle", "scenarios": cl_half("first_half"), "methods": {"simplecil": {}}}},
        defaults={"backbone": "debug_vit", "tune_seeds": [0, 1], "eval_seeds": [0, 1]},
    )
    store = Store(tmp_path / "res")
    held, free = [r.run_id for r in load_sweep(path).plan({})]
    marker = _plant(store, held)
    launch = ["sweep", "launch", path, "--results", str(store.root), "--launcher", "debug"]
    main(launch)
    out = capsys.readouterr().out
    assert "1 runs finished in this launch: 1 done" in out
    assert "1 runs are running in another process; launch again later (--reclaim takes them over)" in out
    assert store.record(free) is not None and store.record(held) is None and marker.exists()
    main([*launch, "--reclaim"])
    assert "1 runs finished in this launch: 1 done" in capsys.readouterr().out
    (line,) = _warnings(caplog)
    assert line.startswith(f"reclaimed {marker} from host node-7") and store.record(held)["status"] == "done"


def test_the_heartbeat_keeps_a_claim_fresh_and_notices_a_takeover(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("CTTA_HEARTBEAT_S", "0.05")
    marker = tmp_path / "run" / "running"
    with claims.claim(marker, "run x") as claim:
        first = json.loads(marker.read_text())
        assert {"host", "pid", "started", "heartbeat", "token"} <= first.keys() and first[
            "pid"
        ] == os.getpid()
        time.sleep(0.3)
        assert json.loads(marker.read_text())["heartbeat"] > first["heartbeat"]
        assert claims.live_holder(marker) is not None
    assert not marker.exists()
    assert claims.stale_s() == pytest.approx(0.5)  # ten heartbeats

    with claims.claim(marker, "run x") as claim:
        marker.write_text(json.dumps({**first, "token": "someone else's"}))
        time.sleep(0.3)
        assert claim.lost
    assert marker.exists()  # the new holder's claim is left alone
    (line,) = _warnings(caplog)
    assert line == f"{marker} was taken over by another process; this run goes on but may now run twice"


def test_of_many_processes_taking_over_one_stale_claim_one_wins(tmp_path):
    for attempt in range(10):
        marker = tmp_path / str(attempt) / "running"
        marker.parent.mkdir()
        marker.write_text(json.dumps({"host": "node-7", "pid": 1, "started": 0.0}))
        start, won, lost = threading.Barrier(8), [], []

        def take(marker=marker, start=start, won=won, lost=lost):
            start.wait()
            try:
                won.append(claims.claim(marker, "run x"))
            except claims.RunClaimed:
                lost.append(1)

        threads = [threading.Thread(target=take) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (len(won), len(lost)) == (1, 7)
        assert json.loads(marker.read_text())["token"] == won[0].info["token"]
        won[0].release()
        assert not marker.exists()


PLUGIN = textwrap.dedent('''
    """simplecil that counts its executions, waits until both launchers run, and sleeps."""
    import os, pathlib, time
    from dataclasses import dataclass

    from ctta import hp, register_method
    from ctta.methods.simplecil import SimpleCIL


    @dataclass
    class HP(SimpleCIL.HParams):
        variant: int = hp(0, space=(0, 1, 2))


    @register_method("counted")
    class Counted(SimpleCIL):
        HParams = HP

        def setup(self, backbone, info):
            super().setup(backbone, info)
            log = pathlib.Path(os.environ["EXECUTIONS"])
            with open(log, "a") as fh:
                fh.write(f"{info.seed}|{self.hparams.variant}|{min(info.class_names)}|{os.getpid()}\\n")
            deadline = time.time() + 120  # both launchers are past their imports: they overlap
            while len({line.split("|")[3] for line in log.read_text().splitlines()}) < 2:
                assert time.time() < deadline, "the other launcher never started a run"
                time.sleep(0.05)
            time.sleep(0.1)
''')


def test_two_launchers_on_one_store_execute_each_run_once(tmp_path):
    (tmp_path / "countedplugin.py").write_text(PLUGIN)
    study = {"protocol": "tune_eval", "tune": cl_half("first_half"), "eval": cl_half("second_half")}
    path = write_sweep(
        tmp_path / "s.yaml",
        {"cil": {**study, "methods": {"counted": {}}}},
        defaults={"backbone": "debug_vit", "tune_seeds": [0], "eval_seeds": [1, 2]},
    )
    res, executions = tmp_path / "res", tmp_path / "executions.log"
    executions.touch()
    # a damaged record of a planned run: one launcher sets it aside and says so, the run executes once
    sys.path.insert(0, str(tmp_path))
    try:
        import countedplugin  # noqa: F401  (registers `counted` here, to plan)

        first = load_sweep(path).plan({})[0].run_id
    finally:
        sys.path.remove(str(tmp_path))
        METHODS.unregister("counted")
    damaged = Store(res).run_dir(first) / "record.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"run_id": ')
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "EXECUTIONS": str(executions), "CTTA_DEVICE": "cpu"}
    code = (
        "import countedplugin; from ctta.cli import main; "
        f"main(['sweep', 'launch', {path!r}, '--results', {str(res)!r}, '--launcher', 'debug'])"
    )
    launchers = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in launchers]
    assert [p.returncode for p in launchers] == [0, 0], [err[-2000:] for _, err in outs]
    started = [line.rsplit("|", 1) for line in executions.read_text().splitlines()]
    runs = [key for key, _ in started]
    # 3 tune runs, then 2 eval runs, planned from tune records that either launcher may have written
    assert len(runs) == len(set(runs)) == 5
    assert len({pid for _, pid in started}) == 2  # both launchers did run some
    records = [json.loads(p.read_text()) for p in res.glob("runs/*/record.json")]
    assert len(records) == 5 and all(r["status"] == "done" for r in records)
    lines = [line for _, err in outs for line in err.splitlines() if str(damaged) in line]
    assert len(lines) == 1 and lines[0].startswith(
        f"WARNING ctta.core.files: damaged {damaged} (JSONDecodeError"
    )
    assert len(list(damaged.parent.glob("record.json.damaged-*"))) == 1
    assert not list(res.glob("runs/*/running"))
