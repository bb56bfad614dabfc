"""Corruption streams: the test set of a dataset under ImageNet-C/CIFAR-C corruptions.

Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
Perturbations" (ICLR 2019). The source model is trained (by the engine, cached) on the
clean training split; the stream is the test split under corruptions, in one of four
settings:

- single: each corruption is its own shift and the method is reset between shifts (Tent,
  Wang et al. ICLR 2021);
- continual: the corruptions follow each other without reset (CoTTA, Wang et al. CVPR 2022);
- gradual: within each corruption the severity goes 1, 2, 3, 4, 5, 4, 3, 2, 1, the whole
  test set at each level, without reset (CoTTA's and RMT's gradual setting, Döbler et al.
  CVPR 2023); `severity` is ignored;
- mixed: every (image, corruption) pair shuffled into one stream, so consecutive images
  carry different corruptions (SAR's "mixed distribution shifts", Niu et al. ICLR 2023).

Any setting can be made label-correlated (`order`: class_sorted, dirichlet with δ) and
label-shifted (`zipf`), see `ctta/kit/streams.py`. Corruptions are applied on the fly per batch,
deterministically from the run seed, so every method sees the same stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ctta import Scenario, TestBatch, TestStream, hp, register_scenario
from ctta.kit import (
    ALL_CORRUPTIONS,
    CORRUPTIONS,
    ImageData,
    StreamOptions,
    UserError,
    batches_of,
    check_trained_classes,
    corrupt,
    derive_seed,
    load_dataset,
    per_class,
    sample_pool,
    source_data,
    stream_order,
    test_time_info,
    zipf_subsample,
)

SETTINGS = ("single", "continual", "gradual", "mixed")
GRADUAL_SEVERITIES = (1, 2, 3, 4, 5, 4, 3, 2, 1)


@dataclass
class _Segment:
    """A stretch of the stream with one domain name: test positions and, per item, a corruption."""

    domain: str
    positions: np.ndarray
    corruption: np.ndarray  # index into the scenario's corruptions, one per position
    severity: int


@register_scenario("corruption")
class Corruption(Scenario):
    """A test set under corruptions: single, continual, gradual or mixed shift, any label order."""

    kind = "test_time"
    debug = {
        "dataset": "digits",
        "corruptions": ("gaussian_noise", "contrast"),
        "severity": 3,
        "batch_size": 16,
        "test_per_class": 4,
        "source_per_class": 30,
        "source_epochs": 1,
    }
    # a narrow small_cnn on 16 px keeps the BatchNorm methods' debug runs to about a second
    debug_backbones = ("debug_vit", {"name": "small_cnn", "width": 8, "image_size": 16})

    @dataclass
    class Config(StreamOptions):
        dataset: Any = hp("digits", doc="dataset name or mapping {name: ..., options}")
        corruptions: tuple[str, ...] = hp(CORRUPTIONS, doc="in stream order (default: the 15 of ImageNet-C)")
        severity: int = hp(5, doc="1..5 (ignored by the gradual setting)", ge=1, le=5)
        setting: Literal["single", "continual", "gradual", "mixed"] = hp(
            "continual",
            doc="single (reset between corruptions), continual, gradual (severity 1..5..1), mixed",
        )
        samples: Literal["all", "first_half", "second_half"] = hp(
            "all", doc="sample pool of the test split: all, first_half, second_half"
        )
        test_per_class: int = hp(0, doc="cap on test images per class (0 = all)", ge=0)

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        bad = [n for n in c.corruptions if n not in ALL_CORRUPTIONS]
        if bad or not c.corruptions:
            raise UserError(
                f"scenario 'corruption': unknown corruption {bad[0] if bad else '(none given)'!r}; "
                f"valid choices: {', '.join(ALL_CORRUPTIONS)}"
            )

    def build(self, *, seed: int, image_size: int, device) -> TestStream:
        c = self.config
        source = source_data(c, load_dataset(c.dataset, "train", image_size), seed)
        test = per_class(
            sample_pool(load_dataset(c.dataset, "test", image_size), c.samples), c.test_per_class, seed
        )
        test = test.subset(zipf_subsample(test.targets, c.zipf, seed=derive_seed(seed, 7)))
        check_trained_classes(source, test, "scenario 'corruption'")
        info = test_time_info(
            c,
            source,
            image_size=image_size,
            seed=seed,
            device=device,
            corruptions=list(c.corruptions),
            severity=c.severity,
            setting=c.setting,
        )
        segments = self.segments(test.targets, seed)
        return TestStream(
            info=info,
            num_batches=sum(-(-len(s.positions) // c.batch_size) for s in segments),
            batches=lambda: self._batches(test, segments, seed, device),
            reset_on_domain_change=c.setting == "single",
            test=test,
            key=self.stream_key(seed, image_size),
        )

    def segments(self, labels: np.ndarray, seed: int) -> list[_Segment]:
        """The stream's layout: which test sample comes when, under which corruption."""
        c = self.config
        n = len(labels)

        def ordered(lab: np.ndarray, i: int) -> np.ndarray:
            return stream_order(lab, c.order, seed=derive_seed(seed, i), delta=c.delta)

        if c.setting == "mixed":
            corr = np.repeat(np.arange(len(c.corruptions)), n)
            pos = np.tile(np.arange(n), len(c.corruptions))
            order = ordered(labels[pos], 0)
            return [_Segment("mixed", pos[order], corr[order], c.severity)]
        levels = GRADUAL_SEVERITIES if c.setting == "gradual" else (c.severity,)
        out = []
        for d, name in enumerate(c.corruptions):
            for severity in levels:
                order = ordered(labels, len(out))
                out.append(_Segment(name, order, np.full(n, d), severity))
        return out

    def _batches(
        self, test: ImageData, segments: list[_Segment], seed: int, device
    ) -> Iterator[tuple[TestBatch, torch.Tensor]]:
        c = self.config
        index = 0
        for s, seg in enumerate(segments):
            for b, chunk in enumerate(batches_of(np.arange(len(seg.positions)), c.batch_size)):
                x, y = test.load(seg.positions[chunk])
                x = x.to(device)
                kinds = seg.corruption[chunk]
                for d in np.unique(kinds):
                    args = (c.corruptions[d], seg.severity)
                    batch_seed = derive_seed(seed, s, b, int(d))
                    if (kinds == d).all():  # one corruption (all but the mixed setting): no masked copies
                        x = corrupt(x, *args, seed=batch_seed)
                        continue
                    sel = torch.as_tensor(kinds == d, device=device)
                    x[sel] = corrupt(x[sel], *args, seed=batch_seed)
                yield TestBatch(x=x, index=index, domain=seg.domain), y.to(device)
                index += 1
