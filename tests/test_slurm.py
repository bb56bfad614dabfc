"""The Slurm launcher on a real single-node Slurm cluster on localhost.

`make test` starts the cluster (tools/slurm/with-slurm.sh) and exports its environment; run
directly under pytest, this test starts its own and stops it afterwards. When Slurm cannot be
started the test fails with the reason; it is skipped only when CTTA_SKIP_SLURM is set.
"""

import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path
from unittest import mock

import pytest

from ctta.core.registry import METHODS
from ctta.report.tables import protocol_tables
from ctta.run.store import Store
from ctta.sweep.launch import launch
from ctta.sweep.launchers import SlurmLauncher
from ctta.sweep.studies import load_sweep
from helpers import cl_half, write_sweep

TOOLS = Path(__file__).resolve().parent.parent / "tools" / "slurm"

PLUGIN = textwrap.dedent('''
    """simplecil that logs the Slurm job it runs in (a float in its task logs)."""
    import os

    from ctta import register_method
    from ctta.methods.simplecil import SimpleCIL


    @register_method("slurm_proto")
    class SlurmProto(SimpleCIL):
        def learn(self, task):
            out = super().learn(task)
            job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID") or "-1"
            return {**out, "slurm_job": float(job)}
''')


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.environ.get("CTTA_SLURM_ERROR"):
        pytest.fail(f"local Slurm is not available: {os.environ['CTTA_SLURM_ERROR']}")
    if os.environ.get("CTTA_SLURM_LAB") and os.environ.get("SLURM_CONF"):
        yield os.environ["CTTA_SLURM_LAB"]  # started by `make test`
        return
    if os.environ.get("CTTA_SKIP_SLURM"):
        pytest.skip("CTTA_SKIP_SLURM is set")
    lab = tempfile.mkdtemp(prefix="ctta-slurm.", dir="/tmp")
    try:
        started = subprocess.run(
            ["bash", str(TOOLS / "start.sh")],
            env={**os.environ, "SLURM_LAB": lab},
            capture_output=True,
            text=True,
        )
        if started.returncode != 0:
            pytest.fail(
                f"local Slurm did not start (run the tests with `make test`): {started.stderr[-800:]}"
            )
        env = {"SLURM_CONF": f"{lab}/etc/slurm.conf", "PATH": f"{lab}/bin:{os.environ['PATH']}"}
        with mock.patch.dict(os.environ, env):
            yield lab
    finally:
        subprocess.run(["bash", str(TOOLS / "stop.sh"), lab], check=False)
        shutil.rmtree(lab, ignore_errors=True)


def test_a_sweep_runs_as_slurm_job_arrays(slurm_cluster, tmp_path, monkeypatch):
    (tmp_path / "slurmplugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}:{os.environ.get('PYTHONPATH', '')}")  # for the jobs
    monkeypatch.setenv("CTTA_DEVICE", "cpu")
    import slurmplugin  # noqa: F401

    try:
        study = {
            "protocol": "tune_eval",
            "tune": cl_half("first_half"),
            "eval": cl_half("second_half"),
            "methods": {"slurm_proto": {"batch_size": [128, 256]}},
        }
        path = write_sweep(
            tmp_path / "s.yaml",
            {"cil": study},
            defaults={"backbone": "debug_vit", "tune_seeds": [0], "eval_seeds": [1, 2]},
        )
        store = Store(tmp_path / "res")
        launcher = SlurmLauncher(store.root, per_task=1, timeout_min=10, array_parallelism=4)
        report = launch(load_sweep(path), store, launcher)
        assert [(r.phase, s) for r, s, _ in report.finished] == [("tune", "done")] * 2 + [
            ("eval", "done")
        ] * 2
        summary = protocol_tables(store.root)["protocol_summary"]
        assert summary.loc[0, "state"] == "complete"
    finally:
        METHODS.unregister("slurm_proto")
    jobs = {rec["spec"]["scenario"]["classes"]: set() for rec in store.records()}
    for rec in store.records():
        jobs[rec["spec"]["scenario"]["classes"]].add(rec["task_logs"][0]["slurm_job"])
    tune_jobs, eval_jobs = jobs["first_half"], jobs["second_half"]
    assert len(tune_jobs) == len(eval_jobs) == 1 and min(tune_jobs) > 0  # one job array per planning round
    assert eval_jobs != tune_jobs
    logs = sorted(p.name for p in launcher.folder.rglob("*_log.out"))
    assert len(logs) == 4 and all("_" in name.split("_log")[0] for name in logs), logs  # array tasks
