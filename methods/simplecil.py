"""SimpleCIL: a frozen pretrained backbone with a class-prototype classifier.

Zhou, Cai, Ye, Zhan, Liu: "Revisiting Class-Incremental Learning with Pre-Trained Models:
Generalizability and Adaptivity are All You Need" (IJCV 2024). For every new class the
prototype is the mean embedding of its training images under the frozen backbone; a test
image is assigned to the prototype of highest cosine similarity. No training, no
hyperparameters, no forgetting by construction: old prototypes never change.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctta import Method, Task, hp, register_method
from ctta.kit import PrototypeHead, extract_features, freeze


@register_method("simplecil")
class SimpleCIL(Method):
    """Frozen backbone + cosine prototype classifier (Zhou et al., IJCV 2024)."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    features_only = True

    @dataclass
    class HParams:
        batch_size: int = hp(256, doc="feature-extraction batch size (no effect on results)", ge=1)

    def setup(self, backbone, info):
        self.model = freeze(backbone).eval()
        self.prototypes = PrototypeHead(backbone.feature_dim, info.num_classes).to(info.device)

    def learn(self, task: Task) -> dict[str, float]:
        feats, labels = extract_features(
            self.model, task.train, batch_size=self.hparams.batch_size, device=self.device
        )
        self.prototypes.update(feats, labels)
        return {"prototypes": float(self.prototypes.known.sum())}

    def predict_features(self, features):
        return self.prototypes(features)

    def predict(self, x):
        self.model.eval()
        return self.predict_features(self.model.features(x))
