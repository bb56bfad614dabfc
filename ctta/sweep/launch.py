"""Launching a sweep: run every run its studies need that has no record yet, re-planning as
runs finish, and the status of each planned run. Launches may share a store: each run is
claimed before it executes (ctta.run.claims), so a run another process holds is left to it,
and its record, once written, counts here too."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..plan.protocol import PlannedRun
from ..run.store import Store, outdated
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
    elsewhere: set[str] = field(default_factory=set)  # runs another process holds (no record yet)
    waiting: int = 0

    @property
    def running_elsewhere(self) -> int:
        return len(self.elsewhere)

    def count(self, status: str) -> int:
        return sum(s == status for _, s, _ in self.finished)


def launch(
    sweep: Sweep,
    store: Store,
    launcher,
    *,
    retry_failed: bool = False,
    reclaim: bool = False,
    redo_outdated: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> LaunchReport:
    """Run every run the studies need that has no record yet (and, with `retry_failed`, those
    that failed), re-planning whenever runs finish until nothing is left to start. With
    `reclaim`, every claim in the store is taken over first, live or not; with
    `redo_outdated`, the records of runs scored on older images than their scenario's code now
    makes (its `data_version`) are set aside first, so those runs are done again."""
    if reclaim:
        store.reclaim_all()
    sweep.prepare(store)
    records = {r["run_id"]: r for r in store.records()}
    if redo_outdated:
        # only the runs these studies need (a second launch catches eval runs that re-tuning adds)
        needed = {r.run_id for r in sweep.plan(records)}
        for rec, current in list(outdated(records[rid] for rid in needed if rid in records)):
            store.set_aside_outdated(rec, current)
            records.pop(rec["run_id"])
    retry = {rid for rid, r in records.items() if r["status"] == "failed"} if retry_failed else set()
    for rid in retry:  # until redone, a failed run to retry counts as unfinished
        records.pop(rid)
    report = LaunchReport()
    started: dict[str, PlannedRun] = {}
    annotated: set[tuple[str, str, str]] = set()

    def next_runs() -> list[PlannedRun]:
        for run_id in list(report.elsewhere):  # finished by the other process? then plan with it
            rec = store.record(run_id)
            if rec is not None:
                records[run_id] = rec
            if rec is not None or store.holder(run_id) is None:  # done, or its holder is gone
                report.elsewhere.discard(run_id)
        planned = sweep.plan(records)
        # annotate what is new; a run's note lists all its phases in the study, so rewrite it whole
        fresh = {(r.run_id, r.study) for r in planned if (r.run_id, r.study, r.phase) not in annotated}
        annotated.update((r.run_id, r.study, r.phase) for r in planned)
        sweep.annotate(store, [r for r in planned if (r.run_id, r.study) in fresh])
        todo = []
        for run in {r.run_id: r for r in planned}.values():
            if run.run_id in records or run.run_id in started or run.run_id in report.elsewhere:
                continue
            if store.status(run.run_id) == "running":
                report.elsewhere.add(run.run_id)
                continue
            started[run.run_id] = run
            todo.append(run)
        report.waiting = sum(sweep.waiting(planned).values())
        if on_progress is not None and todo:
            on_progress(0, len(todo))
        return todo

    def finished(run: PlannedRun, error: str | None = None, *, elsewhere: bool = False) -> None:
        rec = store.record(run.run_id)
        if elsewhere and rec is None:  # another process claimed it first: its run, not ours
            started.pop(run.run_id)
            report.elsewhere.add(run.run_id)
        elif rec is not None:
            records[run.run_id] = rec
            report.finished.append((run, rec["status"], rec.get("error")))
        else:  # the worker raised before writing a record (e.g. a UserError) or died
            report.finished.append((run, "error", error or "no record written"))
        if on_progress is not None:
            on_progress(1, 0)

    launcher.run(next_runs, finished, retry=retry)
    return report
