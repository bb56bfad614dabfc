"""The user's own image arrays as a dataset: `{name: arrays, path: data.npz}` (NumPy `.npz`
or `.npy` files).

Labels may be integers 0..K-1, strings (class names, sorted), or one-hot rows; a domain
column (integers or strings) is kept per sample for domain-shift scenarios. Class and domain
names are optional (`class_names`, `domain_names`). A file without its own train/test split
is split by a stratified holdout (`test_fraction` per class and domain, `split_seed`).
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..core.errors import UserError, few
from ..core.registry import register_dataset
from .images import ImageData, check_labels, check_pixels, files_fingerprint
from .splits import holdout_split

ALIASES = {
    "images": ("images", "x", "X", "data", "imgs", "inputs"),
    "labels": ("labels", "y", "Y", "targets", "label", "target"),
    "domains": ("domains", "domain"),
    "class_names": ("class_names", "classes"),
    "domain_names": ("domain_names",),
}


# --------------------------------------------------------------------------- array files
@register_dataset("arrays")
def arrays(
    *,
    split: str,
    image_size: int,
    path: str,
    test_path: str | None = None,
    labels: str | None = None,
    domains: str | None = None,
    images_key: str | None = None,
    labels_key: str | None = None,
    domains_key: str | None = None,
    class_names: list | None = None,
    domain_names: list | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> ImageData:
    """Images and labels from NumPy files: images N×H×W×C uint8 or N×C×H×W float in [0, 1].

    `path`: an .npz holding images (key images/x/data), labels (labels/y/targets) and
    optionally domains, class_names, domain_names; its own split as x_train/x_test (any
    alias, `_train`/`_test` suffix or `train_`/`test_` prefix), or a second file `test_path`,
    or else a stratified holdout. Or an .npy of images with `labels=<labels.npy>` (and
    `domains=<domains.npy>`). `*_key` options name the arrays when the aliases do not fit."""
    keys = {"images": images_key, "labels": labels_key, "domains": domains_key}
    with contextlib.ExitStack() as stack:
        tables = {"train": stack.enter_context(_table(path, labels, domains))}
        if test_path is not None:
            tables["test"] = stack.enter_context(_table(test_path, None, None))
            parts = {"train": ("train", None), "test": ("test", None)}  # part: (table, key suffix)
        elif _key(tables["train"], "images", images_key, "train") is not None:
            parts = {"train": ("train", "train"), "test": ("train", "test")}
        else:
            parts = {"all": ("train", None)}
        found = {p: _find(tables[t], keys, suffix, path) for p, (t, suffix) in parts.items()}
        columns = {
            p: {
                role: _vector(np.asarray(tables[t][k]))
                for role, k in found[p].items()
                if role != "images" and k
            }
            for p, (t, _) in parts.items()
        }
        part = split if split in parts else "all"
        images = np.asarray(tables[parts[part][0]][found[part]["images"]])
        if images.dtype.kind == "f":  # before any split: positions in the file's array
            check_pixels(torch.from_numpy(images), f"{_file(path, part, test_path)}: {found[part]['images']}")
        class_names = class_names or _names(tables["train"], "class_names")
        domain_names = domain_names or _names(tables["train"], "domain_names")
    # Ids over every part, so that train and test share class (and domain) names.
    y, class_names = to_ids(
        np.concatenate([c["labels"] for c in columns.values()]), class_names, f"{path}: labels"
    )
    with_domains = all("domains" in c for c in columns.values())
    d, domain_names = (
        to_ids(
            np.concatenate([c["domains"] for c in columns.values()]),
            domain_names,
            f"{path}: domains",
            "domain",
        )
        if with_domains
        else (None, ())
    )
    offsets = np.cumsum([0] + [len(c["labels"]) for c in columns.values()])
    i = list(parts).index(part)
    y, d = y[offsets[i] : offsets[i + 1]], None if d is None else d[offsets[i] : offsets[i + 1]]
    if len(images) != len(y) or (d is not None and len(d) != len(y)):
        counts = f"{len(images)} images, {len(y)} labels" + ("" if d is None else f", {len(d)} domains")
        raise UserError(f"{path}: arrays of different lengths ({counts})")
    if part == "all":
        keep = holdout_split(y if d is None else y * (int(d.max()) + 1) + d, split, test_fraction, split_seed)
        images, y, d = images[keep], y[keep], None if d is None else d[keep]
    files = [str(Path(p).expanduser()) for p in (path, test_path, labels, domains) if p]
    return ImageData.from_arrays(
        images,
        y,
        class_names,
        name=_file(path, part, test_path),
        domains=d,
        domain_names=domain_names,
        image_size=image_size,
        fingerprint=files_fingerprint(files),
    )


def _file(path: str, part: str, test_path: str | None) -> str:
    return test_path if part == "test" and test_path is not None else path


def _table(path: str, labels: str | None, domains: str | None):
    """Named arrays of an .npz (loaded on access; a context manager), or of an .npy plus its
    label/domain files."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"array file {file} does not exist")
    if file.suffix == ".npz":
        if labels or domains:
            raise UserError(
                f"{file}: labels=/domains= name .npy files; in an .npz use labels_key=/domains_key="
            )
        try:
            return np.load(file, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise UserError(f"{file}: not a readable .npz ({exc})") from None
    if file.suffix != ".npy":
        raise UserError(f"array file {file}: expected .npz or .npy, got {file.suffix or 'no suffix'!r}")
    if not labels:
        raise UserError(f"{file}: an .npy holds only images; pass labels=<labels .npy file>")
    table = {"images": _load_npy(file), "labels": _load_npy(Path(labels).expanduser())}
    if domains:
        table["domains"] = _load_npy(Path(domains).expanduser())
    return contextlib.nullcontext(table)


def _load_npy(file: Path) -> np.ndarray:
    if not file.is_file():
        raise UserError(f"array file {file} does not exist")
    try:
        return np.load(file, allow_pickle=False)
    except ValueError as exc:
        raise UserError(f"{file}: {exc} (object arrays are refused: save plain numbers or strings)") from None


def _key(table, role: str, explicit: str | None, split: str | None) -> str | None:
    for alias in (explicit,) if explicit else ALIASES[role]:
        for key in (f"{alias}_{split}", f"{split}_{alias}") if split else (alias,):
            if key in table:
                return key
    return None


def _find(table, keys: dict, suffix: str | None, path: str) -> dict[str, str | None]:
    """Keys of the images, labels and (optional) domains arrays."""
    found = {role: _key(table, role, keys[role], suffix) for role in ("images", "labels", "domains")}
    for role in ("images", "labels", "domains"):
        if found[role] is None and (role != "domains" or keys[role]):
            wanted = keys[role] or "/".join(ALIASES[role])
            wanted += f" with the suffix _{suffix}" if suffix else ""
            raise UserError(
                f"{path}: no {role} array ({wanted}); its arrays: {', '.join(sorted(table))}; "
                f"name it with {role}_key="
            )
    return found


def _names(table, role: str) -> list[str] | None:
    key = _key(table, role, None, None)
    return None if key is None else [str(n) for n in np.asarray(table[key]).ravel()]


def _vector(labels: np.ndarray) -> np.ndarray:
    """A label (or domain) column as a vector: one-hot rows become ids, N×1 becomes N."""
    if (
        labels.ndim == 2
        and labels.shape[1] > 1
        and np.isin(labels, (0, 1)).all()
        and (labels.sum(1) == 1).all()
    ):
        return labels.argmax(1)
    return labels.reshape(len(labels))


def to_ids(
    values, names: Sequence[str] | None, where: str, kind: str = "class"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer ids and names of labels (or domains) given as integers or as strings."""
    values = np.asarray(values)
    if values.dtype.kind in "US":
        values = values.astype(str)
        names = list(names) if names else sorted(set(values.tolist()))
        unknown = sorted(set(values.tolist()) - set(names))
        if unknown:
            raise UserError(f"{where}: {unknown[0]!r} is not among the names given ({', '.join(names)})")
        index = {n: i for i, n in enumerate(names)}
        return np.array([index[v] for v in values.tolist()], dtype=np.int64), tuple(names)
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise UserError(
            f"{where}: NaN or inf at samples {few(np.flatnonzero(~np.isfinite(values)).tolist())}"
        )
    if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)
    if values.dtype.kind not in "iub":
        raise UserError(f"{where}: expected integers or strings, got {values.dtype}")
    values = values.astype(np.int64)
    count = max(int(values.max(initial=-1)), 0) + 1
    names = list(names) if names else [str(i) for i in range(count)]
    check_labels(values, len(names), where, kind)
    return values, tuple(str(n) for n in names)


# --------------------------------------------------------------------------- Python factories
