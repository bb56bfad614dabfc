"""Datasets by name: loading a dataset spec, and the built-in loaders.

A dataset spec is a registered name plus its loader's options (`{name: glyphs, per_class:
40}`); `load_dataset(spec, split, image_size)` loads and memoises it. Embedded data
(scikit-learn's `digits`, the procedural `glyphs`) needs no network; torchvision's CIFAR and
MNIST keep `download=` and `root=` for users who have the data. ImageFolder roots are in
`ctta.data.folders`, the user's own arrays and factories in `ctta.data.user`.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import UserError
from ..core.files import data_dir
from ..core.registry import DATASETS, register_dataset
from .images import ImageData


# --------------------------------------------------------------------------- loading by spec
@dataclass(frozen=True)
class DataSpec:
    """A dataset name plus its loader's options, e.g. {"name": "glyphs", "per_class": 40}."""

    name: str
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def parse(cls, spec) -> DataSpec:
        if isinstance(spec, DataSpec):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        if isinstance(spec, dict) and isinstance(spec.get("name"), str):
            opts = {k: v for k, v in spec.items() if k != "name"}
            return cls(spec["name"], tuple(sorted((k, frozen(v)) for k, v in opts.items())))
        raise UserError(f"dataset must be a name or a mapping with a 'name', got {spec!r}")

    def as_dict(self) -> dict:
        return {"name": self.name, **{k: thawed(v) for k, v in self.options}}


def frozen(v):
    """Lists as tuples, recursively (hashable option values, e.g. for caches)."""
    return tuple(frozen(x) for x in v) if isinstance(v, list) else v


def thawed(v):
    """The inverse of `frozen`."""
    return [thawed(x) for x in v] if isinstance(v, tuple) else v


def load_dataset(spec, split: str, image_size: int) -> ImageData:
    """Load split 'train' or 'test' of a dataset spec at `image_size`; memoised per process."""
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; valid choices: test, train")
    return _load_cached(DataSpec.parse(spec), split, int(image_size))


@functools.lru_cache(maxsize=16)
def _load_cached(spec: DataSpec, split: str, image_size: int) -> ImageData:
    loader = DATASETS.get(spec.name)
    options = {k: thawed(v) for k, v in spec.options}
    params = inspect.signature(loader).parameters
    valid = [p for p in params if p not in ("split", "image_size")]
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in options:
            if key not in valid:
                raise UserError(
                    f"dataset {spec.name!r}: unknown option {key!r}; valid options: {', '.join(valid)}"
                )
    data = loader(split=split, image_size=image_size, **options)
    data.origin = (spec, split, image_size)
    data.reload = functools.partial(_load_cached, spec, split, image_size)
    return data


def default_root(name: str) -> Path:
    """`$CTTA_DATA/<name>`, else `<cache>/data/<name>`."""
    return data_dir(name)


# --------------------------------------------------------------------------- embedded datasets
@register_dataset("digits")
def digits(*, split: str, image_size: int) -> ImageData:
    """scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes), upsampled.

    Split: a fixed stratified 70/30 train/test split (scikit-learn, random_state=0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)  # values are 0..16
    train_idx, test_idx = train_test_split(
        np.arange(len(images)), test_size=0.3, random_state=0, stratify=bunch.target
    )
    idx = train_idx if split == "train" else test_idx
    return ImageData.from_arrays(
        images[idx], bunch.target[idx], [str(d) for d in range(10)], name="digits", image_size=image_size
    )


@register_dataset("glyphs")
def glyphs(
    *,
    split: str,
    image_size: int,
    chars: str | list = "benchmark",
    domains: str | list = "benchmark",
    per_class: int = 20,
    test_per_class: int = 10,
    seed: int = 0,
) -> ImageData:
    """Procedural glyphs rendered from matplotlib's fonts (ctta.data.glyphs): classes are characters,
    domains are font families/styles with their colours and textures.

    `chars`: 'benchmark' (the benchmark character set), 'pretrain' (the disjoint set the
    offline backbones are pretrained on), or a string/list of characters. `domains`:
    'benchmark', 'pretrain', 'all' or a list of domain names. `per_class` / `test_per_class`
    images per class and domain; train and test are rendered from different seeds. Class
    names are the Unicode character names ("latin capital letter a")."""
    from . import glyphs as g

    char_sets = {"benchmark": g.BENCHMARK_CHARS, "pretrain": g.PRETRAIN_CHARS}
    domain_sets = {
        "benchmark": g.BENCHMARK_DOMAINS,
        "pretrain": g.PRETRAIN_DOMAINS,
        "all": g.BENCHMARK_DOMAINS + g.PRETRAIN_DOMAINS,
    }
    char_list = tuple(char_sets.get(chars, chars)) if isinstance(chars, str) else tuple(chars)
    domain_list = (
        tuple(domain_sets[domains]) if isinstance(domains, str) and domains in domain_sets else domains
    )
    domain_list = (domain_list,) if isinstance(domain_list, str) else tuple(domain_list)
    unknown = [d for d in domain_list if d not in g.DOMAINS]
    if unknown:
        raise UserError(
            f"glyphs: unknown domain {unknown[0]!r}; valid choices: {', '.join(domain_sets)}, "
            f"{', '.join(g.DOMAINS)}"
        )
    n = per_class if split == "train" else test_per_class
    gs = g.load_glyphs(char_list, domain_list, n, size=image_size, seed=2 * seed + (split == "test"))
    return ImageData.from_arrays(
        gs.images,
        gs.labels,
        [g.char_name(c) for c in gs.chars],
        name="glyphs",
        domains=gs.domains,
        domain_names=gs.domain_names,
    )


# --------------------------------------------------------------------------- real datasets
def _torchvision(cls_name: str, name: str, *, split: str, image_size: int, root, download: bool) -> ImageData:
    import torchvision

    root = Path(root) if root else default_root(name)
    try:
        ds = getattr(torchvision.datasets, cls_name)(str(root), train=split == "train", download=download)
    except RuntimeError as exc:
        raise UserError(
            f"{name} not found under {root} ({exc}); pass download=true (needs network) "
            f"or root=<folder holding it>"
        ) from None
    images = np.asarray(ds.data)
    return ImageData.from_arrays(
        images, np.asarray(ds.targets), list(ds.classes), name=name, image_size=image_size
    )


@register_dataset("cifar10")
def cifar10(*, split: str, image_size: int, root: str | None = None, download: bool = False) -> ImageData:
    """CIFAR-10 through torchvision (Krizhevsky 2009)."""
    return _torchvision(
        "CIFAR10", "cifar10", split=split, image_size=image_size, root=root, download=download
    )


@register_dataset("cifar100")
def cifar100(*, split: str, image_size: int, root: str | None = None, download: bool = False) -> ImageData:
    """CIFAR-100 through torchvision (Krizhevsky 2009)."""
    return _torchvision(
        "CIFAR100", "cifar100", split=split, image_size=image_size, root=root, download=download
    )


@register_dataset("mnist")
def mnist(*, split: str, image_size: int, root: str | None = None, download: bool = False) -> ImageData:
    """MNIST through torchvision (LeCun et al. 1998)."""
    return _torchvision("MNIST", "mnist", split=split, image_size=image_size, root=root, download=download)
