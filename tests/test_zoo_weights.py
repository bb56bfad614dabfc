"""The offline backbones' weights ship with ctta: they load without pretraining, match their
manifest's hash, and reproduce the manifest's held-out scores."""

import json
import shutil

import pytest
import torch

from ctta.core.errors import UserError
from ctta.kit.params import freeze
from ctta.models.backbone import load_state_dict
from ctta.models.factory import create_backbone
from ctta.zoo import pretrain_clip, pretrain_vit, weights


@pytest.mark.parametrize("name", ["tiny_vit", "tiny_clip"])
def test_shipped_weights_match_their_manifest(name):
    manifest = weights.manifest(name)
    assert manifest["file"] == f"{name}.pt" and manifest["dtype"] == "float16"
    assert weights.shipped(name) == weights.SHIPPED / f"{name}.pt"
    assert manifest["recipe"]["seed"] == 0 and manifest["scores"]
    assert (weights.SHIPPED / f"{name}.pt").stat().st_size < 8 * 2**20  # a few MB


def test_tiny_vit_reproduces_its_manifest_score_without_pretraining(tmp_path, monkeypatch):
    monkeypatch.setenv("CTTA_CACHE", str(tmp_path))  # nothing cached: loading must not train
    manifest = weights.manifest("tiny_vit")
    backbone = create_backbone("tiny_vit")
    assert backbone.head is None and not any((tmp_path / "backbones").glob("*"))
    model = pretrain_vit.with_head(load_state_dict(weights.shipped("tiny_vit")))
    acc = pretrain_vit.sample_accuracy(model, manifest["recipe"]["seed"])
    assert acc == pytest.approx(manifest["scores"]["sample_acc_pretrain_classes"], abs=0.5)
    assert acc > 5 * manifest["scores"]["chance_acc"]  # it learnt something
    # the backbone's trunk is the shipped trunk
    trunk = dict(freeze(backbone).trunk.state_dict())
    assert torch.equal(trunk["pos_embed"], model.trunk.state_dict()["pos_embed"])


def test_tiny_clip_reproduces_its_manifest_score():
    manifest = weights.manifest("tiny_clip")
    acc = pretrain_clip.sample_accuracy(create_backbone("tiny_clip"), manifest["recipe"]["seed"])
    assert acc == pytest.approx(manifest["scores"]["sample_zeroshot_acc_heldout"], abs=0.5)
    assert acc > 5 * manifest["scores"]["chance_acc"]


def test_a_damaged_weights_file_is_a_one_line_error(tmp_path):
    for suffix in (".pt", ".json"):
        shutil.copy(weights.SHIPPED / f"tiny_vit{suffix}", tmp_path / f"tiny_vit{suffix}")
    data = bytearray((tmp_path / "tiny_vit.pt").read_bytes())
    data[-100] ^= 0xFF
    (tmp_path / "tiny_vit.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"tiny_vit.pt: sha256 .* does not match its manifest") as err:
        create_backbone({"name": "tiny_vit", "weights": str(tmp_path / "tiny_vit.pt")})
    assert "\n" not in str(err.value)
    (tmp_path / "tiny_vit.json").write_text(json.dumps({"sha256": "x"}) + "{")
    with pytest.raises(UserError, match="cannot read the weights manifest"):
        weights.checked(tmp_path / "tiny_vit.pt")
