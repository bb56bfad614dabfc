"""`ctta pretrain vit`: the offline stand-in for an ImageNet-pretrained ViT.

The tiny ViT is trained from scratch by supervised cross-entropy on glyph classes that no
benchmark uses (`glyphs.PRETRAIN_CHARS`, every glyph domain), as an ImageNet ViT has never
seen the classes of ImageNet-R. Its classification head is dropped when it is used as a
backbone. The weights are cached under `<cache>/backbones/`, with a JSON report beside
them: held-out accuracy on the pretraining classes and the transfer check (nearest-class-
mean accuracy on benchmark classes with pretrained vs random features).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..core.files import atomic_save, atomic_write_bytes, cache_dir, file_lock
from ..core.seeding import seed_everything
from ..data.datasets import load_dataset
from ..data.images import iterate
from ..kit.features import extract_features
from ..kit.heads import PrototypeHead
from ..kit.training import cross_entropy_on, fit
from ..models.timm_models import from_timm
from .architectures import GLYPH_MEAN, GLYPH_STD, TINY_VIT, vit

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


def tiny_vit_path() -> Path:
    return cache_dir() / "backbones" / f"tiny_vit-v{VIT_VERSION}.pt"


def ensure_tiny_vit(*, force: bool = False, progress: bool = False) -> Path:
    """Path of the cached tiny ViT weights, pretraining them first when missing."""
    path = tiny_vit_path()
    with file_lock(path):  # parallel workers wait for one pretraining instead of racing
        if force or not path.exists():
            log.warning("pretraining the tiny ViT (once; about 3 minutes on 2 idle CPU cores)")
            report = _pretrain_vit(path, progress=progress)
            atomic_write_bytes(path.with_suffix(".json"), json.dumps(report, indent=1).encode())
    return path


def _glyph_spec(chars: str, per_class: int, seed: int) -> dict:
    return {
        "name": "glyphs",
        "chars": chars,
        "domains": "all",
        "per_class": per_class,
        "test_per_class": per_class,
        "seed": seed,
    }


def _pretrain_vit(path: Path, *, progress: bool) -> dict:

    r = VIT_RECIPE
    start = time.perf_counter()
    seed_everything(r["seed"])
    train = load_dataset(_glyph_spec("pretrain", r["per_class"], r["seed"]), "train", TINY_VIT["img_size"])
    val = load_dataset(_glyph_spec("pretrain", r["val_per_class"], r["seed"]), "test", TINY_VIT["img_size"])
    model = vit(TINY_VIT, num_classes=train.num_classes)
    backbone = from_timm(
        model, name="tiny_vit", image_size=TINY_VIT["img_size"], mean=GLYPH_MEAN, std=GLYPH_STD
    )
    backbone.reset_head(train.num_classes)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=r["epochs"] * -(-len(train) // r["batch_size"]), desc="pretrain tiny_vit", leave=False
        )
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
        progress=bar.update if bar else None,
    )
    if bar:
        bar.close()
    val_acc = _accuracy(backbone, val)
    # timm's own parameter names (the head is the pretraining classifier, dropped at use).
    state = {k.removeprefix("trunk."): v for k, v in backbone.state_dict().items() if k.startswith("trunk.")}
    state.update({f"head.{k}": v for k, v in backbone.head.state_dict().items()})
    atomic_save(path, lambda tmp: torch.save(state, tmp))
    transfer = _transfer_check(backbone)
    return {
        "version": VIT_VERSION,
        "recipe": r,
        "pretrain_classes": train.num_classes,
        "train_images": len(train),
        "final_train_loss": round(stats["loss"], 4),
        "val_acc_pretrain_classes": round(val_acc, 2),
        **transfer,
        "wall_s": round(time.perf_counter() - start, 1),
    }


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
