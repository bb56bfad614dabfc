"""MOS: per-sample adapter routing, adapter merging, batched self-refined retrieval."""

import io

import pytest
import torch
import torch.nn.functional as F

from ctta.kit.adapters import set_route
from ctta.kit.class_stats import GaussianClassStats
from ctta.plan.spec import RunSpec
from ctta.run.engine import prepare
from helpers import CL_DEBUG

FAST = {"epochs": 2, "ca_epochs": 3, "ca_samples": 16, "batch_size": 16}


@pytest.fixture(scope="module")
def trained():
    """MOS after three tasks of three classes, and the inputs of the test data."""
    spec = RunSpec.parse(
        {
            "scenario": {**CL_DEBUG, "increment": 3},
            "method": {"name": "mos", **FAST},
            "backbone": "debug_vit",
            "seed": 1,
        }
    )
    backbone, stream, mos = prepare(spec, torch.device("cpu"))
    mos.attach(backbone, stream.info)
    for task in stream.tasks[:2]:
        mos.learn(task)
    # task 2 with lr 0: the optimiser leaves the adapter alone, only the merge moves it
    a1 = [p.detach().clone() for blk in mos.blocks for p in blk.adapters[1].parameters()]
    mean = [
        (p0.detach() + p1.detach()) / 2
        for blk in mos.blocks
        for p0, p1 in zip(blk.adapters[0].parameters(), blk.adapters[1].parameters())
    ]
    mos.hparams.lr = 0.0
    logs = mos.learn(stream.tasks[2])
    x = torch.cat([t.load(range(len(t)))[0] for t in stream.tests])
    return mos, a1, mean, logs, x


def test_merge_pulls_the_current_adapter_towards_the_mean_of_previous_ones(trained):
    mos, a1, mean, logs, _ = trained
    keep = (1 - mos.hparams.merge) ** logs["steps"]
    a2 = [p for blk in mos.blocks for p in blk.adapters[2].parameters()]
    for w, start, target in zip(a2, a1, mean):
        torch.testing.assert_close(w.detach(), target + keep * (start - target))
    # finished adapters never change, neither by training later tasks nor by evaluation
    mos.predict(torch.rand(4, 3, 16, 16))
    for w, start in zip((p for blk in mos.blocks for p in blk.adapters[1].parameters()), a1):
        assert torch.equal(w, start)


def test_per_sample_routing_equals_one_adapter_at_a_time(trained):
    mos, *_, x = trained
    mos.eval()
    route = torch.arange(len(x)) % 3
    with torch.no_grad():
        set_route(mos.blocks, route)
        routed = mos.model.features(x)
        for t in range(3):
            set_route(mos.blocks, t)
            torch.testing.assert_close(
                routed[route == t], mos.model.features(x[route == t]), atol=1e-5, rtol=1e-5
            )


def reference_predict(mos, x):
    """MOS's evaluation as in the reference code: every adapter's features for every sample,
    then a Python loop per sample over at most 4 head evaluations."""
    tasks = int(mos.slot_task.max()) + 1
    seen = torch.where(mos.slot_task >= 0, 0.0, float("-inf"))
    with torch.no_grad():
        set_route(mos.blocks, 0)
        proto = mos.prototypes(mos.model.features(x))
        features = []
        for t in range(tasks):
            set_route(mos.blocks, t)
            features.append(mos.model.features(x))
        out = []
        for i in range(len(x)):
            adapter, loops = int(mos.slot_task[proto[i].argmax()]), 0
            while True:
                loops += 1
                logits = mos.model.head(features[adapter][i : i + 1]) + seen
                proposed = int(mos.slot_task[logits.argmax()])
                if loops >= 4 or proposed == adapter:
                    break
                adapter = proposed
            out.append(logits)
        return F.softmax(torch.cat(out), 1) + F.softmax(proto * tasks, 1)


def test_batched_retrieval_gives_the_reference_predictions(trained):
    mos, *_, x = trained
    mos.eval()
    with torch.no_grad():
        ours = mos.predict(x)
    theirs = reference_predict(mos, x)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)
    assert torch.equal(ours.argmax(1), theirs.argmax(1))


def test_a_checkpointed_mos_predicts_the_same(trained):
    mos, *_, x = trained
    buf = io.BytesIO()
    torch.save(mos, buf)
    buf.seek(0)
    again = torch.load(buf, weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(again.predict(x), mos.predict(x))


def test_gaussian_statistics_and_sampling():
    torch.manual_seed(0)
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    feats = torch.randn(4000, 2) @ torch.linalg.cholesky(cov).T + torch.tensor([1.0, -2.0])
    labels = torch.zeros(4000, dtype=torch.long)
    for diagonal in (False, True):
        stats = GaussianClassStats(2, 3, diagonal=diagonal)
        stats.update(feats, labels)
        assert stats.known.tolist() == [True, False, False]
        want = torch.cov(feats.T) + 1e-4 * torch.eye(2)
        torch.testing.assert_close(stats.covariance(0), torch.diag(want.diagonal()) if diagonal else want)
        drawn, y = stats.sample([0], 20000, torch.Generator().manual_seed(0))
        assert y.unique().tolist() == [0]
        torch.testing.assert_close(drawn.mean(0), torch.tensor([1.0, -2.0]), atol=0.05, rtol=0)
        torch.testing.assert_close(torch.cov(drawn.T), stats.covariance(0), atol=0.06, rtol=0)
