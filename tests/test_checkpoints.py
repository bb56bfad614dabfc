"""Resume checkpoints hold tensors and plain values, load with weights_only=True, and give the
result of an uninterrupted run for every resumable continual-learning method; a checkpoint that
does not load or fit is set aside with one warning line and the run starts from the beginning."""

import logging
import pathlib

import pytest
import torch

from ctta.core.registry import METHODS
from ctta.methods.avalanche import AvalancheMethod
from ctta.plan.spec import RunSpec
from ctta.run.engine import execute
from ctta.run.store import Store
from helpers import CL_DEBUG, spec

CL = {**CL_DEBUG, "increment": 3}  # 3 tasks (3 + 3 + 3 classes of 10; the tenth stays out)
FSCIL = {
    "name": "few_shot_class_incremental",
    "dataset": "digits",
    "base_classes": 4,
    "ways": 2,
    "shots": 3,
    "sessions": 2,
    "base_per_class": 12,
    "test_per_class": 6,
}
ONE_EPOCH = {"epochs": 1, "batch_size": 32}
RESUMABLE = {
    "finetune": (CL, "debug_vit", ONE_EPOCH),
    "joint": (CL, "debug_vit", ONE_EPOCH),
    "simplecil": (CL, "debug_vit", {}),
    "l2": (CL, "debug_vit", ONE_EPOCH),
    "ewc": (CL, "debug_vit", ONE_EPOCH),
    "hft": (CL, "debug_vit", ONE_EPOCH),
    "finetune_adapter": (CL, "debug_vit", ONE_EPOCH),
    "mos": (CL, "debug_vit", {**ONE_EPOCH, "ca_epochs": 2, "ca_samples": 16}),
    "clip_zeroshot": (FSCIL, "debug_clip", {}),
    "coop": (FSCIL, "debug_clip", {"base_epochs": 1, "epochs": 1}),
    "cpe_clip": (FSCIL, "debug_clip", {"base_epochs": 1, "epochs": 1}),
}


def test_every_resumable_continual_method_is_checked_here():
    builtin = {
        name
        for name in METHODS.names()
        if not name.endswith(":*")
        and METHODS.get(name).__module__.startswith("ctta.methods.")
        and "class_incremental" in METHODS.get(name).stream_kinds
    }
    assert {n for n in builtin if METHODS.get(n).resumable} == set(RESUMABLE)
    assert not AvalancheMethod.resumable  # restarts: a strategy's state is not in a state dict


def _interrupt_at(monkeypatch, name: str, index: int) -> list[int]:
    """Make method `name` stop the run (as a kill would) when it starts task `index`; returns the
    list of tasks it learns."""
    cls, learnt = METHODS.get(name), []
    learn = cls.learn

    def interrupted(self, task):
        if task.index == index:
            raise KeyboardInterrupt
        learnt.append(task.index)
        return learn(self, task)

    monkeypatch.setattr(cls, "learn", interrupted)
    return learnt


def _interrupted_run(monkeypatch, store: Store, run_spec: dict, index: int = 2) -> pathlib.Path:
    with monkeypatch.context() as m:
        _interrupt_at(m, run_spec["method"]["name"], index)
        with pytest.raises(KeyboardInterrupt):
            execute(run_spec, store=store)
    run_dir = store.run_dir(RunSpec.parse(run_spec).run_id)
    assert not (run_dir / "record.json").exists() and not (run_dir / "running").exists()
    return run_dir / "checkpoint.pt"


@pytest.mark.parametrize("name", RESUMABLE)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, name):
    scenario, backbone, hparams = RESUMABLE[name]
    run_spec = spec(scenario, name, backbone, **hparams)
    straight = execute(run_spec)
    store = Store(tmp_path)
    ckpt = _interrupted_run(monkeypatch, store, run_spec)
    state = torch.load(ckpt, weights_only=True)  # tensors and plain values only
    assert state["next_task"] == 2 and len(state["matrix"]) == 2
    if name == "hft":  # its log of frozen halves travels as extra state
        assert [d["task"] for d in state["method"]["_extra_state"]["draws"]] == [0, 1]
    assert all(
        isinstance(v, torch.Tensor) for k, v in state["method"].items() if not k.endswith("_extra_state")
    )
    learnt = _interrupt_at(monkeypatch, name, -1)
    resumed = execute(run_spec, store=store)
    assert learnt == list(range(2, len(straight["acc_matrix"])))  # tasks 0 and 1 are not learnt again
    assert resumed["status"] == "done" and not ckpt.exists()
    assert resumed["acc_matrix"] == straight["acc_matrix"]
    assert resumed["task_logs"] == straight["task_logs"]


class Planted:
    """Unpickling this runs code: it creates the file `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _plant_pickle(ckpt, tmp_path, run_id):
    torch.save({"format": 1, "run_id": run_id, "method": Planted(tmp_path / "pwned")}, ckpt)


def _truncate(ckpt, tmp_path, run_id):
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])


def _foreign(ckpt, tmp_path, run_id):
    state = torch.load(ckpt, weights_only=True)
    torch.save({**state, "run_id": "0123456789abcdef"}, ckpt)


def _misfit(ckpt, tmp_path, run_id):
    state = torch.load(ckpt, weights_only=True)
    state["method"]["prototypes.sums"] = torch.zeros(3, 3)  # another shape than setup builds
    torch.save(state, ckpt)


DAMAGES = {
    "planted pickle": (_plant_pickle, "UnpicklingError: Weights only load failed"),
    "truncated": (_truncate, ""),  # the error depends on where the file ends
    "another run's": (_foreign, "ValueError: it belongs to run '0123456789abcdef'"),
    "does not fit": (_misfit, "RuntimeError: Error(s) in loading state_dict for SimpleCIL"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_checkpoint_that_cannot_be_used_is_set_aside_and_the_run_starts_again(
    tmp_path, monkeypatch, caplog, damage
):
    run_spec = spec(CL, "simplecil")
    run_id = RunSpec.parse(run_spec).run_id
    store = Store(tmp_path / "res")
    ckpt = _interrupted_run(monkeypatch, store, run_spec)
    make, problem = DAMAGES[damage]
    make(ckpt, tmp_path, run_id)
    content = ckpt.read_bytes()
    learnt = _interrupt_at(monkeypatch, "simplecil", -1)
    resumed = execute(run_spec, store=store)
    assert learnt == [0, 1, 2]  # from the beginning
    assert not (tmp_path / "pwned").exists()  # the planted pickle never ran
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith(f"damaged {ckpt} ({problem}") and "\n" not in line
    assert line.endswith("; the run starts from the beginning")
    (aside,) = ckpt.parent.glob("checkpoint.pt.damaged-*")
    assert aside.name in line and aside.read_bytes() == content  # kept as it was
    monkeypatch.undo()
    assert resumed["acc_matrix"] == execute(run_spec)["acc_matrix"]
