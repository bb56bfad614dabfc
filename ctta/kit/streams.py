"""Building the streams scenarios yield: class- and domain-incremental task lists, and the
order and class proportions of test-time streams.

Class-incremental: class orders and task lists, shared by the class-incremental scenarios
(B0/Bm splits, few-shot class-incremental sessions).

Domain-incremental: one class set; task i brings the training data of domain i, and the
engine scores every domain's test data after every task (and before the first).

Test-time: a scenario decides *what* it streams (corrupted test images, an unseen domain);
this module decides *in which order* and *in which class proportions*, the same way for
every scenario, so label shift composes with any covariate shift:

- `iid`: a uniformly random order (the i.i.d. streams of Tent's tables);
- `class_sorted`: every sample of one class, then the next class (classes in a random
  order): the extreme label-correlated stream;
- `dirichlet`: the stream is cut into K time slots (K = number of classes, at most 100);
  each class spreads its samples over the slots in proportions drawn from Dir(δ, ..., δ)
  and within a slot the class groups follow each other in random order. Small δ puts each
  class in one slot (strongly correlated, close to class_sorted); large δ approaches an
  i.i.d. stream. This is the non-i.i.d. sampler of NOTE (Gong et al., NeurIPS 2022) and
  RoTTA (Yuan et al., CVPR 2023), used for LAME's non-i.i.d. benchmarks (Boudiaf et al.,
  CVPR 2022).
- prior shift (`zipf` > 0): the test set is subsampled so that class proportions follow
  Zipf's law, p_r ∝ r^(-s) over a random ranking of the classes, keeping as many samples as
  the rarest requirement allows (LAME's prior-shift scenario).

Every random choice takes a seed derived from the run seed, so every method sees the same
stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..api import ContinualStream, StreamInfo, Task
from ..core.config import hp
from ..core.errors import UserError
from ..core.seeding import derive_seed
from ..data.images import ImageData, check_trained_classes
from ..data.splits import per_class

ORDERS = ("iid", "class_sorted", "dirichlet")
MAX_SLOTS = 100


# A tiny glyph dataset with three domains: the debug instances of the domain scenarios share
# it, so a test session renders it once.
DEBUG_GLYPH_DOMAINS = {
    "name": "glyphs",
    "chars": "abcdefgh",
    "domains": ["sans", "serif", "mono"],
    "per_class": 4,
}


def stream_info(kind: str, data: ImageData, **fields) -> StreamInfo:
    """StreamInfo of a stream of `kind` over the classes of `data` (labels 0..K-1)."""
    return StreamInfo(kind=kind, num_classes=data.num_classes, class_names=data.class_names, **fields)


# --------------------------------------------------------------------------- class-incremental
def class_order(classes: list[int], seed: int) -> list[int]:
    """PyCIL's class order: a permutation of the pool drawn with NumPy's legacy seeding."""
    perm = np.random.RandomState(seed).permutation(len(classes))
    return [classes[i] for i in perm]


def class_tasks(
    train: ImageData, test: ImageData, sizes: Sequence[int]
) -> tuple[list[Task], list[ImageData]]:
    """Tasks over relabelled data (labels = positions in the class order): task i introduces the
    next `sizes[i]` labels, trains on `train`'s samples of them and is scored on `test`'s."""
    tasks, tests, start = [], [], 0
    for i, size in enumerate(sizes):
        new = tuple(range(start, start + size))
        tasks.append(
            Task(index=i, train=train.with_classes(new), classes=new, seen_classes=tuple(range(start + size)))
        )
        tests.append(test.with_classes(new))
        start += size
    return tasks, tests


def class_stream(
    train: ImageData,
    test: ImageData,
    order: list[int],
    sizes: Sequence[int],
    *,
    image_size,
    seed,
    device,
    **extra,
) -> ContinualStream:
    """The class-incremental stream over data relabelled by `order`, its tasks of `sizes`
    classes; `extra` joins the class order and task sizes in the stream's metadata."""
    info = stream_info(
        "class_incremental",
        train,
        image_size=image_size,
        seed=seed,
        device=device,
        num_tasks=len(sizes),
        extra={"class_order": order, "task_sizes": sizes, **extra},
    )
    check_trained_classes(train, test, "class-incremental stream")
    tasks, tests = class_tasks(train, test, sizes)
    return ContinualStream(info=info, tasks=tasks, tests=tests)


# --------------------------------------------------------------------------- domain-incremental
def domain_order(domains: Sequence[str], seed: int) -> list[str]:
    """The domains in an order drawn from `seed` (the same permutation rule as class orders)."""
    return class_order(list(domains), seed)


def domain_stream(
    train: ImageData,
    test: ImageData,
    order: Sequence[str],
    *,
    train_per_class: int = 0,
    test_per_class: int = 0,
    image_size,
    seed,
    device,
    **extra,
) -> ContinualStream:
    """The domain-incremental stream over the domains `order` of `train` and `test` (datasets
    that record domains): task i trains on domain order[i] and `tests[i]` is its test data,
    each capped at `*_per_class` samples per class (0 = all); every task holds every class.
    `extra` joins the domain order in the stream's metadata."""
    classes = tuple(range(train.num_classes))
    info = stream_info(
        "domain_incremental",
        train,
        image_size=image_size,
        seed=seed,
        device=device,
        num_tasks=len(order),
        extra={"domain_order": list(order), **extra},
    )
    check_trained_classes(train, test, "domain-incremental stream")
    tasks, tests = [], []
    for i, domain in enumerate(order):
        data = per_class(train.with_domains([domain]), train_per_class, derive_seed(seed, i))
        tasks.append(Task(index=i, train=data, classes=classes, seen_classes=classes, domain=domain))
        tests.append(per_class(test.with_domains([domain]), test_per_class, derive_seed(seed, i)))
    empty = [d for d, t, s in zip(order, tasks, tests) if not len(t.train) or not len(s)]
    if empty:
        raise UserError(f"domain {empty[0]!r} has no training or no test samples in {train.name}")
    return ContinualStream(info=info, tasks=tasks, tests=tests)


