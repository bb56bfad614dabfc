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

`none` among the corruptions streams the clean images, and `severity: 0` makes the whole stream
clean (any setting; LAME's i.i.d. and class-sorted clean streams, Boudiaf et al. CVPR 2022):
the same protocol then measures what adaptation costs on unshifted data.

Released benchmarks: when `dataset` names one (cifar10c, cifar100c, tiny_imagenet_c,
imagenet_c; `ctta.data.released`), nothing is generated: each (image, corruption, severity)
of the stream is read from the released files, in every setting and order above. `none` reads
the clean set the release was made from (`clean_root`), which is also the stream's source data
(EATA's Fisher); no source model may be trained on it, so the backbone must come with a trained
head. A test set without training data (imagenet_a, imagenet_sketch, imagenet_r with
`test_fraction: 1`) streams the same way under `corruptions: [none]`, with no source data.
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
    CLEAN,
    CORRUPTIONS,
    ImageData,
    NoTrainingSplit,
    Release,
    StreamOptions,
    UserError,
    batches_of,
    check_trained_classes,
    corrupt,
    derive_seed,
    load_dataset,
    per_class,
    release_of,
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
    data_version = 1  # 1: frost pastes the original photographs (a procedural texture before)
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
        dataset: Any = hp(
            "digits",
            doc="dataset name or mapping {name: ..., options}; a released benchmark (cifar10c, cifar100c, "
            "tiny_imagenet_c, imagenet_c) is read from its files instead of generated",
        )
        corruptions: tuple[str, ...] = hp(
            CORRUPTIONS, doc="in stream order (default: the 15 of ImageNet-C); none: the clean images"
        )
        severity: int = hp(5, doc="1..5, 0: a clean stream (gradual: 1..5..1 for any other)", ge=0, le=5)
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
        bad = [n for n in c.corruptions if n not in ALL_CORRUPTIONS + (CLEAN,)]
        if bad or not c.corruptions:
            raise UserError(
                f"scenario 'corruption': unknown corruption {bad[0] if bad else '(none given)'!r}; "
                f"valid choices: {', '.join(ALL_CORRUPTIONS)}, {CLEAN}"
            )

    @property
    def streamed(self) -> tuple[str, ...]:
        """The corruptions of the stream, in order (severity 0: only the clean images)."""
        return (CLEAN,) if self.config.severity == 0 else self.config.corruptions

    def levels(self, name: str) -> tuple[int, ...]:
        """The severities `name` is streamed at, in order (0 for the clean images)."""
        if name == CLEAN:
            return (0,)
        return GRADUAL_SEVERITIES if self.config.setting == "gradual" else (self.config.severity,)

    def build(self, *, seed: int, image_size: int, device) -> TestStream:
        c = self.config
        release = release_of(c.dataset)
        if release is None:
            refused = ""
            try:
                source = source_data(c, load_dataset(c.dataset, "train", image_size), seed)
            except NoTrainingSplit as exc:
                source, refused = None, str(exc)
            pictures = load_dataset(c.dataset, "test", image_size)
        else:  # every variant is checked against the one read first
            first = self.streamed[0]
            pictures = release.images(first, self.levels(first)[0], image_size)
            source = release.clean(image_size)
            source = None if source is None else source_data(c, source, seed)
            refused = (
                f"{release.name}'s clean set (clean_root) is the stream's own pictures before corruption"
                if source is not None
                else f"{release.name} is a released test set without training data"
            )
        test = per_class(sample_pool(pictures, c.samples), c.test_per_class, seed)
        test = test.subset(zipf_subsample(test.targets, c.zipf, seed=derive_seed(seed, 7)))
        if not refused:
            check_trained_classes(source, test, "scenario 'corruption'")
        info = test_time_info(
            c,
            source,
            image_size=image_size,
            seed=seed,
            device=device,
            test=test,
            source_training_refused=refused,
            corruptions=list(self.streamed),
            severity=c.severity,
            setting=c.setting,
        )
        segments = self.segments(test.targets, seed)
        read = (
            _Generated(test, self.streamed, seed)
            if release is None
            else _Read(release, pictures, test, self.streamed, image_size)
        )
        return TestStream(
            info=info,
            num_batches=sum(-(-len(s.positions) // c.batch_size) for s in segments),
            batches=lambda: self._batches(test, segments, read, device),
            reset_on_domain_change=c.setting == "single",
            test=test,
            key=self.stream_key(seed, image_size),
        )

    def segments(self, labels: np.ndarray, seed: int) -> list[_Segment]:
        """The stream's layout: which test sample comes when, under which corruption."""
        c = self.config
        n = len(labels)
        names = self.streamed

        def ordered(lab: np.ndarray, i: int) -> np.ndarray:
            return stream_order(lab, c.order, seed=derive_seed(seed, i), delta=c.delta)

        if c.setting == "mixed":
            corr = np.repeat(np.arange(len(names)), n)
            pos = np.tile(np.arange(n), len(names))
            order = ordered(labels[pos], 0)
            return [_Segment("mixed", pos[order], corr[order], c.severity)]
        out = []
        for d, name in enumerate(names):
            for severity in self.levels(name):
                order = ordered(labels, len(out))
                out.append(_Segment(name, order, np.full(n, d), severity))
        return out

    def _batches(
        self, test: ImageData, segments: list[_Segment], read, device
    ) -> Iterator[tuple[TestBatch, torch.Tensor]]:
        index = 0
        for s, seg in enumerate(segments):
            for b, chunk in enumerate(batches_of(np.arange(len(seg.positions)), self.config.batch_size)):
                x, y = read(seg.positions[chunk], seg.corruption[chunk], seg.severity, (s, b), device)
                yield TestBatch(x=x, index=index, domain=seg.domain), y.to(device)
                index += 1


class _Generated:
    """Batches of the test set under corruptions generated on the fly, seeded per batch."""

    def __init__(self, test: ImageData, names: tuple[str, ...], seed: int):
        self.test, self.names, self.seed = test, names, seed

    def __call__(self, positions, kinds, severity, where, device) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.test.load(positions)
        x = x.to(device)
        for d in np.unique(kinds):
            if self.names[d] == CLEAN:
                continue
            batch_seed = derive_seed(self.seed, *where, int(d))
            if (kinds == d).all():  # one corruption (all but the mixed setting): no masked copies
                x = corrupt(x, self.names[d], severity, seed=batch_seed)
                continue
            sel = torch.as_tensor(kinds == d, device=device)
            x[sel] = corrupt(x[sel], self.names[d], severity, seed=batch_seed)
        return x, y


class _Read:
    """Batches of a released benchmark: each picture read from the variant (corruption,
    severity) its segment streams; `pictures` is the variant every other is checked against."""

    def __init__(
        self, release: Release, pictures: ImageData, test: ImageData, names: tuple[str, ...], image_size: int
    ):
        self.release, self.pictures, self.test, self.names = release, pictures, test, names
        self.image_size = image_size
        self.variants: dict[tuple[str, int], ImageData] = {}

    def variant(self, name: str, severity: int) -> ImageData:
        key = (name, 0 if name == CLEAN else severity)
        if key not in self.variants:
            full = self.release.images(*key, self.image_size, like=self.pictures)
            self.variants[key] = full.subset(self.test.indices)  # positions of `test`
        return self.variants[key]

    def __call__(self, positions, kinds, severity, where, device) -> tuple[torch.Tensor, torch.Tensor]:
        parts = {}
        for d in np.unique(kinds):
            sel = np.flatnonzero(kinds == d)
            parts[int(d)] = (sel, self.variant(self.names[d], severity).load(positions[sel])[0])
        first = next(iter(parts.values()))[1]
        x = first.new_empty((len(positions), *first.shape[1:]))
        for sel, images in parts.values():
            x[torch.as_tensor(sel)] = images
        return x.to(device), torch.as_tensor(self.test.targets[positions])
