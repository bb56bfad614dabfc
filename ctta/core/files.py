"""Files: where ctta caches what it builds once (rendered data, source models, features),
content keys, atomic writes, the lock that makes parallel workers build a file once, and
setting damaged files aside."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    """`$CTTA_CACHE` if set and non-empty, else `$XDG_CACHE_HOME/ctta`, else `~/.cache/ctta`.

    One resolver for every cache, so a single variable moves them all (e.g. to a cluster's
    scratch disk). Not created here; callers make the sub-folder they use."""
    env = os.environ.get("CTTA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "ctta"


def data_dir(name: str) -> Path:
    """`$CTTA_DATA/<name>`, else `<cache>/data/<name>`: where data sets and downloaded model
    files (RobustBench checkpoints) are looked for."""
    base = Path(os.environ["CTTA_DATA"]) if os.environ.get("CTTA_DATA") else cache_dir() / "data"
    return base / name


def content_key(obj: Any, length: int = 16) -> str:
    """Stable hex key of a JSON-serialisable object (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see either nothing or the whole file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_save(path: Path, save_fn) -> None:
    """Call `save_fn(tmp_path)` then move the file into place atomically (for torch.save, np.savez)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_fn(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive lock on `path`.lock so that parallel workers build a cached artefact once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock, at worst two workers build the same file
        yield
        return
    with open(path.with_suffix(path.suffix + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


_LEFT_IN_PLACE: set[Path] = set()


def set_aside(path: Path, problem: str, consequence: str, label: str = "damaged") -> Path | None:
    """Rename the `label` (damaged) file `path` to `<name>.<label>-<UTC time>-<pid>` next to it
    (kept for inspection, never deleted) and log one warning line naming both and what happens now.

    Returns the new path; None when another process moved it first (it reports it) or when it
    cannot be moved (a read-only store: then it is reported and left where it is)."""
    path = Path(path)
    problem = " ".join(str(problem).split())  # one line, whatever the exception said
    aside = path.with_name(
        f"{path.name}.{label}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}"
    )
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if path not in _LEFT_IN_PLACE:  # read on every look-up: say it once per process
            _LEFT_IN_PLACE.add(path)
            log.warning(
                "%s %s (%s), left in place (cannot move it: %s); %s",
                label,
                path,
                problem,
                exc.strerror,
                consequence,
            )
        return None
    log.warning("%s %s (%s), moved to %s; %s", label, path, problem, aside.name, consequence)
    return aside
