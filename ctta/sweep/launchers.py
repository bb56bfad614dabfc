"""Where the runs of a sweep execute: in this process, a local process pool, or Slurm job arrays.

A launcher gets two callbacks from `ctta.sweep.launch.launch`: `next_runs()` (the runs to start now;
it re-plans, so evaluation runs appear once their tuning has finished) and `finished(run,
error, elsewhere=...)`. Every run goes through `ctta.run.engine.execute`, which returns an
existing record instead of running again and claims the run first (`elsewhere`: another
process holds it); records are atomic, so any launcher can be killed at any time.

- `debug`: one run after another in this process (breakpoints work).
- `local`: a pool of worker processes (`--jobs`, default: one per GPU, else one per core),
  each with `--threads` torch threads (default `cores // jobs`: right on a machine of one's
  own; on a shared one, `--threads 1` keeps idle-spinning threads from multiplying the CPU
  time) and, on GPU machines, one GPU of its own. Workers
  end with the launcher, even when it is killed, so a killed sweep leaves no orphan runs.
- `slurm`: submitit job arrays, `per_task` runs per array task; a job that is preempted or
  times out is requeued and continues (finished runs are skipped, continual-learning runs
  resume from their last finished task).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import submitit
import torch

from ..core.errors import UserError
from ..core.registry import METHODS, SCENARIOS
from ..kit.features import feature_cache
from ..plan.spec import RunSpec
from ..run.claims import RunClaimed, pid_alive
from ..run.engine import execute, resolve_device
from ..run.store import Store
from ..run.trackers import Tracker

log = logging.getLogger(__name__)
LAUNCHERS = ("local", "debug", "slurm")

NextRuns = Callable[[], list]
Finished = Callable[..., None]


RUNNING = "running"


def execute_run(
    spec: dict, root: str, device: str, retry_failed: bool, tracker: Tracker | None = None
) -> str:
    """Run one spec into the store at `root` with the store's feature cache; returns its status
    (`RUNNING` when another process holds the run)."""
    try:
        with feature_cache(Path(root) / "feature_cache"):
            record = execute(
                spec, store=Store(root), device=device, retry_failed=retry_failed, tracker=tracker
            )
            return record["status"]
    except RunClaimed:
        return RUNNING


def plugin_classes() -> dict[str, dict[str, type]]:
    """Methods and scenarios registered from outside ctta (plugins, test helpers), so that worker
    processes can register them too; classes travel by reference (module and name)."""
    return {
        kind: {n: c for n, c in reg.entries().items() if not c.__module__.startswith("ctta.")}
        for kind, reg in (("methods", METHODS), ("scenarios", SCENARIOS))
    }


def _register(plugins: dict[str, dict[str, type]]) -> None:
    for kind, reg in (("methods", METHODS), ("scenarios", SCENARIOS)):
        for name, cls in plugins.get(kind, {}).items():
            reg.register(name)(cls)


class DebugLauncher:
    """In this process, one run at a time."""

    def __init__(self, root: str | Path, device: str = "auto", tracker: Tracker | None = None):
        resolve_device(device)  # refused here, as by `ctta run`, not by every run
        self.root, self.device, self.tracker = str(root), device, tracker

    def run(self, next_runs: NextRuns, finished: Finished, retry: set[str]) -> None:
        queue = list(next_runs())
        while queue:
            run = queue.pop(0)
            try:
                status = execute_run(
                    run.spec.as_dict(), self.root, self.device, run.run_id in retry, self.tracker
                )
                finished(run, elsewhere=status == RUNNING)
            except UserError as exc:
                finished(run, str(exc))
            queue += next_runs()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class LocalLauncher:
    """A pool of `jobs` worker processes; a worker per GPU slot when GPUs are used."""

    def __init__(
        self,
        root: str | Path,
        jobs: int | None = None,
        device: str = "auto",
        tracker: Tracker | None = None,
        threads: int | None = None,
    ):
        resolve_device(device)
        self.root, self.device, self.tracker = str(root), device, tracker
        use_gpus = device == "auto" and os.environ.get("CTTA_DEVICE", "auto") == "auto"
        self.gpus = torch.cuda.device_count() if use_gpus else 0
        if jobs is not None and jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {jobs}")
        if threads is not None and threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        self.jobs = jobs or self.gpus or usable_cores()
        self.threads = threads or max(1, usable_cores() // self.jobs)
        self.context = _worker_context()  # its fork server imports the engine while the sweep is prepared

    def run(self, next_runs: NextRuns, finished: Finished, retry: set[str]) -> None:
        ctx = self.context
        slots = None
        if self.gpus:
            slots = ctx.Queue()
            for i in range(self.jobs):
                slots.put(i % self.gpus)
        pool = ProcessPoolExecutor(
            self.jobs,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(os.getpid(), self.threads, slots, plugin_classes()),
        )
        futures: dict[Any, Any] = {}
        pending: list = []
        families = _Families()

        def dispatch() -> None:  # runs are handed out one per free worker, pilots first
            while pending and len(futures) < self.jobs:
                run = pending.pop(families.pick(pending))
                spec = run.spec.as_dict()
                retried = run.run_id in retry
                futures[pool.submit(execute_run, spec, self.root, self.device, retried, self.tracker)] = run

        try:
            pending.extend(next_runs())
            dispatch()
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    run = futures.pop(future)
                    families.finished(run)
                    try:
                        finished(run, elsewhere=future.result() == RUNNING)
                    except BrokenProcessPool:
                        finished(run, "worker process died")
                        raise
                    except Exception as exc:  # a UserError or a crash outside the engine's recording
                        finished(run, f"{type(exc).__name__}: {exc}")
                dispatch()  # first from what is queued: re-planning may take a moment
                pending.extend(next_runs())
                dispatch()
        except BrokenProcessPool:
            for run in futures.values():
                finished(run, "worker process died")
            raise UserError(
                "a worker process died (killed, or out of memory?); finished runs are kept: "
                "run the launch again to continue"
            ) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class _Families:
    """Which queued run a free worker gets. The first run of a (method, backbone) family in a
    launch is its pilot: it builds what the family's runs share and cache (a source model that
    ITTA trains for 70 s, the features a prototype method extracts), behind a file lock. Until
    the pilot finishes, other runs of its family wait in the queue and free workers take other
    families, instead of sitting on the lock."""

    def __init__(self):
        self.started: set[str] = set()  # families with a run handed out
        self.warm: set[str] = set()  # families with a finished run

    @staticmethod
    def of(run) -> str:
        return json.dumps([run.spec.method["name"], run.spec.backbone], sort_keys=True, default=str)

    def pick(self, queue: list) -> int:
        """Index of the run to start: the first whose family is warm or has not started (the
        first of the queue when every family waits: a worker that waits on a lock then is no
        worse off than an idle one)."""
        piloting = self.started - self.warm
        index = next((i for i, run in enumerate(queue) if self.of(run) not in piloting), 0)
        self.started.add(self.of(queue[index]))
        return index

    def finished(self, run) -> None:
        self.warm.add(self.of(run))


def _worker_context():
    """Workers are forked from a server process that has imported the engine once (fast start,
    and never a fork of a process whose torch threads are running); spawned where there is none."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["ctta.sweep.launchers", "ctta.run.engine"])
    from multiprocessing import forkserver

    forkserver.ensure_running()
    return ctx


