"""Debug runs for every registered method, so a new method is tested the moment it exists.

Every scenario declares a tiny instance (`Scenario.debug`, embedded data, a few images per
class) and the tiny randomly initialised backbones it runs with (`debug_backbones`).
`debug_specs(method)` pairs a method with every debug scenario and backbone it is
compatible with; the project's test suite runs them for every name in `list_methods()`. A
plugin author can do the same:

    from ctta.testing import check_method
    check_method("my_method")      # AssertionError with the reason if a run fails
"""

from __future__ import annotations

import math
from typing import Any

from .core.registry import METHODS, SCENARIOS
from .models.factory import create_backbone
from .run.engine import execute


def debug_specs(method: str, **hparams: Any) -> list[dict[str, Any]]:
    """Run specs of `method` on every compatible debug scenario and backbone."""
    cls = METHODS.get(method)
    specs = []
    for name in SCENARIOS.names():
        scenario = SCENARIOS.get(name)
        if scenario.debug is None or scenario.kind not in cls.stream_kinds:
            continue
        for backbone in scenario.debug_backbones:
            if cls.requires <= create_backbone(backbone).capabilities():
                specs.append(
                    {
                        "scenario": {"name": name, **scenario.debug},
                        "method": {"name": method, **hparams},
                        "backbone": backbone,
                        "seed": 0,
                    }
                )
    return specs


def check_method(method: str, **hparams: Any) -> list[dict]:
    """Run every debug spec of `method`; assert each finished with finite metrics in range."""
    specs = debug_specs(method, **hparams)
    assert specs, f"method {method!r} is compatible with no debug scenario"
    records = []
    for spec in specs:
        rec = execute(spec, device="cpu")
        where = f"{method} on {spec['scenario']['name']}/{spec['backbone']}"
        assert rec["status"] == "done", f"{where}: {rec.get('error')}"
        for k, v in rec["metrics"].items():
            assert math.isfinite(v), f"{where}: metric {k} is {v}"
            if k.endswith("acc") or k.startswith("acc@"):
                assert 0.0 <= v <= 100.0, f"{where}: {k}={v} outside 0..100"
        records.append(rec)
    return records
