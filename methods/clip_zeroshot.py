"""Zero-shot CLIP: classify by the cosine between image and class-name prompt embeddings.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
(ICML 2021). Every class name goes into a prompt template ("a photo of a {}." for open_clip
models, the caption grammar of the tiny CLIP for `tiny_clip`); optionally CLIP's prompt
ensembling averages the normalised text embeddings of many templates (the 80 ImageNet
prompts). No training: a class is recognised from the first session on, and nothing is
forgotten. The backbone is frozen, so the engine hands cached image embeddings to
`predict_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ctta import Method, Task, hp, register_method
from ctta.kit import freeze


@register_method("clip_zeroshot")
class ClipZeroShot(Method):
    """Zero-shot CLIP from class-name prompts (Radford et al., ICML 2021); no training."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    requires = frozenset({"clip"})
    features_only = True

    @dataclass
    class HParams:
        template: str = hp("", doc="prompt with {} for the class name; empty = the backbone's own")
        ensemble: bool = hp(False, doc="average the backbone's template ensemble instead of one template")

    def setup(self, backbone, info):
        self.model = freeze(backbone).eval()
        h = self.hparams
        templates = backbone.ensemble if h.ensemble else (h.template or backbone.template,)
        self.register_buffer("text", backbone.text_features(info.class_names, templates))

    def learn(self, task: Task) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def predict_features(self, features):
        return self.model.logit_scale * F.normalize(features, dim=-1) @ self.text.T

    def predict(self, x):
        return self.predict_features(self.model.features(x))
