"""`ctta pretrain clip`: the offline tiny CLIP, trained contrastively on captioned glyphs.

What it may and may not see (DESIGN.md): web-scale CLIP has read the names of the classes
of every benchmark but has never seen the benchmark's images. So the tiny CLIP is trained
on *every* glyph character, benchmark characters included, with captions that name them
("the latin capital letter q in bold italic dejavu serif, red on a light blue and white
striped background"; attributes randomly dropped, reordered and reworded at every step, see
`GlyphSet.caption`), but only in the pretraining domains: slanted DejaVu faces, colours
and background textures that no benchmark domain uses. Its zero-shot accuracy on the
benchmark characters in the benchmark domains (upright faces, the STIX family it never
saw, ink-on-paper colours, plain/gradient/striped/checkered backgrounds) is the transfer
it shows; the report beside the weights has it per domain, next to a randomly initialised
CLIP's.

Training: open_clip's architecture `ctta-tiny-clip` from scratch, the symmetric InfoNCE
loss of CLIP with its learnable temperature, plus an auxiliary character-classification
loss on the image embedding (a linear head, dropped afterwards). Without it the model
matches captions by their colours and never learns shapes within any affordable budget (the
text embeddings of the names collapse to one vector; measured in notes/clip.md). Half of
the captions are the bare name in one of the zero-shot lead-ins. AdamW with a cosine
schedule, through the one training loop `ctta.kit.training.fit` (the "labels" it hands the loss
are sample indices, which the loss turns into captions). The weights are saved as a plain
open_clip state dict; ctta ships it (`ctta/zoo/weights/tiny_clip.pt`), with the zero-shot
report in its manifest.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.seeding import seed_everything
from ..data import glyphs as g
from ..data.images import ImageData, iterate
from ..kit.prompts import encode_text
from ..kit.training import fit
from .architectures import ENSEMBLE, TINY_CLIP, glyph_clip
from .weights import half_round_trip

log = logging.getLogger(__name__)

CLIP_VERSION = 1
CLIP_RECIPE = {
    "per_class": 30,  # images per character and pretraining domain (187 x 3 x 30 = 16,830)
    "epochs": 10,
    "batch_size": 64,
    "lr": 2e-3,  # AdamW, cosine schedule; 4e-3 does not start learning, nor does batch 32
    "weight_decay": 0.1,
    "name_only": 0.5,  # share of captions that are just the character name
    "aux_weight": 1.0,  # character-classification loss on the image embedding (see ContrastiveLoss)
    "seed": 0,
    "eval_per_class": 5,  # zero-shot check: images per benchmark character and domain
}


def pretrain_tiny_clip(recipe: dict = CLIP_RECIPE) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the tiny CLIP with `recipe`; returns its open_clip state dict and the report of
    the manifest. Scores are measured on the weights as they load from the float16 file."""
    r = recipe
    start = time.perf_counter()
    seed_everything(r["seed"])
    backbone = glyph_clip(TINY_CLIP, None, "tiny_clip")
    size = backbone.image_size
    chars = g.BENCHMARK_CHARS + g.PRETRAIN_CHARS
    glyphs = g.load_glyphs(chars, g.PRETRAIN_DOMAINS, r["per_class"], size=size, seed=r["seed"])
    # Labels are sample indices: the loss looks up (and re-words) each image's caption.
    data = ImageData.from_arrays(
        glyphs.images, np.arange(len(glyphs)), [str(i) for i in range(len(glyphs))], name="glyph-captions"
    )
    backbone.train()
    loss = ContrastiveLoss(backbone, glyphs, r["seed"], r["name_only"], r["aux_weight"])
    stats = fit(
        [*backbone.clip.parameters(), *loss.classifier.parameters()],
        data,
        loss,
        epochs=r["epochs"],
        batch_size=r["batch_size"],
        lr=r["lr"],
        optimizer="adamw",
        weight_decay=r["weight_decay"],
        seed=r["seed"],
        desc="pretrain tiny_clip",
    )
    train_s = time.perf_counter() - start
    state = {k: v.detach().cpu() for k, v in backbone.clip.state_dict().items()}
    return state, {
        "version": CLIP_VERSION,
        "open_clip_config": TINY_CLIP,
        "recipe": r,
        "pretrain_images": len(data),
        "characters": len(chars),
        "domains": list(g.PRETRAIN_DOMAINS),
        "final_train_loss": round(stats["loss"], 4),
        "logit_scale": round(state["logit_scale"].exp().item(), 2),
        "scores": scores(state, r),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def scores(state: dict[str, torch.Tensor], recipe: dict) -> dict:
    """The manifest's zero-shot scores of a tiny CLIP state, measured as it loads from float16,
    next to a randomly initialised CLIP's."""
    loaded = glyph_clip(TINY_CLIP, None, "tiny_clip")
    loaded.clip.load_state_dict(half_round_trip(state))
    random_init = glyph_clip(TINY_CLIP, None, "tiny_clip")
    return {
        **zero_shot_report(loaded, recipe["eval_per_class"], recipe["seed"] + 1, "pretrained"),
        **zero_shot_report(random_init, recipe["eval_per_class"], recipe["seed"] + 1, "random_init"),
        "sample_zeroshot_acc_heldout": round(sample_accuracy(loaded, recipe["seed"]), 2),
        "chance_acc": round(100 / len(g.BENCHMARK_CHARS), 2),
    }


def sample_accuracy(backbone, seed: int) -> float:
    """Zero-shot accuracy (%) on one fresh rendition of every benchmark character in every
    benchmark domain (600 held-out images): the manifest's score a test reproduces."""
    return zero_shot_report(backbone, 1, seed + 7, "sample")["zeroshot_acc_heldout_sample"]


class ContrastiveLoss(nn.Module):
    """CLIP's symmetric InfoNCE between a batch of images and their (re-worded) captions, plus
    `aux_weight` times a character-classification loss on the image embedding (a linear head,
    dropped afterwards). The auxiliary loss is what starts the learning: from scratch, captions
    are matched by their colours long before any shape is learnt, and the name part of the text
    tower collapses; a free classifier gives the image tower a shape signal from step one."""

    def __init__(self, backbone, glyphs, seed: int, name_only: float, aux_weight: float):
        super().__init__()
        self.backbone, self.glyphs, self.name_only, self.aux_weight = backbone, glyphs, name_only, aux_weight
        self.names = glyphs.names
        self.labels = torch.as_tensor(glyphs.labels)
        self.classifier = nn.Linear(backbone.feature_dim, len(glyphs.chars))
        self.rng = np.random.default_rng(seed)

    def caption(self, i: int) -> str:
        """A re-worded caption of sample i; some are the bare name, so that the name alone (the
        zero-shot prompt) has to pick out the image, not only names together with colours."""
        if self.rng.random() < self.name_only:
            name = self.names[int(self.glyphs.labels[i])]
            return ENSEMBLE[int(self.rng.integers(len(ENSEMBLE)))].format(name)
        return self.glyphs.caption(i, self.rng)

    def forward(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:

        captions = [self.caption(int(i)) for i in index]
        text = F.normalize(encode_text(self.backbone.clip, self.backbone.tokenize(captions)), dim=-1)
        features = self.backbone.features(x)
        logits = self.backbone.logit_scale * F.normalize(features, dim=-1) @ text.T
        target = torch.arange(len(x), device=x.device)
        clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
        if not self.aux_weight:
            return clip
        chars = self.labels.to(x.device)[index]
        return clip + self.aux_weight * F.cross_entropy(self.classifier(features), chars)


@torch.no_grad()
def zero_shot_report(backbone, per_class: int, seed: int, label: str) -> dict[str, float]:
    """Zero-shot accuracy (%) over the benchmark characters, in every benchmark domain (held-out
    renditions) and, for reference, in the pretraining domains (new samples, seen styles)."""

    backbone.eval()
    text = backbone.text_features([g.char_name(c) for c in g.BENCHMARK_CHARS])
    out = {}
    for domains, where in ((g.BENCHMARK_DOMAINS, "heldout"), (g.PRETRAIN_DOMAINS, "pretrain_domains")):
        gs = g.load_glyphs(g.BENCHMARK_CHARS, domains, per_class, size=backbone.image_size, seed=seed)
        data = ImageData.from_arrays(gs.images, gs.labels, name="glyphs")
        pred = torch.cat([(backbone.features(x) @ text.T).argmax(1) for x, _ in iterate(data, 512)]).numpy()
        hit = pred == gs.labels
        out[f"zeroshot_acc_{where}_{label}"] = round(100 * float(hit.mean()), 2)
        if where == "heldout":
            for d, name in enumerate(gs.domain_names):
                out[f"zeroshot_acc@{name}_{label}"] = round(100 * float(hit[gs.domains == d].mean()), 2)
    return out
