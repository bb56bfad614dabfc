"""Debug runs for every registered method, so a new method is tested the moment it exists.

`debug_specs(method)` returns tiny runs (embedded data, tiny randomly initialised backbones,
a few seconds each) on every debug scenario the method is compatible with. The project's
test suite runs them for every name in `list_methods()`; a plugin author can do the same:

    from ctta.testing import check_method
    check_method("my_method")      # raises AssertionError with the reason if a run fails
"""

from __future__ import annotations

import math
from typing import Any

from .backbones import create_backbone
from .registry import METHODS

# (scenario spec, backbones to try). Tiny: 2 tasks / 2 shifts, a few images per class.
DEBUG_SCENARIOS: list[tuple[dict[str, Any], tuple[str, ...]]] = [
    (
        {
            "name": "class_incremental",
            "dataset": "digits",
            "increment": 5,
            "train_per_class": 12,
            "test_per_class": 6,
        },
        ("debug_vit",),
    ),
    (
        {
            "name": "corruption",
            "dataset": "digits",
            "corruptions": ["gaussian_noise", "contrast"],
            "severity": 3,
            "batch_size": 16,
            "test_per_class": 4,
            "setting": "continual",
            "source_epochs": 1,
        },
        ("debug_vit", "small_cnn"),
    ),
]

_KIND_OF = {"class_incremental": "class_incremental", "corruption": "test_time"}


def register_debug_scenario(spec: dict[str, Any], backbones: tuple[str, ...], kind: str) -> None:
    """Add a debug scenario (used by later scenario families and by plugins)."""
    DEBUG_SCENARIOS.append((spec, backbones))
    _KIND_OF[spec["name"]] = kind


def debug_specs(method: str, **hparams: Any) -> list[dict[str, Any]]:
    """Run specs of `method` on every compatible debug scenario and backbone."""
    cls = METHODS.get(method)
    specs = []
    for scenario, backbones in DEBUG_SCENARIOS:
        if _KIND_OF[scenario["name"]] not in cls.stream_kinds:
            continue
        for name in backbones:
            if cls.requires <= create_backbone(name).capabilities():
                specs.append(
                    {"scenario": scenario, "method": {"name": method, **hparams}, "backbone": name, "seed": 0}
                )
    return specs


def check_method(method: str, **hparams: Any) -> list[dict]:
    """Run every debug spec of `method`; assert each finished with finite metrics in range."""
    from .engine import execute

    specs = debug_specs(method, **hparams)
    assert specs, f"method {method!r} is compatible with no debug scenario"
    records = []
    for spec in specs:
        rec = execute(spec, device="cpu")
        assert rec["status"] == "done", (
            f"{method} on {spec['scenario']['name']}/{spec['backbone']}: {rec.get('error')}"
        )
        for k, v in rec["metrics"].items():
            assert math.isfinite(v), f"{method}: metric {k} is {v}"
            if k.endswith("acc") or k.startswith("acc@"):
                assert 0.0 <= v <= 100.0, f"{method}: {k}={v} outside 0..100"
        records.append(rec)
    return records
