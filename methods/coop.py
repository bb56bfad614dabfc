"""CoOp-style prompt tuning: learnable text context before the class name, nothing else.

Zhou, Yang, Loy, Liu: "Learning to Prompt for Vision-Language Models" (IJCV 2022). The
words of the template before the class name ("a photo of a") are replaced by M learnable
context vectors shared by all classes ("X X X X {name}."), initialised from those words
(CoOp's `ctx_init`) or, with `n_ctx` > 0, randomly (N(0, 0.02)). CLIP stays frozen; the
logits are scale · cosine(image, text) over all classes seen so far and the context is
fine-tuned by cross-entropy on every task, with no protection of old classes: this is the
unregularised prompt baseline against which CPE-CLIP's prompt regularisation is measured.
Deviation: CoOp trains once on a fixed class set; here it continues on every session.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ctta import hp, register_method
from ctta.kit import PromptTuning, UserError, encode_text


@register_method("coop")
class CoOp(PromptTuning):
    """Learnable text context, fine-tuned on every task (Zhou et al., IJCV 2022)."""

    @dataclass
    class HParams(PromptTuning.HParams):
        n_ctx: int = hp(
            0, doc="context vectors; 0 = one per template word before {}, initialised from them", ge=0
        )

    def init_prompts(self, backbone, template, names):
        prefix, suffix = template.split("{}")
        if self.hparams.n_ctx > 0:
            ctx = torch.randn(self.hparams.n_ctx, backbone.clip.transformer.width) * 0.02
        else:
            words = backbone.tokenize([prefix.strip()])[0]
            n = int(words.argmax()) - 1  # tokens between start and end of text
            if n == 0:
                raise UserError(f"coop: template {template!r} has no words before {{}}; set n_ctx > 0")
            with torch.no_grad():
                ctx = backbone.clip.token_embedding(words[1 : 1 + n]).clone()
        self.ctx = nn.Parameter(ctx)
        return [f"{name}{suffix}" for name in names]

    def encode_text(self, tokens):
        return encode_text(self.backbone.clip, tokens, [self.ctx])

    def encode_image(self, x):
        return self.backbone.features(x)
