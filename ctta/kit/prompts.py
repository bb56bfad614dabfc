"""Learnable prompts on open_clip CLIP models, and the base of the prompt-tuning methods.

`encode_text` and `encode_image` run open_clip's own transformer blocks with learnable tokens
inserted (with an empty prompt list they compute exactly `encode_text` / `encode_image`):

- text: `prompts[0]` ([L, width]) goes right after the start token and takes positions
  1..L (the words move L places to the right; CoOp's "X X X X {name}." layout); before block i > 0,
  `prompts[i]` *replaces* the L tokens after the start token (deep prompting). The text
  embedding is read at the end-of-text token, shifted by L.
- image: `prompts[0]` is appended after the patch tokens (before `ln_pre`); before block
  i > 0, `prompts[i]` is appended and the earlier prompt tokens are kept (`accumulate`: 2,
  4, ... tokens) or dropped (`replace`). Prompt tokens are removed before pooling.

`PromptTuning` is the shared method: a frozen CLIP whose logits are scale · cosine(image,
class text) over the classes seen so far, trained session by session by SGD on a
cross-entropy loss, with a fresh optimiser in every session.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..api import Method, Task
from ..core.config import hp
from ..core.errors import UserError
from ..models.clip import prompt_names
from .params import freeze
from .training import fit


def encode_text(clip: nn.Module, tokens: torch.Tensor, prompts: Sequence[torch.Tensor] = ()) -> torch.Tensor:
    """Text embeddings [N, D] (unnormalised) of token ids [N, context] with deep prompts."""
    if not hasattr(clip, "token_embedding") or getattr(clip, "text_pool_type", "argmax") != "argmax":
        raise UserError(
            f"prompt learning needs open_clip's CLIP text transformer with end-of-text pooling; "
            f"{type(clip).__name__} has another text tower"
        )
    n, context = tokens.shape
    n_ctx = prompts[0].shape[0] if prompts else 0
    eot = tokens.argmax(-1)  # the end-of-text token has the highest id
    # Attention is causal and the embedding is read at the end-of-text token, so the padding
    # after the longest text changes nothing: dropping it gives the same result, faster.
    length = int(eot.max()) + 1 + n_ctx
    if length > context:
        raise UserError(
            f"a class prompt of {length - n_ctx} tokens plus {n_ctx} learnable ones exceeds "
            f"the text context length {context}; use a shorter template"
        )
    x = clip.token_embedding(tokens[:, : length - n_ctx])
    if n_ctx:
        x = torch.cat([x[:, :1], prompts[0].expand(n, -1, -1).to(x.dtype), x[:, 1:]], 1)
    x = x + clip.positional_embedding[:length].to(x.dtype)
    mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
    for i, block in enumerate(clip.transformer.resblocks):
        if 0 < i < len(prompts):
            x = torch.cat([x[:, :1], prompts[i].expand(n, -1, -1).to(x.dtype), x[:, 1 + n_ctx :]], 1)
        x = _block(block, x, clip.transformer, mask)
    x = clip.ln_final(x)[torch.arange(n, device=x.device), eot + n_ctx]
    proj = clip.text_projection
    return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def encode_image(
    visual: nn.Module, x: torch.Tensor, prompts: Sequence[torch.Tensor] = (), accumulate: bool = True
) -> torch.Tensor:
    """Image embeddings [B, D] (unnormalised) of normalised images with deep visual prompts."""
    if not hasattr(visual, "conv1") or getattr(visual, "attn_pool", None) is not None:
        raise UserError(
            f"visual prompts need open_clip's VisionTransformer with token pooling; got {type(visual).__name__}"
        )
    b = x.shape[0]
    x = visual.conv1(x).flatten(2).transpose(1, 2)
    x = torch.cat([visual.class_embedding.view(1, 1, -1).expand(b, -1, -1).to(x.dtype), x], 1)
    x = visual.patch_dropout(x + visual.positional_embedding.to(x.dtype))
    n_tokens = x.shape[1]
    if prompts:
        x = torch.cat([x, prompts[0].expand(b, -1, -1).to(x.dtype)], 1)
    x = visual.ln_pre(x)
    for i, block in enumerate(visual.transformer.resblocks):
        if 0 < i < len(prompts):
            kept = x if accumulate else x[:, : x.shape[1] - prompts[i - 1].shape[0]]
            x = torch.cat([kept, prompts[i].expand(b, -1, -1).to(x.dtype)], 1)
        x = _block(block, x, visual.transformer, None)
    x = x[:, :n_tokens]
    pool = getattr(visual, "pool_type", "tok")
    if pool not in ("tok", "avg"):
        raise UserError(f"visual prompts support token or average pooling, not {pool!r}")

    def pooled(t):
        return t[:, 0] if pool == "tok" else t[:, 1:].mean(1)

    if getattr(visual, "final_ln_after_pool", False):
        out = visual.ln_post(pooled(x))
    else:
        out = pooled(visual.ln_post(x))
    return out @ visual.proj if visual.proj is not None else out


def _block(block: nn.Module, x: torch.Tensor, transformer: nn.Module, mask) -> torch.Tensor:
    if getattr(transformer, "batch_first", True):
        return block(x, attn_mask=mask)
    return block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)


class PromptTuning(Method):
    """Base of prompt learning on a frozen CLIP for class-incremental streams.

    Subclasses create their prompt parameters in `init_prompts` and implement `encode_text`
    and `encode_image` with them. Logits are `logit_scale · cos(image, text of class)` over
    the classes seen so far. Each task is trained for `base_epochs`/`epochs` by SGD (momentum
    0.9, cosine schedule) with a new optimiser; `mask_old` restricts the cross-entropy of
    later tasks to the new classes; `gradient_scale(task)` multiplies every gradient of the
    task (0: no training). On domain-incremental streams the class set is known from the
    start, so every class has its prompt from setup on (the untrained prompts score before the
    first task) and every task trains on all classes.
    """

    stream_kinds = frozenset({"class_incremental", "domain_incremental"})
    requires = frozenset({"clip"})
    mask_old = False

    @dataclass
    class HParams:
        template: str = hp("", doc="class prompt with {} for the name; empty = the backbone's own")
        lr: float = hp(0.005, space=(0.002, 0.005, 0.01, 0.02), doc="SGD step size (momentum 0.9)", gt=0)
        weight_decay: float = hp(1e-5, doc="SGD weight decay", ge=0)
        base_epochs: int = hp(5, doc="epochs on the first (base) task", ge=1)
        base_batch_size: int = hp(32, doc="batch size on the first task", ge=1)
        epochs: int = hp(5, doc="epochs on every later task", ge=1)
        batch_size: int = hp(4, doc="batch size on later tasks (few-shot sessions)", ge=1)

    def setup(self, backbone, info):
        self.backbone = freeze(backbone).eval()
        template = self.hparams.template or backbone.template
        texts = self.init_prompts(backbone, template, prompt_names(info.class_names))
        self.register_buffer("tokens", backbone.tokenize(texts))
        every = tuple(range(info.num_classes))
        self.seen: tuple[int, ...] = every if info.kind == "domain_incremental" else ()
        self._text: torch.Tensor | None = None  # class embeddings of the seen classes, for predict

    def init_prompts(self, backbone, template: str, names: list[str]) -> list[str]:
        """Create the prompt parameters; return the text of each class that they complete."""
        raise NotImplementedError

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def gradient_scale(self, task: Task) -> float:
        return 1.0

    def logits(self, x: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
        """[B, len(classes)] logits of images x in [0, 1] over `classes`."""
        text = F.normalize(self.encode_text(self.tokens[list(classes)]), dim=-1)
        return self.scaled_cosine(x, text)

    def scaled_cosine(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        image = F.normalize(self.encode_image(x), dim=-1)
        return self.backbone.logit_scale * image @ text.T

    def learn(self, task: Task) -> dict[str, float]:
        h = self.hparams
        self.seen, self._text = tuple(task.seen_classes), None
        scale = self.gradient_scale(task)
        if scale == 0:
            return {"steps": 0.0, "grad_scale": 0.0}
        base = task.index == 0
        classes = list(task.classes if self.mask_old and not base else task.seen_classes)
        position = torch.full((self.info.num_classes,), -1, dtype=torch.long, device=self.device)
        position[classes] = torch.arange(len(classes), device=self.device)
        self.backbone.eval()  # frozen: no dropout, statistics untouched

        def loss(x, y):
            return scale * F.cross_entropy(self.logits(x, classes), position[y])

        out = fit(
            [p for p in self.parameters() if p.requires_grad],
            task.train,
            loss,
            epochs=h.base_epochs if base else h.epochs,
            batch_size=h.base_batch_size if base else h.batch_size,
            lr=h.lr,
            optimizer="sgd",
            weight_decay=h.weight_decay,
            seed=self.info.seed + task.index,
            device=self.device,
        )
        return {**out, "grad_scale": scale}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.full((len(x), self.info.num_classes), -math.inf, device=x.device)
        if not self.seen:
            return logits
        if self._text is None:
            self._text = F.normalize(self.encode_text(self.tokens[list(self.seen)]), dim=-1)
        logits[:, list(self.seen)] = self.scaled_cosine(x, self._text)
        return logits
