"""What an experiment tracker adds to a run: the time to log one record to TensorBoard and to
MLflow (local file store), against writing the record itself (the baseline, same process).

Records are synthetic test-time records of the sizes CIFAR-10-C and ImageNet-C streams give in
the continual setting (15 corruptions; 10,000 images in batches of 200 = 750 batches; 50,000
images in batches of 64 = 11,730 batches), with a real run spec. Each size is logged
`--repeats` times into fresh folders, after one unmeasured log that imports the trackers'
packages (their import time, once per process, is printed apart); the mean ± std of each and
the ratio of the means to the record write are printed.

    python benchmarks/tracker_overhead.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from ctta.plan.spec import RunSpec
from ctta.run.store import Store
from ctta.run.trackers import Tracker

SIZES = {"CIFAR-10-C (750 batches)": (750, 200), "ImageNet-C (11,730 batches)": (11730, 64)}


def record(batches: int, batch_size: int) -> dict:
    spec = RunSpec.parse({"scenario": "corruption", "method": "tent", "backbone": "small_cnn", "seed": 0})
    rng = random.Random(0)
    n = [batch_size] * batches
    correct = [rng.randint(0, batch_size) for _ in n]
    domains = [f"corruption_{15 * i // batches}" for i in range(batches)]
    metrics = {"online_acc": 100 * sum(correct) / sum(n), "online_err": 100 - 100 * sum(correct) / sum(n)}
    metrics.update({f"acc@corruption_{d}": 50.0 for d in range(15)})
    return {
        "schema": 1,
        "run_id": spec.run_id,
        "spec": spec.as_dict(),
        "kind": "test_time",
        "status": "done",
        "error": None,
        "metrics": metrics,
        "online_n": n,
        "online_correct": correct,
        "online_domain": domains,
        "wall_s": 1.0,
        "method_s": 1.0,
        "trainable_params": 5408,
        "peak_mb": None,
    }


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = record(10, 8)
        for kind in ("tensorboard", "mlflow"):
            print(
                f"first {kind} log (imports): {timed(Tracker(kind, str(Path(tmp) / kind)).log, small):.2f} s"
            )
    for label, (batches, batch_size) in SIZES.items():
        rec = record(batches, batch_size)
        times: dict[str, list[float]] = {"record write": [], "tensorboard": [], "mlflow": []}
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                root = Path(tmp)
                times["record write"].append(timed(Store(root / "res").write_record, rec))
                times["tensorboard"].append(timed(Tracker("tensorboard", str(root / "tb")).log, rec))
                times["mlflow"].append(timed(Tracker("mlflow", str(root / "ml")).log, rec))
        base = statistics.mean(times["record write"])
        print(f"{label}, {args.repeats} repeats:")
        for name, values in times.items():
            spread = statistics.stdev(values) if len(values) > 1 else float("nan")
            mean = statistics.mean(values)
            print(f"  {name:<13} {mean:8.3f} ± {spread:.3f} s   {mean / base:6.1f} x the record write")


if __name__ == "__main__":
    main()
