"""CoOp and CPE-CLIP behave as their papers say: initial state, masking, prompt regularisation."""

import copy

import pytest
import torch

from ctta import create_method, create_scenario
from ctta.models.factory import create_backbone

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def stream():
    scenario = create_scenario(
        "few_shot_class_incremental", preset="digits", shots=3, base_per_class=6, test_per_class=4
    )
    return scenario.build(seed=0, image_size=16, device=CPU)


def fresh(name, stream, **hparams):
    torch.manual_seed(0)
    method = create_method(name, **hparams)
    method.attach(create_backbone("debug_clip"), stream.info)
    return method


def test_coop_initialised_from_the_template_is_zero_shot_clip(stream):
    coop = fresh("coop", stream, template="a picture of the {}")
    zero_shot = fresh("clip_zeroshot", stream, template="a picture of the {}")
    assert coop.ctx.shape == (4, 32)  # one context vector per template word
    coop.seen = tuple(range(stream.info.num_classes))
    x = torch.rand(5, 3, 16, 16)
    assert torch.allclose(coop.predict(x), zero_shot.predict(x), atol=1e-5)


def test_cpe_clip_masks_old_classes_in_incremental_sessions_only(stream):
    method = fresh("cpe_clip", stream, base_epochs=1, epochs=1)
    coop = fresh("coop", stream, base_epochs=1, epochs=1)
    for m in (method, coop):
        m.softmax_classes = []
        original = m.logits
        m.logits = lambda x, classes, m=m, original=original: (
            m.softmax_classes.append(list(classes)) or original(x, classes)
        )
        for task in stream.tasks[:2]:
            m.learn(task)
    assert method.softmax_classes[0] == [0, 1, 2, 3] and method.softmax_classes[-1] == [4, 5]
    assert coop.softmax_classes[-1] == [0, 1, 2, 3, 4, 5]  # the unregularised baseline keeps old classes


def test_prompt_regularisation_scales_the_session_update(stream):
    """One SGD step on session 1: `balance` moves the prompts new/seen = 2/6 as far as `none`;
    `freeze` does not move them; the base session is trained in every variant."""
    base = fresh("cpe_clip", stream, base_epochs=1, epochs=1, batch_size=64, weight_decay=0.0)
    before = base.g.detach().clone()
    base.learn(stream.tasks[0])
    assert not torch.equal(base.g, before)
    moved, logs = {}, {}
    for reg in ("none", "balance", "freeze"):
        method = copy.deepcopy(base)
        method.hparams.regularization = reg
        start = method.g.detach().clone()
        logs[reg] = method.learn(stream.tasks[1])
        moved[reg] = (method.g.detach() - start).norm()
    assert logs["balance"]["grad_scale"] == pytest.approx(2 / 6) and logs["balance"]["steps"] == 1
    assert moved["balance"] / moved["none"] == pytest.approx(2 / 6, rel=1e-3)
    assert moved["freeze"] == 0 and logs["freeze"]["steps"] == 0


def test_prompt_methods_predict_only_seen_classes(stream):
    method = fresh("cpe_clip", stream, base_epochs=1)
    method.learn(stream.tasks[0])
    logits = method.predict(torch.rand(3, 3, 16, 16))
    assert torch.isfinite(logits[:, :4]).all() and torch.isinf(logits[:, 4:]).all()
    assert (
        method.trainable_parameters() == 2 * 2 * 32 + 32 * 32 + 32
    )  # g [2 layers, 2, 32] and the projection
