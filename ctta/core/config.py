"""Typed, documented configuration dataclasses: method hyperparameters and scenario options.

A field is declared with `hp(default, space=..., doc=..., ge=/gt=/le=/lt=...)`; its search
space and its valid range live next to its default, so a method file reads like the paper's
algorithm box. `build_config` turns a user mapping (YAML, CLI) into the dataclass, rejecting
unknown keys, wrong types and values out of range with one line that names the key and the
valid choices. `load_yaml` and `parse_assignments` read the files and `key=value` options
those mappings come from, with numbers as people write them (`1e-3` is a float, as in YAML 1.2).
"""

from __future__ import annotations

import dataclasses
import operator
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import UserError

BOUNDS = {
    "ge": (">=", operator.ge),
    "gt": (">", operator.gt),
    "le": ("<=", operator.le),
    "lt": ("<", operator.lt),
}


def hp(
    default: Any,
    space: typing.Sequence | None = None,
    doc: str = "",
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """Declare a hyperparameter (or option) with its default, its search space and, for a
    number, its valid range (`ge=1`: >= 1, `gt=0`: > 0, `le=1`, `lt=1`; None is always valid)."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use a tuple (immutable) as default for a sequence option")
    space = tuple(space) if space is not None else (default,)
    if not space:
        raise TypeError("a search space needs at least one value")
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}
    for value in (default, *space) if bounds else ():  # a declaration bug, not a user error
        if not _in_range(value, bounds):
            raise TypeError(f"value {value!r} is outside the declared range {range_text('value', bounds)}")
    return dataclasses.field(default=default, metadata={"space": space, "doc": doc, "range": bounds})


def search_space(cls: type) -> dict[str, tuple]:
    """Declared values of every field (a field without a space contributes its default)."""
    return {f.name: tuple(f.metadata.get("space", (f.default,))) for f in dataclasses.fields(cls)}


def field_docs(cls: type) -> dict[str, str]:
    return {f.name: f.metadata.get("doc", "") for f in dataclasses.fields(cls)}


def field_range(field: dataclasses.Field) -> str:
    """The declared range of a field as people read it (`0 <= p <= 1`), or '' when it has none."""
    bounds = field.metadata.get("range", {})
    return range_text(field.name, bounds) if bounds else ""


def range_text(name: str, bounds: Mapping[str, float]) -> str:
    """`k >= 1`, `lr > 0`, `0 <= p <= 1`."""
    low = [(BOUNDS[k][0], v) for k, v in bounds.items() if k in ("ge", "gt")]
    high = [(BOUNDS[k][0], v) for k, v in bounds.items() if k in ("le", "lt")]
    if low and high:
        return f"{_num(low[0][1])} {low[0][0].replace('>', '<')} {name} {high[0][0]} {_num(high[0][1])}"
    return " and ".join(f"{name} {op} {_num(v)}" for op, v in low + high)


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _in_range(value: Any, bounds: Mapping[str, float]) -> bool:
    """Every number in `value` (a number, or a sequence of them) lies within `bounds`."""
    if isinstance(value, (list, tuple)):
        return all(_in_range(v, bounds) for v in value)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return True  # None, names, ...: the type check has the say
    return all(BOUNDS[k][1](value, v) for k, v in bounds.items())


def _checked(field: dataclasses.Field, value: Any, where: str) -> Any:
    bounds = field.metadata.get("range", {})
    if bounds and not _in_range(value, bounds):
        raise UserError(
            f"{where}: option {field.name!r}: expected {range_text(field.name, bounds)}, got {value!r}"
        )
    return value


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
    kwargs = {
        name: _checked(fields[name], coerce(value, hints[name], f"{where}: option {name!r}"), where)
        for name, value in values.items()
    }
    return cls(**kwargs)


def check_value(cls: type, name: str, value: Any, where: str) -> Any:
    """Validate one value for field `name` of `cls` (used for search spaces)."""
    hints = get_type_hints(cls)
    if name not in hints:
        raise UserError(f"{where}: unknown option {name!r}; valid options: {', '.join(hints) or '(none)'}")
    field = next(f for f in dataclasses.fields(cls) if f.name == name)
    return _checked(field, coerce(value, hints[name], f"{where}: option {name!r}"), where)


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


class _Loader(yaml.SafeLoader):
    """YAML with floats as YAML 1.2 (and people) write them: PyYAML follows YAML 1.1, where a
    float needs a dot, so `1e-3`, `1E6` and `-2.5e-4` were strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+|\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """YAML text as Python values (safe: plain data only), with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or a syntax error is a UserError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        return parse_yaml(path.read_text())
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
            out[key] = parse_yaml(value)
        except yaml.YAMLError:
            out[key] = value
    return out
