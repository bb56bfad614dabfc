"""Engine overhead: ctta's engine running `finetune` vs a bare PyTorch loop doing the same passes.

Both sides train the same randomly initialised tiny ViT on the same class-incremental
digits stream (same batches, same optimiser and schedule) and evaluate on the test data of
all seen tasks after every task. The bare loop holds the tensors itself; the engine builds
the stream, records costs (peak-memory sampling, checkpoints off) and writes nothing.
Prints the median wall times over repeats, interleaved, and their ratio (target <= 1.05).

    python benchmarks/engine_overhead.py [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from ctta.plan.spec import RunSpec
from ctta.run.engine import execute, prepare

SCENARIO = {"name": "class_incremental", "dataset": "digits", "increment": 2}


def spec(epochs: int) -> dict:
    return {
        "scenario": SCENARIO,
        "method": {"name": "finetune", "epochs": epochs, "lr": 0.01, "batch_size": 64},
        "backbone": {"name": "tiny_vit", "pretrained": False},
        "seed": 0,
    }


def run_engine(epochs: int) -> float:
    t = time.perf_counter()
    rec = execute(spec(epochs), device="cpu")
    assert rec["status"] == "done", rec.get("error")
    return time.perf_counter() - t


def run_bare(epochs: int) -> float:
    """The same computation written as a plain loop over preloaded tensors."""
    t = time.perf_counter()
    parsed = RunSpec.parse(spec(epochs))
    model, stream, _ = prepare(parsed, torch.device("cpu"))
    model.reset_head(stream.info.num_classes)
    tests = []
    for task in stream.tasks:
        x, y = task.train.load(np.arange(len(task.train)))
        tests.append(stream.tests[task.index].load(np.arange(len(stream.tests[task.index]))))
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        steps = epochs * math.ceil(len(y) / 64)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        mask = torch.full((stream.info.num_classes,), float("-inf"))
        mask[list(task.seen_classes)] = 0
        model.train()
        for epoch in range(epochs):
            order = np.random.default_rng((parsed.seed + task.index) * 1000 + epoch).permutation(len(y))
            for s in range(0, len(y), 64):
                idx = torch.as_tensor(order[s : s + 64])
                loss = F.cross_entropy(model(x[idx]) + mask, y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            for tx, ty in tests:
                for s in range(0, len(ty), 256):
                    (model(tx[s : s + 256]) + mask).argmax(1)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    run_engine(1)  # warm up caches (dataset, imports) for both sides
    run_bare(1)
    engine, bare = [], []
    for _ in range(args.repeats):
        engine.append(run_engine(args.epochs))
        bare.append(run_bare(args.epochs))
    e, b = statistics.median(engine), statistics.median(bare)
    print(
        f"torch threads: {torch.get_num_threads()}, repeats: {args.repeats}, epochs per task: {args.epochs}"
    )
    print(f"engine (finetune) median wall: {e:7.2f} s   runs: {', '.join(f'{v:.2f}' for v in engine)}")
    print(f"bare PyTorch loop median wall: {b:7.2f} s   runs: {', '.join(f'{v:.2f}' for v in bare)}")
    print(f"ratio engine / bare: {e / b:.3f}  (target <= 1.05)")


if __name__ == "__main__":
    main()
