"""Domain-incremental learning: one class set, each task brings the training data of a new domain.

van de Ven, Tuytelaars & Tolias, "Three types of incremental learning" (Nature Machine
Intelligence 2022): the task changes the input distribution, never the label space, and the
model must not be told which domain a test image comes from. After every task (and once
before the first) the engine scores the method on the test data of *every* domain, seen and
still to come, so the record keeps the full domain x domain accuracy matrix and forward
transfer can be measured (Lopez-Paz & Ranzato, GEM, NeurIPS 2017; metrics in
`ctta/plan/metrics.py`).

Domains come from any dataset that records them (`domains` picks and orders them; default:
all, in the dataset's order): the embedded glyphs (font families, polarity, background
clutter), `arrays` with a `domains` array, `imagefolder` with `domains: [...]`, and the
PACS / OfficeHome / DomainNet / CORe50 folder presets. A dataset without domains gets them
from input `transforms`, one per task (`none`, `rotate:<degrees>`, `permute:<seed>`,
`<corruption>:<severity>`), as in rotated / permuted MNIST. `order: seed` shuffles the
domains by `order_seed` (default: the run seed); `given` keeps them as listed.

`preset` names the standard streams: `glyph_domains` (the six benchmark glyph renditions),
`rotated_digits` (scikit-learn digits under six rotations), and, for data on disk,
`domainnet` (six domains; S-Prompts, Wang et al. NeurIPS 2022, uses DomainNet and CORe50 for
domain-incremental learning) and `core50` (the eight training sessions of CORe50's NI
scenario as domains). Deviation for `core50`: each session's test data is a stratified
holdout of that session (so every domain has its own column in the matrix); the official
protocol scores on the held-out sessions 3, 7 and 10.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ctta import ContinualStream, Scenario, hp, register_scenario
from ctta.kit import (
    DEBUG_GLYPH_DOMAINS,
    TRANSFORM_SYNTAX,
    UserError,
    check_transform,
    choices_error,
    class_pool,
    domain_order,
    domain_stream,
    load_dataset,
    per_class,
    transformed_domains,
)

# name -> (dataset, domains, transforms)
PRESETS: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {
    "glyph_domains": ({"name": "glyphs"}, ("sans", "serif", "mono", "stix", "night", "pattern"), ()),
    "rotated_digits": ("digits", (), tuple(f"rotate:{a}" for a in range(0, 180, 30))),
    "domainnet": ("domainnet", ("clipart", "infograph", "painting", "quickdraw", "real", "sketch"), ()),
    "core50": ("core50", tuple(f"s{i}" for i in (1, 2, 4, 5, 6, 8, 9, 11)), ()),
}


@register_scenario("domain_incremental")
class DomainIncremental(Scenario):
    """One class set; task i brings domain i; every domain is scored after every task."""

    kind = "domain_incremental"
    debug = {
        "dataset": DEBUG_GLYPH_DOMAINS,
        "test_per_class": 4,
    }
    debug_backbones = ("debug_vit", "debug_clip")

    @dataclass
    class Config:
        preset: str | None = hp(None, doc="standard stream: " + ", ".join(PRESETS))
        dataset: Any = hp(None, doc="dataset name or mapping {name: ..., options}; default: the preset's")
        domains: tuple[str, ...] = hp((), doc="domains of the dataset, in task order (default: all)")
        transforms: tuple[str, ...] = hp(
            (), doc=f"domains made by transforms, one per task: {TRANSFORM_SYNTAX}"
        )
        order: Literal["given", "seed"] = hp("given", doc="domain order: as given, or shuffled by order_seed")
        order_seed: int | None = hp(None, doc="seed of order=seed; default: the run seed", ge=0)
        classes: Any = hp("all", doc="class pool: all, first_half, second_half, 'a:b' or a list of ids")
        train_per_class: int = hp(0, doc="cap on training images per class and domain (0 = all)", ge=0)
        test_per_class: int = hp(0, doc="cap on test images per class and domain (0 = all)", ge=0)

    def __init__(self, **config: Any):
        super().__init__(**config)
        c = self.config
        if c.preset is not None and c.preset not in PRESETS:
            raise choices_error("domain-incremental preset", c.preset, PRESETS)
        dataset, domains, transforms = self.resolved()
        if dataset is None:
            raise UserError(
                "scenario 'domain_incremental': give a dataset (with domains, or with transforms=[...]) "
                f"or a preset; valid presets: {', '.join(PRESETS)}"
            )
        if domains and transforms:
            raise UserError("scenario 'domain_incremental': give domains or transforms, not both")
        for name in transforms:
            check_transform(name)
        if len(set(domains or transforms)) != len(domains or transforms):
            raise UserError(f"scenario 'domain_incremental': domains repeat in {list(domains or transforms)}")

    def resolved(self) -> tuple[Any, tuple[str, ...], tuple[str, ...]]:
        """(dataset, domains, transforms): explicit options, else the preset's."""
        c = self.config
        base = PRESETS[c.preset] if c.preset is not None else (None, (), ())
        if c.domains or c.transforms:  # an explicit choice of domains replaces the preset's
            base = (base[0], (), ())
        return c.dataset or base[0], tuple(c.domains) or base[1], tuple(c.transforms) or base[2]

    def build(self, *, seed: int, image_size: int, device) -> ContinualStream:
        c = self.config
        dataset, domains, transforms = self.resolved()
        train = load_dataset(dataset, "train", image_size)
        test = load_dataset(dataset, "test", image_size)
        pool = class_pool(train.num_classes, c.classes)
        if pool != list(range(train.num_classes)):
            train, test = train.relabel(pool), test.relabel(pool)
        caps = {"train_per_class": c.train_per_class, "test_per_class": c.test_per_class}
        if transforms:  # cap first: every domain transforms the same samples
            train = transformed_domains(per_class(train, c.train_per_class, seed), transforms, seed)
            test = transformed_domains(per_class(test, c.test_per_class, seed), transforms, seed + 1)
            domains, caps = transforms, {}
        elif train.domains is None or not train.domain_names:
            raise UserError(
                f"scenario 'domain_incremental': dataset {dataset!r} records no domains; give "
                f"transforms=[...] ({TRANSFORM_SYNTAX}) or a dataset with domains (glyphs, arrays with "
                f"domains, imagefolder with domains=[...], pacs, officehome, domainnet, core50)"
            )
        order = list(domains or train.domain_names)
        if c.order == "seed":
            order = domain_order(order, seed if c.order_seed is None else c.order_seed)
        return domain_stream(
            train,
            test,
            order,
            **caps,
            image_size=image_size,
            seed=seed,
            device=device,
            transforms=list(transforms),
        )
