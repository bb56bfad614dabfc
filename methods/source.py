"""Source: the source model as it is, no adaptation (the reference of every TTA table)."""

from __future__ import annotations

import torch

from ctta import Method, register_method
from ctta.kit import freeze


@register_method("source")
class Source(Method):
    """The unadapted source model."""

    stream_kinds = frozenset({"test_time"})

    def setup(self, backbone, info):
        self.model = freeze(backbone).eval()

    @torch.no_grad()
    def predict(self, x):
        return self.model(x)
