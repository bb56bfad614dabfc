"""ctta's `ewc` vs Avalanche's EWC (`avalanche:EWC`) on the same model and stream, in one process.

Both run through ctta's engine on the same class-incremental glyph stream from the same
pretrained tiny ViT, with the same recipe: the whole backbone trains (SGD, momentum 0.9,
cosine step size per task, the same batch size and epochs), cross-entropy over the classes
seen so far, every parameter regularised, one accumulated Fisher from squared mini-batch
gradients and one anchor (Avalanche's `online` mode with decay 1). Avalanche's penalty has
no 1/2, so ctta's lam is twice its ewc_lambda. ctta runs twice: with Avalanche's estimator
(`batch`: a separate pass over the task's data after training) and with `train` (the same
squared mini-batch gradients collected during the last training epoch: one forward/backward
pass per task less). Runs alternate per seed; the script prints median wall times, the time
ratios to Avalanche (target: ctta <= 0.8x) and the accuracies (target: within 1 point).

    python benchmarks/ewc_vs_avalanche.py [--seeds 0 1 2] [--epochs 2] [--backbone tiny_vit]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import torch

from ctta.run.engine import execute


def specs(args) -> dict[str, dict]:
    scenario = {
        "name": "class_incremental",
        "preset": "glyphs_b0inc10",
        "classes": "second_half",
        "train_per_class": args.train_per_class,
        "test_per_class": 20,
    }
    common = {"lr": args.lr, "epochs": args.epochs, "batch_size": 64, "optimizer": "sgd"}
    ewc = {
        "name": "ewc",
        **common,
        "lam": 2 * args.ewc_lambda,
        "params": ["*"],
        "train": "all",
        "fisher_batch_size": 64,
        "decay": 1.0,
    }
    avalanche = {
        "name": "avalanche:EWC",
        **common,
        "ewc_lambda": args.ewc_lambda,
        "mode": "online",
        "decay_factor": 1.0,
        "criterion": "seen",
    }
    return {
        "ctta ewc, batch": {
            "scenario": scenario,
            "method": {**ewc, "estimator": "batch"},
            "backbone": args.backbone,
        },
        "ctta ewc, train": {
            "scenario": scenario,
            "method": {**ewc, "estimator": "train"},
            "backbone": args.backbone,
        },
        "avalanche EWC": {"scenario": scenario, "method": avalanche, "backbone": args.backbone},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--ewc-lambda", type=float, default=500.0, help="Avalanche's; ctta's lam is twice this")
    ap.add_argument("--train-per-class", type=int, default=30)
    ap.add_argument("--backbone", default="tiny_vit")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import avalanche.training  # noqa: F401  (import time is not the strategy's cost)

    runs = specs(args)
    wall: dict[str, list[float]] = {k: [] for k in runs}
    acc: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    for seed in args.seeds:
        for label, spec in runs.items():
            t = time.perf_counter()
            rec = execute({**spec, "seed": seed}, device="cpu")
            wall[label].append(time.perf_counter() - t)
            assert rec["status"] == "done", rec.get("error")
            acc[label].append((rec["metrics"]["avg_inc_acc"], rec["metrics"]["last_acc"]))
    print(
        f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, seeds {args.seeds}"
    )
    print(f"{'':16}{'median wall s':>14}{'avg_inc_acc':>13}{'last_acc':>10}   per-seed wall s")
    for label in runs:
        a = np.array(acc[label])
        print(
            f"{label:16}{statistics.median(wall[label]):14.2f}{a[:, 0].mean():13.2f}{a[:, 1].mean():10.2f}"
            f"   {', '.join(f'{w:.1f}' for w in wall[label])}"
        )
    theirs = statistics.median(wall["avalanche EWC"])
    their_acc = np.array(acc["avalanche EWC"])[:, 1]
    for label in ("ctta ewc, batch", "ctta ewc, train"):
        mine = np.array(acc[label])[:, 1]
        print(
            f"{label}: time ratio to Avalanche {statistics.median(wall[label]) / theirs:.3f} (target <= 0.8); "
            f"last_acc difference of the means {abs(mine.mean() - their_acc.mean()):.2f} points "
            f"(per seed up to {np.abs(mine - their_acc).max():.2f}; target <= 1)"
        )


if __name__ == "__main__":
    main()
