"""ctta: continual learning and test-time adaptation benchmarks on pretrained models.

This module is the contract a plugin is written against: the stream types (`Task`,
`TestBatch`, `StreamInfo`, `ContinualStream`, `TestStream`), the base classes (`Method`,
`Scenario`, `Protocol`), `hp` to declare hyperparameters with their search space, the
registries and `UserError`. What plugin authors use beyond it is `ctta.kit`; running is
`ctta.run` (`execute`, `Store`, `collect`), sweeps `ctta.sweep`, reports `ctta.report`.
The layers, from the bottom: core, data, models, api, plan | kit, methods | scenarios |
protocols | zoo, run, sweep | testing, report, cli; each imports only from the layers below.
"""

from .api import (
    CAPABILITIES,
    STREAM_KINDS,
    ContinualStream,
    Method,
    Scenario,
    StreamInfo,
    Task,
    TestBatch,
    TestStream,
)
from .core.config import hp
from .core.errors import UserError
from .core.registry import (
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
from .core.version import VERSION as __version__  # noqa: F401  (the package version, as `ctta.__version__`)
from .plan.protocol import Protocol

__all__ = [
    "CAPABILITIES",
    "STREAM_KINDS",
    "ContinualStream",
    "Method",
    "Protocol",
    "Scenario",
    "StreamInfo",
    "Task",
    "TestBatch",
    "TestStream",
    "UserError",
    "create_method",
    "create_protocol",
    "create_scenario",
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
