"""Released test sets read as published, so that numbers compare with the papers that used the
same files.

Corruption benchmarks (Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR 2019):

- `cifar10c`, `cifar100c`: `<root>/<corruption>.npy`, 5 severities x 10,000 images
  (N×32×32×3 uint8, severity-major: rows 0-9,999 are severity 1, ...), and `<root>/labels.npy`
  (the 10,000 test labels once per severity);
- `tiny_imagenet_c`, `imagenet_c`: `<root>/<corruption>/<severity>/<wnid>/*.JPEG`.

Each is a dataset whose test split is one `corruption` at one `severity` (options); corruption
`none` (or severity 0) is the clean set the release was made from, at `clean_root` (CIFAR: the
torchvision root of CIFAR-10/100; ImageNet: the val folder `<wnid>/*.JPEG`; Tiny-ImageNet: its
val images in `<wnid>/` folders). Every variant holds the same pictures in the same order (row i
of each severity block; the same `<wnid>/<file>` in each folder), so position i is one picture
under every corruption: the corruption scenario streams positions and reads each from the
variant its segment asks for (`Release`), and `Release.images` checks that this holds. A
release has no training split: the clean set is the stream's own pictures, fit for statistics
(EATA's Fisher) but never for training a source model.

Natural-shift test sets, `<root>/<wnid>/*` (ImageNet's evaluation crop, as RobustBench):
`imagenet_r` (Hendrycks et al., ICCV 2021) and `imagenet_a` (Hendrycks et al., CVPR 2021), 200
classes each, and `imagenet_sketch` (Wang et al., NeurIPS 2019), 1,000. Classes are the wnids
found, sorted, and must belong to the set's classes.

Every dataset here whose classes are ImageNet wnids records their ImageNet-1k indices
(`ImageData.imagenet_classes`): the engine restricts a trained 1000-way head to them, which
gives the logits the official evaluations mask to (`ctta.data.imagenet_classes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import NoTrainingSplit, UserError, few
from ..core.registry import register_dataset
from . import imagenet_classes as inc
from .corruptions import ALL_CORRUPTIONS
from .datasets import DataSpec, default_root, load_dataset, thawed
from .folders import folder_preset, scan_folder
from .images import ImageData, _Files, files_fingerprint, resize

SEVERITIES = (1, 2, 3, 4, 5)
CLEAN = "none"  # the corruption name of the clean images

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
# CIFAR-100's fine labels are its class names in alphabetical order.
CIFAR100_CLASSES = tuple(
    sorted(
        """apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus
        butterfly camel can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch
        crab crocodile cup dinosaur dolphin elephant flatfish forest fox girl hamster house kangaroo
        keyboard lamp lawn_mower leopard lion lizard lobster man maple_tree motorcycle mountain mouse
        mushroom oak_tree orange orchid otter palm_tree pear pickup_truck pine_tree plain plate poppy
        porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk skyscraper
        snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television
        tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm""".split()
    )
)


@dataclass(frozen=True)
class _Benchmark:
    """What a corruption release looks like on disk."""

    name: str
    layout: str  # the expected layout, for errors
    clean: str  # what clean_root holds
    clean_dataset: str | None = None  # npy releases: the torchvision dataset of the clean set
    classes: tuple[str, ...] = ()  # npy releases: class names
    wnids: tuple[int, ...] | None = None  # folder releases: the ImageNet-1k classes it may hold

    def where(self, root: Path) -> str:
        return f"{self.name} root {root}: expected {self.layout}"


BENCHMARKS = {
    "cifar10c": _Benchmark(
        "cifar10c",
        "<root>/<corruption>.npy (5 x 10000 images, N×32×32×3 uint8, severity-major) and "
        "<root>/labels.npy (50000 labels)",
        "the torchvision root of CIFAR-10 (its test set)",
        clean_dataset="cifar10",
        classes=CIFAR10_CLASSES,
    ),
    "cifar100c": _Benchmark(
        "cifar100c",
        "<root>/<corruption>.npy (5 x 10000 images, N×32×32×3 uint8, severity-major) and "
        "<root>/labels.npy (50000 labels)",
        "the torchvision root of CIFAR-100 (its test set)",
        clean_dataset="cifar100",
        classes=CIFAR100_CLASSES,
    ),
    "tiny_imagenet_c": _Benchmark(
        "tiny_imagenet_c",
        "<root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG (Tiny-ImageNet's 200 wnids)",
        "Tiny-ImageNet's val images arranged as <clean_root>/<wnid>/*.JPEG",
        wnids=inc.TINY_IMAGENET,
    ),
    "imagenet_c": _Benchmark(
        "imagenet_c",
        "<root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG (ImageNet-1k wnids)",
        "the ImageNet val folder, <clean_root>/<wnid>/*.JPEG",
        wnids=tuple(range(1000)),
    ),
}


# --------------------------------------------------------------------------- storages
class _NpyRows:
    """Rows [start, start + count) of a release's .npy (N×H×W×3 uint8), memory-mapped on first
    access in each process (a pickled copy carries only the path), resized to `size` per batch.
    A sample's key is its position, the same picture under every corruption."""

    fingerprint: str | None = None

    def __init__(self, path: Path, start: int, count: int, size: int, name: str):
        self.path, self.start, self.count, self.size, self.name = path, start, count, size, name
        self._rows: np.ndarray | None = None

    def __getstate__(self):
        return {**self.__dict__, "_rows": None}

    def load(self, idx: np.ndarray) -> torch.Tensor:
        if self._rows is None:
            self._rows = np.load(self.path, mmap_mode="r")
        x = torch.from_numpy(np.ascontiguousarray(self._rows[self.start + np.asarray(idx)])).permute(
            0, 3, 1, 2
        )
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = resize(x, self.size)
        return x.float().div_(255)

    def key(self, i: int) -> bytes:
        return f"{self.name}:{int(i)}".encode()


