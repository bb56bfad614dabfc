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
    recipe = {**pc.CLIP_RECIPE, "per_class": 1, "epochs": 1, "eval_per_class": 1}
    monkeypatch.setattr(
        zoo, "PRETRAINED", {**zoo.PRETRAINED, "clip": ("tiny_clip", lambda: pc.pretrain_tiny_clip(recipe))}
    )


def test_pretrain_command_trains_writes_a_manifest_and_compares(tiny_recipe, tmp_path, capsys):
    main(["pretrain", "clip", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    path = tmp_path / "tiny_clip.pt"
    manifest = json.loads(path.with_suffix(".json").read_text())
    assert manifest["characters"] == len(g.BENCHMARK_CHARS + g.PRETRAIN_CHARS)
    assert manifest["domains"] == list(g.PRETRAIN_DOMAINS)  # never a benchmark domain
    assert not set(g.PRETRAIN_DOMAINS) & set(g.BENCHMARK_DOMAINS)
    scores = manifest["scores"]
    for key in (
        "zeroshot_acc_heldout_pretrained",
        "zeroshot_acc_heldout_random_init",
        "sample_zeroshot_acc_heldout",
    ):
        assert 0 <= scores[key] <= 100
    assert scores["chance_acc"] == pytest.approx(100 / len(g.BENCHMARK_CHARS), abs=0.01)
    assert manifest["dtype"] == "float16" and len(manifest["sha256"]) == 64
    assert all(v.dtype in (torch.float16, torch.int64) for v in torch.load(path, weights_only=True).values())
    # the scores are printed next to the shipped weights' scores
    assert "zeroshot_acc_heldout_pretrained" in out and "(shipped " in out and f"-B weights={path}" in out

    # The weights are a plain open_clip checkpoint: open_clip loads them as ctta does.
    model = open_clip.create_model(DEBUG_CLIP, pretrained=str(path)).eval()
    backbone = zoo.tiny_clip(weights=str(path)).eval()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(backbone.features(x), model.encode_image(backbone.normalize(x)))
    assert backbone.weights_fingerprint is not None and backbone.template == TEMPLATE
    # the manifest's sample score is what the weights give (float16, as shipped)
    assert pc.sample_accuracy(backbone, manifest["recipe"]["seed"]) == pytest.approx(
        scores["sample_zeroshot_acc_heldout"], abs=0.5
    )


def test_captions_name_the_character_and_vary(tiny_recipe):
    glyphs = g.load_glyphs(("A", "Б"), g.PRETRAIN_DOMAINS[:1], 3, size=16, seed=0)
    loss = pc.ContrastiveLoss(zoo.debug_clip(), glyphs, seed=0, name_only=0.5, aux_weight=1.0)
    captions = [loss.caption(i) for i in range(len(glyphs)) for _ in range(4)]
    for i, caption in enumerate(captions):
        assert glyphs.names[int(glyphs.labels[i // 4])] in caption
    assert len(set(captions)) > len(glyphs)
    assert any(c in [t.format(n) for t in ENSEMBLE for n in glyphs.names] for c in captions)
