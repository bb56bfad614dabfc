"""avalanche:<Strategy>: Avalanche strategies run as ctta methods, with their kwargs as hyperparameters."""

import io
import subprocess
import sys

import pytest
import torch

from ctta import UserError, create_method, list_methods
from ctta.plan.spec import RunSpec
from ctta.run.engine import execute, prepare
from ctta.testing import check_method
from helpers import CL_DEBUG


@pytest.mark.parametrize(
    "name, hp",
    [
        ("avalanche:Naive", {}),
        ("avalanche:EWC", {"ewc_lambda": 10.0, "mode": "online", "decay_factor": 0.9}),
        ("avalanche:LwF", {"criterion": "new"}),
        ("avalanche:Replay", {"mem_size": 20}),
        ("avalanche:GEM", {"patterns_per_exp": 5}),
    ],
)
def test_strategies_run_on_the_debug_scenarios(name, hp):
    records = {r["spec"]["scenario"]["name"]: r for r in check_method(name, **hp)}
    assert len(records["class_incremental"]["acc_matrix"]) == 2
    assert all(r["spec"]["method"]["name"] == name for r in records.values())


def test_hyperparameters_come_from_the_strategy_signature():
    assert "avalanche:*" in list_methods()
    ewc = create_method("avalanche:EWC", ewc_lambda=3.0, mode="online", decay_factor=0.5)
    assert (ewc.hparams.ewc_lambda, ewc.hparams.mode, ewc.hparams.decay_factor) == (3.0, "online", 0.5)
    assert type(ewc).search_space()["ewc_lambda"] == (50.0, 150.0, 500.0, 1500.0)
    with pytest.raises(UserError, match="unknown option 'lamda'.*ewc_lambda"):
        create_method("avalanche:EWC", lamda=1.0)
    with pytest.raises(UserError, match="unknown Avalanche strategy 'Ewc'; valid choices: .*EWC"):
        create_method("avalanche:Ewc")
    with pytest.raises(UserError, match="ICaRL.*network of its own"):
        create_method("avalanche:ICaRL")
    mir = RunSpec.parse({"scenario": CL_DEBUG, "method": "avalanche:MIR", "backbone": "debug_vit"})
    with pytest.raises(UserError, match="needs hyperparameter 'mem_size'"):
        execute(mir, device="cpu")


def test_a_strategy_with_state_survives_a_checkpoint():
    spec = RunSpec.parse(
        {"scenario": CL_DEBUG, "method": {"name": "avalanche:EWC", "epochs": 1}, "backbone": "debug_vit"}
    )
    backbone, stream, method = prepare(spec, torch.device("cpu"))
    method.attach(backbone, stream.info)
    method.learn(stream.tasks[0])
    buf = io.BytesIO()
    torch.save(method, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    assert type(again) is type(method)
    plugin = next(p for p in again.strategy.plugins if type(p).__name__ == "EWCPlugin")
    assert plugin.importances[0]  # the Fisher of task 0 came along
    again.learn(stream.tasks[1])
    assert again.strategy.clock.train_exp_counter == 2


def test_importing_ctta_and_its_methods_does_not_import_avalanche():
    code = "import sys, ctta; ctta.list_methods(); print('avalanche' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_learning_prints_none_of_avalanches_own_deprecations_but_passes_other_warnings_on(monkeypatch):
    import warnings

    spec = RunSpec.parse(
        {"scenario": CL_DEBUG, "method": {"name": "avalanche:LwF", "epochs": 1}, "backbone": "debug_vit"}
    )
    backbone, stream, method = prepare(spec, torch.device("cpu"))
    method.attach(backbone, stream.info)
    train = method.strategy.train

    def train_and_warn(*args, **kwargs):
        warnings.warn("from the training loop", UserWarning, stacklevel=1)
        return train(*args, **kwargs)

    monkeypatch.setattr(method.strategy, "train", train_and_warn)
    warnings.onceregistry.clear()  # Avalanche warns "once": as if this process had not warned yet
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.learn(stream.tasks[0])
    assert [str(w.message) for w in caught] == ["from the training loop"]
