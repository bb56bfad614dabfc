"""Datasets users bring: NumPy array files (`arrays`) and Python factories (`module.path:function`
returning a torch Dataset). Both become an `ImageData` like every built-in dataset, so every
scenario takes them as its `dataset`.

Labels may be integers 0..K-1, strings (class names, sorted), or one-hot rows; a domain
column (integers or strings) is kept per sample for domain-shift scenarios. Class and domain
names are optional (`class_names`, `domain_names`). A source without its own train/test split
is split by a stratified holdout (`test_fraction` per class and domain, `split_seed`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import ImageData, _freeze, _holdout_split, _thaw, files_fingerprint, resize
from .errors import UserError
from .registry import DATASETS, register_dataset
from .user_code import call, import_object, options_signature, parameters_of, source_fingerprint

ALIASES = {
    "images": ("images", "x", "X", "data", "imgs", "inputs"),
    "labels": ("labels", "y", "Y", "targets", "label", "target"),
    "domains": ("domains", "domain"),
    "class_names": ("class_names", "classes"),
    "domain_names": ("domain_names",),
}
IN_MEMORY_BYTES = 2**31  # factory datasets up to this size (uint8 at the run's image size) are held in memory


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
        class_names = class_names or _names(tables["train"], "class_names")
        domain_names = domain_names or _names(tables["train"], "domain_names")
    # Ids over every part, so that train and test share class (and domain) names.
    y, class_names = to_ids(
        np.concatenate([c["labels"] for c in columns.values()]), class_names, f"{path}: labels"
    )
    with_domains = all("domains" in c for c in columns.values())
    d, domain_names = (
        to_ids(np.concatenate([c["domains"] for c in columns.values()]), domain_names, f"{path}: domains")
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
        keep = _holdout_split(
            y if d is None else y * (int(d.max()) + 1) + d, split, test_fraction, split_seed
        )
        images, y, d = images[keep], y[keep], None if d is None else d[keep]
    files = [str(Path(p).expanduser()) for p in (path, test_path, labels, domains) if p]
    return ImageData.from_arrays(
        images,
        y,
        class_names,
        name=Path(path).stem,
        domains=d,
        domain_names=domain_names,
        image_size=image_size,
        fingerprint=files_fingerprint(files),
    )


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


def to_ids(values, names: Sequence[str] | None, where: str) -> tuple[np.ndarray, tuple[str, ...]]:
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
    if values.dtype.kind == "f" and np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)
    if values.dtype.kind not in "iub":
        raise UserError(f"{where}: expected integers or strings, got {values.dtype}")
    values = values.astype(np.int64)
    if len(values) and values.min() < 0:
        raise UserError(f"{where}: ids must be >= 0, got {values.min()}")
    count = int(values.max()) + 1 if len(values) else 0
    names = list(names) if names else [str(i) for i in range(count)]
    if count > len(names):
        raise UserError(f"{where}: id {count - 1} but only {len(names)} names given")
    return values, tuple(str(n) for n in names)


# --------------------------------------------------------------------------- Python factories
def _factory_dataset(name: str):
    """`module.path:function` as a dataset loader. The function gets `split="train"|"test"`
    when it takes `split`, else `train=True|False` when it takes `train` (torchvision's
    convention); a function that takes neither returns all samples, split by a holdout.
    `image_size` is ctta's (the run's input size, images are fitted to it): a parameter of the
    function with that name keeps its default."""
    factory = import_object(name, f"dataset {name!r}")
    if factory is None:
        return None
    own = parameters_of(factory)
    mode = "split" if "split" in own else "train" if "train" in own else "holdout"

    def load(
        *,
        split: str,
        image_size: int,
        class_names: list | None = None,
        domain_names: list | None = None,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        in_memory: bool | None = None,
        **options: Any,
    ) -> ImageData:
        if mode == "split":
            options["split"] = split
        elif mode == "train":
            options["train"] = split == "train"
        frozen = tuple(sorted((k, _freeze(v)) for k, v in options.items()))
        data = _from_factory(name, frozen, image_size, _freeze(class_names), _freeze(domain_names), in_memory)
        if mode == "holdout":
            d = data.domains
            strata = data.targets if d is None else data.targets * (int(d.max()) + 1) + d
            data = data.subset(_holdout_split(strata, split, test_fraction, split_seed))
        return data

    load.__signature__ = options_signature(
        inspect.signature(load).parameters.values(), factory, hide=["train"]
    )
    load.__doc__ = factory.__doc__
    return load


@functools.lru_cache(maxsize=4)
def _from_factory(name, frozen, image_size, class_names, domain_names, in_memory) -> ImageData:
    """The factory's dataset as ImageData (memoised: a holdout split reads the data once)."""
    factory = import_object(name, f"dataset {name!r}")
    return from_torch_dataset(
        call(factory, {k: _thaw(v) for k, v in frozen}, f"dataset {name!r}"),
        image_size=image_size,
        name=name,
        class_names=_thaw(class_names),
        domain_names=_thaw(domain_names),
        in_memory=in_memory,
        fingerprint=source_fingerprint(factory),
    )


DATASETS.resolve_unknown_with(
    _factory_dataset,
    "module.path:function",
    "a Python callable returning a torch Dataset (importable: installed, on PYTHONPATH or in the "
    "current folder)",
)


