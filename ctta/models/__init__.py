"""Backbones: the `Backbone` type (features, a replaceable head, input normalisation), timm
and open_clip models by name, the user's own networks, and the backbone factory
(`create_backbone`). Imports only `ctta.core`."""
