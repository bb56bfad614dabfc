"""CLIP backbones: `ClipBackbone` (an open_clip model with its text side) and the registered
family `open_clip:<model>`: any open_clip architecture (`open_clip.list_models()`, e.g.
`ViT-B-16`). `pretrained: <tag>` downloads the weights of a tag (needs network; e.g.
`openai`, `laion2b_s34b_b88k`), `pretrained: <file>` loads a local checkpoint; without it the
weights are random. OpenAI tags get QuickGELU automatically. The offline tiny CLIPs are in
`ctta.zoo`.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import UserError
from ..core.registry import register_backbone
from .backbone import Backbone, file_fingerprint

log = logging.getLogger(__name__)

PHOTO_TEMPLATE = "a photo of a {}."  # CLIP's single-prompt ImageNet template


class ClipBackbone(Backbone):
    """An open_clip CLIP model as a backbone.

    `features(x)` are the image embeddings (before normalisation), so every method that
    works on features (prototype heads, linear heads) runs on CLIP too. Text side:
    `text_features(class_names)` embeds class names put into a prompt template,
    `logit_scale` is CLIP's learned temperature, `tokenize` is the model's tokenizer.
    `template` is the default prompt of the model; `ensemble` the templates averaged by
    prompt ensembling (CLIP's 80 ImageNet prompts for open_clip models).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        name: str,
        config: str,
        template: str = PHOTO_TEMPLATE,
        ensemble: Sequence[str] = (),
    ):
        import open_clip  # imported where used: it takes seconds, and most runs need no CLIP

        pre = open_clip.get_model_preprocess_cfg(model)
        size = model.visual.image_size
        super().__init__(
            model,
            model.visual.output_dim,
            name=name,
            image_size=int(size[0] if isinstance(size, (tuple, list)) else size),
            mean=tuple(pre["mean"]),
            std=tuple(pre["std"]),
            kind="clip",
        )
        self.config = config
        self.template = check_template(template)
        self.ensemble = tuple(check_template(t) for t in ensemble) or (self.template,)

    @property
    def clip(self) -> torch.nn.Module:
        return self.trunk

    @property
    def tokenizer(self):
        return _tokenizer(self.config)

    @property
    def context_length(self) -> int:
        return int(self.clip.positional_embedding.shape[0])

    @property
    def logit_scale(self) -> torch.Tensor:
        """exp(learned log-temperature), clamped at 100 as in CLIP's training."""
        return self.clip.logit_scale.exp().clamp(max=100)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_image(self.normalize(x))

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts)).to(self.clip.logit_scale.device)

    @torch.no_grad()
    def text_features(
        self, class_names: Sequence[str], templates: Sequence[str] | None = None, batch_size: int = 256
    ) -> torch.Tensor:
        """Unit-norm text embeddings [C, D] of the class names; with several templates, the
        normalised mean of their embeddings (CLIP's prompt ensembling)."""
        names = prompt_names(class_names)
        total = 0.0
        for template in templates or (self.template,):
            tokens = self.tokenize([check_template(template).format(n) for n in names])
            emb = torch.cat([self.clip.encode_text(t, normalize=True) for t in tokens.split(batch_size)])
            total = total + emb
        return F.normalize(total, dim=-1)

    def capabilities(self) -> set[str]:
        """The backbone's capabilities plus 'clip' (text encoder, logit scale, tokenizer)."""
        return super().capabilities() | {"clip"}


@functools.lru_cache(maxsize=8)
def _tokenizer(config: str):
    import open_clip

    return open_clip.get_tokenizer(config)


def check_template(template: str) -> str:
    if not isinstance(template, str) or template.count("{}") != 1:
        raise UserError(
            f"prompt template {template!r} must contain '{{}}' exactly once (where the name goes)"
        )
    return template


# --------------------------------------------------------------------------- class names as words
_WNID = re.compile(r"^n\d{8}$")
_NUMBERED = re.compile(r"^\d+\.")  # CUB-200 folders: "001.Black_footed_Albatross"


def prompt_names(class_names: Sequence[str]) -> list[str]:
    """Class names as CLIP reads them: ImageNet wnids become CLIP's curated ImageNet names,
    dataset numbering ("001.") is dropped and underscores become spaces."""
    out = []
    for name in class_names:
        name = str(name)
        if _WNID.match(name):
            name = _imagenet_names().get(name, name)
        out.append(_NUMBERED.sub("", name).replace("_", " ").strip())
    return out


@functools.lru_cache(maxsize=1)
def _imagenet_names() -> dict[str, str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {info.index_to_label_name(i): IMAGENET_CLASSNAMES[i] for i in range(len(IMAGENET_CLASSNAMES))}


# --------------------------------------------------------------------------- registered backbones
@register_backbone("open_clip", family=True)
def _open_clip_family(model_name: str):
    """Any open_clip model: open_clip:<model> (pretrained=<tag> downloads, =<file> loads)."""

    def build(
        pretrained: str | None = None,
        image_size: int | None = None,
        template: str = PHOTO_TEMPLATE,
    ) -> ClipBackbone:
        """Any open_clip model. `pretrained`: a tag (downloads; needs network) or a local
        checkpoint file; none = random weights. `image_size` resizes the position embedding."""
        import open_clip

        known = open_clip.list_models()
        if model_name not in known:
            close = difflib.get_close_matches(model_name, known, n=6, cutoff=0.5)
            raise UserError(
                f"unknown open_clip model {model_name!r}; similar names: {', '.join(close) or '(none)'}"
            )
        kwargs = {}
        fingerprint = None
        if pretrained:
            tags = open_clip.list_pretrained_tags_by_model(model_name)
            if pretrained in tags:
                # OpenAI's weights were trained with QuickGELU; the plain config would silently degrade them.
                if open_clip.get_pretrained_cfg(model_name, pretrained).get("quick_gelu"):
                    kwargs["force_quick_gelu"] = True
            elif Path(pretrained).expanduser().is_file():
                pretrained = str(Path(pretrained).expanduser())
                fingerprint = file_fingerprint(pretrained)
            else:
                raise UserError(
                    f"open_clip model {model_name!r}: pretrained {pretrained!r} is neither a tag "
                    f"({', '.join(tags) or 'none'}) nor an existing checkpoint file"
                )
        if image_size is not None:
            kwargs["force_image_size"] = image_size
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, **kwargs)
        except RuntimeError as exc:
            if "download" not in str(exc).lower():
                raise
            raise UserError(
                f"open_clip model {model_name!r}: cannot download the {pretrained!r} weights "
                f"({str(exc).splitlines()[0]}); without network pass pretrained=<local checkpoint>"
            ) from None
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        backbone = ClipBackbone(
            model,
            name=f"open_clip:{model_name}",
            config=model_name,
            template=template,
            ensemble=[t("{}") for t in OPENAI_IMAGENET_TEMPLATES],
        )
        backbone.weights_fingerprint = fingerprint
        return backbone

    return build
