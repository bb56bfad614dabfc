"""ctta: continual learning and test-time adaptation benchmarks on pretrained models.

The public API: the stream contract (`Task`, `TestBatch`, `StreamInfo`), the base classes
(`Method`, `Scenario`, `Protocol`), `hp` to declare hyperparameters with their search space,
and the registries. `ctta.engine.execute` runs one run; `ctta.store.collect` tables records.
"""

from .api import (
    STREAM_KINDS,
    ContinualStream,
    Method,
    Protocol,
    Scenario,
    StreamInfo,
    Task,
    TestBatch,
    TestStream,
)
from .config import hp
from .errors import UserError
from .registry import (
    create_method,
    create_protocol,
    create_scenario,
    list_backbones,
    list_datasets,
    list_methods,
    list_protocols,
    list_scenarios,
    register_backbone,
    register_dataset,
    register_method,
    register_protocol,
    register_scenario,
)

__version__ = "0.1.0"


def __getattr__(name: str):
    # Heavier entry points are imported on first use so `import ctta` stays light.
    if name == "execute":
        from .engine import execute

        return execute
    if name == "RunSpec":
        from .spec import RunSpec

        return RunSpec
    if name in ("Store", "collect"):
        from . import store

        return getattr(store, name)
    raise AttributeError(f"module 'ctta' has no attribute {name!r}")


__all__ = [
    "STREAM_KINDS",
    "ContinualStream",
    "Method",
    "Protocol",
    "RunSpec",
    "Scenario",
    "Store",
    "StreamInfo",
    "Task",
    "TestBatch",
    "TestStream",
    "UserError",
    "collect",
    "create_method",
    "create_protocol",
    "create_scenario",
    "execute",
    "hp",
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
