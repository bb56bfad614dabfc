"""Corruption streams: the test set of a dataset under ImageNet-C/CIFAR-C corruptions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019). The source model is trained (by the engine, cached) on the
clean training split; the stream is the test split, one corruption after another:

- single: every corruption is its own shift and the method is reset between them (Tent's
  setting);
- continual: the corruptions follow each other without reset (CoTTA's setting).

Corruptions are applied on the fly per batch, deterministically from the seed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch

from ctta import Scenario, StreamInfo, TestBatch, TestStream, hp, register_scenario
from ctta.corruptions import ALL_CORRUPTIONS, corrupt
from ctta.data import ImageData, iterate, load_dataset
from ctta.errors import UserError
from ctta.pools import per_class, sample_pool
from ctta.seeding import derive_seed


@register_scenario("corruption")
class Corruption(Scenario):
    """A test set under a sequence of corruptions (single or continual shift)."""

    kind = "test_time"
    debug = {
        "dataset": "digits",
        "corruptions": ("gaussian_noise", "contrast"),
        "severity": 3,
        "batch_size": 16,
        "test_per_class": 4,
        "source_epochs": 1,
    }
    debug_backbones = ("debug_vit", "small_cnn")

    @dataclass
    class Config:
        dataset: Any = hp("digits", doc="dataset name or mapping {name: ..., options}")
        corruptions: tuple[str, ...] = hp(
            ("gaussian_noise", "defocus_blur", "contrast"), doc="in stream order"
        )
        severity: int = hp(5, doc="1..5")
        setting: Literal["single", "continual"] = hp("continual", doc="reset between corruptions, or not")
        batch_size: int = hp(64, doc="test batch size (down to 1)")
        samples: str = hp("all", doc="sample pool of the test split: all, first_half, second_half")
        test_per_class: int = hp(0, doc="cap on test images per class (0 = all)")
        source_epochs: int = hp(10, doc="source training: epochs on the clean training split")
        source_lr: float = hp(1e-3, doc="source training: AdamW step size")
        source_batch_size: int = hp(128, doc="source training: batch size")

    def __init__(self, **config):
        super().__init__(**config)
        bad = [c for c in self.config.corruptions if c not in ALL_CORRUPTIONS]
        if bad or not self.config.corruptions:
            raise UserError(
                f"scenario 'corruption': unknown corruption {bad[0] if bad else '(none given)'!r}; "
                f"valid choices: {', '.join(ALL_CORRUPTIONS)}"
            )
        if not 1 <= self.config.severity <= 5:
            raise UserError(f"scenario 'corruption': severity must be 1..5, got {self.config.severity}")
        if self.config.batch_size < 1:
            raise UserError("scenario 'corruption': batch_size must be >= 1")

    def build(self, *, seed: int, image_size: int, device) -> TestStream:
        c = self.config
        source = load_dataset(c.dataset, "train", image_size)
        test = per_class(
            sample_pool(load_dataset(c.dataset, "test", image_size), c.samples), c.test_per_class, seed
        )
        info = StreamInfo(
            kind=self.kind,
            num_classes=source.num_classes,
            class_names=source.class_names,
            image_size=image_size,
            seed=seed,
            device=device,
            source=source,
            extra={
                "corruptions": list(c.corruptions),
                "severity": c.severity,
                "setting": c.setting,
                "source_recipe": {
                    "epochs": c.source_epochs,
                    "lr": c.source_lr,
                    "batch_size": c.source_batch_size,
                    "optimizer": "adamw",
                    "weight_decay": 0.05,
                },
            },
        )
        per_domain = -(-len(test) // c.batch_size)
        return TestStream(
            info=info,
            num_batches=per_domain * len(c.corruptions),
            batches=lambda: self._batches(test, seed, device),
            reset_on_domain_change=c.setting == "single",
            test=test,
            key=self.stream_key(seed, image_size),
        )

    def _batches(self, test: ImageData, seed: int, device) -> Iterator[tuple[TestBatch, torch.Tensor]]:
        c = self.config
        index = 0
        for d, name in enumerate(c.corruptions):
            batches = iterate(test, c.batch_size, shuffle=True, seed=derive_seed(seed, d), device=device)
            for b, (x, y) in enumerate(batches):
                x = corrupt(x, name, c.severity, seed=derive_seed(seed, d, b))
                yield TestBatch(x=x, index=index, domain=name), y
                index += 1
