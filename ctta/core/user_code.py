"""Code users bring, named `module.path:callable`: importing it, and passing it spec options.

A spec or sweep file that names a callable runs it: such files are code, to be trusted like a
script. What is refused is what cannot be a model or dataset factory: built-in functions and
anything of the standard library (`os:system`, `subprocess:run`, `builtins:exec`).

A backbone or dataset factory of the user's gets the spec's options that are not ctta's own;
`options_signature` makes one signature of both, so that spec validation (unknown options,
defaults filled into the run's identity) treats a user's factory like a built-in one.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .errors import UserError


def import_object(ref: str, what: str) -> Any:
    """The callable named `module.path:attribute` (the attribute may be dotted), or None when
    `ref` does not have that form or no such module exists. The module is imported from
    `sys.path`, then from the current directory (as `python -m` would), so a file in the
    folder where ctta runs can be named without installing it. Errors name `what`."""
    module_name, _, attr = ref.partition(":")
    if not attr or not all(p.isidentifier() for p in module_name.split(".") + attr.split(".")):
        return None
    if _standard(module_name):  # refused before importing anything
        raise UserError(f"{what}: {module_name!r} is a module of Python's standard library, {NOT_A_FACTORY}")
    try:
        module = _import_with_cwd(module_name)
    except ModuleNotFoundError as exc:
        if _is_missing(module_name, exc):
            return None
        raise UserError(f"{what}: importing {module_name!r} failed: {exc}") from None
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            own = sorted(
                n
                for n, v in vars(module).items()
                if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__
            )
            raise UserError(
                f"{what}: module {module_name!r} has no attribute {attr!r}; "
                f"its callables: {', '.join(own) or '(none)'}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise UserError(f"{what}: {ref} is a {type(obj).__name__}, not a callable")
    if inspect.isbuiltin(obj) or _standard(getattr(obj, "__module__", None) or ""):
        kind = "a built-in function" if inspect.isbuiltin(obj) else "from Python's standard library"
        raise UserError(f"{what}: {ref} is {kind}, {NOT_A_FACTORY}")
    return obj


NOT_A_FACTORY = (
    "not a factory; name a function or class of your own module that returns a torch.nn.Module "
    "(backbones) or a torch Dataset (datasets)"
)


def _standard(module_name: str) -> bool:
    """A module of Python's standard library (os, subprocess, builtins, ...): never a factory
    of models or data, and calling one (`os:system`) would run a command from a spec file."""
    return module_name.split(".")[0] in sys.stdlib_module_names


def _is_missing(module_name: str, exc: ModuleNotFoundError) -> bool:
    """True when `module_name` itself (or a parent package) is absent, not one of its imports."""
    return exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + "."))


def _import_with_cwd(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        if not _is_missing(module_name, exc) or cwd in sys.path or "" in sys.path:
            raise
        sys.path.insert(0, cwd)
        return importlib.import_module(module_name)


def parameters_of(factory: Callable) -> dict[str, inspect.Parameter]:
    """The factory's parameters; any keyword when it has no inspectable signature (builtins)."""
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return {"kwargs": inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)}


def options_signature(
    ours: Iterable[inspect.Parameter], factory: Callable, hide: Iterable[str] = ()
) -> inspect.Signature:
    """Keyword-only signature of our options followed by the factory's (ours win a clash;
    `hide`: factory parameters that ctta sets itself)."""
    ours = [p for p in ours if p.kind is not p.VAR_KEYWORD]
    taken = {p.name for p in ours} | set(hide)
    theirs = [
        p if p.kind is p.VAR_KEYWORD else p.replace(kind=p.KEYWORD_ONLY)
        for p in parameters_of(factory).values()
        if p.name not in taken and p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL)
    ]
    return inspect.Signature(sorted(ours + theirs, key=lambda p: p.kind is p.VAR_KEYWORD))


def call(factory: Callable, options: dict[str, Any], what: str) -> Any:
    """`factory(**options)`, a missing or unexpected argument being a UserError naming `what`."""
    try:
        inspect.signature(factory).bind(**options)
    except TypeError as exc:
        raise UserError(f"{what}: {exc}") from None
    except ValueError:  # no signature to check against
        pass
    return factory(**options)


def source_fingerprint(obj: Any) -> str | None:
    """sha1 of the file that defines `obj`, so caches follow edits of the user's code."""
    try:
        path = inspect.getsourcefile(obj)
    except TypeError:  # builtins
        return None
    return hashlib.sha1(open(path, "rb").read()).hexdigest() if path and os.path.isfile(path) else None
