"""Datasets users bring as Python code: a factory `module.path:function` returning a torch
Dataset becomes an `ImageData` like every built-in dataset, so every scenario takes it as
its `dataset`. Labels and domains are read as for `arrays` (`ctta.data.arrays.to_ids`); a
dataset without its own train/test split is split by a stratified holdout.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..core.errors import UserError
from ..core.registry import DATASETS
from ..core.user_code import call, import_object, options_signature, parameters_of, source_fingerprint
from .arrays import to_ids
from .datasets import frozen, thawed
from .images import ImageData, check_pixels, resize
from .splits import holdout_split

IN_MEMORY_BYTES = 2**31  # factory datasets up to this size (uint8 at the run's image size) are held in memory


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
        key = tuple(sorted((k, frozen(v)) for k, v in options.items()))
        data = _from_factory(name, key, image_size, frozen(class_names), frozen(domain_names), in_memory)
        if mode == "holdout":
            d = data.domains
            strata = data.targets if d is None else data.targets * (int(d.max()) + 1) + d
            data = data.subset(holdout_split(strata, split, test_fraction, split_seed))
        return data

    load.__signature__ = options_signature(
        inspect.signature(load).parameters.values(), factory, hide=["train"]
    )
    load.__doc__ = factory.__doc__
    return load


@functools.lru_cache(maxsize=4)
def _from_factory(name, options, image_size, class_names, domain_names, in_memory) -> ImageData:
    """The factory's dataset as ImageData (memoised: a holdout split reads the data once)."""
    factory = import_object(name, f"dataset {name!r}")
    return from_torch_dataset(
        call(factory, {k: thawed(v) for k, v in options}, f"dataset {name!r}"),
        image_size=image_size,
        name=name,
        class_names=thawed(class_names),
        domain_names=thawed(domain_names),
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
        (None, ())
        if domains[0] is None
        else to_ids(domains, domain_names, f"dataset {name!r}: domains", "domain")
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
    x = to_chw(x, f"dataset {name!r}: item {i}")
    check_pixels(x[None], f"dataset {name!r}", positions=[i])  # before resizing clamps the values
    return fit_image(x, size), y, d


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
