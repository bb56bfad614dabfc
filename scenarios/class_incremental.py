"""Class-incremental learning: B0IncN and BmIncN splits of any labelled dataset.

The classes of a pool are put in an order drawn from the run seed (PyCIL/PILOT convention:
`np.random.seed(seed); np.random.permutation`, seed 1993 by default); the first task holds
`initial` classes (B-m; 0 means "same as increment", i.e. B0) and every later task
`increment` new ones. After each task the engine scores the method on the test data of
all classes seen so far. References: Rebuffi et al., iCaRL (CVPR 2017); Zhou et al., PyCIL
and "Revisiting class-incremental learning with pre-trained models" (IJCV 2024).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctta import ContinualStream, Scenario, StreamInfo, hp, register_scenario
from ctta.class_splits import class_order, class_tasks
from ctta.data import load_dataset
from ctta.errors import UserError
from ctta.pools import class_pool, per_class


def split_sizes(n_classes: int, initial: int, increment: int, num_tasks: int) -> list[int]:
    """Classes per task. initial=0 means B0 (first task = increment)."""
    first = initial or increment
    if increment <= 0 or first > n_classes:
        raise UserError(f"cannot split {n_classes} classes with initial={initial}, increment={increment}")
    sizes = [first]
    while sum(sizes) + increment <= n_classes and (num_tasks <= 0 or len(sizes) < num_tasks):
        sizes.append(increment)
    if num_tasks > 0 and len(sizes) < num_tasks:
        raise UserError(
            f"{n_classes} classes give only {len(sizes)} tasks of initial={initial}, "
            f"increment={increment}; asked for num_tasks={num_tasks}"
        )
    return sizes


@register_scenario("class_incremental")
class ClassIncremental(Scenario):
    """B0IncN / BmIncN class-incremental splits of any dataset, over a class pool."""

    kind = "class_incremental"
    debug = {"dataset": "digits", "increment": 5, "train_per_class": 12, "test_per_class": 6}

    @dataclass
    class Config:
        dataset: Any = hp("digits", doc="dataset name or mapping {name: ..., options}")
        initial: int = hp(0, doc="classes in the first task; 0 = B0 (same as increment)")
        increment: int = hp(2, doc="new classes per task")
        num_tasks: int = hp(0, doc="number of tasks; 0 = as many as the pool allows")
        classes: Any = hp("all", doc="class pool: all, first_half, second_half, 'a:b' or a list of ids")
        train_per_class: int = hp(0, doc="cap on training images per class (0 = all)")
        test_per_class: int = hp(0, doc="cap on test images per class (0 = all)")
        order_seed: int | None = hp(None, doc="class-order seed; default: the run seed")

    def build(self, *, seed: int, image_size: int, device) -> ContinualStream:
        c = self.config
        train_all = load_dataset(c.dataset, "train", image_size)
        test_all = load_dataset(c.dataset, "test", image_size)
        order = class_order(
            class_pool(train_all.num_classes, c.classes), seed if c.order_seed is None else c.order_seed
        )
        sizes = split_sizes(len(order), c.initial, c.increment, c.num_tasks)
        order = order[: sum(sizes)]
        train = per_class(train_all.relabel(order), c.train_per_class, seed)
        test = per_class(test_all.relabel(order), c.test_per_class, seed)
        info = StreamInfo(
            kind=self.kind,
            num_classes=len(order),
            class_names=train.class_names,
            image_size=image_size,
            seed=seed,
            device=device,
            num_tasks=len(sizes),
            extra={"class_order": order, "task_sizes": sizes},
        )
        tasks, tests = class_tasks(train, test, sizes)
        return ContinualStream(info=info, tasks=tasks, tests=tests)
