"""The embedded test-time adaptation benchmark: online error (%) per corruption and mean, for every
registered test-time method, in four settings, on a BatchNorm CNN and a tiny ViT.

Settings (15 ImageNet-C corruptions at severity 5, batches of 50, one seed):

- single: i.i.d. order within each corruption, the method is reset between corruptions;
- continual: i.i.d., the corruptions follow each other without reset;
- mixed: every (image, corruption) pair shuffled into one stream (only the overall error exists);
- label-correlated: the single setting with a Dirichlet-correlated order, δ = 0.1.

Every method runs with its default hyperparameters (no tuning: this table measures defaults,
not a protocol). Runs go through the engine into a results store, so an interrupted run
resumes; LAME's runs share cached backbone features.

    python benchmarks/tta_table.py [--dataset digits] [--backbones small_cnn,tiny_vit]
        [--test-per-class 10] [--source-per-class 40] [--results runs/tta_table]

Sizes, chosen so that a cold run takes minutes rather than hours on two CPU cores: 10 test
images per class and corruption (2 batches of 50 per corruption, 30 per stream), a source
model trained on 40 labelled images per class for 20 epochs (AdamW 3e-3, batches of 32; the
scenario's default recipe underfits a CNN trained from scratch). ITTA's source training
(second-order gradient alignment) costs about 15x the ERM source model's and dominates a cold
run; source models are cached, so a second run only replays the streams.
"""

from __future__ import annotations

import argparse
import os
import time

from ctta.core.config import parse_yaml
from ctta.core.errors import UserError
from ctta.core.registry import METHODS, list_methods
from ctta.data.corruptions import CORRUPTIONS
from ctta.kit.features import feature_cache
from ctta.run.engine import execute
from ctta.run.store import Store

SETTINGS = {
    "single": {"setting": "single"},
    "continual": {"setting": "continual"},
    "mixed": {"setting": "mixed"},
    "label-correlated": {"setting": "single", "order": "dirichlet", "delta": 0.1},
}
SHORT = {
    "gaussian_noise": "gauss",
    "shot_noise": "shot",
    "impulse_noise": "impul",
    "defocus_blur": "defoc",
    "glass_blur": "glass",
    "motion_blur": "motn",
    "zoom_blur": "zoom",
    "snow": "snow",
    "frost": "frost",
    "fog": "fog",
    "brightness": "brit",
    "contrast": "contr",
    "elastic_transform": "elast",
    "pixelate": "pixel",
    "jpeg_compression": "jpeg",
}


def test_time_methods() -> list[str]:
    return [m for m in list_methods() if not m.endswith(":*") and "test_time" in METHODS.get(m).stream_kinds]


def run_all(args) -> dict:
    dataset = parse_yaml(args.dataset)
    store = Store(args.results)
    records: dict = {}
    with feature_cache(os.path.join(args.results, "features")):
        for backbone in args.backbones.split(","):
            for setting, options in SETTINGS.items():
                scenario = {
                    "name": "corruption",
                    "dataset": dataset,
                    "corruptions": list(CORRUPTIONS),
                    "severity": 5,
                    "batch_size": args.batch_size,
                    "test_per_class": args.test_per_class,
                    "source_per_class": args.source_per_class,
                    "source_epochs": args.source_epochs,
                    "source_batch_size": args.source_batch_size,
                    "source_lr": args.source_lr,
                    **options,
                }
                for method in args.methods.split(",") if args.methods else test_time_methods():
                    spec = {"scenario": scenario, "method": method, "backbone": backbone, "seed": args.seed}
                    t = time.perf_counter()
                    try:
                        rec = execute(spec, store=store, device=args.device)
                    except UserError as exc:  # incompatible (e.g. bn_adapt on a ViT)
                        print(f"skip {method} on {backbone}: {exc}", flush=True)
                        continue
                    status = (
                        rec["status"] if rec["status"] == "done" else f"{rec['status']}: {rec.get('error')}"
                    )
                    print(
                        f"{backbone:>10} {setting:>16} {method:>12}  {time.perf_counter() - t:6.1f}s  {status}",
                        flush=True,
                    )
                    records[backbone, setting, method] = rec
    return records


def error_tables(records: dict) -> str:
    out = []
    backbones = list(dict.fromkeys(b for b, _, _ in records))
    methods = list(dict.fromkeys(m for _, _, m in records))
    for backbone in backbones:
        out.append(f"\n### {backbone}: mean online error (%) per setting\n")
        out.append("| method | " + " | ".join(SETTINGS) + " |")
        out.append("|---" * (len(SETTINGS) + 1) + "|")
        for method in methods:
            cells = [_error(records.get((backbone, s, method))) for s in SETTINGS]
            if any(c != "-" for c in cells):
                out.append(f"| {method} | " + " | ".join(cells) + " |")
        for setting in ("single", "continual", "label-correlated"):
            out.append(f"\n### {backbone}, {setting}: online error (%) per corruption\n")
            out.append("| method | " + " | ".join(SHORT[c] for c in CORRUPTIONS) + " | mean |")
            out.append("|---" * (len(CORRUPTIONS) + 2) + "|")
            for method in methods:
                rec = records.get((backbone, setting, method))
                if rec is None or rec["status"] != "done":
                    continue
                errs = [100 - rec["metrics"][f"acc@{c}"] for c in CORRUPTIONS]
                out.append(
                    f"| {method} | "
                    + " | ".join(f"{e:.1f}" for e in errs)
                    + f" | {sum(errs) / len(errs):.1f} |"
                )
    return "\n".join(out)


def _error(rec) -> str:
    if rec is None:
        return "-"
    if rec["status"] != "done":
        return "failed"
    return f"{rec['metrics']['online_err']:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits", help="dataset name or YAML mapping, e.g. '{name: glyphs}'")
    ap.add_argument("--backbones", default="small_cnn,tiny_vit")
    ap.add_argument("--methods", default="", help="comma-separated (default: every test-time method)")
    ap.add_argument("--test-per-class", type=int, default=10, help="test images per class and corruption")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--source-per-class", type=int, default=40, help="labelled source images per class")
    ap.add_argument("--source-epochs", type=int, default=20)
    ap.add_argument("--source-batch-size", type=int, default=32)
    ap.add_argument("--source-lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--results", default="runs/tta_table")
    args = ap.parse_args()
    t = time.perf_counter()
    records = run_all(args)
    print(error_tables(records))
    print(f"\n{len(records)} runs, {time.perf_counter() - t:.0f} s; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
