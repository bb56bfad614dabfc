"""Class orders and class-incremental task lists, shared by the class-incremental scenarios
(B0/Bm splits, few-shot class-incremental sessions)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .api import Task
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
