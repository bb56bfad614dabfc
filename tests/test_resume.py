"""A run killed with SIGKILL leaves no record; the next attempt resumes from its last task."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from ctta.run.engine import execute
from ctta.run.store import Store

PLUGIN = textwrap.dedent('''
    import os, pathlib, time
    from ctta import register_method
    from ctta.methods.finetune import Finetune

    @register_method("slow_finetune")
    class SlowFinetune(Finetune):
        """Finetune that leaves a marker per task and can hang in task 1."""
        def learn(self, task):
            out = super().learn(task)
            pathlib.Path(os.environ["MARKERS"], f"task{task.index}").touch()
            if task.index == 1 and os.environ.get("HANG"):
                time.sleep(600)
            return out
''')

SPEC = {
    "scenario": {
        "name": "class_incremental",
        "dataset": "digits",
        "increment": 3,
        "train_per_class": 10,
        "test_per_class": 5,
    },
    "method": {"name": "slow_finetune", "epochs": 1},
    "backbone": "debug_vit",
    "seed": 5,
}


def _start(tmp_path, markers, hang):
    code = (
        f"import slowplugin, json; from ctta.run import execute, Store; "
        f"execute(json.loads({json.dumps(json.dumps(SPEC))}), store=Store({str(tmp_path / 'store')!r}))"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "MARKERS": str(markers), "CTTA_DEVICE": "cpu"}
    if hang:
        env["HANG"] = "1"
    return subprocess.Popen([sys.executable, "-c", code], env=env)


def test_sigkill_then_resume(tmp_path):
    (tmp_path / "slowplugin.py").write_text(PLUGIN)
    markers = tmp_path / "markers"
    markers.mkdir()
    proc = _start(tmp_path, markers, hang=True)
    deadline = time.time() + 120
    while not (markers / "task1").exists():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    store = Store(tmp_path / "store")
    run_dirs = list((tmp_path / "store" / "runs").iterdir())
    assert len(run_dirs) == 1
    run_id = run_dirs[0].name
    assert not (run_dirs[0] / "record.json").exists()  # no half-written record
    assert (run_dirs[0] / "checkpoint.pt").exists()  # task 0 is saved
    assert store.status(run_id) == "pending"  # the dead holder does not count as running

    for m in markers.iterdir():
        m.unlink()
    proc = _start(tmp_path, markers, hang=False)
    assert proc.wait(timeout=300) == 0
    assert sorted(p.name for p in markers.iterdir()) == ["task1", "task2"]  # task 0 was not redone
    resumed = store.record(run_id)
    assert resumed["status"] == "done" and not (run_dirs[0] / "checkpoint.pt").exists()

    sys.path.insert(0, str(tmp_path))
    try:
        import slowplugin  # noqa: F401  (registers slow_finetune here too)

        os.environ["MARKERS"] = str(markers)
        straight = execute(SPEC)
    finally:
        sys.path.remove(str(tmp_path))
        from ctta.core.registry import METHODS

        METHODS.unregister("slow_finetune")
    assert straight["acc_matrix"] == resumed["acc_matrix"]
    assert straight["task_logs"] == resumed["task_logs"]