def from_torch_dataset(
    ds,
    *,
    image_size: int,
    name: str = "dataset",
    class_names: Sequence[str] | None = None,
    domain_names: Sequence[str] | None = None,
    in_memory: bool | None = None,
    fingerprint: str | None = None,
) -> ImageData:
    """ImageData of a map-style torch Dataset whose items are (image, label) or (image, label,
    domain); images are PIL images, HWC uint8 arrays or CHW tensors in [0, 1] (no
    normalisation: that belongs to the backbone), fitted to `image_size` (short side, centre
    crop). Small datasets are read once into memory; larger ones (or `in_memory=False`) are
    read on access, through DataLoader workers."""
    try:
        n = len(ds)
    except TypeError:
        raise UserError(
            f"dataset {name!r}: {type(ds).__name__} has no len(); return a map-style Dataset"
        ) from None
    if n == 0:
        raise UserError(f"dataset {name!r} is empty")
    if in_memory is None:
        in_memory = n * 3 * image_size**2 <= IN_MEMORY_BYTES
    class_names = class_names or _string_list(getattr(ds, "classes", None))
    if in_memory:
        items = [_item(ds[i], image_size, name, i) for i in range(n)]
        images = torch.stack([x for x, _, _ in items]) if _same_dtype(items) else None
        if images is None:  # a mix of 8-bit and float images: keep them all as floats
            images = torch.stack([x.float() / 255 if x.dtype == torch.uint8 else x for x, _, _ in items])
        labels = [y for _, y, _ in items]
        domains = [d for _, _, d in items]
        storage_images = images
    else:
        storage_images = None
        labels, domains = _labels_without_images(ds, n, name)
    y, class_names = to_ids(labels, class_names, f"dataset {name!r}: labels")
    d, domain_names = (
        (None, ()) if domains[0] is None else to_ids(domains, domain_names, f"dataset {name!r}: domains")
    )
    if storage_images is not None:
        return ImageData.from_arrays(
            storage_images,
            y,
            class_names,
            name=name,
            domains=d,
            domain_names=domain_names,
            fingerprint=fingerprint,
        )
    data = ImageData(
        _Items(ds, image_size, name), y, class_names, name=name, domains=d, domain_names=domain_names
    )
    data._storage.fingerprint = fingerprint
    return data


class _Items:
    """Images of a torch Dataset read on access (the storage of large factory datasets)."""

    fingerprint: str | None = None

    def __init__(self, ds, size: int, name: str):
        self.ds, self.size, self.name = ds, size, name

    def load(self, idx: np.ndarray) -> torch.Tensor:
        xs = [_item(self.ds[int(i)], self.size, self.name, int(i))[0] for i in idx]
        return torch.stack([x.float().div_(255) if x.dtype == torch.uint8 else x for x in xs])

    def key(self, i: int) -> bytes:
        return _item(self.ds[int(i)], self.size, self.name, int(i))[0].numpy().tobytes()


def _labels_without_images(ds, n: int, name: str) -> tuple[list, list]:
    """Labels from the dataset's `targets`/`labels` attribute when it has one (torchvision),
    else from one pass over its items; domains from the items' third element."""
    for attr in ("targets", "labels"):
        values = getattr(ds, attr, None)
        if values is not None and not callable(values) and len(values) == n:
            return list(np.asarray(values)), [None] * n
    items = [ds[i] for i in range(n)]
    return [_unpack(it, name, i)[1] for i, it in enumerate(items)], [
        _unpack(it, name, i)[2] for i, it in enumerate(items)
    ]


def _unpack(item, name: str, i: int) -> tuple[Any, Any, Any]:
    if not isinstance(item, (tuple, list)) or len(item) not in (2, 3):
        raise UserError(f"dataset {name!r}: item {i} must be (image, label) or (image, label, domain)")
    x, y, *rest = item
    y = y.item() if isinstance(y, (torch.Tensor, np.generic)) else y
    d = rest[0] if rest else None
    d = d.item() if isinstance(d, (torch.Tensor, np.generic)) else d
    return x, y, d


def _item(item, size: int, name: str, i: int) -> tuple[torch.Tensor, Any, Any]:
    x, y, d = _unpack(item, name, i)
    return fit_image(to_chw(x, f"dataset {name!r}: item {i}"), size), y, d


def to_chw(x, where: str) -> torch.Tensor:
    """A PIL image, HWC/HW array or CHW tensor as a 3×H×W tensor (uint8, or float in [0, 1])."""
    if hasattr(x, "convert") and hasattr(x, "size"):  # a PIL image
        x = np.array(x.convert("RGB"))
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
        if x.dim() == 3 and x.shape[-1] in (1, 3) and x.shape[0] not in (1, 3):
            x = x.permute(2, 0, 1)
    if not isinstance(x, torch.Tensor):
        raise UserError(f"{where}: images must be PIL images, arrays or tensors, got {type(x).__name__}")
    x = x.unsqueeze(0) if x.dim() == 2 else x
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise UserError(f"{where}: expected a C×H×W image with 1 or 3 channels, got shape {tuple(x.shape)}")
    x = x.expand(3, -1, -1) if x.shape[0] == 1 else x
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise UserError(f"{where}: integer images must be uint8, got {x.dtype}")
    if x.min() < 0 or x.max() > 1:
        raise UserError(
            f"{where}: values {x.min():.3g}..{x.max():.3g} are not in [0, 1]; return unnormalised "
            f"images (drop Normalize: normalisation belongs to the backbone spec)"
        )
    return x.float()


def fit_image(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centre square an ImageFolder image keeps (short side to `size`, or to size/0.875 from
    64 px on, as in ImageNet evaluation; then a centre crop), resized to size×size."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    short = size if size < 64 else round(size / 0.875)
    side = max(1, round(min(h, w) * size / short))
    top, left = (h - side) // 2, (w - side) // 2
    return resize(x[None, :, top : top + side, left : left + side], size)[0]


def _same_dtype(items) -> bool:
    return len({x.dtype for x, _, _ in items}) == 1


def _string_list(values) -> list[str] | None:
    if isinstance(values, (list, tuple)) and values and all(isinstance(v, str) for v in values):
        return list(values)
    return None