class _Pictures(_Files):
    """A folder release's files; a sample's key is its `<wnid>/<file>`, the same picture under
    every corruption and in the clean folder."""

    def __init__(self, paths: Sequence[str], size: int, base: Path, name: str):
        super().__init__(paths, size)
        self.relative = [str(Path(p).relative_to(base)) for p in paths]
        self.name = name

    def key(self, i: int) -> bytes:
        return f"{self.name}:{self.relative[i]}".encode()


# --------------------------------------------------------------------------- loading variants
def _root(name: str, root: str | None) -> Path:
    folder = Path(root).expanduser() if root else default_root(name)
    if not folder.is_dir():
        raise UserError(f"{BENCHMARKS[name].where(folder)}; the folder does not exist")
    return folder


def _labels(bench: _Benchmark, folder: Path) -> np.ndarray:
    """The labels of one severity block, checked: labels.npy repeats them once per severity."""
    file = folder / "labels.npy"
    if not file.is_file():
        raise UserError(f"{bench.where(folder)}; labels.npy is missing")
    try:
        labels = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{bench.where(folder)}; labels.npy is not a readable array ({exc})") from None
    n = len(labels) // len(SEVERITIES)
    blocks = labels.reshape(len(SEVERITIES), n) if labels.ndim == 1 and n and len(labels) % 5 == 0 else None
    if blocks is None or labels.dtype.kind not in "iu" or not (blocks == blocks[0]).all():
        raise UserError(
            f"{bench.where(folder)}; labels.npy holds {labels.dtype} {labels.shape}, not 5 equal blocks of labels"
        )
    if blocks.min() < 0 or blocks.max() >= len(bench.classes):
        raise UserError(f"{bench.where(folder)}; labels.npy has labels outside 0..{len(bench.classes) - 1}")
    return blocks[0].astype(np.int64)


