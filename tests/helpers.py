"""Shared test helpers."""

from __future__ import annotations

import contextlib
import math

import torch

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


def natural_images(n: int, size: int | tuple[int, int], seed: int = 0) -> torch.Tensor:
    """Smooth colour gradients, a disc, a box and a striped band: edges, texture and flat areas."""
    h, w = (size, size) if isinstance(size, int) else size
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = []
    for _ in range(n):
        p = torch.rand(12, generator=g)
        img = torch.stack(
            [0.25 + 0.5 * xx * p[0] + 0.2 * yy, 0.3 + 0.4 * yy * p[1], 0.6 - 0.3 * xx * yy + 0.1 * p[2]]
        )
        img = img + (img.mean(0) - img) * (1 - xx)  # saturation from grey (left) to full (right)
        disc = (xx - 0.3 - 0.4 * p[3]) ** 2 + (yy - 0.3 - 0.4 * p[4]) ** 2 < (0.1 + 0.15 * p[5]) ** 2
        img = torch.where(disc, torch.stack([p[6], 0.8 - 0.6 * p[6], 0.2 + 0.3 * p[7]]).view(3, 1, 1), img)
        box = ((xx - p[8]).abs() < 0.15) & ((yy - p[9]).abs() < 0.25)
        img = torch.where(box, torch.tensor([0.85, 0.75, 0.2]).view(3, 1, 1) * (0.6 + 0.4 * p[10]), img)
        stripes = torch.sin(
            2 * math.pi * (min(h, w) / 10) * (xx * math.cos(3 * p[11]) + yy * math.sin(3 * p[11]))
        )
        out.append((img + 0.08 * stripes * (yy > 0.6)).clamp(0.03, 0.97))
    return torch.stack(out)
