"""Glyph few-shot class-incremental learning with the offline tiny CLIP: the closing table of the CLIP issue.

Runs clip_zeroshot, coop (unregularised text prompts) and cpe_clip with its three prompt
regularisations (balance, freeze, none) on the `glyphs` FSCIL preset (60 base characters,
then 8 sessions of 5-way 5-shot, held-out glyph renditions) for several seeds, and prints
the accuracy over all seen classes after every session (mean ± std over seeds), the
average over sessions, the performance drop (session 0 - last) and the trainable parameter
counts, as a Markdown table. Runs go through the engine into a results store, so an
interrupted table resumes where it stopped.

    python benchmarks/fscil_clip_table.py [--seeds 0 1 2] [--results runs/fscil_clip]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from ctta.run.engine import execute
from ctta.run.store import Store

METHODS = {
    "clip_zeroshot": {"name": "clip_zeroshot"},
    "coop": {"name": "coop"},
    "cpe_clip (balance)": {"name": "cpe_clip", "regularization": "balance"},
    "cpe_clip (freeze)": {"name": "cpe_clip", "regularization": "freeze"},
    "cpe_clip (none)": {"name": "cpe_clip", "regularization": "none"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--results", default="runs/fscil_clip")
    parser.add_argument(
        "--per-class", type=int, default=10, help="glyph training images per class and domain"
    )
    parser.add_argument("--base-epochs", type=int, default=5)
    args = parser.parse_args()
    scenario = {
        "name": "few_shot_class_incremental",
        "preset": "glyphs",
        "dataset": {"name": "glyphs", "per_class": args.per_class, "test_per_class": 5},
    }
    store = Store(args.results)
    rows = {}
    for label, method in METHODS.items():
        records = []
        for seed in args.seeds:
            hparams = {} if method["name"] == "clip_zeroshot" else {"base_epochs": args.base_epochs}
            spec = {
                "scenario": scenario,
                "method": {**method, **hparams},
                "backbone": "tiny_clip",
                "seed": seed,
            }
            t = time.perf_counter()
            rec = execute(spec, store=store, progress=True)
            if rec["status"] != "done":
                raise SystemExit(f"{label} seed {seed} failed: {rec['error']}")
            print(f"{label:<20} seed {seed}: {time.perf_counter() - t:7.1f} s", flush=True)
            records.append(rec)
        rows[label] = records
    print(table(rows))


def table(rows: dict[str, list[dict]]) -> str:
    sessions = len(next(iter(rows.values()))[0]["acc_seen"])
    head = ["method", *(f"S{i}" for i in range(sessions)), "avg", "drop", "trainable"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, records in rows.items():
        acc = np.array([r["acc_seen"] for r in records])
        avg = np.array([r["metrics"]["avg_inc_acc"] for r in records])
        drop = np.array([r["metrics"]["perf_drop"] for r in records])
        cells = [f"{m:.1f}±{s:.1f}" for m, s in zip(acc.mean(0), acc.std(0))]
        cells += [f"{avg.mean():.1f}±{avg.std():.1f}", f"{drop.mean():.1f}±{drop.std():.1f}"]
        cells.append(f"{records[0]['trainable_params']:,}")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
