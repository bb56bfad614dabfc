"""Experiment trackers: TensorBoard event files and MLflow runs, written from each run's record.

The JSON record stays the source of truth; a tracker is a view of it for the tools researchers
already watch. When a run finishes, the engine hands its record to the tracker the run was
started with (`ctta run --tracker ...`, `ctta sweep launch --tracker ...`), which logs:

- the run spec, flattened (`scenario.name`, `method.lr`, `backbone.name`, `seed`, ...), as
  TensorBoard hparams and MLflow params;
- per step: test-time streams `batch/acc` (the batch's accuracy) and `batch/online_acc`
  (online accuracy so far) at step = batch index; continual learning `task/acc_seen`,
  `task/acc_on_task_<j>` and the method's task logs (`task/<name>`) at step = task index;
- the final metrics as `metrics/<name>` (`acc@<domain>` becomes `metrics/acc/<domain>`) and the
  costs as `costs/<name>`.

A run is logged by the process that runs it. Runs recorded before (without a tracker, or by
another launch) are logged by `ctta run` and `ctta sweep launch` with a tracker when the
tracker does not hold them yet with the same status. A tracker that fails leaves the run and
its record as they are, with a warning.

TensorBoard: one folder per run, `<dir>/<scenario>/<method>/<run id>`. MLflow: any tracking
URI; a folder means the local file store `file:<dir>`; one experiment per results store (named
after its folder).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..plan.spec import RunSpec

log = logging.getLogger(__name__)

TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow"}  # tracker -> the module it needs
DEFAULT_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}  # under the results store
STATUS_FILE = "ctta-status"  # beside a run's TensorBoard events: the status of the record logged


@dataclass(frozen=True)
class Tracker:
    """Where runs are logged: `kind` (tensorboard, mlflow), `target` (a folder; for MLflow a
    folder or a tracking URI) and, for MLflow, the experiment. Picklable, so launchers hand it
    to worker processes and Slurm jobs."""

    kind: str
    target: str
    experiment: str = "ctta"

    def log(self, record: Mapping[str, Any]) -> bool:
        """Log a finished run's record (False, with a warning, when that fails: the record stays
        the run's result)."""
        try:
            (log_tensorboard if self.kind == "tensorboard" else log_mlflow)(self, record)
        except Exception as exc:
            log.warning("%s tracker could not log run %s: %s", self.kind, record.get("run_id"), exc)
            return False
        return True

    def export(self, records) -> int:
        """Log the records that this tracker does not hold yet with the same status (runs
        recorded before the tracker was asked for); returns how many were logged."""
        try:
            held = (tensorboard_runs if self.kind == "tensorboard" else mlflow_runs)(self)
        except Exception as exc:
            log.warning("%s tracker cannot be read: %s", self.kind, exc)
            return 0
        return sum(self.log(r) for r in records if held.get(r["run_id"]) != r["status"])


def make_tracker(kind: str | None, target: str | None, results: str | Path) -> Tracker | None:
    """The tracker `--tracker KIND --tracker-dir TARGET` asks for (None: off), opened once here:
    a UserError for an unknown kind, a package that is not installed or a target that cannot be
    written. MLflow's experiment is created here, before any worker starts, so that parallel
    workers do not each create one of the same name."""
    if kind is None:
        if target is not None:
            raise UserError("--tracker-dir needs --tracker (tensorboard or mlflow)")
        return None
    if kind not in TRACKERS:
        raise UserError(f"unknown tracker {kind!r}; valid choices: {', '.join(TRACKERS)}")
    try:
        __import__(TRACKERS[kind])
    except ImportError:
        raise UserError(
            f"--tracker {kind} needs the {TRACKERS[kind]} package: pip install 'ctta[{kind}]'"
        ) from None
    results = Path(results).expanduser().absolute()
    if target is None:
        target = str(results / DEFAULT_DIRS[kind])
    elif kind == "tensorboard" or ("://" not in target and not target.startswith("file:")):
        target = str(Path(target).expanduser().absolute())
    tracker = Tracker(kind, target, experiment=results.name)
    try:
        if kind == "tensorboard":
            Path(target).mkdir(parents=True, exist_ok=True)
        else:
            mlflow_client(tracker)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"--tracker {kind}: cannot open {target} ({type(exc).__name__}: {first})") from None
    return tracker


# --------------------------------------------------------------------------- what is logged
def flat_config(spec: Mapping[str, Any], prefix: str = "") -> dict[str, str | int | float | bool]:
    """The run spec as `section.key` -> scalar (lists and mappings inside options as JSON)."""
    out: dict[str, str | int | float | bool] = {}
    for key, value in spec.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and not prefix:
            out.update(flat_config(value, f"{name}."))
        elif isinstance(value, (str, int, float, bool)):
            out[name] = value
        else:
            out[name] = json.dumps(value, sort_keys=True, default=str)
    return out


def metric_name(name: str) -> str:
    """A name TensorBoard and MLflow both accept (`acc@snow` -> `acc/snow`)."""
    return re.sub(r"[^\w.\- /]", "_", name.replace("@", "/"))


