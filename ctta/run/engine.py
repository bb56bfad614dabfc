"""The engine: runs one (scenario, method, hyperparameters, backbone, seed) and records it.

Continual learning: after every task the method is scored on the test data of every task
seen so far (accuracy matrix); on domain-incremental streams on every domain's test data,
seen or not, and once before the first task (the full domain x domain matrix, for forward
transfer). Test-time adaptation: each batch's returned prediction is
scored as it comes (online accuracy); labels never leave this module. Every run yields one
JSON record with its metrics, costs and versions, written atomically into the store; a run
that raises or diverges is recorded as failed with the reason. With a store, a run is
claimed first (claims.py), so it executes once however many processes launch it, and a
continual-learning run resumes from its last finished task (checkpoints.py).
"""

from __future__ import annotations

import functools
import logging
import os
import re
import socket
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import ContinualStream, Method, TestStream
from ..core.errors import UserError
from ..core.progress import bar as progress_bar
from ..core.registry import create_method, create_scenario
from ..core.seeding import seed_everything
from ..data.images import iterate
from ..kit.features import cached, extract_features
from ..kit.source import source_model
from ..models.factory import create_backbone
from ..plan.metrics import continual_metrics, domain_metrics, online_metrics
from ..plan.spec import RunSpec
from .checkpoints import discard, load_checkpoint, restore, save_checkpoint
from .costs import PeakMemory, now, versions
from .store import Store, current_data_version
from .trackers import Tracker

log = logging.getLogger(__name__)
SCHEMA = 1


def resolve_device(device: str | torch.device = "auto", here: bool = True) -> torch.device:
    """'auto' picks CUDA when present; `CTTA_DEVICE` overrides 'auto' (the tests pin the CPU).
    A device this machine lacks is a UserError (with `here=False`, for runs that execute on
    other machines such as Slurm nodes, only the name is checked)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        device = os.environ.get("CTTA_DEVICE", "auto")
    if device == "auto":
        return torch.device("cuda" if here and torch.cuda.is_available() else "cpu")
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", device):
        raise UserError(f"unknown device {device!r}; valid choices: auto, cpu, cuda, cuda:N")
    count = torch.cuda.device_count() if here and device.startswith("cuda") else None
    if count == 0:
        raise UserError(f"device {device!r} requested but CUDA is not available; valid choices: auto, cpu")
    if count and ":" in device and int(device.split(":")[1]) >= count:
        raise UserError(
            f"device {device!r}: this machine has {count} GPUs; valid choices: cuda:0..cuda:{count - 1}"
        )
    return torch.device(device)


class RunFailed(Exception):
    """A run-level failure the engine records (non-finite outputs)."""


def prepare(spec: RunSpec, device: torch.device):
    """Build backbone, scenario stream and method for a spec, and check they fit together. The
    backbone comes after the scenario and the method are configured: a factory the spec names
    (`module.path:callable`) is called only once everything else of the spec is valid."""
    seed_everything(spec.seed)
    scenario = create_scenario(**spec.scenario)
    method = create_method(**spec.method)
    backbone = create_backbone(spec.backbone)
    stream = scenario.build(seed=spec.seed, image_size=backbone.image_size, device=device)
    check_fit(type(method), backbone, stream)
    if _restricts_head(backbone, stream):
        backbone.restrict_head(stream.info.imagenet_classes)
    return backbone.to(device), stream, method


def check_fit(method: type[Method], backbone, stream: ContinualStream | TestStream) -> None:
    """UserError when the method cannot run on this backbone and stream (what `ctta run` and a
    sweep launch check before anything runs)."""
    method.check_compatible(backbone, stream.info)
    if not isinstance(stream, TestStream):
        return
    info = stream.info
    if info.source_training_refused and (method.trains_source or not backbone.head_is_trained):
        who = f"method {method.name!r} trains its own" if method.trains_source else "a"
        raise UserError(
            f"backbone {backbone.name!r}: {who} source model cannot be trained here: "
            f"{info.source_training_refused}; use a backbone whose head is trained for these classes"
        )
    if backbone.head_is_trained and not method.trains_source and not _restricts_head(backbone, stream):
        classes = backbone.head.out_features
        if classes != info.num_classes:
            raise UserError(
                f"backbone {backbone.name!r} comes with a trained head over {classes} classes, but the "
                f"stream has {info.num_classes}; use a dataset whose labels 0..{classes - 1} are "
                f"the head's classes, or pass trained_head=false to train a source model on the stream's data"
            )


def _restricts_head(backbone, stream: TestStream) -> bool:
    """A trained ImageNet-1k head on a stream of ImageNet classes it is restricted to."""
    info = stream.info
    return (
        backbone.head_is_trained
        and info.imagenet_classes is not None
        and isinstance(backbone.head, torch.nn.Linear)
        and backbone.head.out_features == 1000 != info.num_classes
    )


def execute(
    spec: RunSpec | Mapping[str, Any],
    *,
    store: Store | None = None,
    device: str | torch.device = "auto",
    retry_failed: bool = False,
    reclaim: bool = False,
    progress: bool = False,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Run `spec` (or return its existing record) and write the record into `store`; a
    `tracker` (`ctta.run.trackers`) logs the record of a run that executes here.

    With a store the run is claimed first, so that it executes once however many processes
    ask for it: claims.RunClaimed (a UserError) when a live process holds it, unless
    `reclaim`. Raises UserError for invalid specs and incompatible method/backbone/stream
    combinations; everything the method does wrong is recorded as a failed run instead.
    """
    spec = spec if isinstance(spec, RunSpec) else RunSpec.parse(spec)
    dev = resolve_device(device)
    if store is None:
        return _execute(spec, None, dev, progress, prepare(spec, dev), tracker)
    before = store.record(spec.run_id)
    if before is not None and (before["status"] == "done" or not retry_failed):
        return before
    parts = prepare(spec, dev)  # before the claim: a spec that cannot run leaves nothing in the store
    with store.claim(spec.run_id, reclaim=reclaim):
        now = store.record(spec.run_id)
        if now is not None and now != before:  # another process finished (or retried) it meanwhile
            return now
        return _execute(spec, store, dev, progress, parts, tracker)


