"""A run's identity: (scenario, method with hyperparameters, backbone, seed), canonicalised.

Defaults are filled in before hashing, so `{lr: 0.01}` and `{}` name the same run when 0.01
is the default. The device is not part of the identity (the same run on another device is
the same experiment), and neither are protocol labels: a run shared by two protocols is run
once.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.config import as_dict, build_config
from ..core.errors import UserError
from ..core.files import content_key
from ..core.registry import BACKBONES, DATASETS, METHODS, SCENARIOS
from ..data.datasets import DataSpec
from ..models.user import object_spec

DEFAULT_SEED = 1993  # the field's default (PyCIL, PILOT, Reality Check)


@dataclass(frozen=True)
class RunSpec:
    scenario: dict[str, Any]
    method: dict[str, Any]
    backbone: dict[str, Any]
    seed: int = DEFAULT_SEED

    @classmethod
    def parse(cls, obj: Mapping[str, Any], where: str = "run spec") -> RunSpec:
        """Validate names and options and fill in defaults. Raises UserError naming the key."""
        if not isinstance(obj, Mapping):
            raise UserError(f"{where}: expected a mapping with scenario, method, backbone, seed")
        unknown = sorted(set(obj) - {"scenario", "method", "backbone", "seed"})
        if unknown:
            raise UserError(
                f"{where}: unknown key {unknown[0]!r}; valid keys: backbone, method, scenario, seed"
            )
        for key in ("scenario", "method", "backbone"):
            if key not in obj:
                raise UserError(f"{where}: missing key {key!r}")
        seed = obj.get("seed", DEFAULT_SEED)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**32:
            raise UserError(f"{where}: seed must be an integer in 0..2**32-1 (NumPy's seeds), got {seed!r}")
        # Names of the user's code (`module.path:callable`) are imported last, once the rest
        # of the spec is valid: the backbone, then the scenario's dataset.
        scenario = _resolve_named(obj["scenario"], SCENARIOS, "Config", f"{where}: scenario")
        method = resolve_method(obj["method"], f"{where}: method")
        _check_dataset(scenario, f"{where}: scenario", user_code=False)
        backbone = resolve_backbone(obj["backbone"], f"{where}: backbone")
        _check_dataset(scenario, f"{where}: scenario", user_code=True)
        return cls(scenario=scenario, method=method, backbone=backbone, seed=seed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "method": self.method,
            "backbone": self.backbone,
            "seed": self.seed,
        }

    @property
    def run_id(self) -> str:
        return content_key(self.as_dict())

    @property
    def label(self) -> str:
        return f"{self.method['name']} on {self.scenario['name']} ({self.backbone['name']}, seed {self.seed})"


@dataclass(frozen=True)
class Case:
    """One scenario instance that a protocol runs methods on: a scenario and a backbone, both
    resolved (defaults filled in), and a short label for tables."""

    scenario: dict[str, Any]
    backbone: dict[str, Any]
    label: str

    @property
    def kind(self) -> str:
        return SCENARIOS.get(self.scenario["name"]).kind

    def spec(self, method: dict[str, Any], seed: int) -> RunSpec:
        return RunSpec(scenario=self.scenario, method=method, backbone=self.backbone, seed=seed)

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "backbone": self.backbone, "label": self.label}


def resolve_cases(obj: Any, default_backbone: Any, where: str) -> list[Case]:
    """Cases from a scenario spec, a `{scenario:, backbone:, label:}` mapping, or a list of either."""
    entries = list(obj) if isinstance(obj, (list, tuple)) else [obj]
    if obj is None or not entries:
        raise UserError(f"{where}: expected a scenario (name or mapping) or a list of scenarios")
    default_bb = resolve_backbone(default_backbone, f"{where}: backbone")
    cases = []
    for i, entry in enumerate(entries):
        here = f"{where}[{i}]" if isinstance(obj, (list, tuple)) else where
        scenario, backbone, label = entry, None, None
        if isinstance(entry, Mapping) and "scenario" in entry:
            unknown = sorted(set(entry) - {"scenario", "backbone", "label"})
            if unknown:
                raise UserError(f"{here}: unknown key {unknown[0]!r}; valid keys: backbone, label, scenario")
            scenario, backbone, label = entry["scenario"], entry.get("backbone"), entry.get("label")
        sc = resolve_scenario(scenario, f"{here}: scenario")
        bb = default_bb if backbone is None else resolve_backbone(backbone, f"{here}: backbone")
        if label is not None and not isinstance(label, str):
            raise UserError(f"{here}: label must be a string, got {label!r}")
        cases.append(Case(sc, bb, label or _case_label(sc, bb if bb != default_bb else None)))
    labels = [c.label for c in cases]
    for label in labels:
        if labels.count(label) > 1:
            raise UserError(f"{where}: two scenarios are labelled {label!r}; give them distinct 'label's")
    return cases


def resolve_scenario(obj: Any, where: str) -> dict[str, Any]:
    """Scenario name plus every option (defaults filled in), validated; a `dataset` option must
    name a registered dataset (its files are not touched)."""
    scenario = _resolve_named(obj, SCENARIOS, "Config", where)
    _check_dataset(scenario, where)
    return scenario


def _check_dataset(scenario: dict[str, Any], where: str, user_code: bool | None = None) -> None:
    """The scenario's `dataset` must be a registered dataset (its files are not touched). With
    `user_code` True/False, only a name that may (not) be the user's `module.path:callable`."""
    if scenario.get("dataset") is not None:  # None: the scenario chooses (e.g. from a preset)
        try:
            name = DataSpec.parse(scenario["dataset"]).name
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        if user_code is None or user_code == (":" in name):
            _get(DATASETS, name, f"{where}: dataset")


