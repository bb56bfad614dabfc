"""Penultimate features of a frozen backbone, and the on-disk cache that lets sweeps compute
them once.

Methods that keep the backbone frozen (prototype classifiers, LAME, zero-shot CLIP) declare
`features_only = True`; the engine then hands them penultimate features instead of images,
and `extract_features` looks them up here first. The key is the backbone's identity (its
spec, and the source model's key for test-time streams) plus the data's content identity,
so two hyperparameter configurations of a method share every feature. The cache is active
only inside `feature_cache(dir)` (the sweep launcher opens one per results store).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from pathlib import Path

import torch

from ..core.files import atomic_save, content_key
from ..data.images import ImageData, iterate

_DIR: contextvars.ContextVar[Path | None] = contextvars.ContextVar("ctta_feature_cache", default=None)


@contextlib.contextmanager
def feature_cache(directory: str | Path | None):
    """Use `directory` as the feature cache inside the block (None: no cache)."""
    token = _DIR.set(Path(directory) if directory is not None else None)
    try:
        yield
    finally:
        _DIR.reset(token)


def cached(key_parts: object, compute: Callable[[], torch.Tensor | tuple]) -> torch.Tensor | tuple:
    """`compute()` once per key while a cache is active; loaded from disk afterwards."""
    directory = _DIR.get()
    if directory is None:
        return compute()
    path = directory / f"{content_key(key_parts, 24)}.pt"
    if path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a damaged entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    value = compute()
    cpu = tuple(v.cpu() for v in value) if isinstance(value, tuple) else value.cpu()
    atomic_save(path, lambda tmp: torch.save(cpu, tmp))
    return value


def extract_features(
    backbone,
    data: ImageData,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    cache: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features [N, D], labels [N]) of a frozen backbone, in data order; cached during sweeps.

    `cache=False` for a backbone that a method has changed (e.g. with adapters): the cache key
    knows only the backbone's spec, not what a method did to it."""

    @torch.no_grad()
    def compute():
        was_training = backbone.training
        backbone.eval()
        feats, labels = [], []
        for x, y in iterate(data, batch_size, device=device):
            feats.append(backbone.features(x))
            labels.append(y)
        backbone.train(was_training)
        return torch.cat(feats), torch.cat(labels)

    if not cache:
        return compute()
    feats, labels = cached(("features", backbone.identity, data.identity()), compute)
    return feats.to(device), labels.to(device)
