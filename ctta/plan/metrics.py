"""Scores derived from what the engine measured. Accuracies are percentages (0-100).

Continual learning, from the accuracy matrix A (A[i, j]: accuracy on task j's test data
after training task i; defined for j <= i) and acc_seen[i] (accuracy on the union of the
test data of tasks 0..i, i.e. on all classes seen so far):

- avg_inc_acc: mean_i acc_seen[i]                       (Rebuffi et al. 2017, "average incremental accuracy")
- last_acc: acc_seen[T-1]
- forgetting_max: mean_{j<T-1} (max_{i in [j, T-2]} A[i, j] - A[T-1, j])   (Chaudhry et al. 2018; Mammoth, PILOT)
- forgetting_first: mean_{j<T-1} (A[j, j] - A[T-1, j])                     (Avalanche)
- bwt: mean_{j<T-1} (A[T-1, j] - A[j, j]) = -forgetting_first              (Lopez-Paz & Ranzato 2017)
- perf_drop: acc_seen[0] - acc_seen[T-1]                                    (few-shot CIL "performance drop")

Domain-incremental, from the full domain x domain matrix (A[i, j]: accuracy on domain j's
test data after training on domains 0..i, defined for every j) and b[j], the accuracy of the
method's starting model (after setup, before the first task) on domain j. acc_seen[i] is
mean_{j<=i} A[i, j]: every domain weighs the same whatever its test size (GEM's ACC after
task i). The metrics above keep their definitions (so avg_inc_acc is the average accuracy
over the seen domains, averaged over tasks, and last_acc the final average accuracy over all
domains; forgetting counts from the task that trained a domain, A[i, j] for i >= j), plus

- fwt: mean_{j=1..T-1} (A[j-1, j] - b[j])                                  (Lopez-Paz & Ranzato 2017, GEM)

forward transfer: the accuracy on domain j just before training on it, against the starting
model's. GEM's b is a randomly initialised model; here it is the method's own starting point
(the pretrained backbone with an untrained head, zero-shot CLIP, ...), so fwt measures what
the earlier domains taught about domain j beyond the pretraining. A method with nothing to
predict with before the first task (no prototype yet) starts at chance, 100 / classes.

Test-time adaptation: online accuracy, i.e. the answer returned for each batch before any
later adaptation, over the whole stream and per domain.

`metric_direction` names what a study may select and score by, and which way is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..core.errors import UserError


def continual_metrics(
    matrix: Sequence[Sequence[float | None]], acc_seen: Sequence[float]
) -> dict[str, float]:
    a = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=float)
    seen = np.asarray(acc_seen, dtype=float)
    t = len(seen)
    out = {
        "avg_inc_acc": float(seen.mean()),
        "last_acc": float(seen[-1]),
        "first_acc": float(seen[0]),
        "perf_drop": float(seen[0] - seen[-1]),
    }
    if t < 2:
        out.update(forgetting_max=0.0, forgetting_first=0.0, bwt=0.0)
        return out
    final = a[t - 1, : t - 1]
    best = np.array([np.nanmax(a[j : t - 1, j]) for j in range(t - 1)])
    diag = np.diag(a)[: t - 1]
    out["forgetting_max"] = float(np.mean(best - final))
    out["forgetting_first"] = float(np.mean(diag - final))
    out["bwt"] = float(np.mean(final - diag))
    return out


def domain_metrics(
    matrix: Sequence[Sequence[float]], acc_seen: Sequence[float], initial: Sequence[float]
) -> dict[str, float]:
    """The continual metrics of a domain-incremental run plus forward transfer (module docstring)."""
    out = continual_metrics(matrix, acc_seen)
    a, b = np.asarray(matrix, dtype=float), np.asarray(initial, dtype=float)
    t = len(a)
    out["fwt"] = float(np.mean([a[j - 1, j] - b[j] for j in range(1, t)])) if t > 1 else 0.0
    return out


def online_metrics(n: Sequence[int], correct: Sequence[int], domain: Sequence[str]) -> dict[str, float]:
    """Overall and per-domain online accuracy (%), and error; per-domain keys are `acc@<domain>`."""
    n_arr, c_arr = np.asarray(n, dtype=float), np.asarray(correct, dtype=float)
    out = {"online_acc": float(100 * c_arr.sum() / n_arr.sum())}
    out["online_err"] = 100.0 - out["online_acc"]
    dom = np.asarray(domain)
    for d in dict.fromkeys(domain):  # order of first appearance
        sel = dom == d
        out[f"acc@{d}"] = float(100 * c_arr[sel].sum() / n_arr[sel].sum())
    accs = [v for k, v in out.items() if k.startswith("acc@")]
    out["mean_domain_acc"] = float(np.mean(accs))
    return out


CONTINUAL_METRICS = tuple(continual_metrics([[50.0, None], [50.0, 50.0]], [50.0, 50.0]))
DOMAIN_METRICS = tuple(domain_metrics([[50.0, 50.0], [50.0, 50.0]], [50.0, 50.0], [50.0, 50.0]))
ONLINE_METRICS = tuple(k for k in online_metrics([1], [1], ["d"]) if not k.startswith("acc@"))
LOWER_IS_BETTER = frozenset({"online_err", "forgetting_max", "forgetting_first", "perf_drop"})


def metric_direction(metric: str, kind: str, where: str) -> tuple[str, bool]:
    """(metric, higher_is_better) for a study's `metric` option on streams of `kind`."""
    continual = kind != "test_time"
    if metric == "auto":
        metric = "last_acc" if continual else "online_acc"
    valid = {"class_incremental": CONTINUAL_METRICS, "domain_incremental": DOMAIN_METRICS}.get(
        kind, (*ONLINE_METRICS, "acc@<domain>")
    )
    if metric not in valid and (continual or not metric.startswith("acc@")):
        raise UserError(
            f"{where}: metric: unknown {kind} metric {metric!r}; valid choices: {', '.join(valid)}"
        )
    return metric, metric not in LOWER_IS_BETTER
