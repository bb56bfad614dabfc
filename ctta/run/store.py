"""The results store: one directory per run, named by the run's spec hash.

    <root>/runs/<run_id>/record.json    the completion marker, written atomically (done or failed)
    <root>/runs/<run_id>/spec.json      the canonical spec, written when the run starts
    <root>/runs/<run_id>/running        the claim of the process working on the run (claims.py)
    <root>/runs/<run_id>/checkpoint.pt  continual learning: state after the last finished task

A record is never overwritten by a run that is already done; a failed run is redone only
when asked (`retry_failed`). A damaged file (a record that is not JSON, not a mapping, or
lacks run_id, status or spec; a damaged spec.json or claim) is renamed
`<name>.damaged-<time>-<pid>` with one warning line, and the run counts as pending.
`collect` turns the records into one pandas table.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from ..core.errors import UserError
from ..core.files import atomic_write_bytes, set_aside
from ..core.registry import SCENARIOS
from . import claims

log = logging.getLogger(__name__)
RECORD = "record.json"
SPEC = "spec.json"
STATUSES = ("done", "failed")
SPEC_PARTS = ("scenario", "method", "backbone")


def record_problem(rec: Any, run_id: str) -> str | None:
    """What makes `rec` unusable as the record of `run_id`, or None."""
    if not isinstance(rec, dict):
        return f"expected a mapping, got {type(rec).__name__}"
    missing = [k for k in ("run_id", "status", "spec") if k not in rec]
    if missing:
        return f"missing key {missing[0]!r}"
    if rec["run_id"] != run_id:
        return f"run_id {rec['run_id']!r} is not its directory's"
    if rec["status"] not in STATUSES:
        return f"status {rec['status']!r} is not one of {', '.join(STATUSES)}"
    return spec_problem(rec["spec"]) or (
        None if isinstance(rec.get("metrics", {}), dict) else "metrics: not a mapping"
    )


def spec_problem(spec: Any) -> str | None:
    """What makes `spec` unusable as a canonical run spec, or None."""
    if not isinstance(spec, dict) or "seed" not in spec:
        return "spec: expected a mapping with scenario, method, backbone and seed"
    bad = [k for k in SPEC_PARTS if not isinstance(spec.get(k), dict) or "name" not in spec[k]]
    return f"spec: {bad[0]} is not a mapping with a name" if bad else None


def read_json(path: Path, problem, consequence: str) -> Any | None:
    """The JSON in `path` if `problem(value)` finds nothing wrong with it; None when there is no
    file, or it is damaged: then it is set aside with one warning line (`consequence`)."""
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); %s", path, exc.strerror, consequence)
        return None
    except ValueError as exc:  # not JSON, or not UTF-8
        set_aside(path, f"{type(exc).__name__}: {exc}", consequence)
        return None
    why = problem(value)
    if why is not None:
        set_aside(path, why, consequence)
        return None
    return value


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / "runs" / run_id

    def record(self, run_id: str) -> dict | None:
        """The run's record; None when it has none (or a damaged one, which is set aside)."""
        path = self.run_dir(run_id) / RECORD
        return read_json(path, lambda rec: record_problem(rec, run_id), claims.DAMAGED)

    def status(self, run_id: str) -> str:
        """'done', 'failed', 'running' (a live process holds it) or 'pending'."""
        rec = self.record(run_id)
        if rec is not None:
            return rec["status"]
        return "running" if self.holder(run_id) is not None else "pending"

    def holder(self, run_id: str) -> claims.Holder | None:
        """The live claim on the run, if any."""
        return claims.live_holder(self.run_dir(run_id) / claims.MARKER)

    def claim(self, run_id: str, *, reclaim: bool = False) -> claims.Claim:
        """Claim the run for this process (raises claims.RunClaimed when a live one holds it)."""
        return claims.claim(self.run_dir(run_id) / claims.MARKER, f"run {run_id}", reclaim=reclaim)

    def reclaim_all(self) -> int:
        """Take over every claim in the store, live or not (`--reclaim`); how many there were."""
        taken = 0
        for run_id in self.run_ids():
            taken += claims.take_over(
                self.run_dir(run_id) / claims.MARKER, "taken over on request (--reclaim)"
            )
        return taken

    def write_record(self, record: dict[str, Any]) -> Path:
        path = self.run_dir(record["run_id"]) / RECORD
        atomic_write_bytes(path, json.dumps(record, indent=1, sort_keys=True, allow_nan=True).encode())
        return path

    def write_spec(self, run_id: str, spec: dict) -> None:
        path = self.run_dir(run_id) / SPEC
        read_json(path, spec_problem, "it is written anew")  # a damaged one is set aside, and said so
        atomic_write_bytes(path, json.dumps(spec, indent=1, sort_keys=True).encode())

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

    def set_aside_outdated(self, record: dict, current: int) -> None:
        """Move the record of a run scored on older images out of the way (kept beside it as
        record.json.outdated-<time>): the run counts as pending and is done again."""
        old = scenario_data(record)
        set_aside(
            self.run_dir(record["run_id"]) / RECORD,
            f"scored {record['spec']['scenario']['name']} data version {old}, the code is at {current}",
            "the run is done again",
            label="outdated",
        )


def scenario_data(record: dict) -> int:
    """The data version of its scenario that a record scored (0: written before data versions)."""
    return record.get("versions", {}).get("scenario_data", 0)


def current_data_version(scenario: str) -> int | None:
    """The data version the scenario's code makes now; None for a plugin not importable here."""
    try:
        return SCENARIOS.get(scenario).data_version
    except UserError:
        return None


def outdated(records: Iterable[dict]) -> Iterator[tuple[dict, int]]:
    """(record, current version) for each record scored on older images than its scenario's code
    now makes (the scenario's `data_version` went up since)."""
    for rec in records:
        current = current_data_version(rec["spec"]["scenario"]["name"])
        if current is not None and scenario_data(rec) < current:
            yield rec, current


# --------------------------------------------------------------------------- collect
LIST_FIELDS = (
    "acc_matrix",
    "acc_seen",
    "acc_initial",
    "domain_order",
    "online_n",
    "online_correct",
    "online_domain",
    "task_logs",
)


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
    for key in (
        "wall_s",
        "cpu_s",
        "method_s",
        "peak_mb",
        "trainable_params",
        "total_params",
        "device",
        "finished_at",
    ):
        row[key] = rec.get(key)
    row["scenario_data"] = scenario_data(rec)
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
