"""Claims: at most one process runs a run, however many launches share a store.

A claim is the file `<run dir>/running`, created atomically only where none exists (a hard
link from a complete temporary file, the lock that works on NFS too; `O_EXCL` where a file
system has no hard links). It holds the holder's host, pid, start time and a heartbeat that a
thread rewrites every `CTTA_HEARTBEAT_S` seconds (30) while the run is alive. A claim whose
heartbeat is older than ten heartbeats (300 s) is stale, whichever host wrote it; one from
this machine whose process is gone is stale at once, and so is one from an earlier life of
a requeued Slurm job. A stale claim is taken over with a
one-line warning; `reclaim=True` takes over a live one too (`--reclaim`). Takeovers go one
at a time (a lock file), so two processes that find the same stale claim never both win.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UserError
from ..core.files import atomic_write_bytes, set_aside

log = logging.getLogger(__name__)
MARKER = "running"
STALE_HEARTBEATS = 10
DAMAGED = "the run counts as pending"


def heartbeat_s() -> float:
    """Seconds between heartbeats (`CTTA_HEARTBEAT_S`, default 30)."""
    return float(os.environ.get("CTTA_HEARTBEAT_S", "30"))


def stale_s() -> float:
    """A claim without a heartbeat for this long is taken over (300 s by default)."""
    return STALE_HEARTBEATS * heartbeat_s()


class RunClaimed(UserError):
    """Another live process holds the run."""


def _read_first(path: str) -> str | None:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return None


def _machine() -> dict[str, Any]:
    """What tells this machine and process namespace apart: a pid is only checked where they match."""
    try:
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        pid_ns = None
    return {
        "host": socket.gethostname(),
        "boot_id": _read_first("/proc/sys/kernel/random/boot_id"),
        "pid_ns": pid_ns,
    }


def _slurm() -> tuple[str | None, int]:
    """This process's Slurm job and how often it was requeued (a requeued job keeps its id)."""
    return os.environ.get("SLURM_JOB_ID"), int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs (a zombie has ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read_first(f"/proc/{pid}/stat")
    return stat is None or stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


@dataclass
class Holder:
    """A claim as read from its file (`raw`: the bytes, to recognise it again)."""

    info: dict[str, Any]
    raw: bytes

    @property
    def heartbeat(self) -> float:
        return float(self.info.get("heartbeat", self.info.get("started", 0.0)))

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(self.info.get("started", 0))))
        age = max(0.0, time.time() - self.heartbeat)
        return f"host {self.info['host']}, pid {self.info['pid']}, started {started}, last heartbeat {age:.0f} s ago"

    def stale(self) -> str | None:
        """Why this claim no longer counts, or None while its holder may be alive."""
        age = time.time() - self.heartbeat
        if age > stale_s():
            return f"no heartbeat for {age:.0f} s (stale after {stale_s():.0f} s)"
        job, restarts = _slurm()
        if (
            job is not None
            and self.info.get("slurm_job") == job
            and int(self.info.get("slurm_restart") or 0) < restarts
        ):
            return f"Slurm job {job} was requeued"
        here = _machine()
        same = all(self.info.get(k) in (None, here[k]) for k in ("boot_id", "pid_ns"))
        if self.info["host"] == here["host"] and same and not pid_alive(int(self.info["pid"])):
            return f"process {self.info['pid']} on this host has ended"
        return None


def read_holder(marker: Path) -> Holder | None:
    """The claim at `marker`, or None when there is none. A damaged one is set aside (one warning)."""
    try:
        raw = marker.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        log.warning("cannot read %s (%s); %s", marker, exc.strerror, DAMAGED)
        return None
    try:
        info = json.loads(raw)
        if not isinstance(info, dict) or not {"host", "pid"} <= info.keys():
            raise ValueError("not a mapping with host and pid")
        int(info["pid"]), int(info.get("slurm_restart") or 0)
        float(info.get("heartbeat", info.get("started", 0.0)))
    except (ValueError, TypeError) as exc:
        # only the O_EXCL fallback can show a claim before its content: give it a moment
        # (host "?" is no host, so its "pid" is never looked up)
        if not raw and time.time() - _mtime(marker) < 5:
            return Holder({"host": "?", "pid": "?", "started": time.time()}, raw)
        set_aside(marker, f"{type(exc).__name__}: {exc}", DAMAGED)
        return None
    return Holder(info, raw)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def live_holder(marker: Path) -> Holder | None:
    """The claim at `marker` if its holder may still be alive."""
    holder = read_holder(marker)
    return holder if holder is not None and holder.stale() is None else None


