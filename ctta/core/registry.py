"""Name -> class registries for methods, scenarios, protocols, backbones and datasets.

Built-ins live in the packages `ctta.methods`, `ctta.scenarios`, `ctta.protocols` (one module
per name: the part of a name before ':' is the module, so `create_method("tent")` imports
only `ctta.methods.tent`). Backbones are registered in `ctta.models` and `ctta.zoo`, datasets
in `ctta.data`. Third-party packages add names through the entry-point groups `ctta.methods`,
`ctta.scenarios`, `ctta.protocols`, `ctta.backbones`, `ctta.datasets`; an entry point may
point at a module whose import registers the name, or at the class itself. Everything is
loaded lazily, and a plugin that fails to import breaks only its own name.

Backbones and datasets may also be named `module.path:callable` (a Python factory the user
brings, see `ctta.core.user_code`, `ctta.models.user` and `ctta.data.user`). Resolution is unambiguous: a
registered name or family wins (`timm:resnet18` is the timm family), then built-ins, then
entry points, and only then is the name imported as `module.path:callable`.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from .errors import UserError, choices_error

log = logging.getLogger(__name__)


class Registry:
    """One kind of named thing. Names may be families: `avalanche:EWC` resolves through the
    factory registered for the family `avalanche`, which receives the part after ':'."""

    def __init__(
        self, kind: str, group: str, builtin_package: str | None = None, builtin_modules: tuple[str, ...] = ()
    ):
        self.kind = kind
        self.group = group
        self._package = builtin_package
        self._modules = builtin_modules
        self._entries: dict[str, Any] = {}
        self._families: dict[str, Callable[[str], Any]] = {}
        self._broken: dict[str, str] = {}
        self._scanned = False
        self._fallback: Callable[[str], Any] | None = None
        self.fallback_form: tuple[str, str] | None = None  # (how such a name looks, what it is)

    # -- registration ------------------------------------------------------------
    def register(self, name: str, *, family: bool = False):
        """Decorator. With `family=True` the decorated callable maps a suffix to an entry."""

        def decorate(obj):
            table = self._families if family else self._entries
            if name in table and table[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered by {_origin(table[name])}")
            table[name] = obj
            if not family and isinstance(obj, type):
                obj.name = name
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Forget `name` (a plain name or a family); unknown names are ignored. For tests and
        notebooks that register a class, then need the name back."""
        self._entries.pop(name, None)
        self._families.pop(name, None)

    def entries(self) -> dict[str, Any]:
        """Every entry registered so far (plain names, without discovering more)."""
        return dict(self._entries)

    def families(self) -> dict[str, Callable[[str], Any]]:
        """Every family registered so far (`timm`, `avalanche`, ...) with its factory."""
        self._scan()
        return dict(self._families)

    def resolve_unknown_with(self, fallback: Callable[[str], Any], form: str, meaning: str) -> None:
        """Names that nothing registered knows go to `fallback(name)` (None: still unknown).
        `form` and `meaning` describe those names (e.g. "module.path:factory", "a Python
        factory ...") in `ctta list` and in the unknown-name error."""
        self._fallback, self.fallback_form = fallback, (form, meaning)

    # -- lookup --------------------------------------------------------------------
    def get(self, name: str):
        """The entry for `name`, importing only what is needed to find it."""
        if not isinstance(name, str) or not name:
            raise UserError(f"{self.kind} name must be a non-empty string, got {name!r}")
        found = self._lookup(name)
        if found is None:
            self._import_builtin(name.split(":", 1)[0])
            found = self._lookup(name)
        if found is None:
            self._load_entry_point(name.split(":", 1)[0]) or self._load_entry_point(name)
            found = self._lookup(name)
        if found is None and name in self._broken:
            raise UserError(f"{self.kind} {name!r} failed to load: {self._broken[name]}")
        if found is None and self._fallback is not None:
            found = self._fallback(name)
        if found is None:
            self._scan()
            error = choices_error(self.kind, name, self.names())
            if self.fallback_form is not None:
                raise UserError(f"{error}; or {self.fallback_form[0]}: {self.fallback_form[1]}")
            raise error
        return found

    def names(self, pattern: str | None = None) -> list[str]:
        """All registered names (families shown as `family:*`), optionally filtered by a glob."""
        self._scan()
        names = sorted(self._entries) + sorted(f"{f}:*" for f in self._families)
        return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]

    def broken(self) -> dict[str, str]:
        """Plugins that failed to load, with the reason."""
        self._scan()
        return dict(self._broken)

    def _lookup(self, name: str):
        if name in self._entries:
            return self._entries[name]
        family, _, suffix = name.partition(":")
        if suffix and family in self._families:
            entry = self._families[family](suffix)
            if isinstance(entry, type):
                entry.name = name
            return entry
        return None

    # -- discovery -----------------------------------------------------------------
    def _builtin_module_names(self) -> list[str]:
        names = list(self._modules)
        if self._package:
            pkg = importlib.import_module(self._package)
            names += [
                f"{self._package}.{m.name}"
                for m in pkgutil.iter_modules(pkg.__path__)
                if not m.name.startswith("_")
            ]
        return names

    def _import_builtin(self, module: str) -> None:
        if not self._package:  # a registry fed by a few fixed modules imports them all
            for full in self._modules:
                importlib.import_module(full)
            return
        full = f"{self._package}.{module}"
        if f"{self._package}.{module}" in self._builtin_module_names():
            importlib.import_module(full)

    def _load_entry_point(self, name: str) -> bool:
        for ep in entry_points(group=self.group):
            if ep.name != name:
                continue
            try:
                obj = ep.load()
            except Exception as exc:  # a broken plugin must not break the others
                self._broken[name] = f"{type(exc).__name__}: {exc}"
                log.warning("ctta plugin %s (%s) failed to load: %s", name, ep.value, exc)
                return False
            if name not in self._entries and name not in self._families and isinstance(obj, type):
                self.register(name)(obj)
            return True
        return False

    def _scan(self) -> None:
        if self._scanned:
            return
        for full in self._builtin_module_names():
            importlib.import_module(full)
        for ep in entry_points(group=self.group):
            if ep.name not in self._entries and ep.name not in self._families:
                self._load_entry_point(ep.name)
        self._scanned = True


