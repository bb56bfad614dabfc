"""`ctta pretrain clip`: the whole pipeline on a tiny recipe (the real one takes minutes)."""

import json

import open_clip
import pytest
import torch

import ctta.zoo.backbones as zoo
import ctta.zoo.pretrain_clip as pc
from ctta.cli import main
from ctta.data import glyphs as g
from ctta.zoo.architectures import DEBUG_CLIP, ENSEMBLE, TEMPLATE


@pytest.fixture
def tiny_recipe(monkeypatch):
    # The debug architecture stands in for ctta-tiny-clip so that the pipeline runs in seconds.
    monkeypatch.setattr(pc, "TINY_CLIP", DEBUG_CLIP)
    monkeypatch.setattr(zoo, "TINY_CLIP", DEBUG_CLIP)
    monkeypatch.setattr(
        pc, "CLIP_RECIPE", {**pc.CLIP_RECIPE, "per_class": 1, "epochs": 1, "eval_per_class": 1}
    )


def test_pretrain_command_trains_caches_and_reports(tiny_recipe, capsys):
    main(["pretrain", "clip"])
    path = pc.tiny_clip_path()
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["characters"] == len(g.BENCHMARK_CHARS + g.PRETRAIN_CHARS)
    assert report["domains"] == list(g.PRETRAIN_DOMAINS)  # never a benchmark domain
    assert not set(g.PRETRAIN_DOMAINS) & set(g.BENCHMARK_DOMAINS)
    for key in ("zeroshot_acc_heldout_pretrained", "zeroshot_acc_heldout_random_init"):
        assert 0 <= report[key] <= 100
    assert report["chance_acc"] == pytest.approx(100 / len(g.BENCHMARK_CHARS), abs=0.01)
    assert "zeroshot_acc_heldout_pretrained" in capsys.readouterr().out
    stamp = path.stat().st_mtime_ns
    main(["pretrain", "clip"])  # cached: not trained again
    assert path.stat().st_mtime_ns == stamp

    # The weights are a plain open_clip checkpoint: open_clip loads them as ctta does.
    model = open_clip.create_model(DEBUG_CLIP, pretrained=str(path)).eval()
    backbone = zoo.tiny_clip(weights=str(path)).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(backbone.features(x), model.encode_image(backbone.normalize(x)))
    assert backbone.weights_fingerprint is not None and backbone.template == TEMPLATE


def test_captions_name_the_character_and_vary(tiny_recipe):
    glyphs = g.load_glyphs(("A", "Б"), g.PRETRAIN_DOMAINS[:1], 3, size=16, seed=0)
    loss = pc.ContrastiveLoss(zoo.debug_clip(), glyphs, seed=0, name_only=0.5, aux_weight=1.0)
    captions = [loss.caption(i) for i in range(len(glyphs)) for _ in range(4)]
    for i, caption in enumerate(captions):
        assert glyphs.names[int(glyphs.labels[i // 4])] in caption
    assert len(set(captions)) > len(glyphs)
    assert any(c in [t.format(n) for t in ENSEMBLE for n in glyphs.names] for c in captions)
