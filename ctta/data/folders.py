"""Images in class folders (ImageFolder layouts) and the named presets for the usual roots
(CUB-200, miniImageNet, PACS, OfficeHome, DomainNet, CORe50; ImageNet-R, -A and -Sketch are in
`ctta.data.released`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..core.errors import NoTrainingSplit, UserError
from ..core.registry import register_dataset
from .datasets import default_root
from .images import ImageData
from .splits import holdout_split

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")


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

    `test_fraction=1` makes every image test data (a test set such as ImageNet-A, streamed
    whole by test-time scenarios); such a folder has no training split.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(
            f"image folder root {base} does not exist; download the dataset and pass root=<its folder>"
        )
    name = base.name
    if test_fraction >= 1 and split == "train":
        raise NoTrainingSplit(
            f"{name}: test_fraction=1 makes the whole folder the test split; it has no training split"
        )
    if domains:
        paths, labels, doms, classes = [], [], [], None
        for d, dom in enumerate(domains):
            p, lab, classes = scan_folder(base / dom, classes)
            paths += p
            labels += lab
            doms += [d] * len(p)
        keys = np.asarray(labels) * len(domains) + np.asarray(doms)
        keep = holdout_split(keys, split, test_fraction, split_seed)
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
    keep = holdout_split(labels, split, test_fraction, split_seed)
    return ImageData.from_files(
        [paths[i] for i in keep], np.asarray(labels)[keep], classes, image_size=image_size, name=name
    )


def folder_preset(name: str, how: str, finish: Callable[[ImageData], ImageData] | None = None, **fixed):
    """Register dataset `name`: `imagefolder` on `root` (default `$CTTA_DATA/<name>`) with the
    options `fixed` (the user's override them); `finish` checks or annotates what it loads."""

    def loader(*, split: str, image_size: int, root: str | None = None, **options) -> ImageData:
        folder = Path(root).expanduser() if root else default_root(name)
        if not folder.is_dir():
            raise UserError(f"{name} not found at {folder}: {how}; then pass root=<folder> or set $CTTA_DATA")
        data = imagefolder(split=split, image_size=image_size, root=str(folder), **{**fixed, **options})
        return finish(data) if finish else data

    loader.__doc__ = f"{name} from an ImageFolder root. {how}."
    return register_dataset(name)(loader)


folder_preset(
    "cub200",
    "arrange CUB_200_2011 as root/train/<class>/ and root/test/<class>/ using its train_test_split.txt",
)
folder_preset(
    "miniimagenet",
    "arrange miniImageNet (the 100 classes of TOPIC/CEC's few-shot split) as root/train/<wnid>/ and "
    "root/test/<wnid>/ following CEC's train.csv and test.csv",
)
folder_preset(
    "pacs",
    "download PACS (DomainBed's download script) to root/<domain>/<class>/",
    domains=["art_painting", "cartoon", "photo", "sketch"],
)
folder_preset(
    "officehome",
    "download OfficeHome (DomainBed's download script) to root/<domain>/<class>/",
    domains=["Art", "Clipart", "Product", "Real World"],
)
folder_preset(
    "domainnet",
    "download DomainNet (DomainBed's download script) to root/<domain>/<class>/",
    domains=["clipart", "infograph", "painting", "quickdraw", "real", "sketch"],
)
folder_preset(
    "core50",
    "arrange CORe50 (the 128x128 cropped images, Lomonaco & Maltoni, CoRL 2017) as "
    "root/<session>/<object>/ with sessions s1..s11 and objects o1..o50",
    domains=[f"s{i}" for i in range(1, 12)],
)
