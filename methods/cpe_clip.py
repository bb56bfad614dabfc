"""CPE-CLIP: multimodal deep prompts with prompt regularisation for few-shot CIL.

D'Alessandro, Alonso, Calabrés, Galar: "Multimodal Parameter-Efficient Few-Shot Class
Incremental Learning" (ICCV 2023 Workshops). All CLIP weights are frozen. One learnable
tensor g [depth, L, text width] (L = 2 per layer, depth = all layers) carries the prompts
of both encoders:

- language: g[0] is inserted after the start token, and g[i] replaces those L tokens
  before text block i;
- vision: `Linear(text width -> vision width)(g[i])` is appended after the patch tokens
  before vision block i and accumulated (2, 4, ..., 2 * depth tokens).

Logits are scale · cosine(image, text) over the prompts "{template}" of all seen classes;
in incremental sessions the logits of old classes are masked out of the loss. Prompt
regularisation: in incremental sessions every prompt gradient (g and the projection) is
multiplied by new classes / seen classes of that session (`balance`); `freeze` trains the
prompts on the base session only, `none` is the unregularised ablation. SGD with a new
optimiser per session. The scaling is applied to the loss, which scales exactly the
gradients (weight decay is added by SGD after it, as in the reference code).

Domain-incremental streams (an extension): every session brings all classes, so new/seen
classes is always 1; the balance there is new/seen *domains*, 1 / (session + 1), the same
share of the knowledge so far that the session brings.

Deviations: the class text is the backbone's template ("a photo of a {}.") instead of
"{}."; a cosine learning-rate schedule per session replaces the reference's warm-up
restarts; `freeze` freezes g *and* the projection (the reference's flag missed the
projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from ctta import Task, hp, register_method
from ctta.kit import PromptTuning, UserError, encode_image, encode_text


@register_method("cpe_clip")
class CPECLIP(PromptTuning):
    """Shared deep language/vision prompts with gradient-scaling regularisation (D'Alessandro et al. 2023)."""

    mask_old = True

    @dataclass
    class HParams(PromptTuning.HParams):
        prompts_per_layer: int = hp(2, doc="L: prompt tokens per layer", ge=1)
        depth: int = hp(0, doc="layers that get prompts, from the first; 0 = all", ge=0)
        regularization: Literal["balance", "freeze", "none"] = hp(
            "balance",
            doc="prompt gradients in incremental sessions: scaled by new/seen, frozen, or untouched",
        )
        vision_prompts: Literal["accumulate", "replace"] = hp(
            "accumulate", doc="keep earlier layers' visual prompt tokens, or replace them"
        )

    def init_prompts(self, backbone, template, names):
        clip = backbone.clip
        text_layers, vision_layers = len(clip.transformer.resblocks), len(clip.visual.transformer.resblocks)
        depth = self.hparams.depth or min(text_layers, vision_layers)
        if not 1 <= depth <= min(text_layers, vision_layers):
            raise UserError(
                f"cpe_clip: depth {depth} must be in 1..{min(text_layers, vision_layers)} for {backbone.name}"
            )
        g = torch.empty(depth, self.hparams.prompts_per_layer, clip.transformer.width)
        self.g = nn.Parameter(nn.init.xavier_uniform_(g))
        self.proj = nn.Linear(clip.transformer.width, clip.visual.transformer.width)
        return [template.format(name) for name in names]

    def encode_text(self, tokens):
        return encode_text(self.backbone.clip, tokens, list(self.g))

    def encode_image(self, x):
        visual = self.backbone.clip.visual
        prompts = list(self.proj(self.g))
        return encode_image(
            visual, self.backbone.normalize(x), prompts, self.hparams.vision_prompts == "accumulate"
        )

    def gradient_scale(self, task: Task) -> float:
        reg = self.hparams.regularization
        if task.index == 0 or reg == "none":
            return 1.0
        if reg == "freeze":
            return 0.0
        if self.info.kind == "domain_incremental":
            return 1.0 / (task.index + 1)
        return len(task.classes) / len(task.seen_classes)
