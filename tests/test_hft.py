"""HFT: half of every block frozen per task, frozen values bit-identical through training."""

import torch

from ctta.plan.spec import RunSpec
from ctta.run.engine import prepare
from helpers import CL_DEBUG

PREFIX = {
    "q": "attn.qkv.q_",
    "k": "attn.qkv.k_",
    "v": "attn.qkv.v_",
    "proj": "attn.proj.",
    "fc1": "mlp.fc1.",
    "fc2": "mlp.fc2.",
    "norm1": "norm1.",
    "norm2": "norm2.",
}


def _hft(**hp):
    spec = RunSpec.parse(
        {
            "scenario": {**CL_DEBUG, "increment": 3},
            "method": {"name": "hft", **hp},
            "backbone": "debug_vit",
            "seed": 3,
        }
    )
    backbone, stream, method = prepare(spec, torch.device("cpu"))
    method.attach(backbone, stream.info)
    return backbone, stream, method


def test_half_of_every_block_is_frozen_and_stays_bit_identical():
    # AdamW with decoupled weight decay and momentum: a gradient mask alone would move frozen values
    backbone, stream, hft = _hft(optimizer="adamw", lr=0.01, weight_decay=0.1, epochs=1)
    blocks = backbone.model.blocks
    q_and_qkv = blocks[0].attn.qkv(torch.ones(1, 32))
    assert q_and_qkv.shape == (1, 96)  # the split q/k/v projection still outputs [q; k; v]
    for task in stream.tasks:
        before = {n: p.detach().clone() for n, p in backbone.named_parameters()}
        logs = hft.learn(task)
        draw = hft.draws[-1]
        assert draw["task"] == task.index and logs["mask_seed"] == draw["seed"]
        for i, block in enumerate(blocks):
            drawn = draw["blocks"][i]
            assert len(set(drawn) & {"q", "k", "v", "proj"}) == 2
            assert len(set(drawn) & {"fc1", "fc2"}) == 1 and len(set(drawn) & {"norm1", "norm2"}) == 1
            frozen = {n for n, p in block.named_parameters() if not p.requires_grad}
            assert frozen == {
                n for n, _ in block.named_parameters() if n.startswith(tuple(PREFIX[d] for d in drawn))
            }
            n_frozen = sum(p.numel() for p in block.parameters() if not p.requires_grad)
            assert 0.45 <= n_frozen / sum(p.numel() for p in block.parameters()) <= 0.55
        for name, p in backbone.named_parameters():
            if p.requires_grad:
                continue
            assert torch.equal(p, before[name]), f"frozen {name} changed"
        changed = [
            n for n, p in backbone.named_parameters() if p.requires_grad and not torch.equal(p, before[n])
        ]
        assert any(".attn.qkv." in n for n in changed) and "head.weight" in changed
    assert len({str(d["blocks"]) for d in hft.draws}) > 1  # redrawn at the task boundaries


def test_draws_follow_the_run_seed():
    _, _, a = _hft()
    _, _, b = _hft()
    assert [a.draw(t)["blocks"] for t in range(3)] == [b.draw(t)["blocks"] for t in range(3)]
