"""Class orders and class-incremental task lists, shared by the class-incremental scenarios
(B0/Bm splits, few-shot class-incremental sessions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .api import ContinualStream, StreamInfo, Task
from .data import ImageData


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
    info = StreamInfo(
        kind="class_incremental",
        num_classes=len(order),
        class_names=train.class_names,
        image_size=image_size,
        seed=seed,
        device=device,
        num_tasks=len(sizes),
        extra={"class_order": order, "task_sizes": sizes, **extra},
    )
    tasks, tests = class_tasks(train, test, sizes)
    return ContinualStream(info=info, tasks=tasks, tests=tests)
