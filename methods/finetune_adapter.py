"""Sequential adapter fine-tuning: the baseline under MOS and other adapter-based methods.

The pretrained ViT stays frozen; one AdaptFormer adapter per block (ctta/kit/adapters.py: parallel
to the MLP, rank 16, dropout 0.1, scale 0.1; Chen et al., NeurIPS 2022) and the linear head
are trained by cross-entropy over the classes seen so far (as `finetune`) on each task in
turn. The same adapters serve every task: no per-task adapters, no merging, no retrieval,
no classifier alignment, so what MOS adds on top shows as the gap between the two.
"""

from __future__ import annotations

from ctta import Method, Task, register_method
from ctta.kit import (
    AdapterRecipe,
    adapter_parameters,
    add_adapter,
    cross_entropy_on,
    fit_task,
    freeze,
    insert_adapters,
    set_route,
)


@register_method("finetune_adapter")
class FinetuneAdapter(Method):
    """Frozen ViT, one set of AdaptFormer adapters and the head fine-tuned task after task."""

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    requires = frozenset({"vit"})

    HParams = AdapterRecipe

    def setup(self, backbone, info):
        h = self.hparams
        self.model = freeze(backbone)
        self.blocks = insert_adapters(backbone.model)
        add_adapter(
            self.blocks, rank=h.rank, dropout=h.adapter_dropout, scale=h.adapter_scale, warm_start=False
        )
        set_route(self.blocks, 0)
        backbone.reset_head(info.num_classes)

    def learn(self, task: Task) -> dict[str, float]:
        self.model.train()
        params = adapter_parameters(self.blocks, 0) + list(self.model.head.parameters())
        return fit_task(self, params, task, cross_entropy_on(self.model, classes=list(task.seen_classes)))

    def predict(self, x):
        self.model.eval()
        return self.model(x)
