"""Class-incremental learning: B0IncN and BmIncN splits of any labelled dataset.

The classes of a pool are put in an order drawn from the run seed (PyCIL/PILOT convention:
`np.random.seed(seed); np.random.permutation`, seed 1993 by default); the first task holds
`initial` classes (B-m; 0 means "same as increment", i.e. B0) and every later task
`increment` new ones. After each task the engine scores the method on the test data of
all classes seen so far. References: Rebuffi et al., iCaRL (CVPR 2017); Zhou et al., PyCIL
and "Revisiting class-incremental learning with pre-trained models" (IJCV 2024).

`preset` names the standard splits of the pretrained-model literature (PILOT, L2P, MOS
tables) and their embedded stand-ins; it sets `dataset`, `initial` and `increment`, and an
option given explicitly overrides it. `classes: first_half` / `second_half` are class-disjoint
pools of the same split shape, so a protocol can tune on one and score on the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ctta import ContinualStream, Scenario, hp, register_scenario
from ctta.kit import UserError, choices_error, class_order, class_pool, class_stream, load_dataset, per_class

# name -> (dataset, initial, increment)
PRESETS: dict[str, tuple[str, int, int]] = {
    "cifar100_b0inc5": ("cifar100", 0, 5),
    "cifar100_b0inc10": ("cifar100", 0, 10),
    "cifar100_b0inc20": ("cifar100", 0, 20),
    "cifar100_b50inc10": ("cifar100", 50, 10),
    "imagenet_r_b0inc20": ("imagenet_r", 0, 20),
    "imagenet_r_b0inc40": ("imagenet_r", 0, 40),
    "cub200_b0inc10": ("cub200", 0, 10),
    "cub200_b0inc20": ("cub200", 0, 20),
    "cub200_b100inc10": ("cub200", 100, 10),
    # embedded stand-ins: 100 glyph classes (CIFAR-100-like splits), 10 digits
    "glyphs_b0inc5": ("glyphs", 0, 5),
    "glyphs_b0inc10": ("glyphs", 0, 10),
    "glyphs_b0inc20": ("glyphs", 0, 20),
    "glyphs_b50inc10": ("glyphs", 50, 10),
    "digits_b0inc2": ("digits", 0, 2),
}
DEFAULT_SPLIT = ("digits", 0, 2)  # dataset, initial, increment without a preset


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
        preset: str | None = hp(None, doc="standard split: " + ", ".join(PRESETS))
        dataset: Any = hp(
            None, doc="dataset name or mapping {name: ..., options}; default: preset's, else digits"
        )
        initial: int | None = hp(
            None, doc="classes in the first task; 0 = B0; default: preset's, else 0", ge=0
        )
        increment: int | None = hp(None, doc="new classes per task; default: preset's, else 2", ge=1)
        num_tasks: int = hp(0, doc="number of tasks; 0 = as many as the pool allows", ge=0)
        classes: Any = hp("all", doc="class pool: all, first_half, second_half, 'a:b' or a list of ids")
        train_per_class: int = hp(0, doc="cap on training images per class (0 = all)", ge=0)
        test_per_class: int = hp(0, doc="cap on test images per class (0 = all)", ge=0)
        order_seed: int | None = hp(None, doc="class-order seed; default: the run seed", ge=0)

    def __init__(self, **config: Any):
        super().__init__(**config)
        preset = self.config.preset
        if preset is not None and preset not in PRESETS:
            raise choices_error("class-incremental preset", preset, PRESETS)

    def split(self) -> tuple[Any, int, int]:
        """(dataset, initial, increment): explicit options, else the preset's, else the defaults."""
        c = self.config
        base = PRESETS[c.preset] if c.preset is not None else DEFAULT_SPLIT
        given = (c.dataset, c.initial, c.increment)
        return tuple(b if v is None else v for v, b in zip(given, base))

    def build(self, *, seed: int, image_size: int, device) -> ContinualStream:
        c = self.config
        dataset, initial, increment = self.split()
        train_all = load_dataset(dataset, "train", image_size)
        test_all = load_dataset(dataset, "test", image_size)
        order = class_order(
            class_pool(train_all.num_classes, c.classes), seed if c.order_seed is None else c.order_seed
        )
        sizes = split_sizes(len(order), initial, increment, c.num_tasks)
        order = order[: sum(sizes)]
        train = per_class(train_all.relabel(order), c.train_per_class, seed)
        test = per_class(test_all.relabel(order), c.test_per_class, seed)
        return class_stream(train, test, order, sizes, image_size=image_size, seed=seed, device=device)
