"""Search spaces of methods in a study, and the configurations a grid or random search visits.

A method's declared space (`hp(default, space=...)`) is the starting point; a sweep file may
override any field:

    methods:
      finetune: {lr: [0.003, 0.01], epochs: 2}   # a list searches its values, a scalar fixes one
      simplecil: {}                               # the declared space as it is

A field whose type is itself a sequence (e.g. `patterns: tuple[str, ...]`) is searched with a
list of lists; a flat list fixes it. Every value is type-checked against the method's
`HParams`, so a wrong type fails when the file is loaded, not in the middle of a sweep.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, get_args, get_origin, get_type_hints

import numpy as np

from ..core.config import check_value, search_space
from ..core.errors import UserError
from ..core.registry import METHODS


def method_spaces(methods: Any, where: str) -> dict[str, dict[str, tuple]]:
    """{method: {field: values}} from a study's `methods` entry (a list of names, or a mapping
    name -> overrides), validated against each method's hyperparameters."""
    if isinstance(methods, str):
        methods = [methods]
    if isinstance(methods, (list, tuple)):
        methods = {m: {} for m in methods}
    if not isinstance(methods, Mapping) or not methods:
        raise UserError(f"{where}: methods: expected a non-empty list of method names or a mapping")
    spaces = {}
    for name, overrides in methods.items():
        here = f"{where}: methods.{name}"
        try:
            cls = METHODS.get(name)
        except UserError as exc:
            raise UserError(f"{here}: {exc}") from None
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping):
            raise UserError(f"{here}: expected a mapping of hyperparameter -> value or list of values")
        spaces[name] = _space(cls.HParams, overrides, here)
    return spaces


def _space(hparams: type, overrides: Mapping[str, Any], where: str) -> dict[str, tuple]:
    space = search_space(hparams)
    hints = get_type_hints(hparams)
    for key, value in overrides.items():
        if key not in space:
            raise UserError(f"{where}: unknown hyperparameter {key!r}; valid options: {', '.join(space)}")
        values = value if _is_search_list(value, hints[key]) else [value]
        if not values:
            raise UserError(f"{where}.{key}: empty search space; give at least one value")
        space[key] = tuple(
            check_value(hparams, key, v, f"{where}.{key}[{i}]" if len(values) > 1 else f"{where}.{key}")
            for i, v in enumerate(values)
        )
    return space


def _is_search_list(value: Any, annotation: Any) -> bool:
    """A list is a list of candidate values, unless the field itself holds a sequence and the
    list is flat (then it is one value)."""
    if not isinstance(value, (list, tuple)):
        return False
    if not _is_sequence_type(annotation):
        return True
    return all(isinstance(v, (list, tuple)) for v in value)


def _is_sequence_type(annotation: Any) -> bool:
    if annotation in (list, tuple) or get_origin(annotation) in (list, tuple):
        return True
    return any(_is_sequence_type(a) for a in get_args(annotation) if a is not type(None))


def configurations(
    space: Mapping[str, tuple], search: str = "grid", samples: int = 0, seed: int = 0
) -> list[dict[str, Any]]:
    """Hyperparameter dicts of the grid (fields in declaration order), or for random search the
    first `samples` of a seeded permutation of the grid: raising `samples` later only adds
    configurations."""
    keys = list(space)
    grid = [dict(zip(keys, values)) for values in itertools.product(*(space[k] for k in keys))]
    if search == "grid" or samples <= 0:
        return grid
    order = np.random.default_rng(seed).permutation(len(grid))
    return [grid[i] for i in order[:samples]]


def searched_fields(space: Mapping[str, tuple]) -> list[str]:
    """Fields with more than one candidate value (what a tune table shows)."""
    return [k for k, v in space.items() if len(v) > 1]
