"""Feature cache: a 16-configuration prototype-classifier sweep with and without the cache.

A frozen-backbone method should not recompute backbone features for every hyperparameter
configuration. The sweep below is what `ctta sweep launch` runs for one study: a prototype
classifier whose hyperparameter (the strength of centring the prototypes before the cosine)
takes 16 values, on class-incremental digits (all 1,797 images, 5 tasks) with a tiny ViT. It
is run twice in this process, in two fresh results stores: once without a feature cache and
once with the store's cache (as launches use it). Prints both wall times and their ratio
(target <= 0.15), and checks that both sweeps gave identical records.

    python benchmarks/feature_cache.py [--configs 16] [--backbone tiny_vit]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ctta import hp, register_method
from ctta.kit.features import feature_cache
from ctta.methods.simplecil import SimpleCIL
from ctta.run.engine import execute
from ctta.run.store import Store
from ctta.sweep.studies import load_sweep

ALPHAS = tuple(float(a) for a in np.round(np.linspace(0.0, 1.5, 16), 3))


@dataclass
class CenteredHP(SimpleCIL.HParams):
    alpha: float = hp(0.0, space=ALPHAS, doc="strength of centring by the mean prototype")


@register_method("centered_prototypes")
class CenteredPrototypes(SimpleCIL):
    """SimpleCIL with the mean of the known prototypes subtracted (times alpha) before the cosine."""

    HParams = CenteredHP

    def predict_features(self, features):
        head = self.prototypes
        center = self.hparams.alpha * head.prototypes[head.known].mean(0)
        logits = F.normalize(features - center, dim=-1) @ F.normalize(head.prototypes - center, dim=-1).T
        return logits.masked_fill(~head.known, float("-inf"))


SWEEP = """
studies:
  bench:
    protocol: oracle
    backbone: {backbone}
    scenarios: {{name: class_incremental, dataset: digits, increment: 2}}
    eval_seeds: [0]
    methods:
      centered_prototypes: {{alpha: {alphas}}}
"""


def sweep_specs(configs: int, backbone: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(SWEEP.format(backbone=backbone, alphas=list(ALPHAS[:configs])))
        return [run.spec.as_dict() for run in load_sweep(path).plan({})]


def run_sweep(specs: list[dict], root: Path, cache: bool) -> tuple[float, list[dict]]:
    store = Store(root)
    t = time.perf_counter()
    with feature_cache(root / "feature_cache" if cache else None):
        records = [execute(spec, store=store, device="cpu") for spec in specs]
    return time.perf_counter() - t, records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=16)
    parser.add_argument("--backbone", default="{name: tiny_vit, pretrained: false}")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    specs = sweep_specs(args.configs, args.backbone)
    with tempfile.TemporaryDirectory() as tmp:
        execute(specs[0], device="cpu")  # warm-up: dataset loading and first-use costs
        plain_s, plain = run_sweep(specs, Path(tmp) / "plain", cache=False)
        cached_s, cached = run_sweep(specs, Path(tmp) / "cached", cache=True)
    for a, b in zip(plain, cached):
        assert a["status"] == b["status"] == "done" and a["acc_matrix"] == b["acc_matrix"], "results differ"
    accs = [r["metrics"]["last_acc"] for r in plain]
    print(f"{len(specs)}-configuration sweep of centered_prototypes on digits (5 tasks), {args.backbone}")
    print(f"last_acc over the configurations: {min(accs):.1f} .. {max(accs):.1f}")
    print(f"without feature cache: {plain_s:7.2f} s")
    print(f"with feature cache:    {cached_s:7.2f} s")
    print(f"ratio cached / uncached: {cached_s / plain_s:.3f} (target <= 0.15)")


if __name__ == "__main__":
    main()
