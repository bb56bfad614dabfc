"""Regenerate tests/data/fake_store: a tiny real results store for the leaderboard and plot tests.

Two methods per stream kind under two protocols (tune_eval and its oracle), a class-incremental
and a corruption study, 2 eval seeds, debug backbones: about half a minute on one core. The
store is committed so the tests never run it; rerun this script only when the record format
changes (`python tests/data/make_fake_store.py`).
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
STORE = HERE / "fake_store"
SWEEP = """
results: fake_store
defaults: {tune_seeds: [0], eval_seeds: [1, 2]}
studies:
  cil:
    protocol: tune_eval
    backbone: debug_vit
    tune: {name: class_incremental, dataset: digits, classes: first_half, initial: 1, increment: 2,
           train_per_class: 12, test_per_class: 6}
    eval: {name: class_incremental, dataset: digits, classes: second_half, initial: 1, increment: 2,
           train_per_class: 12, test_per_class: 6}
    methods:
      finetune: {lr: [0.01, 0.1], epochs: 4, batch_size: 16}
      simplecil: {}
  tta:
    protocol: tune_eval
    backbone: {name: small_cnn, width: 8, image_size: 16}
    tune: {name: corruption, dataset: digits, corruptions: [gaussian_noise, contrast], severity: 3,
           samples: first_half, test_per_class: 4, batch_size: 16, source_per_class: 40, source_epochs: 8}
    eval: {name: corruption, dataset: digits, corruptions: [gaussian_noise, contrast], severity: 3,
           samples: second_half, test_per_class: 4, batch_size: 16, source_per_class: 40, source_epochs: 8}
    methods:
      source: {}
      tent: {lr: [0.001, 0.1]}
  cil_oracle: {protocol: oracle, of: cil}
  tta_oracle: {protocol: oracle, of: tta}
"""


def main() -> None:
    shutil.rmtree(STORE, ignore_errors=True)
    sweep = HERE / "fake_sweep.yaml"
    sweep.write_text(SWEEP)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CTTA_DEVICE": "cpu"}
    ctta = [sys.executable, "-m", "ctta.cli"]
    try:
        subprocess.run(
            [*ctta, "sweep", "launch", str(sweep), "--results", str(STORE), "--jobs", "1"],
            check=True,
            env=env,
        )
        subprocess.run([*ctta, "collect", str(STORE)], check=True, env=env)
    finally:
        sweep.unlink()
    shutil.rmtree(STORE / "feature_cache", ignore_errors=True)  # derived data, rebuilt on demand


if __name__ == "__main__":
    main()
