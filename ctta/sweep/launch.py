"""Launching a sweep: run every run its studies need that has no record yet, re-planning as
runs finish, and the status of each planned run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..plan.protocol import PlannedRun
from ..run.store import Store
from .studies import Sweep


def run_status(store: Store, planned: list[PlannedRun], records: Mapping[str, dict]) -> dict[str, str]:
    """run_id -> done / failed / running / pending."""
    out = {}
    for run in planned:
        if run.run_id not in out:
            rec = records.get(run.run_id)
            out[run.run_id] = rec["status"] if rec is not None else store.status(run.run_id)
    return out


@dataclass
class LaunchReport:
    """What one `launch` did: the runs it started and how they ended."""

    finished: list[tuple[PlannedRun, str, str | None]] = field(default_factory=list)
    running_elsewhere: int = 0
    waiting: int = 0

    def count(self, status: str) -> int:
        return sum(s == status for _, s, _ in self.finished)


def launch(
    sweep: Sweep,
    store: Store,
    launcher,
    *,
    retry_failed: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> LaunchReport:
    """Run every run the studies need that has no record yet (and, with `retry_failed`, those
    that failed), re-planning whenever runs finish until nothing is left to start."""
    sweep.prepare(store)
    records = {r["run_id"]: r for r in store.records()}
    retry = {rid for rid, r in records.items() if r["status"] == "failed"} if retry_failed else set()
    for rid in retry:  # until redone, a failed run to retry counts as unfinished
        records.pop(rid)
    report = LaunchReport()
    started: dict[str, PlannedRun] = {}
    annotated: set[tuple[str, str, str]] = set()

    def next_runs() -> list[PlannedRun]:
        planned = sweep.plan(records)
        # annotate what is new; a run's note lists all its phases in the study, so rewrite it whole
        fresh = {(r.run_id, r.study) for r in planned if (r.run_id, r.study, r.phase) not in annotated}
        annotated.update((r.run_id, r.study, r.phase) for r in planned)
        sweep.annotate(store, [r for r in planned if (r.run_id, r.study) in fresh])
        todo, elsewhere = [], 0
        for run in {r.run_id: r for r in planned}.values():
            if run.run_id in records or run.run_id in started:
                continue
            if store.status(run.run_id) == "running":
                elsewhere += 1
                continue
            started[run.run_id] = run
            todo.append(run)
        report.running_elsewhere = elsewhere
        report.waiting = sum(sweep.waiting(planned).values())
        if on_progress is not None and todo:
            on_progress(0, len(todo))
        return todo

    def finished(run: PlannedRun, error: str | None = None) -> None:
        rec = store.record(run.run_id)
        if rec is not None:
            records[run.run_id] = rec
            report.finished.append((run, rec["status"], rec.get("error")))
        else:  # the worker raised before writing a record (e.g. a UserError) or died
            report.finished.append((run, "error", error or "no record written"))
        if on_progress is not None:
            on_progress(1, 0)

    launcher.run(next_runs, finished, retry=retry)
    return report
