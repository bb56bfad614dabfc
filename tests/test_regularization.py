"""L2 / EWC: the penalty, the Fisher estimators against hand computations, what is stored."""

import numpy as np
import pytest
import torch
from torch import nn

from ctta import UserError, create_method
from ctta.data.images import ImageData
from ctta.kit.regularization import ParameterRegularizer, TrainingFisher, fisher_diagonal
from ctta.plan.spec import RunSpec
from ctta.run.engine import prepare
from helpers import CL_DEBUG


def _tiny_problem(n=10, seed=0):
    """A linear softmax classifier over 3 classes on 1×1 'images' with 3 channels."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, size=(n, 3, 1, 1)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    data = ImageData.from_arrays(x, y, ["a", "b", "c"])
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3, 3))
    return model, data, x.reshape(n, 3).astype(np.float64), y


def _grads_by_hand(model, x, y, classes):
    """Per-sample gradients of CE(softmax over `classes`) w.r.t. weight and bias, in NumPy."""
    w = model[1].weight.detach().double().numpy()
    b = model[1].bias.detach().double().numpy()
    logits = x @ w.T + b
    mask = np.full(3, -np.inf)
    mask[classes] = 0
    z = logits + mask
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    delta = p - np.eye(3)[y]  # dCE/dlogits
    return delta[:, :, None] * x[:, None, :], delta  # [N, 3, 3], [N, 3]


@pytest.mark.parametrize("classes", [[0, 1, 2], [0, 2]])
def test_fisher_estimators_match_hand_computation(classes):
    model, data, x, y = _tiny_problem()
    keep = np.isin(y, classes)
    data, x, y = data.subset(keep), x[keep], y[keep]
    params = [model[1].weight, model[1].bias]
    gw, gb = _grads_by_hand(model, x, y, classes)

    sample = fisher_diagonal(
        model, params, data, classes=classes, estimator="sample", batch_size=4, device="cpu"
    )
    np.testing.assert_allclose(sample[0].numpy(), (gw**2).mean(0), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(sample[1].numpy(), (gb**2).mean(0), rtol=1e-5, atol=1e-7)

    batch = fisher_diagonal(
        model, params, data, classes=classes, estimator="batch", batch_size=4, device="cpu"
    )
    chunks = [slice(i, i + 4) for i in range(0, len(y), 4)]  # data order, as the estimator iterates
    want_w = np.mean([gw[c].mean(0) ** 2 for c in chunks], axis=0)
    want_b = np.mean([gb[c].mean(0) ** 2 for c in chunks], axis=0)
    np.testing.assert_allclose(batch[0].numpy(), want_w, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(batch[1].numpy(), want_b, rtol=1e-5, atol=1e-8)


def test_penalty_is_half_lambda_weighted_squared_distance_with_decayed_fisher():
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    reg = ParameterRegularizer([("w", w)], lam=4.0, anchor="previous", fisher=True, decay=0.5)
    assert float(reg.penalty().detach()) == 0.0  # EWC: nothing to protect before the first Fisher
    reg.add_importance([torch.tensor([1.0, 3.0])])
    reg.add_importance([torch.tensor([2.0, 0.0])])  # F = 0.5 * [1, 3] + [2, 0] = [2.5, 1.5]
    with torch.no_grad():
        w.copy_(torch.tensor([2.0, 0.0]))  # anchor is still the initial [1, 2]
    assert float(reg.penalty().detach()) == pytest.approx(0.5 * 4.0 * (2.5 * 1.0 + 1.5 * 4.0))
    reg.start_task()  # `previous`: the anchor moves to the current weights
    assert float(reg.penalty().detach()) == 0.0
    l2 = ParameterRegularizer([("w", w)], lam=2.0, anchor="pretrained", fisher=False)
    with torch.no_grad():
        w.add_(1.0)
    l2.start_task()  # `pretrained`: the anchor stays at the weights at creation, [2, 0]
    assert float(l2.penalty().detach()) == pytest.approx(0.5 * 2.0 * (1.0 + 1.0))


def _setup(method, **hp):
    spec = RunSpec.parse({"scenario": CL_DEBUG, "method": {"name": method, **hp}, "backbone": "debug_vit"})
    backbone, stream, m = prepare(spec, torch.device("cpu"))
    m.attach(backbone, stream.info)
    return backbone, stream, m


def test_only_filtered_parameters_are_regularised_and_stored():
    backbone, stream, ewc = _setup("ewc", lam=10.0, epochs=1)
    reg = ewc.regularizer
    assert reg.names and all(n.startswith("blocks.") and ".attn." in n for n in reg.names)
    attn = sum(p.numel() for n, p in backbone.trunk.named_parameters() if ".attn." in n)
    assert reg.stored_numel() == 2 * attn < sum(p.numel() for p in backbone.parameters())
    # train: filtered -> only the attention weights and the head train
    trainable = {n for n, p in backbone.named_parameters() if p.requires_grad}
    assert trainable == {f"trunk.{n}" for n in reg.names} | {"head.weight", "head.bias"}
    logs = ewc.learn(stream.tasks[0])
    assert logs["fisher_mean"] > 0 and logs["penalty"] == 0.0  # no penalty during task 0
    before = [a.clone() for a in reg.anchors]
    logs = ewc.learn(stream.tasks[1])
    assert logs["penalty"] > 0
    assert any(not torch.equal(a, b) for a, b in zip(reg.anchors, before))  # re-anchored at task 1

    _, _, l2 = _setup("l2")
    assert l2.regularizer.stored_numel() == attn  # L2 keeps only the anchor


def test_a_filter_matching_nothing_is_a_user_error():
    with pytest.raises(UserError, match="match no parameter.*blocks"):
        _setup("l2", params=["encoder.*"])
    with pytest.raises(UserError, match="estimator"):
        create_method("ewc", estimator="exact")


def test_ctta_fisher_equals_avalanche_importance():
    from avalanche.benchmarks.utils.classification_dataset import _make_taskaware_classification_dataset
    from avalanche.training.plugins import EWCPlugin

    backbone, stream, _ = _setup("finetune")
    data = stream.tasks[0].train
    params = list(backbone.parameters())
    ours = fisher_diagonal(
        backbone, params, data, classes=list(range(10)), estimator="batch", batch_size=16, device="cpu"
    )
    dataset = _make_taskaware_classification_dataset(data, task_labels=0, targets=data.targets)
    opt = torch.optim.SGD(params, lr=0.1)
    theirs = EWCPlugin(1.0).compute_importances(backbone, nn.CrossEntropyLoss(), opt, dataset, "cpu", 16)
    for (name, imp), mine in zip(theirs.items(), ours):
        torch.testing.assert_close(mine, imp.data, rtol=1e-4, atol=1e-10, msg=name)


def test_penalty_gradient_added_in_place_equals_autograd():
    torch.manual_seed(0)
    ws = [nn.Parameter(torch.randn(3, 2)), nn.Parameter(torch.randn(4))]
    for fisher in (False, True):
        reg = ParameterRegularizer(list(zip("ab", ws)), lam=3.0, anchor="previous", fisher=fisher)
        if fisher:
            reg.add_importance([torch.rand(3, 2), torch.rand(4)])
        with torch.no_grad():
            for w in ws:
                w.add_(torch.randn_like(w))
        want = torch.autograd.grad(reg.penalty(), ws)
        for w in ws:
            w.grad = torch.ones_like(w)
        reg.add_penalty_gradient()
        for w, g in zip(ws, want):
            torch.testing.assert_close(w.grad, g + 1.0)


def test_training_fisher_averages_squared_gradients_of_the_last_epoch():
    w = nn.Parameter(torch.zeros(2))
    hook = TrainingFisher([w], first_step=1)  # the first step belongs to an earlier epoch
    grads = [torch.tensor([9.0, 9.0]), torch.tensor([0.2, -0.4]), torch.tensor([-0.6, 0.2])]
    for g in grads:
        w.grad = g.clone()
        hook()
    torch.testing.assert_close(hook.fisher()[0], (grads[1] ** 2 + grads[2] ** 2) / 2)


def test_training_fisher_equals_the_batch_pass_when_the_weights_stand_still():
    # lr must be > 0; 1e-30 moves no float32 weight measurably (the Fisher agrees to 1e-4)
    backbone, stream, ewc = _setup("ewc", estimator="train", lr=1e-30, epochs=2, batch_size=256)
    task = stream.tasks[0]
    ewc.learn(task)
    reg = ewc.regularizer
    want = fisher_diagonal(
        backbone,
        reg.params,
        task.train,
        classes=list(task.seen_classes),
        estimator="batch",
        batch_size=256,
        device="cpu",
    )
    for got, expected in zip(reg.importance, want):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-9)