def _execute(
    spec: RunSpec,
    store: Store | None,
    dev: torch.device,
    progress: bool,
    parts,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    run_id = spec.run_id
    backbone, stream, method = parts
    if store is not None:
        store.write_spec(run_id, spec.as_dict())
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "spec": spec.as_dict(),
        "kind": stream.info.kind,
        "device": str(dev),
        "host": socket.gethostname(),
        "versions": {**versions(), "scenario_data": current_data_version(spec.scenario["name"])},
        "started_at": now(),
    }
    t0, cpu0 = time.perf_counter(), time.process_time()
    try:
        with PeakMemory(dev) as mem:
            if isinstance(stream, TestStream):
                result = _run_test_time(spec, backbone, stream, method, progress)
            else:
                ckpt = store.checkpoint_path(run_id) if store is not None else None
                result = _run_continual(spec, backbone, stream, method, progress, ckpt)
        # the result leads with the method's record_fields: none may replace what the engine writes
        record.update({k: v for k, v in result.items() if k not in record}, status="done", error=None)
        record["peak_mb"], record["peak_mb_kind"] = mem.peak_mb, mem.kind
    except (KeyboardInterrupt, SystemExit):
        raise
    except UserError:
        raise
    except Exception as exc:  # the method's failure is the run's result, not the sweep's
        log.warning("run %s failed: %s", run_id, exc)
        record.update(
            status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=8)
        )
    record["wall_s"] = time.perf_counter() - t0
    # CPU seconds of this process over the run (every thread): unlike wall time, nearly
    # independent of what else the machine runs, so costs compare across shared machines
    record["cpu_s"] = time.process_time() - cpu0
    record["finished_at"] = now()
    record["total_params"] = sum(p.numel() for p in backbone.parameters())
    if store is not None:  # the record first: the claim is only given up once the run is recorded
        store.write_record(record)
        store.checkpoint_path(run_id).unlink(missing_ok=True)
    if tracker is not None:  # a view of the record, once it is written
        tracker.log(record)
    return record