def step_metrics(record: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, float]]]:
    """(step, {name: value}) per test batch or per continual-learning task of a record."""
    if "online_n" in record:
        seen = right = 0
        for step, (n, correct) in enumerate(zip(record["online_n"], record["online_correct"])):
            seen, right = seen + n, right + correct
            yield (
                step,
                {"batch/acc": 100.0 * correct / max(n, 1), "batch/online_acc": 100.0 * right / max(seen, 1)},
            )
        return
    logs = record.get("task_logs") or []
    for step, (row, acc_seen) in enumerate(zip(record.get("acc_matrix") or [], record.get("acc_seen") or [])):
        values = {"task/acc_seen": float(acc_seen)}
        values.update({f"task/acc_on_task_{j}": float(v) for j, v in enumerate(row) if v is not None})
        if step < len(logs):
            values.update({metric_name(f"task/{k}"): float(v) for k, v in logs[step].items()})
        yield step, values


def final_metrics(record: Mapping[str, Any]) -> dict[str, float]:
    """`metrics/<name>` of the record's metrics and `costs/<name>` of its costs."""
    out = {metric_name(f"metrics/{k}"): float(v) for k, v in (record.get("metrics") or {}).items()}
    for key in ("wall_s", "method_s", "trainable_params", "peak_mb"):
        if record.get(key) is not None:
            out[f"costs/{key}"] = float(record[key])
    return out


def run_folder(record: Mapping[str, Any]) -> str:
    """`<scenario>/<method>/<run id>`: how TensorBoard's run list groups the runs."""
    spec = record["spec"]
    parts = [spec["scenario"]["name"], spec["method"]["name"], record["run_id"]]
    return "/".join(re.sub(r"[^\w.\-]", "_", p) for p in parts)


# --------------------------------------------------------------------------- the two trackers
def log_tensorboard(tracker: Tracker, record: Mapping[str, Any]) -> None:
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    folder = Path(tracker.target) / run_folder(record)
    for old in folder.glob("events.out.tfevents.*"):  # a run logged before with another status
        old.unlink()
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for step, values in step_metrics(record):
            for name, value in values.items():
                writer.add_scalar(name, value, step)
        finals = final_metrics(record)
        for name, value in finals.items():
            writer.add_scalar(name, value, 0)
        # The HParams dashboard: the flattened spec against the final metrics, in this run's folder.
        for summary in hparams(flat_config(record["spec"]), finals):
            writer.file_writer.add_summary(summary)
        writer.add_text(
            "record",
            f"status: {record['status']}  \nrun id: {record['run_id']}  \n" + (record.get("error") or ""),
        )
    finally:
        writer.close()
    (folder / STATUS_FILE).write_text(record["status"])


def tensorboard_runs(tracker: Tracker) -> dict[str, str]:
    """run id -> status of the runs in a TensorBoard folder."""
    return {p.parent.name: p.read_text() for p in Path(tracker.target).glob(f"*/*/*/{STATUS_FILE}")}


def mlflow_client(tracker: Tracker):
    """(MlflowClient, experiment id) of the tracker's store and experiment (created if new)."""
    # The file store is in maintenance mode in MLflow 3 and refused unless allowed: it is the
    # store that needs no database or server, and the one parallel workers can share safely.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    target = tracker.target
    client = MlflowClient(
        tracking_uri=target if "://" in target or target.startswith("file:") else f"file:{target}"
    )
    experiment = client.get_experiment_by_name(tracker.experiment)
    if experiment is not None:
        return client, experiment.experiment_id
    try:
        return client, client.create_experiment(tracker.experiment)
    except Exception:  # another worker created it meanwhile
        return client, client.get_experiment_by_name(tracker.experiment).experiment_id


def mlflow_runs(tracker: Tracker) -> dict[str, str]:
    """run id -> status of the ctta runs in the tracker's MLflow experiment."""
    client, experiment_id = mlflow_client(tracker)
    held, token = {}, None
    while True:
        page = client.search_runs([experiment_id], max_results=1000, page_token=token)
        held.update(
            {
                r.data.tags["ctta.run_id"]: r.data.tags.get("ctta.status")
                for r in page
                if "ctta.run_id" in r.data.tags
            }
        )
        token = page.token
        if not token:
            return held


def log_mlflow(tracker: Tracker, record: Mapping[str, Any]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    client, experiment_id = mlflow_client(tracker)
    spec = record["spec"]
    label = RunSpec(**spec).label
    tags = {
        "ctta.run_id": record["run_id"],
        "ctta.status": record["status"],
        "ctta.kind": record.get("kind", ""),
    }
    run = client.create_run(experiment_id, run_name=label, tags=tags)
    run_id = run.info.run_id
    now = int(time.time() * 1000)
    params = [Param(k, str(v)) for k, v in flat_config(spec).items()]
    metrics = [Metric(k, v, now, step) for step, values in step_metrics(record) for k, v in values.items()]
    metrics += [Metric(k, v, now, 0) for k, v in final_metrics(record).items()]
    for i in range(0, len(params), 100):  # MLflow's limits per call: 100 params, 1000 metrics
        client.log_batch(run_id, params=params[i : i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i : i + 1000])
    if record.get("error"):
        client.log_batch(run_id, tags=[RunTag("ctta.error", record["error"][:5000])])
    client.set_terminated(run_id, status="FINISHED" if record["status"] == "done" else "FAILED")
