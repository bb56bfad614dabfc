import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from ctta import Method, TestBatch, UserError
from ctta.plan.spec import RunSpec
from ctta.run.engine import execute, prepare, resolve_device
from helpers import CL_DEBUG, TTA_DEBUG, spec, temporary_method


def test_continual_run_fills_the_lower_triangle_and_is_repeatable(store):
    s = spec(CL_DEBUG, "finetune", epochs=1)
    rec = execute(s, store=store)
    assert rec["status"] == "done"
    m = rec["acc_matrix"]
    assert len(m) == 2 and m[0][1] is None and all(v is not None for v in m[1])
    assert rec["metrics"]["last_acc"] == rec["acc_seen"][-1]
    for key in ("wall_s", "peak_mb", "trainable_params", "total_params", "versions", "run_id"):
        assert key in rec
    assert rec["trainable_params"] == rec["total_params"]  # finetune trains everything
    again = execute(s)  # without the store: a fresh computation
    assert again["acc_matrix"] == rec["acc_matrix"]
    assert again["task_logs"] == rec["task_logs"]  # bit-identical losses


def test_finished_run_is_never_redone(store):
    s = spec(CL_DEBUG, "simplecil")
    first = execute(s, store=store)
    path = store.run_dir(first["run_id"]) / "record.json"
    stamp = path.stat().st_mtime_ns
    assert execute(s, store=store) == first
    assert path.stat().st_mtime_ns == stamp


def test_run_id_ignores_spelled_out_defaults_and_device():
    a = RunSpec.parse(spec(CL_DEBUG, "finetune"))
    b = RunSpec.parse(spec(CL_DEBUG, "finetune", lr=0.01, epochs=3))
    c = RunSpec.parse(spec(CL_DEBUG, "finetune", lr=0.02))
    assert a.run_id == b.run_id != c.run_id
    assert a.method["lr"] == 0.01 and a.scenario["num_tasks"] == 0


def test_seed_changes_the_class_order():
    device = torch.device("cpu")
    _, s1, _ = prepare(RunSpec.parse(spec(CL_DEBUG, "simplecil", seed=1)), device)
    _, s2, _ = prepare(RunSpec.parse(spec(CL_DEBUG, "simplecil", seed=2)), device)
    assert s1.info.extra["class_order"] != s2.info.extra["class_order"]
    # PyCIL's order for seed 1993 over 10 classes
    _, s3, _ = prepare(RunSpec.parse(spec(CL_DEBUG, "simplecil", seed=1993)), device)
    assert s3.info.extra["class_order"] == np.random.RandomState(1993).permutation(10).tolist()


class _Raises(Method):
    """Fails while learning."""

    def setup(self, backbone, info):
        self.model = backbone

    def learn(self, task):
        raise RuntimeError(f"boom in task {task.index}")


class _NaN(Method):
    """Returns NaN logits."""

    def setup(self, backbone, info):
        self.info = info

    def predict(self, x):
        return torch.full((x.shape[0], self.info.num_classes), float("nan"))


def test_failures_are_recorded_with_the_reason(store):
    with temporary_method("raises", _Raises), temporary_method("nan", _NaN):
        rec = execute(spec(CL_DEBUG, "raises"), store=store)
        assert rec["status"] == "failed" and rec["error"] == "RuntimeError: boom in task 0"
        rec2 = execute(spec(CL_DEBUG, "nan"), store=store)
        assert rec2["status"] == "failed" and "non-finite logits" in rec2["error"]
        on_disk = json.loads((store.run_dir(rec2["run_id"]) / "record.json").read_text())
        assert on_disk["status"] == "failed"
        assert store.status(rec["run_id"]) == "failed"
        assert not (store.run_dir(rec["run_id"]) / "running").exists()


def test_incompatible_combination_is_a_user_error():
    with pytest.raises(
        UserError, match="method 'bn_adapt' needs a backbone with batchnorm; backbone 'debug_vit' has"
    ):
        execute(spec(TTA_DEBUG, "bn_adapt", backbone="debug_vit"))
    with pytest.raises(UserError, match="method 'tent' does not run on class_incremental streams"):
        execute(spec(CL_DEBUG, "tent"))


def test_device_choices():
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(UserError, match="unknown device 'tpu'; valid choices: auto, cpu, cuda, cuda:N"):
        resolve_device("tpu")


class _Spy(Method):
    """Records everything it is given."""

    seen: list = []

    def setup(self, backbone, info):
        self.info = info
        self.model = backbone
        type(self).seen.append(("setup", backbone, info))

    @torch.no_grad()
    def predict(self, *args, **kwargs):
        type(self).seen.append(("predict", args, kwargs))
        return self.model(args[0])


def test_test_time_methods_never_get_labels():
    _Spy.seen = []
    with temporary_method("spy", _Spy):
        _Spy.stream_kinds = frozenset({"test_time"})
        rec = execute(spec(TTA_DEBUG, "spy"))
    assert rec["status"] == "done"
    calls = [c for c in _Spy.seen if c[0] == "predict"]
    assert len(calls) == len(rec["online_n"]) == 2 * math.ceil(40 / 16)
    for _, args, kwargs in calls:
        assert kwargs == {} and len(args) == 1  # only the input tensor
        x = args[0]
        assert x.dtype == torch.float32 and x.dim() == 4 and x.shape[1] == 3
    # The batch type itself carries no label field.
    assert {f.name for f in dataclasses.fields(TestBatch)} == {"x", "index", "domain"}
    # The only labelled data a method can reach is the source (training) split, which
    # shares no sample with the scored test stream.
    _, backbone, info = _Spy.seen[0]
    _, stream, _ = prepare(RunSpec.parse(spec(TTA_DEBUG, "source")), torch.device("cpu"))
    assert not set(info.source.sample_keys()) & set(stream.test.sample_keys())
    assert all(not isinstance(getattr(info, f.name), torch.Tensor) for f in dataclasses.fields(info))


def test_test_time_run_scores_each_batch_once_and_resets_in_single_setting():
    rec = execute(spec(TTA_DEBUG, "tent", backbone="small_cnn"))
    assert rec["status"] == "done"
    assert sum(rec["online_n"]) == 2 * 40
    assert rec["online_domain"][:3] == ["gaussian_noise"] * 3
    assert rec["trainable_params"] < rec["total_params"] / 10  # only norm affine parameters
    again = execute(spec(TTA_DEBUG, "tent", backbone="small_cnn"))
    assert again["online_correct"] == rec["online_correct"]


def test_a_scenario_data_version_keys_its_streams_and_is_recorded(monkeypatch):
    """Caches keyed by the stream miss when a scenario's images change (its data_version), and the
    record says which data it scored (0 for a scenario that was never versioned)."""
    from ctta.core.registry import SCENARIOS

    corruption = SCENARIOS.get("corruption")(**{k: v for k, v in TTA_DEBUG.items() if k != "name"})
    before = corruption.stream_key(0, 32)
    assert corruption.data_version >= 1
    monkeypatch.setattr(type(corruption), "data_version", corruption.data_version + 1)
    assert corruption.stream_key(0, 32) != before
    monkeypatch.undo()
    tta = execute(spec(TTA_DEBUG, "source"))
    cl = execute(spec(CL_DEBUG, "simplecil"))
    assert tta["versions"]["scenario_data"] == corruption.data_version
    assert cl["versions"]["scenario_data"] == 0
