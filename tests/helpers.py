"""Shared test helpers."""

from __future__ import annotations

import contextlib

from ctta.core.registry import METHODS

CL_DEBUG = {
    "name": "class_incremental",
    "dataset": "digits",
    "increment": 5,
    "train_per_class": 12,
    "test_per_class": 6,
}
TTA_DEBUG = {
    "name": "corruption",
    "dataset": "digits",
    "corruptions": ["gaussian_noise", "contrast"],
    "severity": 3,
    "batch_size": 16,
    "test_per_class": 4,
    "source_epochs": 1,
}


@contextlib.contextmanager
def temporary_method(name: str, cls):
    """Register `cls` as method `name` for the duration of a test."""
    METHODS.register(name)(cls)
    try:
        yield cls
    finally:
        METHODS.unregister(name)


def spec(scenario, method, backbone="debug_vit", seed=0, **hparams):
    return {"scenario": scenario, "method": {"name": method, **hparams}, "backbone": backbone, "seed": seed}


def cl_half(pool: str, **options) -> dict:
    """A tiny class-incremental digits scenario over one half of the classes (3 + 2 classes)."""
    return {**CL_DEBUG, "classes": pool, "initial": 3, "increment": 2, **options}


def write_sweep(path, studies: dict, **top) -> str:
    """Write a sweep file with `studies` (and top-level keys such as `defaults`); returns its path."""
    import yaml

    path.write_text(yaml.safe_dump({**top, "studies": studies}, sort_keys=False))
    return str(path)