def resolve_method(obj: Any, where: str) -> dict[str, Any]:
    """Method name plus every hyperparameter (defaults filled in), validated."""
    return _resolve_named(obj, METHODS, "HParams", where)


def _case_label(scenario: dict[str, Any], backbone: dict[str, Any] | None) -> str:
    """`name[option=value, ...]` with the options that differ from the scenario's defaults."""
    defaults = as_dict(build_config(SCENARIOS.get(scenario["name"]).Config, {}, "defaults"))
    changed = [
        f"{k}={json.dumps(v, separators=(',', ':')) if isinstance(v, (list, dict)) else v}"
        for k, v in scenario.items()
        if k != "name" and v != defaults.get(k)
    ]
    label = scenario["name"] + (f"[{', '.join(changed)}]" if changed else "")
    return label if backbone is None else f"{label} @ {backbone['name']}"


def _named(obj: Any, where: str) -> tuple[str, dict]:
    if isinstance(obj, str):
        return obj, {}
    if isinstance(obj, Mapping) and isinstance(obj.get("name"), str):
        return obj["name"], {k: v for k, v in obj.items() if k != "name"}
    raise UserError(f"{where}: expected a name or a mapping with a 'name', got {obj!r}")


def _get(registry, name: str, where: str):
    try:
        return registry.get(name)
    except UserError as exc:
        raise UserError(f"{where}: {exc}") from None


def _resolve_named(obj: Any, registry, config_attr: str, where: str) -> dict[str, Any]:
    name, options = _named(obj, where)
    cls = _get(registry, name, where)
    config = build_config(getattr(cls, config_attr), options, f"{where} {name!r}")
    return {"name": name, **as_dict(config)}


def resolve_backbone(obj: Any, where: str = "backbone") -> dict[str, Any]:
    """Backbone name plus options, with the factory's keyword defaults filled in. A
    torch.nn.Module (alone or as `{model: module, **options}`) is named by its weights."""
    name, options = _named(object_spec(obj) or obj, where)
    factory = _get(BACKBONES, name, where)
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    for key in options:
        if key not in params and not accepts_any:
            raise UserError(
                f"{where} {name!r}: unknown option {key!r}; valid options: "
                f"{', '.join(p for p in params if params[p].kind is not inspect.Parameter.VAR_KEYWORD) or '(none)'}"
            )
    defaults = {
        k: p.default
        for k, p in params.items()
        if p.default is not inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD
    }
    return {"name": name, **defaults, **options}