def _create(marker: Path, data: bytes, token: str) -> bool:
    """Create `marker` with `data` unless it exists, atomically."""
    marker.parent.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_name(f".{marker.name}.{token}.tmp")
    tmp.write_bytes(data)
    try:
        os.link(tmp, marker)
        return True
    except FileExistsError:
        return False
    except OSError:
        # NFS may report a failure for a link that was made: the link count tells
        if tmp.stat().st_nlink == 2:
            return True
        try:  # a file system without hard links
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def _take(marker: Path, holder: Holder, reason: str) -> bool:
    """Remove `marker` if it still is `holder`'s claim as read, with a warning line.

    Removing by name is not conditional, so takeovers go one at a time, under a lock file made
    the same way as claims: of two processes taking over the same stale claim, the second
    finds the first one's new claim (not the stale one) and leaves it. A lock left by a
    process that died in these few milliseconds is cleared after a minute."""
    lock = marker.with_name(f".{marker.name}.takeover")
    token = uuid.uuid4().hex
    if not _create(lock, token.encode(), token):
        if time.time() - _mtime(lock) > 60:
            lock.unlink(missing_ok=True)
        time.sleep(0.05)  # another process is taking it over: let it finish
        return False
    try:
        try:
            if marker.read_bytes() != holder.raw:
                return False  # a heartbeat, or a new claim: not the one judged
        except FileNotFoundError:
            return False
        marker.unlink()
    finally:
        lock.unlink(missing_ok=True)
    log.warning("reclaimed %s from %s: %s", marker, holder.describe(), reason)
    return True


def take_over(marker: Path, reason: str) -> bool:
    """Remove the claim at `marker` whoever holds it (with a warning line); whether there was one."""
    holder = read_holder(marker)
    return holder is not None and _take(marker, holder, reason)


class Claim:
    """This process's claim on a run; a context manager that keeps the heartbeat going and
    removes the claim on exit."""

    def __init__(self, marker: Path, info: dict[str, Any]):
        self.marker, self.info = marker, info
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="ctta-heartbeat", daemon=True)

    def start(self) -> Claim:
        self._thread.start()
        return self

    def _mine(self) -> bool:
        holder = read_holder(self.marker)
        return holder is not None and holder.info.get("token") == self.info["token"]

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_s()):
            if not self._mine():
                self.lost = True
                log.warning(
                    "%s was taken over by another process; this run goes on but may now run twice",
                    self.marker,
                )
                return
            self.info["heartbeat"] = time.time()
            try:
                atomic_write_bytes(self.marker, json.dumps(self.info).encode())
            except OSError as exc:  # a full disk or a file-system hiccup: try again next time
                log.warning("cannot refresh the heartbeat in %s (%s)", self.marker, exc.strerror or exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if not self.lost and self._mine():
            self.marker.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(marker: Path, what: str, *, reclaim: bool = False) -> Claim:
    """Claim the run whose marker is `marker` (`what` names it in messages).

    Raises RunClaimed when a live process holds it (unless `reclaim`); a stale claim, or any
    claim with `reclaim`, is taken over with a one-line warning."""
    now = time.time()
    info = {**_machine(), "pid": os.getpid(), "started": now, "heartbeat": now, "token": uuid.uuid4().hex}
    info["slurm_job"], info["slurm_restart"] = _slurm()
    data = json.dumps(info).encode()
    for _ in range(20):  # each round claims, finds a live claim, or removes a dead one
        if _create(marker, data, info["token"]):
            return Claim(marker, info).start()
        holder = read_holder(marker)
        if holder is None:
            continue  # gone meanwhile, or damaged and set aside
        reason = "taken over on request (--reclaim)" if reclaim else holder.stale()
        if reason is None:
            raise RunClaimed(
                f"{what} is running elsewhere ({holder.describe()}; claim {marker}); wait for it to "
                f"finish, or pass --reclaim to take it over"
            )
        _take(marker, holder, reason)
    raise RunClaimed(f"{what}: could not claim {marker} (other processes keep claiming it); try again")