def _init_worker(launcher: int, threads: int, slots, plugins: dict) -> None:
    _exit_with(launcher)
    if slots is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(slots.get())
    torch.set_num_threads(threads)
    _register(plugins)


def _exit_with(pid: int) -> None:
    """End this worker at once when the launcher process `pid` ends (even by SIGKILL), so that no
    run outlives a killed sweep. A worker's parent is the fork server, which itself waits for
    its workers, so the launcher is watched directly: a pidfd where the OS has one, else polling."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
            select.select([fd], [], [])  # readable once the process has ended
        except (AttributeError, OSError):
            while pid_alive(pid):
                time.sleep(0.5)
        os._exit(1)  # records are written atomically: an interrupted run leaves no record

    threading.Thread(target=watch, name="ctta-exit-with-launcher", daemon=True).start()


class RunChunk(submitit.helpers.Checkpointable):
    """One Slurm array task: a few runs in sequence. On preemption or timeout submitit calls
    `checkpoint`, which (Checkpointable's default) requeues the same call: finished runs are
    skipped and continual-learning runs resume from their checkpoint."""

    def __init__(self, root: str, device: str, threads: int, plugins: dict, tracker: Tracker | None = None):
        self.root, self.device, self.threads, self.plugins = root, device, threads, plugins
        self.tracker = tracker

    def __call__(self, items: list[tuple[dict, bool]]) -> dict[str, tuple[str | None, bool]]:
        """run_id -> (error or None, whether another process holds the run)."""
        torch.set_num_threads(self.threads)
        _register(self.plugins)
        results: dict[str, tuple[str | None, bool]] = {}
        for spec, retry in items:
            run_id = RunSpec.parse(spec).run_id
            try:
                status = execute_run(spec, self.root, self.device, retry, self.tracker)
                results[run_id] = (None, status == RUNNING)
            except UserError as exc:
                results[run_id] = (str(exc), False)
        return results


class SlurmLauncher:
    """submitit job arrays on a Slurm cluster; one array per planning round."""

    def __init__(
        self,
        root: str | Path,
        *,
        device: str = "auto",
        partition: str | None = None,
        timeout_min: int = 60,
        cpus_per_task: int = 1,
        gpus_per_task: int = 0,
        mem_gb: float | None = None,
        array_parallelism: int = 64,
        per_task: int = 1,
        folder: str | Path | None = None,
        tracker: Tracker | None = None,
    ):
        if per_task < 1 or cpus_per_task < 1 or timeout_min < 1:
            raise UserError("--per-task, --cpus-per-task and --timeout-min must be at least 1")
        resolve_device(device, here=False)  # the nodes may have GPUs that this machine lacks
        self.root, self.device, self.tracker = str(root), device, tracker
        self.per_task, self.cpus = per_task, cpus_per_task
        self.folder = Path(folder) if folder else Path(root) / "slurm" / time.strftime("%Y%m%d-%H%M%S")
        self.params: dict[str, Any] = {
            "timeout_min": timeout_min,
            "cpus_per_task": cpus_per_task,
            "slurm_array_parallelism": array_parallelism,
            "name": "ctta",
        }
        if partition:
            self.params["slurm_partition"] = partition
        if gpus_per_task:
            self.params["gpus_per_node"] = gpus_per_task
        if mem_gb:
            self.params["mem_gb"] = mem_gb

    def run(self, next_runs: NextRuns, finished: Finished, retry: set[str]) -> None:
        executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm")
        executor.update_parameters(**self.params)
        task = RunChunk(self.root, self.device, self.cpus, plugin_classes(), self.tracker)
        while todo := next_runs():
            chunks = [todo[i : i + self.per_task] for i in range(0, len(todo), self.per_task)]
            items = [[(r.spec.as_dict(), r.run_id in retry) for r in chunk] for chunk in chunks]
            jobs = executor.map_array(task, items)
            log.info("submitted %d runs as Slurm array %s", len(todo), jobs[0].job_id.split("_")[0])
            for job, chunk in zip(jobs, chunks):
                try:
                    results = job.result()
                except Exception as exc:  # the job died (node failure, out of memory, cancelled)
                    reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                    results = {r.run_id: (f"Slurm job {job.job_id}: {reason}", False) for r in chunk}
                for run in chunk:
                    error, elsewhere = results.get(run.run_id, (None, False))
                    finished(run, error, elsewhere=elsewhere)


def make_launcher(
    name: str,
    root: str | Path,
    *,
    device: str = "auto",
    jobs: int | None = None,
    threads: int | None = None,
    tracker: Tracker | None = None,
    **slurm,
):
    """A launcher by name; `tracker` (`ctta.run.trackers`) logs every run it executes."""
    if name == "debug":
        return DebugLauncher(root, device, tracker)
    if name == "local":
        return LocalLauncher(root, jobs, device, tracker, threads)
    if name == "slurm":
        return SlurmLauncher(root, device=device, tracker=tracker, **slurm)
    raise UserError(f"unknown launcher {name!r}; valid choices: {', '.join(LAUNCHERS)}")