def _npy_variant(bench: _Benchmark, folder: Path, corruption: str, severity: int, size: int) -> ImageData:
    labels = _labels(bench, folder)
    file = folder / f"{corruption}.npy"
    if not file.is_file():
        found = sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels")
        raise UserError(
            f"{bench.where(folder)}; {corruption}.npy is missing (corruptions found: {few(found)})"
        )
    try:
        rows = np.load(file, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise UserError(f"{bench.where(folder)}; {file.name} is not a readable array ({exc})") from None
    if rows.dtype != np.uint8 or rows.shape != (len(SEVERITIES) * len(labels), 32, 32, 3):
        raise UserError(
            f"{bench.where(folder)}; {file.name} holds {rows.dtype} {rows.shape}, "
            f"not uint8 ({len(SEVERITIES) * len(labels)}, 32, 32, 3) for {len(labels)} labels per severity"
        )
    storage = _NpyRows(file, (severity - 1) * len(labels), len(labels), size, bench.name)
    storage.fingerprint = files_fingerprint([file, folder / "labels.npy"])
    return ImageData(storage, labels, bench.classes, name=bench.name)


def _folder_images(bench: _Benchmark, folder: Path, where: str, size: int) -> ImageData:
    """The pictures of one folder `<wnid>/*` of a folder release (or its clean set)."""
    if not folder.is_dir():
        raise UserError(f"{where}; {folder} does not exist")
    allowed = inc.wnids()
    allowed = {allowed[i]: i for i in bench.wnids}
    found = sorted(d.name for d in folder.iterdir() if d.is_dir())
    unknown = [w for w in found if w not in allowed]
    if unknown or not found:
        raise UserError(
            f"{where}; {folder} holds {'folders ' + few(unknown) if unknown else 'no class folders'}"
        )
    try:
        paths, labels, classes = scan_folder(folder, found)
    except UserError as exc:
        raise UserError(f"{where}; {exc}") from None
    storage = _Pictures(paths, size, folder, bench.name)
    storage.fingerprint = files_fingerprint(paths)
    data = ImageData(storage, labels, classes, name=bench.name)
    data.imagenet_classes = tuple(allowed[w] for w in classes)
    return data


def _variant(
    name: str, split: str, image_size: int, root, clean_root, corruption: str, severity: int
) -> ImageData:
    bench = BENCHMARKS[name]
    if split == "train":
        raise NoTrainingSplit(
            f"{name} is a test set: it has no training split (stream it with the corruption scenario)"
        )
    if corruption == CLEAN or severity == 0:
        if not clean_root:
            raise UserError(f"{name}: corruption none streams the clean set: pass clean_root=<{bench.clean}>")
        if bench.clean_dataset:
            clean = load_dataset({"name": bench.clean_dataset, "root": clean_root}, "test", image_size)
            return ImageData(clean._storage, clean.targets, bench.classes, name=bench.name)
        folder = Path(clean_root).expanduser()
        return _folder_images(
            bench, folder, f"{name} clean_root {folder}: expected {bench.clean}", image_size
        )
    if corruption not in ALL_CORRUPTIONS or severity not in SEVERITIES:
        raise UserError(
            f"{name}: no corruption {corruption!r} at severity {severity}; valid choices: "
            f"{', '.join(ALL_CORRUPTIONS)} (or none) at severity 1..5"
        )
    folder = _root(name, root)
    if bench.clean_dataset:
        return _npy_variant(bench, folder, corruption, severity, image_size)
    if not (folder / corruption).is_dir():
        found = sorted(d.name for d in folder.iterdir() if d.is_dir())
        raise UserError(f"{bench.where(folder)}; {corruption}/ is missing (corruptions found: {few(found)})")
    return _folder_images(bench, folder / corruption / str(severity), bench.where(folder), image_size)


def _register(name: str, title: str) -> None:
    bench = BENCHMARKS[name]

    def loader(
        *,
        split: str,
        image_size: int,
        root: str | None = None,
        clean_root: str | None = None,
        corruption: str = CLEAN,
        severity: int = 5,
    ) -> ImageData:
        return _variant(name, split, image_size, root, clean_root, corruption, severity)

    loader.__doc__ = (
        f"{title} as released: {bench.layout}. The test split is `corruption` at `severity` "
        f"(none: the clean set at clean_root, {bench.clean}); no training split."
    )
    register_dataset(name)(loader)


_register("cifar10c", "CIFAR-10-C")
_register("cifar100c", "CIFAR-100-C")
_register("tiny_imagenet_c", "Tiny-ImageNet-C")
_register("imagenet_c", "ImageNet-C")


# --------------------------------------------------------------------------- the scenario's view
class Release:
    """A corruption release as the corruption scenario streams it: one picture per position,
    read under the corruption and severity each segment asks for."""

    def __init__(self, spec: DataSpec):
        self.spec, self.name = spec, spec.name
        options = dict(spec.options)
        for key in ("corruption", "severity"):
            if key in options:
                raise UserError(
                    f"dataset {spec.name!r}: leave out {key!r}; the corruption scenario's corruptions "
                    f"and severity choose what is streamed"
                )
        self.clean_root = thawed(options.get("clean_root"))

    def images(
        self, corruption: str, severity: int, image_size: int, like: ImageData | None = None
    ) -> ImageData:
        """Every picture of the release under `corruption` at `severity` (`none`: clean); with
        `like`, checked to hold the same pictures in the same order."""
        spec = {**self.spec.as_dict(), "corruption": corruption, "severity": severity}
        data = load_dataset(spec, "test", image_size)
        if like is not None:
            _check_same_pictures(data, like, f"{self.spec.name} {corruption}/{severity}")
        return data

    def clean(self, image_size: int) -> ImageData | None:
        """The clean set, when the spec gives clean_root."""
        return self.images(CLEAN, 0, image_size) if self.clean_root else None


def release_of(spec) -> Release | None:
    """The corruption release a dataset spec names, or None for any other dataset."""
    spec = DataSpec.parse(spec)
    return Release(spec) if spec.name in BENCHMARKS else None


def _check_same_pictures(data: ImageData, like: ImageData, where: str) -> None:
    keys = [data._storage.key(i) for i in range(len(data))] if isinstance(data._storage, _Pictures) else None
    same = len(data) == len(like) and np.array_equal(data.targets, like.targets)
    if same and keys is not None and isinstance(like._storage, _Pictures):
        same = keys == [like._storage.key(i) for i in range(len(like))]
    if not same:
        raise UserError(
            f"{where}: holds {len(data)} images that are not the {len(like)} pictures (same files and "
            f"labels, same order) of the release's other corruptions"
        )


# --------------------------------------------------------------------------- natural shifts
def _imagenet_subset(name: str, allowed: Sequence[int]):
    """`finish` of a natural-shift folder: its wnid classes, checked, and their ImageNet-1k indices."""

    def finish(data: ImageData) -> ImageData:
        index = {w: i for i, w in enumerate(inc.wnids())}
        unknown = [c for c in data.class_names if index.get(c) not in set(allowed)]
        if unknown:
            raise UserError(
                f"{name}: class folders {few(unknown)} are not among its {len(allowed)} ImageNet wnids "
                f"(expected <root>/<wnid>/*)"
            )
        data.imagenet_classes = tuple(index[c] for c in data.class_names)
        return data

    return finish


folder_preset(
    "imagenet_r",
    "download imagenet-r.tar from https://github.com/hendrycks/imagenet-r and unpack it (<root>/<wnid>/*.jpg, "
    "200 wnids); default: 80/20 split by seed as in PILOT; test_fraction=1 streams all of it (test-time)",
    finish=_imagenet_subset("imagenet_r", inc.IMAGENET_R),
)
folder_preset(
    "imagenet_a",
    "download imagenet-a.tar from https://github.com/hendrycks/natural-adv-examples and unpack it "
    "(<root>/<wnid>/*.jpg, 200 wnids); a test set (test_fraction=1)",
    finish=_imagenet_subset("imagenet_a", inc.IMAGENET_A),
    test_fraction=1.0,
)
folder_preset(
    "imagenet_sketch",
    "download ImageNet-Sketch from https://github.com/HaohanWang/ImageNet-Sketch (<root>/<wnid>/*.JPEG, "
    "1000 wnids); a test set (test_fraction=1)",
    finish=_imagenet_subset("imagenet_sketch", range(1000)),
    test_fraction=1.0,
)
