"""The results store: one directory per run, named by the run's spec hash.

    <root>/runs/<run_id>/record.json    the completion marker, written atomically (done or failed)
    <root>/runs/<run_id>/spec.json      the canonical spec, written when the run starts
    <root>/runs/<run_id>/running        present while a process works on the run (pid, host, time)
    <root>/runs/<run_id>/checkpoint.pt  continual learning: state after the last finished task

A record is never overwritten by a run that is already done; a failed run is redone only
when asked (`retry_failed`). `collect` turns the records into one pandas table.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.files import atomic_write_bytes

RECORD = "record.json"


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def record(self, run_id: str) -> dict | None:
        path = self.run_dir(run_id) / RECORD
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def status(self, run_id: str) -> str:
        """'done', 'failed', 'running' (a live process holds it) or 'pending'."""
        rec = self.record(run_id)
        if rec is not None:
            return rec["status"]
        marker = self.run_dir(run_id) / "running"
        if marker.exists() and _holder_alive(marker):
            return "running"
        return "pending"

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.run_dir(record["run_id"]) / RECORD
        atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True, allow_nan=True).encode())
        return path

    def write_spec(self, run_id: str, spec: dict) -> None:
        atomic_write_bytes(
            self.run_dir(run_id) / "spec.json", json.dumps(spec, indent=1, sort_keys=True).encode()
        )

    def mark_running(self, run_id: str) -> Path:
        marker = self.run_dir(run_id) / "running"
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        }
        atomic_write_bytes(marker, json.dumps(info).encode())
        return marker

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []

    def records(self) -> Iterator[dict]:
        for run_id in self.run_ids():
            rec = self.record(run_id)
            if rec is not None:
                yield rec


def _holder_alive(marker: Path) -> bool:
    """A 'running' marker from this host counts only while its process lives; one from another
    host (a cluster node) counts while it is younger than a day."""
    try:
        info = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if info.get("host") != socket.gethostname():
        return time.time() - info.get("started", 0) < 86400
    try:
        os.kill(int(info["pid"]), 0)
    except (ProcessLookupError, ValueError, KeyError):
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- collect
LIST_FIELDS = ("acc_matrix", "acc_seen", "online_n", "online_correct", "online_domain", "task_logs")


def flatten_record(rec: dict) -> dict[str, Any]:
    """One table row: identity columns, `hp.*`, `sc.*`, `bb.*`, metrics, costs, list fields."""
    spec = rec["spec"]
    row: dict[str, Any] = {
        "run_id": rec["run_id"],
        "status": rec["status"],
        "error": rec.get("error"),
        "scenario": spec["scenario"]["name"],
        "method": spec["method"]["name"],
        "backbone": spec["backbone"]["name"],
        "seed": spec["seed"],
        "kind": rec.get("kind"),
        "hparams": json.dumps({k: v for k, v in spec["method"].items() if k != "name"}, sort_keys=True),
        "scenario_config": json.dumps(
            {k: v for k, v in spec["scenario"].items() if k != "name"}, sort_keys=True
        ),
    }
    for prefix, part in (("hp", "method"), ("sc", "scenario"), ("bb", "backbone")):
        for k, v in spec[part].items():
            if k != "name":
                row[f"{prefix}.{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else v
    row.update(rec.get("metrics", {}))
    for key in ("wall_s", "method_s", "peak_mb", "trainable_params", "total_params", "device", "finished_at"):
        row[key] = rec.get(key)
    for key in LIST_FIELDS:
        if key in rec:
            row[key] = rec[key]
    return row


def collect(root: str | Path) -> pd.DataFrame:
    """All records under `root` as a DataFrame (one row per run, failed runs included)."""
    rows = [flatten_record(r) for r in Store(root).records()]
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """Write `out`.csv (lists as JSON) and, when pyarrow is installed, `out`.parquet."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    flat = df.copy()
    for col in flat.columns:
        if flat[col].map(lambda v: isinstance(v, (list, dict))).any():
            flat[col] = flat[col].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
    written = [out.with_suffix(".csv")]
    flat.to_csv(written[0], index=False)
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return written
    flat.to_parquet(out.with_suffix(".parquet"), index=False)
    written.append(out.with_suffix(".parquet"))
    return written