def _setup(method: Method, backbone, info) -> float:
    t = time.perf_counter()
    method.attach(backbone, info)
    return time.perf_counter() - t


# --------------------------------------------------------------------------- continual learning
def _run_continual(
    spec: RunSpec, backbone, stream: ContinualStream, method: Method, progress: bool, ckpt: Path | None
) -> dict:
    info = stream.info
    n_tasks = len(stream.tasks)
    # Domain-incremental: every domain's test data after every task, and once before the first
    # (forward transfer); class-incremental: the tasks seen so far.
    full = info.kind == "domain_incremental"
    resumable = ckpt is not None and method.resumable
    saved = load_checkpoint(ckpt, spec.run_id, n_tasks) if resumable else None
    method_s = _setup(method, backbone, info)
    if saved is not None:
        try:
            if full and not isinstance(saved.get("initial"), list):
                raise ValueError("no scores of the starting model")
            restore(method, saved, stream.tasks[: saved["next_task"]])
        except Exception as exc:  # it does not fit this method (changed code, another version)
            discard(ckpt, exc)
            saved = None
            backbone, stream, method = prepare(spec, info.device)  # as fresh as a run without one
            method_s = _setup(method, backbone, info)
    matrix: list[list[float | None]] = saved["matrix"] if saved else []
    acc_seen: list[float] = saved["acc_seen"] if saved else []
    logs: list[dict[str, float]] = saved["logs"] if saved else []
    initial: list[float] | None = saved.get("initial") if saved else None
    start = saved["next_task"] if saved else 0
    if saved:
        method_s = saved["method_s"]  # what a run without interruption counts: setup once
        log.info("resuming %s at task %d", spec.run_id, start)
    elif full:
        t = time.perf_counter()
        every = torch.arange(info.num_classes, device=info.device)
        initial = [
            100.0 * c / max(n, 1)
            for c, n in (
                _score(method, backbone, d, every, info, where=f"domain {j} before task 0", start=True)
                for j, d in enumerate(stream.tests)
            )
        ]
        method_s += time.perf_counter() - t
    bar = progress_bar(n_tasks, f"{spec.method['name']} tasks", unit="task", initial=start, enabled=progress)
    for task in stream.tasks[start:]:
        t = time.perf_counter()
        method.train()
        out = method.learn(task) or {}
        method_s += time.perf_counter() - t
        bad = [k for k, v in out.items() if isinstance(v, float) and not np.isfinite(v)]
        if bad:
            raise RunFailed(f"non-finite {bad[0]} while learning task {task.index}")
        logs.append({k: float(v) for k, v in out.items()})
        seen = torch.as_tensor(task.seen_classes, device=info.device)
        correct, counts = [], []
        t = time.perf_counter()
        for j in range(n_tasks if full else task.index + 1):
            c, n = _score(
                method, backbone, stream.tests[j], seen, info, where=f"task {j} after task {task.index}"
            )
            correct.append(c)
            counts.append(n)
        method_s += time.perf_counter() - t
        row = [100.0 * c / max(n, 1) for c, n in zip(correct, counts)]
        matrix.append(row + [None] * (n_tasks - len(row)))
        k = task.index + 1
        # a domain weighs as much as any other however many test images it has (GEM's ACC)
        acc_seen.append(float(np.mean(row[:k])) if full else 100.0 * sum(correct) / max(sum(counts), 1))
        if resumable and k < n_tasks:
            progress_so_far = {"matrix": matrix, "acc_seen": acc_seen, "logs": logs, "method_s": method_s}
            if full:
                progress_so_far["initial"] = initial
            save_checkpoint(ckpt, spec.run_id, method, next_task=k, **progress_so_far)
        bar.update(1)
    bar.close()
    result = {
        **getattr(method, "record_fields", {}),  # a checkpoint from before record_fields lacks them
        "metrics": domain_metrics(matrix, acc_seen, initial) if full else continual_metrics(matrix, acc_seen),
        "acc_matrix": matrix,
        "acc_seen": acc_seen,
        "task_logs": logs,
        "method_s": method_s,
        "trainable_params": method.trainable_parameters(),
    }
    if full:
        result["acc_initial"] = initial
        result["domain_order"] = list(info.extra.get("domain_order", []))
    return result


