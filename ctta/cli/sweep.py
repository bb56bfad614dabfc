"""`ctta sweep plan|status|launch SWEEP.yaml`: the command-line face of `ctta.sweep`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..core import progress
from ..core.errors import UserError
from .options import tracker_options

RESULTS_HELP = "Results store (default: the file's 'results', else runs/<file name>)."


def _open(sweep_file: str, results: str | None):
    from ..run.store import Store
    from ..sweep.studies import load_sweep

    sweep = load_sweep(sweep_file)
    root = results or sweep.results or str(Path("runs") / Path(sweep_file).stem)
    return sweep, Store(root)


def _planned(sweep, store):
    from ..sweep.launch import run_status

    records = {r["run_id"]: r for r in store.records()}
    planned = sweep.plan(records)
    return planned, run_status(store, planned, records)


@click.group("sweep")
def sweep_cmd() -> None:
    """Plan, inspect and launch the studies of a sweep file (protocols/*.yaml)."""


@sweep_cmd.command("plan")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--results", help=RESULTS_HELP)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per run: id, study, phase, spec.")
def plan_cmd(sweep_file: str, results: str | None, as_json: bool) -> None:
    """List the runs the studies need now, each named by the hash of its canonical spec."""
    import json

    import pandas as pd

    from ..report.tables import shown_config

    sweep, store = _open(sweep_file, results)
    sweep.prepare(None)  # validates backbones and separation checks, writes nothing
    planned, status = _planned(sweep, store)
    by_study = {s.study: s for s in sweep.studies}
    if as_json:
        for run in planned:
            line = {"run_id": run.run_id, "study": run.study, "phase": run.phase, "spec": run.spec.as_dict()}
            click.echo(json.dumps(line, sort_keys=True))
        return
    rows = [
        {
            "run_id": r.run_id,
            "study": r.study,
            "phase": r.phase,
            "method": r.method,
            "config": shown_config(by_study[r.study], r.spec.method),
            "case": r.case,
            "seed": r.spec.seed,
            "status": status[r.run_id],
        }
        for r in planned
    ]
    if rows:
        click.echo(pd.DataFrame(rows).to_string(index=False))
    unique = len(status)
    click.echo(
        f"{len(planned)} planned uses of {unique} distinct runs in {len(sweep.studies)} studies; "
        f"{sum(sweep.waiting(planned).values())} eval runs follow once their method's tuning has finished"
    )


@sweep_cmd.command("status")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--results", help=RESULTS_HELP)
def status_cmd(sweep_file: str, results: str | None) -> None:
    """Count done / failed / running / pending runs per study and phase."""
    import pandas as pd

    sweep, store = _open(sweep_file, results)
    planned, status = _planned(sweep, store)
    states = ("done", "failed", "running", "pending")
    rows = []
    waiting = sweep.waiting(planned)
    for study in sweep.studies:
        for phase in ("tune", "eval"):
            ids = {r.run_id for r in planned if r.study == study.study and r.phase == phase}
            row = {"study": study.study, "protocol": study.name, "phase": phase}
            row.update({s: sum(status[i] == s for i in ids) for s in states})
            if phase == "eval":
                row["pending"] += waiting[study.study]
            rows.append(row)
    click.echo(pd.DataFrame(rows).to_string(index=False))
    totals = {s: sum(v == s for v in status.values()) for s in states}
    waiting = sum(waiting.values())
    click.echo(
        f"{len(status)} distinct runs: "
        + ", ".join(f"{n} {s}" for s, n in totals.items())
        + (f"; {waiting} eval runs wait for tuning" if waiting else "")
    )
    for run_id, s in status.items():
        if s == "failed":
            rec = store.record(run_id)
            click.echo(f"  failed {run_id}: {(rec.get('error') or '').splitlines()[0][:150]}")


@sweep_cmd.command("launch")
@click.argument("sweep_file", type=click.Path(dir_okay=False))
@click.option("--results", help=RESULTS_HELP)
@click.option(
    "--launcher", type=click.Choice(["local", "debug", "slurm"]), default="local", show_default=True
)
@click.option("--jobs", type=int, help="local: parallel runs (default: one per GPU, else one per core).")
@click.option(
    "--threads",
    type=int,
    help="local: torch threads per run (default: cores // jobs; 1 on a machine others are using).",
)
@click.option(
    "--study", "only", multiple=True, help="Run only this study of the file (repeatable; default: all)."
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--retry-failed", is_flag=True, help="Run failed runs again.")
@click.option(
    "--redo-outdated",
    is_flag=True,
    help="Run again the runs whose records scored older images than their scenario now makes "
    "(the old records are kept beside them).",
)
@click.option(
    "--reclaim", is_flag=True, help="First take over every claim in the store (runs other processes hold)."
)
@click.option("--partition", help="slurm: partition.")
@click.option(
    "--timeout-min", type=int, default=60, show_default=True, help="slurm: time limit per array task."
)
@click.option("--cpus-per-task", type=int, default=1, show_default=True, help="slurm: CPUs per array task.")
@click.option("--gpus-per-task", type=int, default=0, show_default=True, help="slurm: GPUs per array task.")
@click.option("--mem-gb", type=float, help="slurm: memory per array task.")
@click.option("--array-parallelism", type=int, default=64, show_default=True, help="slurm: tasks at once.")
@click.option("--per-task", type=int, default=1, show_default=True, help="slurm: runs per array task.")
@tracker_options
def launch_cmd(
    sweep_file,
    results,
    launcher,
    jobs,
    threads,
    only,
    device,
    retry_failed,
    redo_outdated,
    reclaim,
    tracker,
    tracker_dir,
    **slurm,
) -> None:
    """Run every run that has no record yet (tune runs first, eval runs as tuning finishes)."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from ..run.trackers import make_tracker
    from ..sweep.launch import launch
    from ..sweep.launchers import make_launcher

    sweep, store = _open(sweep_file, results)
    sweep = sweep.only(only)
    tracking = make_tracker(tracker, tracker_dir, store.root)
    if threads is not None and launcher != "local":
        raise UserError("--threads applies to --launcher local only (slurm: --cpus-per-task)")
    if launcher != "slurm" and any(
        slurm[k] != d for k, d in (("partition", None), ("mem_gb", None), ("gpus_per_task", 0))
    ):
        raise UserError("--partition, --mem-gb and --gpus-per-task apply to --launcher slurm only")
    runner = make_launcher(
        launcher, store.root, device=device, jobs=jobs, threads=threads, tracker=tracking, **slurm
    )
    if tracking is not None and (logged := tracking.export(store.records())):
        click.echo(f"logged {logged} runs recorded before to {tracking.kind} ({tracking.target})")
    bars = []  # drawn once runs start: a launch refused by its checks draws none

    def on_progress(done: int, added: int) -> None:
        if not bars:
            bars.append(progress.bar(0, "runs", unit="run", leave=True))
        bars[0].total += added
        bars[0].update(done)
        bars[0].refresh()

    try:
        with logging_redirect_tqdm():  # warnings (damaged files, reclaimed runs) on lines of their own
            report = launch(
                sweep,
                store,
                runner,
                retry_failed=retry_failed,
                reclaim=reclaim,
                redo_outdated=redo_outdated,
                on_progress=on_progress,
            )
    finally:
        for bar in bars:
            bar.close()
    click.echo(
        f"{len(report.finished)} runs finished in this launch: {report.count('done')} done, "
        f"{report.count('failed')} failed, {report.count('error')} not run; results in {store.root}"
    )
    for run, status, error in report.finished:
        if status != "done":
            click.echo(f"  {status} {run.run_id} ({run.spec.label}): {(error or '').splitlines()[0][:150]}")
    if report.running_elsewhere:
        click.echo(
            f"{report.running_elsewhere} runs are running in another process; launch again later "
            f"(--reclaim takes them over)"
        )
    if report.waiting:
        click.echo(
            f"{report.waiting} eval runs wait for unfinished tune runs (running elsewhere, or not run above)"
        )
    if report.count("error"):
        sys.exit(1)