def _origin(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"


METHODS = Registry("method", "ctta.methods", builtin_package="ctta.methods")
SCENARIOS = Registry("scenario", "ctta.scenarios", builtin_package="ctta.scenarios")
PROTOCOLS = Registry("protocol", "ctta.protocols", builtin_package="ctta.protocols")
BACKBONES = Registry(
    "backbone",
    "ctta.backbones",
    builtin_modules=(
        "ctta.models.timm_models",
        "ctta.models.torchvision_models",
        "ctta.models.robustbench_models",
        "ctta.models.clip",
        "ctta.models.user",
        "ctta.zoo.backbones",
    ),
)
DATASETS = Registry(
    "dataset",
    "ctta.datasets",
    builtin_modules=(
        "ctta.data.datasets",
        "ctta.data.folders",
        "ctta.data.released",
        "ctta.data.arrays",
        "ctta.data.user",
    ),
)

register_method = METHODS.register
register_scenario = SCENARIOS.register
register_protocol = PROTOCOLS.register
register_backbone = BACKBONES.register
register_dataset = DATASETS.register


def list_methods(pattern: str | None = None) -> list[str]:
    return METHODS.names(pattern)


def list_scenarios(pattern: str | None = None) -> list[str]:
    return SCENARIOS.names(pattern)


def list_protocols(pattern: str | None = None) -> list[str]:
    return PROTOCOLS.names(pattern)


def list_backbones(pattern: str | None = None) -> list[str]:
    return BACKBONES.names(pattern)


def list_datasets(pattern: str | None = None) -> list[str]:
    return DATASETS.names(pattern)


def create_method(name: str, **hparams):
    """Instantiate a registered method with hyperparameter overrides (validated)."""
    return METHODS.get(name)(**hparams)


def create_scenario(name: str, **config):
    """Instantiate a registered scenario with config overrides (validated)."""
    return SCENARIOS.get(name)(**config)


def create_protocol(name: str, **config):
    return PROTOCOLS.get(name)(**config)


__all__ = [
    "BACKBONES",
    "DATASETS",
    "METHODS",
    "PROTOCOLS",
    "SCENARIOS",
    "Registry",
    "UserError",
    "create_method",
    "create_protocol",
    "create_scenario",
    "list_backbones",
    "list_datasets",
    "list_methods",
    "list_protocols",
    "list_scenarios",
    "register_backbone",
    "register_dataset",
    "register_method",
    "register_protocol",
    "register_scenario",
]
