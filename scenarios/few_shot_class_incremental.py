"""Few-shot class-incremental learning: a base session with many classes and all their data,
then sessions of W-way K-shot.

Tao et al., "Few-Shot Class-Incremental Learning" (TOPIC, CVPR 2020) defined the standard
splits that CEC, FACT, CPE-CLIP and others report: CIFAR-100 and miniImageNet with 60 base
classes then 8 sessions of 5-way 5-shot, CUB-200 with 100 base classes then 10 sessions of
10-way 5-shot. Presets (`preset: cifar100 | miniimagenet | cub200 | glyphs | digits`) fill
in those shapes; any option given next to a preset overrides it. The real-data presets use
the dataset's own class order (classes 0..59 are the base classes, as in the standard
split); the few-shot samples are drawn by the run seed, or read from the standard index
files (`index_dir` holding TOPIC/CEC's `session_2.txt` ... `session_<N+1>.txt`: sample
positions in the training split for CIFAR-100, image paths for the folder datasets, matched
by file name). The engine scores every session on the test data of all classes seen so far
(`acc_seen`, the per-session accuracy of FSCIL papers); `avg_inc_acc` averages the
sessions and `perf_drop` is session 0 minus the last session.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ctta import ContinualStream, Scenario, hp, register_scenario
from ctta.kit import (
    ImageData,
    UserError,
    class_order,
    class_pool,
    class_stream,
    derive_seed,
    load_dataset,
    per_class,
)

PRESETS: dict[str, dict[str, Any]] = {
    "cifar100": {"dataset": "cifar100", "base_classes": 60, "ways": 5, "shots": 5, "sessions": 8},
    "miniimagenet": {"dataset": "miniimagenet", "base_classes": 60, "ways": 5, "shots": 5, "sessions": 8},
    "cub200": {"dataset": "cub200", "base_classes": 100, "ways": 10, "shots": 5, "sessions": 10},
    # Embedded equivalent of the CIFAR-100 shape: the 100 benchmark glyph characters in the six
    # benchmark domains (60 training and 30 test images per character).
    "glyphs": {
        "dataset": {"name": "glyphs", "per_class": 10, "test_per_class": 5},
        "base_classes": 60,
        "ways": 5,
        "shots": 5,
        "sessions": 8,
        "class_order": "seed",
    },
    "digits": {
        "dataset": "digits",
        "base_classes": 4,
        "ways": 2,
        "shots": 5,
        "sessions": 3,
        "class_order": "seed",
    },
}
for _preset in ("cifar100", "miniimagenet", "cub200"):
    PRESETS[_preset]["class_order"] = "dataset"
# Values of the preset-able options without a preset.
FALLBACK = {
    "dataset": "digits",
    "base_classes": 4,
    "ways": 2,
    "shots": 5,
    "sessions": 0,
    "class_order": "seed",
}


@register_scenario("few_shot_class_incremental")
class FewShotClassIncremental(Scenario):
    """A base session with full data, then W-way K-shot sessions (TOPIC/CEC splits and presets)."""

    kind = "class_incremental"
    debug = {
        "dataset": "digits",
        "base_classes": 4,
        "ways": 2,
        "shots": 3,
        "sessions": 3,
        "base_per_class": 12,
        "test_per_class": 6,
    }
    debug_backbones = ("debug_clip",)

    @dataclass
    class Config:
        preset: str | None = hp(None, doc=f"standard split: {', '.join(PRESETS)}; other options override it")
        dataset: Any = hp(
            None, doc="dataset name or mapping {name: ..., options}; default: the preset's, else digits"
        )
        base_classes: int | None = hp(
            None, doc="classes of the base session (session 0); default: preset's, else 4", ge=1
        )
        ways: int | None = hp(
            None, doc="new classes per incremental session; default: the preset's, else 2", ge=1
        )
        shots: int | None = hp(None, doc="training images per new class; default: the preset's, else 5", ge=1)
        sessions: int | None = hp(
            None,
            doc="incremental sessions after the base one (0 = as many as fit); default: preset's, else 0",
            ge=0,
        )
        classes: Any = hp("all", doc="class pool: all, first_half, second_half, 'a:b' or a list of ids")
        class_order: Literal["seed", "dataset"] | None = hp(
            None,
            doc="seed: PyCIL permutation by the run seed (or order_seed); dataset: ids in order; "
            "default: the preset's, else seed",
        )
        order_seed: int | None = hp(None, doc="class-order seed; default: the run seed", ge=0)
        base_per_class: int = hp(0, doc="cap on base-session training images per class (0 = all)", ge=0)
        test_per_class: int = hp(0, doc="cap on test images per class (0 = all)", ge=0)
        index_dir: str | None = hp(None, doc="folder with the standard session_<i>.txt few-shot index files")

    def __init__(self, **config: Any):
        super().__init__(**config)
        c = self.config
        if c.preset is not None and c.preset not in PRESETS:
            raise UserError(
                f"scenario {self.name!r}: unknown preset {c.preset!r}; valid choices: {', '.join(PRESETS)}"
            )
        # Options left at None take the preset's value. (Presets cannot be expanded before the
        # Config is built: run specs store every option, so explicit values would hide them.)
        base = {**FALLBACK, **PRESETS.get(c.preset, {})}
        self.config = c = dataclasses.replace(c, **{k: base[k] for k in FALLBACK if getattr(c, k) is None})

    def build(self, *, seed: int, image_size: int, device) -> ContinualStream:
        c = self.config
        train_all = load_dataset(c.dataset, "train", image_size)
        test_all = load_dataset(c.dataset, "test", image_size)
        pool = class_pool(train_all.num_classes, c.classes)
        if c.index_dir:
            order, sizes, train = self._from_index_files(train_all, pool)
        else:
            if c.class_order == "seed":
                pool = class_order(pool, seed if c.order_seed is None else c.order_seed)
            sizes = self._sizes(len(pool))
            order = pool[: sum(sizes)]
            train = train_all.relabel(order)
            novel = train.with_classes(range(c.base_classes, len(order)))
            train = train.with_classes(range(c.base_classes)).union(per_class(novel, c.shots, seed))
        base = per_class(train.with_classes(range(c.base_classes)), c.base_per_class, derive_seed(seed, 1))
        train = base.union(train.with_classes(range(c.base_classes, len(order))))
        test = per_class(test_all.relabel(order), c.test_per_class, seed)
        return class_stream(
            train,
            test,
            order,
            sizes,
            image_size=image_size,
            seed=seed,
            device=device,
            ways=sizes[1:],
            shots=c.shots,
        )

    def _sizes(self, n_classes: int) -> list[int]:
        c = self.config
        possible = (n_classes - c.base_classes) // c.ways
        sessions = c.sessions or possible
        if possible < max(sessions, 1):
            raise UserError(
                f"scenario {self.name!r}: {n_classes} classes cannot hold {c.base_classes} base classes "
                f"plus {max(sessions, 1)} sessions of {c.ways} ways"
            )
        return [c.base_classes] + [c.ways] * sessions

    def _from_index_files(
        self, train_all: ImageData, pool: list[int]
    ) -> tuple[list[int], list[int], ImageData]:
        """The standard split: base classes = the first `base_classes` of the pool in dataset
        order; session i trains on the samples listed in session_<i+1>.txt."""
        c = self.config
        folder = Path(c.index_dir).expanduser()
        files = sorted(folder.glob("session_*.txt"), key=lambda p: int(p.stem.split("_")[1]))
        files = [f for f in files if int(f.stem.split("_")[1]) >= 2]
        if c.sessions:
            files = files[: c.sessions]
        if not files:
            raise UserError(
                f"index_dir {folder}: no session_2.txt ... files (TOPIC/CEC few-shot index lists)"
            )
        if c.class_order != "dataset":
            raise UserError("index files define the standard split: use class_order=dataset with index_dir")
        base = pool[: c.base_classes]
        positions = _index_positions(train_all)
        order, sizes, keep = list(base), [len(base)], np.isin(train_all.targets, base)
        for f in files:
            lines = [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
            try:
                chosen = np.array([positions(ln) for ln in lines])
            except KeyError as exc:
                raise UserError(
                    f"{f}: sample {exc.args[0]!r} is not in the training split of {c.dataset}"
                ) from None
            new = list(dict.fromkeys(int(t) for t in train_all.targets[chosen]))
            if set(new) & set(order):
                raise UserError(f"{f}: lists classes of an earlier session: {sorted(set(new) & set(order))}")
            order += new
            sizes.append(len(new))
            keep[chosen] = True
        return order, sizes, train_all.subset(keep).relabel(order)


def _index_positions(data: ImageData):
    """Line of an index file -> position in `data`: an integer for in-memory datasets (CIFAR),
    else the image's file name (unique in CUB-200 and miniImageNet)."""
    paths = data.source_paths()
    if paths is None:
        return lambda line: _int_position(line, len(data))
    by_name = {Path(p).name: i for i, p in enumerate(paths)}
    return lambda line: by_name[Path(line).name]


def _int_position(line: str, n: int) -> int:
    if not line.isdigit() or int(line) >= n:
        raise KeyError(line)
    return int(line)
