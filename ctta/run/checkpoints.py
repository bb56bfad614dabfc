"""Resume checkpoints of continual-learning runs: `<run dir>/checkpoint.pt` after each task.

A checkpoint holds tensors and plain values only: the method's state dict (never the method
object), its optimiser's state dict, the accuracy matrix so far, the logs, the random states
of Python, NumPy and torch, and the next task. It is read with `weights_only=True`, so nothing
in a store can run code when loaded. Resuming runs `setup` again, loads the state dict, and
calls the method's `resume` with the tasks already learnt. A checkpoint that does not load or
does not fit is set aside (`checkpoint.pt.damaged-...`) with one warning line, and the run
starts from the beginning.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..api import Method
from ..core.files import atomic_save, set_aside

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1
RESTART = "the run starts from the beginning"


def save_checkpoint(path: Path, run_id: str, method: Method, **progress) -> None:
    """Save what resuming after `progress["next_task"]` needs: state dicts, scores, logs, RNGs."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "run_id": run_id,
        "method": method.state_dict(),
        "optimizer": method.optimizer.state_dict() if method.optimizer is not None else None,
        "rng": rng_state(),
        **progress,
    }
    try:
        atomic_save(path, lambda tmp: torch.save(state, tmp))
    except Exception as exc:  # e.g. a full disk, or extra state that is not plain data
        log.warning(
            "cannot checkpoint %s (%s); if interrupted, this run restarts from scratch",
            path,
            _first_line(exc),
        )


def load_checkpoint(path: Path, run_id: str, n_tasks: int) -> dict | None:
    """The checkpoint at `path` if there is one that loads without running code and belongs to
    this run; a damaged or foreign one is set aside with one warning line."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        why = _checkpoint_problem(state, run_id, n_tasks)
        if why:
            raise ValueError(why)
    except Exception as exc:  # a planted pickle, a truncated file, another run's or format's
        discard(path, exc)
        return None
    return state


def discard(path: Path, exc: Exception) -> None:
    """Set a checkpoint that cannot be used aside, with one warning line saying why."""
    set_aside(path, _first_line(exc), RESTART)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _checkpoint_problem(state: Any, run_id: str, n_tasks: int) -> str | None:
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        return f"not a ctta checkpoint of format {CHECKPOINT_FORMAT}"
    if state.get("run_id") != run_id:
        return f"it belongs to run {state.get('run_id')!r}"
    done = state.get("next_task")
    if not isinstance(done, int) or not 0 < done < n_tasks:
        return f"next_task {done!r} is not in 1..{n_tasks - 1}"
    if any(
        not isinstance(state.get(k), list) or len(state[k]) != done for k in ("matrix", "acc_seen", "logs")
    ):
        return f"scores and logs do not cover {done} tasks"
    if not isinstance(state.get("method"), dict) or not isinstance(state.get("rng"), dict):
        return "no method state or RNG state"
    return None


def restore(method: Method, state: dict, done: list) -> None:
    """Load a checkpoint into a method that has just been set up (raises when it does not fit)."""
    method.load_state_dict(state["method"])
    if (state["optimizer"] is None) != (method.optimizer is None):
        raise ValueError("optimizer state does not match the method's optimizer")
    if method.optimizer is not None:
        method.optimizer.load_state_dict(state["optimizer"])
    method.resume(done)
    set_rng_state(state["rng"])


def rng_state() -> dict[str, Any]:
    """Python's, NumPy's and torch's (CPU and CUDA) random states, as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_tuples(state["python"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(value):
    """random.setstate wants tuples where a round trip may give lists."""
    return tuple(_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
