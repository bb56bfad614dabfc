"""Labelled image data: one in-memory/on-disk dataset type, the registered loaders, batching.

Every dataset yields float images in [0, 1] (C×H×W, one size per dataset) and int64 labels;
input normalisation belongs to the backbone, so corruptions act on raw [0, 1] images as in
ImageNet-C. Embedded data (scikit-learn's `digits`, the procedural `glyphs`) needs no
network; the real loaders (torchvision CIFAR/MNIST, ImageFolder roots) keep `download=` and
`root=` for users who have the data.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ._cache import cache_dir, content_key
from .errors import UserError
from .registry import DATASETS, register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------- storage
class _Arrays:
    """Images held as a uint8 tensor [N, C, H, W] (or float in [0, 1])."""

    fingerprint: str | None = None  # of the user files the images came from (see ImageData.identity)

    def __init__(self, images: torch.Tensor):
        self.images = images

    def load(self, idx: np.ndarray) -> torch.Tensor:
        x = self.images[torch.as_tensor(idx, dtype=torch.long)]
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float()

    def key(self, i: int) -> bytes:
        return self.images[i].numpy().tobytes()


class _Files:
    """Images read from files on access, resized (short side) and centre-cropped to `size`."""

    fingerprint: str | None = None

    def __init__(self, paths: Sequence[str], size: int):
        self.paths = list(paths)
        self.size = size

    def load(self, idx: np.ndarray) -> torch.Tensor:
        return torch.stack([self._read(self.paths[i]) for i in idx])

    def _read(self, path: str) -> torch.Tensor:
        from PIL import Image

        with Image.open(path) as im:
            im = im.convert("RGB")
            # ImageNet evaluation convention: resize to size/0.875 then centre crop.
            short = self.size if self.size < 64 else int(round(self.size / 0.875))
            w, h = im.size
            scale = short / min(w, h)
            im = im.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BILINEAR)
            w, h = im.size
            left, top = (w - self.size) // 2, (h - self.size) // 2
            im = im.crop((left, top, left + self.size, top + self.size))
            x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        return x.view(self.size, self.size, 3).permute(2, 0, 1).float().div_(255)

    def key(self, i: int) -> bytes:
        return Path(self.paths[i]).read_bytes()


class ImageData(torch.utils.data.Dataset):
    """Labelled images: `data[i] -> (x [C, H, W] float in [0, 1], y int)`; `subset` is cheap."""

    def __init__(
        self,
        storage,
        targets: np.ndarray,
        class_names: Sequence[str],
        *,
        name: str,
        domains: np.ndarray | None = None,
        domain_names: Sequence[str] = (),
        indices: np.ndarray | None = None,
    ):
        self._storage = storage
        self._all_targets = np.asarray(targets, dtype=np.int64)
        self._all_domains = None if domains is None else np.asarray(domains, dtype=np.int64)
        self.indices = np.arange(len(self._all_targets)) if indices is None else np.asarray(indices, np.int64)
        self.class_names = tuple(class_names)
        self.domain_names = tuple(domain_names)
        self.name = name
        self.origin: tuple | None = None  # (DataSpec, split, image_size) when made by load_dataset
        self.kept_classes: tuple[int, ...] | None = None  # set by relabel(): original ids in new label order

    @classmethod
    def from_arrays(
        cls,
        images,
        labels,
        class_names: Sequence[str] | None = None,
        *,
        name: str = "arrays",
        domains=None,
        domain_names: Sequence[str] = (),
        image_size: int | None = None,
        fingerprint: str | None = None,
    ) -> ImageData:
        """Images as N×H×W×C uint8, N×C×H×W uint8/float in [0, 1], or N×H×W grey; resized when asked.
        `fingerprint` identifies the files they came from (size and mtime), so caches follow them."""
        x = torch.as_tensor(np.asarray(images))
        if x.ndim == 3:
            x = x.unsqueeze(1)
        elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.permute(0, 3, 1, 2)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise UserError(
                f"{name}: images must be N×H×W×C or N×C×H×W with 1 or 3 channels, got {tuple(x.shape)}"
            )
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.dtype != torch.uint8:
            x = x.float()
            if x.min() < 0 or x.max() > 1:
                raise UserError(f"{name}: float images must lie in [0, 1] (got {x.min():.3g}..{x.max():.3g})")
        if image_size is not None and (x.shape[-2], x.shape[-1]) != (image_size, image_size):
            x = torch.cat([resize(chunk, image_size) for chunk in x.split(1024)])  # bounded float memory
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(x):
            raise UserError(f"{name}: {len(x)} images but {len(labels)} labels")
        if class_names is None:
            class_names = [str(c) for c in range(int(labels.max()) + 1)]
        storage = _Arrays(x.contiguous())
        storage.fingerprint = fingerprint
        return cls(storage, labels, class_names, name=name, domains=domains, domain_names=domain_names)

    @classmethod
    def from_files(
        cls,
        paths: Sequence[str],
        labels,
        class_names: Sequence[str],
        *,
        image_size: int,
        name: str,
        domains=None,
        domain_names: Sequence[str] = (),
    ) -> ImageData:
        storage = _Files(paths, image_size)
        storage.fingerprint = files_fingerprint(paths)
        return cls(storage, labels, class_names, name=name, domains=domains, domain_names=domain_names)

    # -- views -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        j = self.indices[i]
        return self._storage.load(np.array([j]))[0], int(self._all_targets[j])

    @property
    def targets(self) -> np.ndarray:
        return self._all_targets[self.indices]

    @property
    def domains(self) -> np.ndarray | None:
        return None if self._all_domains is None else self._all_domains[self.indices]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, positions) -> ImageData:
        """The samples at `positions` (indices or a boolean mask) of this view."""
        positions = np.asarray(positions)
        if positions.dtype == bool:
            positions = np.flatnonzero(positions)
        return self._view(self.indices[positions])

    def _view(self, indices: np.ndarray) -> ImageData:
        view = ImageData(
            self._storage,
            self._all_targets,
            self.class_names,
            name=self.name,
            domains=self._all_domains,
            domain_names=self.domain_names,
            indices=indices,
        )
        view.origin, view.kept_classes = self.origin, self.kept_classes
        return view

    def union(self, *others: ImageData) -> ImageData:
        """This view plus other views of the same dataset (e.g. all tasks' training data so far)."""
        if any(o._storage is not self._storage or o.kept_classes != self.kept_classes for o in others):
            raise ValueError("union() needs views of the same dataset with the same labels")
        return self._view(np.concatenate([self.indices, *(o.indices for o in others)]))

    def relabel(self, classes: Sequence[int]) -> ImageData:
        """Keep the samples of `classes` and give class `classes[i]` the label i (class order of a stream)."""
        classes = [int(c) for c in classes]
        mapping = np.full(max(self._all_targets.max(), max(classes)) + 1, -1, dtype=np.int64)
        mapping[classes] = np.arange(len(classes))
        view = ImageData(
            self._storage,
            mapping[self._all_targets],
            [self.class_names[c] for c in classes],
            name=self.name,
            domains=self._all_domains,
            domain_names=self.domain_names,
            indices=self.indices[np.isin(self._all_targets[self.indices], classes)],
        )
        view.origin = self.origin
        base = self.kept_classes
        view.kept_classes = tuple(classes) if base is None else tuple(base[c] for c in classes)
        return view

    def identity(self) -> str:
        """Content key of this view: where the data came from (or its bytes) and which samples."""
        if self.origin is not None:
            spec, split, size = self.origin
            base = {"data": spec.as_dict(), "split": split, "image_size": size}
            if self._storage.fingerprint is not None:  # user files: caches follow their content
                base["files"] = self._storage.fingerprint
        else:
            base = {
                "bytes": hashlib.sha1(
                    b"".join(self._storage.key(i) for i in range(len(self._all_targets)))
                ).hexdigest()
            }
        return content_key(
            {
                **base,
                "indices": hashlib.sha1(self.indices.tobytes()).hexdigest(),
                "classes": self.kept_classes,
            }
        )

    def __reduce__(self):
        # Data loaded by spec pickles as a reference (checkpoints and worker processes stay small).
        if self.origin is not None:
            return _rebuild_view, (self.origin, self.kept_classes, self.indices)
        return super().__reduce__()

    def with_classes(self, classes: Sequence[int]) -> ImageData:
        return self.subset(np.isin(self.targets, np.asarray(classes)))

    def load(self, positions) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch of the samples at `positions`: (x float [B, C, H, W], y long [B])."""
        idx = self.indices[np.asarray(positions)]
        return self._storage.load(idx), torch.as_tensor(self._all_targets[idx])

    def source_paths(self) -> list[str] | None:
        """File of every sample of this view (None for in-memory data): to match index lists."""
        if not isinstance(self._storage, _Files):
            return None
        return [self._storage.paths[j] for j in self.indices]

    def sample_keys(self) -> list[str]:
        """Content hash per sample (image bytes; file bytes for folders), to prove disjointness."""
        return [hashlib.sha1(self._storage.key(int(j))).hexdigest() for j in self.indices]

    def describe(self) -> str:
        return f"{self.name}: {len(self)} images, {len(np.unique(self.targets))} classes"


def files_fingerprint(paths: Sequence[str | Path]) -> str:
    """Key of a set of files from their paths, sizes and modification times (no reading)."""
    stats = [os.stat(p) for p in paths]
    return content_key([(str(p), st.st_size, st.st_mtime_ns) for p, st in zip(paths, stats)])


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 or float images to size×size (antialiased when shrinking); keeps the dtype."""
    dtype = x.dtype
    y = F.interpolate(
        x.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=size < x.shape[-1]
    )
    return y.round().clamp(0, 255).to(torch.uint8) if dtype == torch.uint8 else y.clamp(0, 1)


def iterate(
    data: ImageData,
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    drop_last: bool = False,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of `data` on `device`. In-memory data is sliced directly (no per-sample
    Python overhead); file data goes through a DataLoader with worker processes."""
    n = len(data)
    order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    if isinstance(data._storage, _Arrays):
        for start in range(0, stop, batch_size):
            x, y = data.load(order[start : start + batch_size])
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        return
    batches = [order[s : s + batch_size] for s in range(0, stop, batch_size)]
    loader = torch.utils.data.DataLoader(
        _Batched(data),
        batch_size=None,
        sampler=batches,
        num_workers=min(8, os.cpu_count() or 1),
        pin_memory=torch.device(device).type == "cuda",
    )
    for x, y in loader:
        yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


class _Batched(torch.utils.data.Dataset):
    """Adapter so that a DataLoader worker loads a whole batch of positions at once."""

    def __init__(self, data: ImageData):
        self.data = data

    def __getitem__(self, positions):
        return self.data.load(positions)


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
            return cls(spec["name"], tuple(sorted((k, _freeze(v)) for k, v in opts.items())))
        raise UserError(f"dataset must be a name or a mapping with a 'name', got {spec!r}")

    def as_dict(self) -> dict:
        return {"name": self.name, **{k: _thaw(v) for k, v in self.options}}


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _thaw(v):
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v


def load_dataset(spec, split: str, image_size: int) -> ImageData:
    """Load split 'train' or 'test' of a dataset spec at `image_size`; memoised per process."""
    if split not in ("train", "test"):
        raise UserError(f"unknown split {split!r}; valid choices: test, train")
    return _load_cached(DataSpec.parse(spec), split, int(image_size))


def _rebuild_view(origin: tuple, kept_classes: tuple | None, indices: np.ndarray) -> ImageData:
    base = _load_cached(*origin)
    if kept_classes is not None:
        base = base.relabel(kept_classes)
    return base._view(indices)


@functools.lru_cache(maxsize=16)
def _load_cached(spec: DataSpec, split: str, image_size: int) -> ImageData:
    loader = DATASETS.get(spec.name)
    options = {k: _thaw(v) for k, v in spec.options}
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
    return data


def default_root(name: str) -> Path:
    """`$CTTA_DATA/<name>`, else `<cache>/data/<name>`."""
    base = Path(os.environ["CTTA_DATA"]) if os.environ.get("CTTA_DATA") else cache_dir() / "data"
    return base / name


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
    """Procedural glyphs rendered from matplotlib's fonts (ctta.glyphs): classes are characters,
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


def scan_folder(root: Path, classes: Sequence[str] | None = None) -> tuple[list[str], list[int], list[str]]:
    """ImageFolder layout `root/<class>/<image>`: (paths, labels, class names), sorted."""
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    classes = list(classes) if classes else sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UserError(f"image folder {root} has no class subfolders (expected root/<class>/<image>)")
    paths, labels = [], []
    for label, cls in enumerate(classes):
        folder = root / cls
        files = (
            sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
            if folder.is_dir()
            else []
        )
        paths += [str(p) for p in files]
        labels += [label] * len(files)
    if not paths:
        raise UserError(f"image folder {root} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    return paths, labels, classes


def _holdout_split(labels: Sequence[int], split: str, test_fraction: float, seed: int) -> np.ndarray:
    """Stratified deterministic split for datasets that ship without one (e.g. ImageNet-R)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen = rng.choice(members, size=int(round(len(members) * test_fraction)), replace=False)
        test[chosen] = True
    return np.flatnonzero(test if split == "test" else ~test)


@register_dataset("imagefolder")
def imagefolder(
    *,
    split: str,
    image_size: int,
    root: str,
    train_dir: str = "train",
    test_dir: str = "test",
    domains: list | None = None,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> ImageData:
    """Images in class folders. Layouts, tried in order:

    - `root/<train_dir>/<class>/*` and `root/<test_dir>/<class>/*` (e.g. CUB-200 prepared as train/test);
    - `root/<domain>/<class>/*` when `domains` is given (PACS, OfficeHome, DomainNet): every
      domain is loaded, the domain of each image is recorded, and train/test is a stratified
      holdout of `test_fraction` per domain and class;
    - `root/<class>/*` (ImageNet-R): a stratified holdout of `test_fraction`.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(
            f"image folder root {base} does not exist; download the dataset and pass root=<its folder>"
        )
    name = base.name
    if domains:
        paths, labels, doms, classes = [], [], [], None
        for d, dom in enumerate(domains):
            p, lab, classes = scan_folder(base / dom, classes)
            paths += p
            labels += lab
            doms += [d] * len(p)
        keys = np.asarray(labels) * len(domains) + np.asarray(doms)
        keep = _holdout_split(keys, split, test_fraction, split_seed)
        return ImageData.from_files(
            [paths[i] for i in keep],
            np.asarray(labels)[keep],
            classes,
            image_size=image_size,
            name=name,
            domains=np.asarray(doms)[keep],
            domain_names=domains,
        )
    sub = base / (train_dir if split == "train" else test_dir)
    if sub.is_dir():
        paths, labels, classes = scan_folder(
            sub, sorted(d.name for d in (base / train_dir).iterdir() if d.is_dir())
        )
        return ImageData.from_files(paths, labels, classes, image_size=image_size, name=name)
    paths, labels, classes = scan_folder(base)
    keep = _holdout_split(labels, split, test_fraction, split_seed)
    return ImageData.from_files(
        [paths[i] for i in keep], np.asarray(labels)[keep], classes, image_size=image_size, name=name
    )


def _folder_preset(name: str, how: str, **fixed):
    def loader(*, split: str, image_size: int, root: str | None = None, **options) -> ImageData:
        folder = Path(root).expanduser() if root else default_root(name)
        if not folder.is_dir():
            raise UserError(f"{name} not found at {folder}: {how}; then pass root=<folder> or set $CTTA_DATA")
        return imagefolder(split=split, image_size=image_size, root=str(folder), **{**fixed, **options})

    loader.__doc__ = f"{name} from an ImageFolder root. {how}."
    return register_dataset(name)(loader)


_folder_preset(
    "imagenet_r",
    "download imagenet-r.tar from https://github.com/hendrycks/imagenet-r and unpack it "
    "(root/<wnid>/*.jpg; 80/20 split by seed as in PILOT)",
)
_folder_preset(
    "cub200",
    "arrange CUB_200_2011 as root/train/<class>/ and root/test/<class>/ using its train_test_split.txt",
)
_folder_preset(
    "miniimagenet",
    "arrange miniImageNet (the 100 classes of TOPIC/CEC's few-shot split) as root/train/<wnid>/ and "
    "root/test/<wnid>/ following CEC's train.csv and test.csv",
)
_folder_preset(
    "pacs",
    "download PACS (DomainBed's download script) to root/<domain>/<class>/",
    domains=["art_painting", "cartoon", "photo", "sketch"],
)
_folder_preset(
    "officehome",
    "download OfficeHome (DomainBed's download script) to root/<domain>/<class>/",
    domains=["Art", "Clipart", "Product", "Real World"],
)
_folder_preset(
    "domainnet",
    "download DomainNet (DomainBed's download script) to root/<domain>/<class>/",
    domains=["clipart", "infograph", "painting", "quickdraw", "real", "sketch"],
)
