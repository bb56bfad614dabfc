"""The shipped weights of the offline backbones, and their manifests.

`ctta/zoo/weights/<name>.pt` is a state dict in float16 (half the size; the models load it
as float32), and `<name>.json` beside it its manifest: the file's sha256, the recipe and
seed that `ctta pretrain` used, the held-out scores measured when it was built (on the
float16 weights), the versions and the build time. Loading checks the hash, so a damaged
or swapped file is a one-line error, never a silently different benchmark. `ctta pretrain`
writes the same pair into another folder (`save`) and compares its scores with the shipped
manifest (`compare`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
from pathlib import Path

import torch

from ..core.errors import UserError
from ..core.files import atomic_save, atomic_write_bytes
from ..core.version import VERSION

SHIPPED = Path(__file__).with_name("weights")


def save(folder: Path, name: str, state: dict[str, torch.Tensor], report: dict) -> Path:
    """Write `<folder>/<name>.pt` (float tensors as float16) and its manifest; returns the .pt."""
    path = Path(folder) / f"{name}.pt"
    half = {
        k: v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu() for k, v in state.items()
    }
    atomic_save(path, lambda tmp: torch.save(half, tmp))
    manifest = {
        "name": name,
        "file": path.name,
        "sha256": _sha256(path),
        "dtype": "float16",
        **report,
        "built_with": {"ctta": VERSION, "torch": torch.__version__, "python": platform.python_version()},
    }
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(manifest, indent=1).encode())
    return path


def half_round_trip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state as it will load from a float16 file (scores are measured on this)."""
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def manifest(name: str, folder: Path = SHIPPED) -> dict:
    path = Path(folder) / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the weights manifest ({exc}); reinstall ctta") from None


def shipped(name: str) -> Path:
    """Path of the shipped weights of `name`, after checking them against their manifest."""
    return _checked(SHIPPED / f"{name}.pt")


def checked(path: str | Path) -> Path:
    """`path`, checked against the manifest beside it when it has one (files `ctta pretrain`
    wrote); a weights file without a manifest is the user's and loads as it is."""
    path = Path(path).expanduser()
    return _checked(path) if path.with_suffix(".json").is_file() else path


@functools.cache
def _checked(path: Path) -> Path:
    expected = manifest(path.stem, path.parent)["sha256"]
    if not path.is_file():
        raise UserError(
            f"{path}: the weights file is missing; reinstall ctta or rebuild it with `ctta pretrain`"
        )
    actual = _sha256(path)
    if actual != expected:
        raise UserError(
            f"{path}: sha256 {actual[:12]}... does not match its manifest ({expected[:12]}...); "
            f"the file is damaged or was replaced: reinstall ctta or rebuild it with `ctta pretrain`"
        )
    return path


def compare(report: dict, reference: dict, keys: tuple[str, ...]) -> list[str]:
    """One line per score: rebuilt vs shipped, and the difference."""
    lines = []
    for key in keys:
        new, old = report["scores"].get(key), reference.get("scores", {}).get(key)
        if new is None or old is None:
            continue
        lines.append(f"{key:<40} {new:7.2f} (shipped {old:.2f}, {new - old:+.2f})")
    return lines


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
