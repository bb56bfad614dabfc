"""The source model of test-time streams: ERM on the labelled source data (BatchNorm statistics
recomputed on it at the end), trained once per (backbone, data, recipe, seed) and cached, so
every method and study that uses it shares it.
`cached_training` gives the same once-only caching to any module a method trains itself
(ITTA's own source model).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

from ..core.files import atomic_save, cache_dir, content_key, file_lock
from ..data.images import ImageData, iterate
from .training import cross_entropy_on, fit

log = logging.getLogger(__name__)

SOURCE_VERSION = 2  # 2: BatchNorm statistics recomputed after training


def source_model(
    backbone: nn.Module,
    source: ImageData,
    *,
    num_classes: int,
    recipe: dict,
    seed: int,
    device: torch.device,
    key_parts: dict,
) -> nn.Module:
    """Train `backbone` (with a fresh head over `num_classes`) on the labelled source data by
    cross-entropy, or load the result cached under a content key of everything that
    determines it. This is ERM, the usual source model of test-time adaptation papers."""
    key = content_key(
        {**key_parts, "recipe": recipe, "seed": seed, "num_classes": num_classes, "version": SOURCE_VERSION}
    )
    backbone.reset_head(num_classes)

    def train() -> None:
        log.info("training source model %s on %s", key, source.describe())
        torch.manual_seed(seed)
        backbone.reset_head(num_classes)
        backbone.train()
        fit(
            backbone.parameters(),
            source,
            cross_entropy_on(backbone, label_smoothing=0.1),
            epochs=recipe["epochs"],
            batch_size=recipe["batch_size"],
            lr=recipe["lr"],
            optimizer=recipe["optimizer"],
            weight_decay=recipe.get("weight_decay", 0.0),
            seed=seed,
            device=device,
            desc=f"source model ({source.name}, seed {seed})",
        )
        recompute_batchnorm_statistics(backbone, source, batch_size=recipe["batch_size"], device=device)

    cached_training(backbone, key, train)
    backbone.to(device)
    backbone.head_is_trained = True
    backbone.identity = content_key([backbone.identity, key])
    backbone.eval()
    return backbone


def cached_training(module: nn.Module, key: str, train: Callable[[], None]) -> None:
    """Load `module`'s state from the cache entry `key`, or run `train()` (which trains
    `module` in place) and store the result; parallel workers train it once."""
    path = cache_dir() / "source_models" / f"{key}.pt"
    with file_lock(path):
        if path.exists():
            module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return
        train()
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        atomic_save(path, lambda tmp: torch.save(state, tmp))


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, data: ImageData, *, batch_size: int, device) -> None:
    """Replace the running statistics of `model`'s BatchNorm layers by their averages over one
    pass of `data` with the final weights ("precise BN", Wu & Johnson, "Rethinking 'Batch' in
    BatchNorm", 2021): after a short recipe (15 steps) the running variances still hold a fifth
    of their initial value 1, two to three times the true ones, and the eval-mode source model
    sits near chance."""
    layers = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not layers:
        return
    was_training = model.training
    model.eval()
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pass
        m.train()
    for x, _ in iterate(data, batch_size, device=device):
        model(x)
    for m, momentum in zip(layers, momenta):
        m.momentum = momentum
    model.train(was_training)
