"""Noise corruptions: gaussian, shot, impulse, speckle."""

from __future__ import annotations

import torch
from torch import Tensor

from .ops import _rand, _randn


def _gaussian_noise(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """x + N(0, c^2) per pixel and channel. Exact."""
    return _randn(gen, *x.shape, like=x).mul_(c).add_(x)


def _shot_noise(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """Poisson(c x) / c. Exact."""
    return torch.poisson(x * c, generator=gen) / c


def _impulse_noise(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """skimage random_noise 's&p': each channel value is replaced with probability c, half by 0 and
    half by 1. Exact (matches current skimage; skimage < 0.17 drew ceil(c * size / 2) coordinates
    with replacement, i.e. slightly fewer distinct pixels)."""
    u = _rand(gen, *x.shape, like=x)
    return torch.where(u < c, (u >= c / 2).to(x.dtype), x)  # pepper below c / 2, salt up to c


def _speckle_noise(x: Tensor, c: float, s: float, gen: torch.Generator) -> Tensor:
    """x + x * N(0, c^2). Exact."""
    return _randn(gen, *x.shape, like=x).mul_(c).add_(1).mul_(x)  # x + x * c * n
