"""Domain shift: train on source domains, stream an unseen target domain (domain generalization
evaluated online, with test-time adaptation).

Gulrajani & Lopez-Paz, "In Search of Lost Domain Generalization" (DomainBed, ICLR 2021).
Works on any dataset that records a domain per sample: the embedded glyphs (domains are
font families, colours and backgrounds), and PACS / OfficeHome / DomainNet in their
ImageFolder layouts (`ctta.data` presets). Every domain comes in two splits; as in
DomainBed, the larger one ("train", DomainBed's 80 % "in" split) is what models train on
and what the evaluation stream uses, the smaller one ("test", the 20 % "out" split) is held
out for model selection. The source model (trained by the engine, cached) sees the "train"
split of the source domains.

`selection` makes DomainBed's three model-selection methods available to protocols; each
value is a different stream, so a protocol tunes on one and scores on `test`:

- `test`: the evaluation stream, the targets' "train" split;
- `training_domain`: training-domain validation, the sources' held-out "test" split;
- `leave_one_out`: the source domain `held_out` is removed from training and streamed
  instead (a protocol averages over every source domain, `validation_configs`);
- `oracle`: test-domain validation, the targets' held-out "test" split (an upper bound
  on what model selection can do; keep it out of headline numbers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from ctta import Scenario, TestBatch, TestStream, hp, register_scenario
from ctta.kit import (
    DEBUG_GLYPH_DOMAINS,
    ImageData,
    StreamOptions,
    UserError,
    as_dict,
    batches_of,
    check_trained_classes,
    derive_seed,
    load_dataset,
    per_class,
    source_data,
    stream_order,
    test_time_info,
    zipf_subsample,
)

SELECTIONS = ("test", "training_domain", "leave_one_out", "oracle")


@register_scenario("domain_shift")
class DomainShift(Scenario):
    """Train on source domains, stream unseen target domains (DomainBed splits and model selection)."""

    kind = "test_time"
    debug = {
        "dataset": DEBUG_GLYPH_DOMAINS,
        "batch_size": 8,
        "source_epochs": 1,
    }
    # a narrow small_cnn on 16 px keeps the BatchNorm methods' debug runs to about a second
    debug_backbones = ("debug_vit", {"name": "small_cnn", "width": 8, "image_size": 16})

    @dataclass
    class Config(StreamOptions):
        dataset: Any = hp("glyphs", doc="dataset recording domains: glyphs, pacs, officehome, domainnet, ...")
        targets: tuple[str, ...] = hp((), doc="target domains, streamed in order (default: the last domain)")
        sources: tuple[str, ...] = hp((), doc="source domains (default: every domain that is not a target)")
        selection: Literal["test", "training_domain", "leave_one_out", "oracle"] = hp(
            "test", doc="which stream: test (evaluation), or a DomainBed model-selection stream"
        )
        held_out: str = hp("", doc="leave_one_out: the source domain held out of training and streamed")
        setting: Literal["single", "continual"] = hp(
            "single", doc="several streamed domains: reset between them (single) or not (continual)"
        )
        test_per_class: int = hp(0, doc="cap on streamed images per class and domain (0 = all)", ge=0)

    def __init__(self, **config):
        super().__init__(**config)
        c = self.config
        if c.selection == "leave_one_out" and not c.held_out:
            raise UserError(
                "scenario 'domain_shift': selection=leave_one_out needs held_out=<a source domain>"
            )
        if c.held_out and c.selection != "leave_one_out":
            raise UserError("scenario 'domain_shift': held_out is only used with selection=leave_one_out")

    # -- which domains play which role ---------------------------------------------------
    def roles(self, domain_names: tuple[str, ...]) -> tuple[list[str], list[str]]:
        """(training domains, streamed domains) of this configuration."""
        c = self.config
        where = f"scenario 'domain_shift' on {c.dataset!r}"
        for name in (*c.targets, *c.sources, *([c.held_out] if c.held_out else [])):
            if name not in domain_names:
                raise UserError(f"{where}: unknown domain {name!r}; valid choices: {', '.join(domain_names)}")
        targets = list(c.targets) or [domain_names[-1]]
        sources = list(c.sources) or [d for d in domain_names if d not in targets]
        if set(sources) & set(targets) or not sources:
            raise UserError(
                f"{where}: source domains {sources} must be non-empty and disjoint from {targets}"
            )
        if c.selection == "leave_one_out":
            if c.held_out not in sources or len(sources) < 2:
                raise UserError(
                    f"{where}: held_out must be one of at least two source domains; valid choices: "
                    f"{', '.join(sources)}"
                )
            return [d for d in sources if d != c.held_out], [c.held_out]
        if c.selection == "training_domain":
            return sources, sources
        return sources, targets

    def validation_configs(self, selection: str, image_size: int) -> list[dict]:
        """Scenario options of the streams that score a configuration under DomainBed's model
        selection `selection` (average the runs' accuracies): one stream, or one per source
        domain for leave_one_out."""
        if selection not in SELECTIONS[1:]:
            raise UserError(
                f"unknown model selection {selection!r}; valid choices: {', '.join(SELECTIONS[1:])}"
            )
        base = {**as_dict(self.config), "selection": selection, "held_out": ""}
        if selection != "leave_one_out":
            return [base]
        sources, _ = DomainShift(**{**base, "selection": "test"}).roles(self._domain_names(image_size))
        return [{**base, "held_out": d} for d in sources]

    def _domain_names(self, image_size: int) -> tuple[str, ...]:
        data = load_dataset(self.config.dataset, "train", image_size)
        if data.domains is None or not data.domain_names:
            raise UserError(
                f"scenario 'domain_shift': dataset {self.config.dataset!r} records no domains; use glyphs, "
                f"pacs, officehome, domainnet, or imagefolder with domains=[...]"
            )
        return data.domain_names

    # -- the stream ------------------------------------------------------------------------
    def build(self, *, seed: int, image_size: int, device) -> TestStream:
        c = self.config
        names = self._domain_names(image_size)
        train_split = load_dataset(c.dataset, "train", image_size)
        held_split = load_dataset(c.dataset, "test", image_size)
        trained, streamed = self.roles(names)
        stream_split = held_split if c.selection in ("training_domain", "oracle") else train_split
        source = source_data(c, train_split.with_domains(trained), seed)
        parts = []
        for i, dom in enumerate(streamed):
            part = per_class(stream_split.with_domains([dom]), c.test_per_class, seed)
            parts.append(part.subset(zipf_subsample(part.targets, c.zipf, seed=derive_seed(seed, 7, i))))
        test = parts[0].union(*parts[1:])
        check_trained_classes(source, test, f"scenario 'domain_shift' (source domains {', '.join(trained)})")
        info = test_time_info(
            c,
            source,
            image_size=image_size,
            seed=seed,
            device=device,
            source_domains=trained,
            streamed_domains=streamed,
            selection=c.selection,
            setting=c.setting,
        )
        orders = [
            stream_order(p.targets, c.order, seed=derive_seed(seed, i), delta=c.delta)
            for i, p in enumerate(parts)
        ]
        return TestStream(
            info=info,
            num_batches=sum(-(-len(o) // c.batch_size) for o in orders),
            batches=lambda: self._batches(parts, streamed, orders, device),
            reset_on_domain_change=c.setting == "single",
            test=test,
            key=self.stream_key(seed, image_size),
        )

    def _batches(
        self, parts: list[ImageData], domains: list[str], orders: list[np.ndarray], device
    ) -> Iterator[tuple[TestBatch, torch.Tensor]]:
        index = 0
        for part, domain, order in zip(parts, domains, orders):
            for chunk in batches_of(order, self.config.batch_size):
                x, y = part.load(chunk)
                yield TestBatch(x=x.to(device), index=index, domain=domain), y.to(device)
                index += 1
