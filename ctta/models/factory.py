"""The backbone factory: a backbone from its name, a `{name: ..., **options}` mapping, or a
torch.nn.Module given through the Python API."""

from __future__ import annotations

from torch import nn

from ..core.errors import UserError
from ..core.files import content_key
from ..core.registry import BACKBONES
from .backbone import Backbone
from .user import object_spec


def create_backbone(spec: str | dict | nn.Module) -> Backbone:
    """Build a backbone from a name, a mapping `{name: ..., **options}`, or a torch.nn.Module
    (alone or as `{model: module, **options}`, see `ctta.models.user`)."""
    spec = object_spec(spec) or spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise UserError(f"backbone must be a name or a mapping with a 'name', got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    factory = BACKBONES.get(spec["name"])
    try:
        backbone = factory(**options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise UserError(f"backbone {spec['name']!r}: {exc}") from None
        raise
    backbone.spec = dict(spec)
    backbone.identity = content_key({"spec": backbone.spec, "weights": backbone.weights_fingerprint})
    return backbone