@torch.no_grad()
def _score(
    method: Method, backbone, data, seen: torch.Tensor, info, where: str, start: bool = False
) -> tuple[float, int]:
    """(correct, total) of the method on `data`, restricted to the classes seen so far.
    `start`: before the first task, where a method may have nothing to predict with yet
    (no prototype, no prompt): a sample whose logits are all -inf counts as a uniform guess,
    1 / number of classes correct."""
    method.eval()
    mask = torch.full((info.num_classes,), float("-inf"), device=info.device)
    mask[seen] = 0.0
    if method.features_only:
        feats, labels = extract_features(backbone, data, device=info.device)
        batches = ((method.predict_features(f), y) for f, y in zip(feats.split(1024), labels.split(1024)))
    else:
        batches = ((method.predict(x), y) for x, y in iterate(data, 256, device=info.device))
    correct, total = 0.0, 0
    for logits, y in batches:
        blank = (logits[:, seen] == float("-inf")).all(1) if start else torch.zeros_like(y, dtype=torch.bool)
        if not torch.isfinite(logits[~blank][:, seen]).all():
            raise RunFailed(f"non-finite logits on {where}")
        hits = ((logits + mask).argmax(1) == y) & ~blank
        correct += int(hits.sum()) + float(blank.sum()) / len(seen)
        total += len(y)
    return (correct if start else int(correct)), total


# --------------------------------------------------------------------------- test-time adaptation
def _run_test_time(spec: RunSpec, backbone, stream: TestStream, method: Method, progress: bool) -> dict:
    info = stream.info
    if not backbone.head_is_trained and not getattr(method, "trains_source", False):
        recipe = info.extra["source_recipe"]
        backbone = source_model(
            backbone,
            info.source,
            num_classes=info.num_classes,
            recipe=recipe,
            seed=recipe["seed"],
            device=info.device,
            key_parts={"backbone": backbone.identity, "source": info.source.identity()},
        )
    method_s = _setup(method, backbone, info)
    method.save_initial_state()
    n, correct, domains = [], [], []
    previous = None
    bar = progress_bar(stream.num_batches, f"{spec.method['name']} batches", unit="batch", enabled=progress)
    for batch, y in stream.batches():
        t = time.perf_counter()
        resets = stream.reset_on_domain_change or method.reset_on_domain_change
        if resets and previous is not None and batch.domain != previous:
            method.reset()
        if method.features_only:
            key = ("batch", backbone.identity, stream.key, batch.index)
            feats = cached(key, functools.partial(_features, backbone, batch.x))
            logits = method.predict_features(feats.to(info.device))
        else:
            logits = method.predict(batch.x)
        method_s += time.perf_counter() - t
        if not torch.isfinite(logits).all():
            raise RunFailed(f"non-finite logits at batch {batch.index}")
        correct.append(int((logits.argmax(1) == y.to(logits.device)).sum()))
        n.append(len(y))
        domains.append(batch.domain)
        previous = batch.domain
        bar.update(1)
    bar.close()
    return {
        **method.record_fields,
        "metrics": online_metrics(n, correct, domains),
        "online_n": n,
        "online_correct": correct,
        "online_domain": domains,
        "method_s": method_s,
        "trainable_params": method.trainable_parameters(),
    }


@torch.no_grad()
def _features(backbone, x: torch.Tensor) -> torch.Tensor:
    backbone.eval()
    return backbone.features(x)
