"""The continual-learning table: every CL method on glyphs with the offline-pretrained tiny ViT.

Class-incremental glyphs, B0Inc10 over the second half of the 100 benchmark characters (the
first half is the tuning pool, as in the Reality Check protocol): 5 tasks of 10 classes,
`--train-per-class` training and `--test-per-class` test images per class (all six
benchmark glyph domains mixed), 3 seeds (1993, 1994, 1995: class order and training).
Hyperparameters: the overrides in METHODS, else each method's defaults. Runs go into a
results store, so an interrupted table resumes; the script prints a Markdown table of
mean ± std over seeds of avg_inc_acc, last_acc, forgetting_max (percentage points) and the
wall time per run.

    python benchmarks/cl_table.py [--results runs/cl_table] [--seeds 1993 1994 1995] [--methods ...]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np

from ctta.run.engine import execute
from ctta.run.store import Store

# One recipe for all (SGD, momentum 0.9, batch 32, 5 epochs per task, cosine per task); step
# sizes and lambdas chosen on the first-half pool, seed 1993.
RECIPE = {"batch_size": 32, "epochs": 5}
METHODS: dict[str, dict] = {
    "finetune": {**RECIPE, "lr": 0.01},
    "joint": {**RECIPE, "lr": 0.01},
    "simplecil": {},
    "l2": {**RECIPE, "lr": 0.01, "lam": 100.0},
    "ewc": {**RECIPE, "lr": 0.01, "lam": 1000.0},
    "hft": {**RECIPE, "lr": 0.01},
    "finetune_adapter": {**RECIPE, "lr": 0.03},
    "mos": {**RECIPE, "lr": 0.03},
    "avalanche:EWC": {**RECIPE, "lr": 0.01, "ewc_lambda": 500.0, "mode": "online", "decay_factor": 1.0},
    "avalanche:LwF": {**RECIPE, "lr": 0.01},
}
METRICS = ("avg_inc_acc", "last_acc", "forgetting_max", "wall_s")


def scenario(args) -> dict:
    return {
        "name": "class_incremental",
        "preset": "glyphs_b0inc10",
        "classes": args.pool,
        "train_per_class": args.train_per_class,
        "test_per_class": args.test_per_class,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="runs/cl_table")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1993, 1994, 1995])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--pool", default="second_half", help="class pool (first_half tunes, second_half scores)")
    ap.add_argument("--train-per-class", type=int, default=40)
    ap.add_argument("--test-per-class", type=int, default=20)
    ap.add_argument("--backbone", default="tiny_vit")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    store = Store(args.results)
    rows = {}
    for method in args.methods:
        records = []
        for seed in args.seeds:
            spec = {
                "scenario": scenario(args),
                "method": {"name": method, **METHODS.get(method, {})},
                "backbone": args.backbone,
                "seed": seed,
            }
            t = time.perf_counter()
            rec = execute(spec, store=store, device="cpu")
            if rec["status"] != "done":  # a diverged run is a result: the table says so
                print(f"{method} seed {seed} failed: {rec.get('error')}")
                continue
            print(f"{method} seed {seed}: {rec['metrics']['last_acc']:.1f} ({time.perf_counter() - t:.0f} s)")
            records.append({**rec["metrics"], "wall_s": rec["wall_s"]})
        rows[method] = {k: np.array([r[k] for r in records]) for k in METRICS}
        rows[method]["failed"] = len(args.seeds) - len(records)
    print(f"\nload average {os.getloadavg()[0]:.1f}; {len(args.seeds)} seeds; pool {args.pool}\n")
    print("| method | avg_inc_acc | last_acc | forgetting_max | wall_s | failed runs |")
    print("|---|---|---|---|---|---|")
    for method, vals in rows.items():
        if vals["failed"] == len(args.seeds):
            print(f"| {method} | – | – | – | – | {vals['failed']} |")
            continue
        cells = [f"{vals[k].mean():.1f} ± {vals[k].std():.1f}" for k in METRICS[:3]]
        print(f"| {method} | {' | '.join(cells)} | {vals['wall_s'].mean():.0f} | {vals['failed']} |")


if __name__ == "__main__":
    main()
