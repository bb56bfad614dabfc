"""Typed, documented configuration dataclasses: method hyperparameters and scenario options.

A field is declared with `hp(default, space=..., doc=...)`; its search space lives next to
its default, so a method file reads like the paper's algorithm box. `build_config` turns a
user mapping (YAML, CLI) into the dataclass, rejecting unknown keys and wrong types with one
line that names the key and the valid choices. `load_yaml` and `parse_assignments` read the
files and `key=value` options those mappings come from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError


def hp(default: Any, space: typing.Sequence | None = None, doc: str = "") -> Any:
    """Declare a hyperparameter (or option) with its default and its search space."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as default for a sequence option")
    space = tuple(space) if space is not None else (default,)
    if not space:
        raise TypeError("a search space needs at least one value")
    return dataclasses.field(default=default, metadata={"space": space, "doc": doc})


def search_space(cls: type) -> dict[str, tuple]:
    """Declared values of every field (a field without a space contributes its default)."""
    return {f.name: tuple(f.metadata.get("space", (f.default,))) for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def build_config(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Instantiate dataclass `cls` from `values`, validating names and types.

    `where` names the context for error messages, e.g. "method 'tent'" or "protocols/x.yaml: methods.tent".
    """
    values = dict(values or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise UserError(
            f"{where}: unknown option {unknown[0]!r}; valid options: {', '.join(fields) or '(none)'}"
        )
    hints = get_type_hints(cls)
    kwargs = {name: coerce(value, hints[name], f"{where}: option {name!r}") for name, value in values.items()}
    return cls(**kwargs)


def check_value(cls: type, name: str, value: Any, where: str) -> Any:
    """Validate one value for field `name` of `cls` (used for search spaces)."""
    hints = get_type_hints(cls)
    if name not in hints:
        raise UserError(f"{where}: unknown option {name!r}; valid options: {', '.join(hints) or '(none)'}")
    return coerce(value, hints[name], f"{where}: option {name!r}")


def as_dict(config: Any) -> dict[str, Any]:
    """JSON-friendly dict of a config instance (tuples become lists)."""
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _jsonable(value):
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a type annotation, converting the lossless cases (int -> float, list -> tuple)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, where)
            except UserError as exc:
                errors.append(str(exc))
        raise UserError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {_type_name(annotation)}"
        )
    if origin is Literal:
        if value in args:
            return value
        raise UserError(f"{where}: invalid value {value!r}; valid choices: {', '.join(map(str, args))}")
    if origin in (tuple, list) or annotation in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise UserError(f"{where}: expected a list, got {value!r}")
        if args and not (len(args) == 2 and args[1] is Ellipsis) and origin is tuple:
            if len(args) != len(value):
                raise UserError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(coerce(v, a, where) for v, a in zip(value, args))
        inner = args[0] if args else Any
        return tuple(coerce(v, inner, where) for v in value)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where}: expected true or false, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{where}: expected a number, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{where}: expected an integer, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{where}: expected a string, got {value!r}")
    return value


def _type_name(annotation) -> str:
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a UserError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserError(f"{where}: malformed YAML ({getattr(exc, 'problem', None) or exc})") from None


def parse_assignments(items: tuple[str, ...], what: str) -> dict[str, Any]:
    """`key=value` pairs; values are parsed as YAML scalars/lists (`lr=0.01`, `classes=[1,2]`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"{what} option {item!r} must look like key=value")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out
