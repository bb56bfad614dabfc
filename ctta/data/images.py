"""Labelled image data in memory or in files: the one dataset type every scenario streams,
resizing and batching.

Every dataset yields float images in [0, 1] (C×H×W, one size per dataset) and int64 labels;
input normalisation belongs to the backbone, so corruptions act on raw [0, 1] images as in
ImageNet-C.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..core.errors import UserError, choices_error, few
from ..core.files import content_key


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
        # Set by load_dataset: (DataSpec, split, image_size), and how to load the data again
        # (a picklable callable), so that views pickle as references to their dataset.
        self.origin: tuple | None = None
        self.reload: Callable[[], ImageData] | None = None
        self.kept_classes: tuple[int, ...] | None = None  # set by relabel(): original ids in new label order
        # ImageNet-1k class index of each class, when the classes are ImageNet wnids (ImageNet-R's
        # 200, ImageNet-C's 1000): a trained 1000-way head is restricted to them (ctta.data.released).
        self.imagenet_classes: tuple[int, ...] | None = None
        # Key of what derived data (transformed domains) came from: identity() without hashing images
        self.derivation: str | None = None

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
            check_pixels(x, name)
        if image_size is not None and (x.shape[-2], x.shape[-1]) != (image_size, image_size):
            x = torch.cat([resize(chunk, image_size) for chunk in x.split(1024)])  # bounded float memory
        labels = np.asarray(labels, dtype=np.int64)
        if len(labels) != len(x):
            raise UserError(f"{name}: {len(x)} images but {len(labels)} labels")
        if class_names is None:
            class_names = [str(c) for c in range(max(int(labels.max(initial=-1)), 0) + 1)]
        check_labels(labels, len(class_names), name)
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
        check_labels(np.asarray(labels, dtype=np.int64), len(class_names), name)
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
        view.origin, view.reload, view.kept_classes = self.origin, self.reload, self.kept_classes
        view.imagenet_classes = self.imagenet_classes
        view.derivation = self.derivation
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
        view.origin, view.reload, view.derivation = self.origin, self.reload, self.derivation
        base = self.kept_classes
        view.kept_classes = tuple(classes) if base is None else tuple(base[c] for c in classes)
        if self.imagenet_classes is not None:
            view.imagenet_classes = tuple(self.imagenet_classes[c] for c in classes)
        return view

    def identity(self) -> str:
        """Content key of this view: where the data came from (or its bytes) and which samples."""
        if self.derivation is not None:
            base = {"derived": self.derivation}
        elif self.origin is not None:
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
        if self.reload is not None:
            return _rebuild_view, (self.reload, self.kept_classes, self.indices)
        return super().__reduce__()

    def with_classes(self, classes: Sequence[int]) -> ImageData:
        return self.subset(np.isin(self.targets, np.asarray(classes)))

    def with_domains(self, domains: Sequence[str]) -> ImageData:
        """The samples of the named domains (a dataset that records domains)."""
        unknown = [d for d in domains if d not in self.domain_names]
        if self.domains is None or unknown:
            raise choices_error(f"domain of {self.name}", (unknown or list(domains))[0], self.domain_names)
        return self.subset(np.isin(self.domains, [self.domain_names.index(d) for d in domains]))

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


# --------------------------------------------------------------------------- checks on loading
def check_pixels(x: torch.Tensor, where: str, positions: Sequence[int] | None = None) -> None:
    """UserError naming the images of a float batch [N, ...] with NaN/inf pixels or pixels
    outside [0, 1] (by their position in `x`, or `positions[i]`), so that broken data fails
    when it is loaded, not later as a method's "non-finite logits"."""
    if x.dtype == torch.uint8 or not len(x):
        return
    flat = x.reshape(len(x), -1)
    name = (lambda i: i) if positions is None else (lambda i: positions[i])
    finite = torch.isfinite(flat).all(1)
    if not finite.all():
        bad = [name(int(i)) for i in torch.nonzero(~finite).flatten()]
        raise UserError(f"{where}: non-finite pixel values (NaN or inf) in images {few(bad)}")
    low, high = flat.amin(1), flat.amax(1)
    outside = (low < 0) | (high > 1)
    if outside.any():
        bad = [name(int(i)) for i in torch.nonzero(outside).flatten()]
        raise UserError(
            f"{where}: float images must lie in [0, 1] (got {low.min():.3g}..{high.max():.3g}, in images "
            f"{few(bad)}); give unnormalised images (no Normalize: normalisation belongs to the backbone spec)"
        )


def check_labels(labels: np.ndarray, count: int, where: str, kind: str = "class") -> None:
    """UserError naming the samples whose class (or domain) id is outside 0..count-1."""
    bad = np.flatnonzero((labels < 0) | (labels >= count))
    if len(bad):
        raise UserError(
            f"{where}: {len(bad)} samples have a {kind} id outside 0..{count - 1} ({count} {kind} names): "
            f"samples {few(bad.tolist())}; ids {few(np.unique(labels[bad]).tolist())}"
        )


def check_trained_classes(train: ImageData, test: ImageData, where: str) -> None:
    """UserError when test samples belong to classes that the training data lacks (a model
    cannot learn them: prototypes of an empty class are NaN, heads stay untrained)."""
    missing = np.setdiff1d(np.unique(test.targets), np.unique(train.targets))
    if len(missing):
        names = [repr(test.class_names[c]) if c < test.num_classes else str(int(c)) for c in missing]
        samples = test.indices[np.isin(test.targets, missing)]
        raise UserError(
            f"{where}: {test.name}: classes {few(names)} have test images but no training images "
            f"(test samples {few(samples.tolist())}); no model can learn them"
        )


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


def _rebuild_view(
    reload: Callable[[], ImageData], kept_classes: tuple | None, indices: np.ndarray
) -> ImageData:
    base = reload()
    if kept_classes is not None:
        base = base.relabel(kept_classes)
    return base._view(indices)
