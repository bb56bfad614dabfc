"""`ctta pretrain vit`: the offline stand-in for an ImageNet-pretrained ViT.

The tiny ViT is trained from scratch by supervised cross-entropy on glyph classes that no
benchmark uses (`glyphs.PRETRAIN_CHARS`, every glyph domain), as an ImageNet ViT has never
seen the classes of ImageNet-R. Its classification head is dropped when it is used as a
backbone. ctta ships the result (`ctta/zoo/weights/tiny_vit.pt`); the manifest beside it
holds the held-out accuracy on the pretraining classes and the transfer check
(nearest-class-mean accuracy on benchmark classes with pretrained vs random features).
"""

from __future__ import annotations

import logging
import time

import torch

from ..core.seeding import seed_everything
from ..data.datasets import load_dataset
from ..data.images import iterate
from ..kit.features import extract_features
from ..kit.heads import PrototypeHead
from ..kit.training import cross_entropy_on, fit
from ..models.timm_models import from_timm
from .architectures import GLYPH_MEAN, GLYPH_STD, TINY_VIT, vit
from .weights import half_round_trip

log = logging.getLogger(__name__)

VIT_VERSION = 2
VIT_RECIPE = {
    "per_class": 30,  # images per class and glyph domain (train)
    "val_per_class": 4,
    "epochs": 4,
    "batch_size": 128,
    "lr": 3e-3,
    "warmup": 0.1,
    "weight_decay": 0.05,
    "seed": 0,
}


def _glyph_spec(chars: str, per_class: int, seed: int) -> dict:
    return {
        "name": "glyphs",
        "chars": chars,
        "domains": "all",
        "per_class": per_class,
        "test_per_class": per_class,
        "seed": seed,
    }


def pretrain_tiny_vit(recipe: dict = VIT_RECIPE) -> tuple[dict[str, torch.Tensor], dict]:
    """Train the tiny ViT with `recipe`; returns its state dict (timm names, with the
    pretraining head) and the report of the manifest. Scores are measured on the weights as
    they load from the float16 file."""
    r = recipe
    start = time.perf_counter()
    seed_everything(r["seed"])
    train = load_dataset(_glyph_spec("pretrain", r["per_class"], r["seed"]), "train", TINY_VIT["img_size"])
    backbone = from_timm(
        vit(TINY_VIT), name="tiny_vit", image_size=TINY_VIT["img_size"], mean=GLYPH_MEAN, std=GLYPH_STD
    )
    backbone.reset_head(train.num_classes)
    stats = fit(
        backbone.parameters(),
        train,
        cross_entropy_on(backbone, label_smoothing=0.1),
        epochs=r["epochs"],
        batch_size=r["batch_size"],
        lr=r["lr"],
        optimizer="adamw",
        weight_decay=r["weight_decay"],
        seed=r["seed"],
        warmup=r["warmup"],
        desc="pretrain tiny_vit",
    )
    train_s = time.perf_counter() - start
    # timm's own parameter names (the head is the pretraining classifier, dropped at use).
    state = {k.removeprefix("trunk."): v for k, v in backbone.state_dict().items() if k.startswith("trunk.")}
    state.update({f"head.{k}": v for k, v in backbone.head.state_dict().items()})
    return state, {
        "version": VIT_VERSION,
        "recipe": r,
        "pretrain_classes": train.num_classes,
        "train_images": len(train),
        "final_train_loss": round(stats["loss"], 4),
        "scores": scores(state, r),
        "train_s": round(train_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }


def scores(state: dict[str, torch.Tensor], recipe: dict) -> dict:
    """The manifest's held-out scores of a tiny ViT state, measured as it loads from float16."""
    loaded = with_head(half_round_trip(state))
    val = load_dataset(
        _glyph_spec("pretrain", recipe["val_per_class"], recipe["seed"]), "test", TINY_VIT["img_size"]
    )
    return {
        "val_acc_pretrain_classes": round(_accuracy(loaded, val), 2),
        "sample_acc_pretrain_classes": round(sample_accuracy(loaded, recipe["seed"]), 2),
        **_transfer_check(loaded),
    }


def with_head(state: dict[str, torch.Tensor]):
    """The tiny ViT with its pretraining classifier, from a saved state dict (for scoring)."""
    backbone = from_timm(
        vit(TINY_VIT), name="tiny_vit", image_size=TINY_VIT["img_size"], mean=GLYPH_MEAN, std=GLYPH_STD
    )
    backbone.trunk.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})
    backbone.reset_head(state["head.weight"].shape[0])
    backbone.head.load_state_dict({"weight": state["head.weight"], "bias": state["head.bias"]})
    return backbone.float().eval()


def sample_accuracy(backbone, seed: int) -> float:
    """Accuracy (%) of the pretraining classifier on one fresh rendition of every pretraining
    character in every glyph domain (783 images): the manifest's score a test reproduces."""
    return _accuracy(
        backbone, load_dataset(_glyph_spec("pretrain", 1, seed + 7), "test", TINY_VIT["img_size"])
    )


@torch.no_grad()
def _accuracy(backbone, data) -> float:

    backbone.eval()
    correct = sum(int((backbone(x).argmax(1) == y).sum()) for x, y in iterate(data, 512))
    return 100.0 * correct / len(data)


def _transfer_check(backbone) -> dict:
    """Nearest-class-mean accuracy on benchmark glyph classes: pretrained vs random features."""

    spec = {"name": "glyphs", "per_class": 5, "test_per_class": 5}
    train = load_dataset(spec, "train", TINY_VIT["img_size"])
    test = load_dataset(spec, "test", TINY_VIT["img_size"])
    seed_everything(0)
    random = from_timm(
        vit(TINY_VIT), name="random_vit", image_size=TINY_VIT["img_size"], mean=GLYPH_MEAN, std=GLYPH_STD
    )
    out = {}
    for label, model in (("pretrained", backbone), ("random_init", random)):
        head = PrototypeHead(model.feature_dim, train.num_classes)
        head.update(*extract_features(model, train))
        feats, labels = extract_features(model, test)
        out[f"ncm_acc_benchmark_classes_{label}"] = round(
            100.0 * float((head(feats).argmax(1) == labels).float().mean()), 2
        )
    out["benchmark_classes"] = train.num_classes
    out["chance_acc"] = round(100.0 / train.num_classes, 2)
    return out
