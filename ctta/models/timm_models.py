"""timm models as backbones: `timm:<model>` (any timm model; `pretrained: true` downloads,
`weights: <file>` loads a local checkpoint) and `from_timm`, which wraps a timm model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..core.errors import UserError
from ..core.registry import register_backbone
from .backbone import Backbone, BackboneKind, load_state_dict, normalization

log = logging.getLogger(__name__)


def from_timm(
    model: nn.Module,
    *,
    name: str,
    kind: BackboneKind | None = None,
    image_size: int | None = None,
    mean=None,
    std=None,
) -> Backbone:
    """Wrap a timm model: its classifier is removed; features are its pooled pre-logits."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if image_size is None:
        image_size = int(cfg.get("input_size", (3, 224, 224))[-1])
    mean = mean if mean is not None else cfg.get("mean", (0.485, 0.456, 0.406))
    std = std if std is not None else cfg.get("std", (0.229, 0.224, 0.225))
    feature_dim = model.num_features
    model.reset_classifier(0)
    if kind is None:
        kind = "vit" if hasattr(model, "blocks") and hasattr(model, "patch_embed") else "cnn"
    return Backbone(model, feature_dim, name=name, image_size=image_size, mean=mean, std=std, kind=kind)


@register_backbone("timm", family=True)
def _timm_family(model_name: str):
    """Any timm model: timm:<model name> (pretrained=true downloads, weights=<file> loads)."""

    def build(
        pretrained: bool = False,
        weights: str | None = None,
        image_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        normalize: str | None = None,
        **model_kwargs: Any,
    ) -> Backbone:
        """Any timm model by name. `pretrained=true` downloads its weights (needs network);
        `weights=<file>` loads a local checkpoint instead. Input normalisation: the model's
        pretrained_cfg unless `mean`/`std` or `normalize` say otherwise."""
        import timm  # imported here: it doubles the start-up time of runs that need no timm model

        if model_name not in timm.list_models() and model_name not in timm.list_models(pretrained=True):
            close = timm.list_models(f"*{model_name[:4]}*")[:8]
            raise UserError(
                f"unknown timm model {model_name!r}; similar names: {', '.join(close) or '(none)'}"
            )
        if image_size is not None and "vit" in model_name:
            model_kwargs["img_size"] = image_size
        model = timm.create_model(model_name, pretrained=bool(pretrained) and weights is None, **model_kwargs)
        if weights:
            state = load_state_dict(weights)
            missing, unexpected = model.load_state_dict(state, strict=False)
            log.info("loaded %s: %d missing, %d unexpected keys", weights, len(missing), len(unexpected))
        cfg = model.pretrained_cfg
        mean, std = normalization(
            mean, std, normalize, (cfg["mean"], cfg["std"]), f"backbone 'timm:{model_name}'"
        )
        backbone = from_timm(model, name=f"timm:{model_name}", image_size=image_size, mean=mean, std=std)
        if mean is None:  # normalize=none: from_timm would fall back to the pretrained_cfg
            backbone.mean = backbone.std = None
        return backbone

    return build
