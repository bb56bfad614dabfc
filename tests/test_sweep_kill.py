"""SIGKILL the local launcher in the middle of a sweep, launch again: nothing finished is redone or
changed, no record is corrupt, no worker outlives the launcher, and the final tables equal those
of an uninterrupted sweep."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pandas as pd

from ctta.core.registry import METHODS
from ctta.report.tables import protocol_tables
from ctta.run.store import Store
from ctta.sweep.launch import launch
from ctta.sweep.launchers import DebugLauncher
from ctta.sweep.studies import load_sweep
from helpers import cl_half, write_sweep

PLUGIN = textwrap.dedent('''
    """simplecil with a noise hyperparameter; logs every run start; sleeps per task."""
    import os, time
    from dataclasses import dataclass

    import torch

    from ctta import hp, register_method
    from ctta.methods.simplecil import SimpleCIL


    @dataclass
    class HP(SimpleCIL.HParams):
        noise: float = hp(0.0, space=(0.0, 0.1, 0.3, 1.0))


    @register_method("slow_proto")
    class SlowProto(SimpleCIL):
        HParams = HP

        def setup(self, backbone, info):
            super().setup(backbone, info)
            with open(os.environ["STARTS"], "a") as fh:
                fh.write(f"{info.seed}|{self.hparams.noise}|{min(info.class_names)}|{os.getpid()}\\n")

        def learn(self, task):
            time.sleep(float(os.environ.get("DELAY", "0")))
            return super().learn(task)

        def predict_features(self, features):
            logits = super().predict_features(features)
            noise = torch.randn(logits.shape, generator=torch.Generator().manual_seed(len(features)))
            return logits + self.hparams.noise * noise
''')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has finished
    except FileNotFoundError:
        return False


def _records(root):
    return {p.parent.name: p.read_bytes() for p in (root / "runs").glob("*/record.json")}


def _key(record_bytes) -> str:
    spec = json.loads(record_bytes)["spec"]
    first = "0" if spec["scenario"]["classes"] == "first_half" else "5"
    return f"{spec['seed']}|{spec['method']['noise']}|{first}"


def test_sigkill_the_launcher_then_launch_again(tmp_path):
    (tmp_path / "sweepkillplugin.py").write_text(PLUGIN)
    study = {
        "protocol": "tune_eval",
        "tune": cl_half("first_half"),
        "eval": cl_half("second_half"),
        "methods": {"slow_proto": {}},
    }
    path = write_sweep(
        tmp_path / "s.yaml",
        {"cil": study, "cil_oracle": {"protocol": "oracle", "of": "cil"}},
        defaults={"backbone": "debug_vit", "tune_seeds": [0], "eval_seeds": [1, 2]},
    )
    res, starts = tmp_path / "res", tmp_path / "starts.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "STARTS": str(starts),
        "DELAY": "0.25",
        "CTTA_DEVICE": "cpu",
    }
    code = (
        f"import sweepkillplugin; from ctta.cli import main; "
        f"main(['sweep', 'launch', {path!r}, '--results', {str(res)!r}, '--jobs', '2'])"
    )

    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 240
    while len(_records(res)) < 4 if (res / "runs").is_dir() else True:
        assert proc.poll() is None, f"the sweep ended before it could be killed: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, "the sweep made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)
    before = _records(res)
    workers = {int(line.split("|")[3]) for line in starts.read_text().splitlines()}
    assert not [pid for pid in workers if _alive(pid)], "a worker outlived the killed launcher"
    assert 4 <= len(before) < 12
    assert _records(res) == before  # nothing is still writing

    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    after = _records(res)
    assert len(after) == 12 and all(after[k] == v for k, v in before.items())  # kept exactly as they were
    assert all(json.loads(v)["status"] == "done" for v in after.values())  # and none is corrupt
    started = [line.rsplit("|", 1)[0] for line in starts.read_text().splitlines()]
    assert all(started.count(_key(v)) == 1 for v in before.values())  # finished runs never started again

    sys.path.insert(0, str(tmp_path))
    try:
        import sweepkillplugin  # noqa: F401  (registers slow_proto in this process)

        os.environ["STARTS"] = str(tmp_path / "ref.log")
        ref = tmp_path / "ref"
        launch(load_sweep(path), Store(ref), DebugLauncher(ref))
        killed, straight = protocol_tables(res), protocol_tables(ref)  # studies name slow_proto
    finally:
        sys.path.remove(str(tmp_path))
        METHODS.unregister("slow_proto")
        os.environ.pop("STARTS", None)
    for name in ("protocol_runs", "tune_table", "protocol_summary", "protocol_gap"):
        pd.testing.assert_frame_equal(killed[name], straight[name])
    metrics = {k: (json.loads(v)["metrics"], json.loads(v)["acc_matrix"]) for k, v in after.items()}
    assert metrics == {
        k: (json.loads(v)["metrics"], json.loads(v)["acc_matrix"]) for k, v in _records(ref).items()
    }