# --------------------------------------------------------------------------- test-time order
def stream_order(labels: np.ndarray, order: str = "iid", *, seed: int, delta: float = 0.1) -> np.ndarray:
    """Positions 0..len(labels)-1 in stream order (a permutation)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if order == "iid":
        return rng.permutation(len(labels))
    classes = rng.permutation(np.unique(labels))
    members = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    if order == "class_sorted":
        return np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
    if order == "dirichlet":
        if delta <= 0:
            raise UserError(f"dirichlet concentration delta must be > 0, got {delta}")
        slots: list[list[np.ndarray]] = [[] for _ in range(min(len(classes), MAX_SLOTS))]
        for ids in members:
            share = rng.dirichlet([delta] * len(slots))
            cuts = (np.cumsum(share)[:-1] * len(ids)).astype(int)
            for slot, part in zip(slots, np.split(ids, cuts)):
                if len(part):
                    slot.append(part)
        groups = [slot[i] for slot in slots for i in rng.permutation(len(slot))]
        return np.concatenate(groups)
    raise UserError(f"unknown stream order {order!r}; valid choices: {', '.join(ORDERS)}")


def zipf_subsample(labels: np.ndarray, exponent: float, *, seed: int) -> np.ndarray:
    """Sorted positions to keep so that class proportions follow Zipf's law with `exponent`
    (0 keeps everything). Each class keeps at least one sample."""
    labels = np.asarray(labels)
    if exponent < 0:
        raise UserError(f"zipf exponent must be >= 0, got {exponent}")
    if exponent == 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.unique(labels))  # classes[r] has rank r + 1
    share = np.arange(1, len(classes) + 1, dtype=float) ** -exponent
    share /= share.sum()
    counts = np.array([(labels == c).sum() for c in classes])
    total = (counts / share).min()  # the largest stream whose every class has enough samples
    keep = [
        rng.choice(np.flatnonzero(labels == c), size=max(1, int(round(total * p))), replace=False)
        for c, p in zip(classes, share)
    ]
    return np.sort(np.concatenate(keep))


def class_proportions(labels: np.ndarray) -> dict[int, float]:
    """Fraction of each label, for reports and tests."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    return {int(v): c / counts.sum() for v, c in zip(values, counts)}


@dataclass
class StreamOptions:
    """Options every test-time scenario shares: batching, label shift, and the source model's
    training recipe (the engine trains and caches the source model from `info.source`)."""

    batch_size: int = hp(64, doc="test batch size (down to 1)", ge=1)
    order: Literal["iid", "class_sorted", "dirichlet"] = hp(
        "iid", doc="sample order within each domain: iid, class_sorted, or dirichlet-correlated"
    )
    delta: float = hp(
        0.1, doc="Dirichlet concentration of order=dirichlet (small = strongly correlated)", gt=0
    )
    zipf: float = hp(
        0.0, doc="prior shift: Zipf exponent of the class proportions (0 = balanced as given)", ge=0
    )
    source_per_class: int = hp(0, doc="source training: cap on labelled images per class (0 = all)", ge=0)
    source_epochs: int = hp(10, doc="source training: epochs on the labelled source data", ge=1)
    source_lr: float = hp(1e-3, doc="source training: AdamW step size", gt=0)
    source_batch_size: int = hp(128, doc="source training: batch size", ge=1)
    source_seed: int | None = hp(
        0,
        doc="source training: seed of the source model and of its data (one source model serves "
        "every run seed, as one pretrained model does in test-time papers); null: the run seed",
        ge=0,
    )


def source_recipe(options: StreamOptions, seed: int) -> dict:
    """The source model's training recipe, as the engine expects it in `info.extra` (`seed`:
    the run seed, used where the options fix no source seed)."""
    return {
        "epochs": options.source_epochs,
        "lr": options.source_lr,
        "batch_size": options.source_batch_size,
        "optimizer": "adamw",
        "weight_decay": 0.05,
        "seed": seed if options.source_seed is None else options.source_seed,
    }


def source_data(options: StreamOptions, train: ImageData, seed: int) -> ImageData:
    """The labelled data the source model trains on: at most `source_per_class` images per
    class, chosen by the source seed (the run seed where none is fixed)."""
    return per_class(
        train, options.source_per_class, seed if options.source_seed is None else options.source_seed
    )


def test_time_info(
    options: StreamOptions,
    source: ImageData | None,
    *,
    image_size: int,
    seed: int,
    device,
    test: ImageData | None = None,
    source_training_refused: str = "",
    **extra,
) -> StreamInfo:
    """StreamInfo of a test-time stream whose source model trains on `source` (labelled). A
    released test set gives its `test` data (the label space, ImageNet classes) and says why no
    source model may be trained (`source_training_refused`); its `source` may be None."""
    classes = source if source is not None else test
    return stream_info(
        "test_time",
        classes,
        image_size=image_size,
        seed=seed,
        device=device,
        source=source,
        extra={**extra, "order": options.order, "source_recipe": source_recipe(options, seed)},
        source_training_refused=source_training_refused,
        imagenet_classes=(test if test is not None else classes).imagenet_classes,
    )


def batches_of(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Consecutive chunks of `order` (the last may be shorter)."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
