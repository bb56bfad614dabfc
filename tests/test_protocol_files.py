"""Every shipped sweep file validates (parse, names resolve, search spaces non-empty) without a run."""

from pathlib import Path

import pytest

from ctta.sweep.studies import load_sweep

ROOT = Path(__file__).resolve().parent.parent / "protocols"
FILES = sorted(ROOT.glob("*.yaml")) + sorted((ROOT / "paper").glob("*.yaml"))


def test_the_shipped_files_are_found():
    assert ROOT / "default.yaml" in FILES and len(FILES) >= 6


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_sweep_file_validates(path):
    sweep = load_sweep(path)
    assert sweep.studies and sweep.results
    protocols = {s.name for s in sweep.studies}
    assert "oracle" in protocols and protocols - {"oracle"}  # an honest study and its gap
    for study in sweep.studies:
        assert study.cases["tune"] and study.cases["eval"]
        for method, space in study.spaces.items():
            assert all(values for values in space.values()), (study.study, method)  # {} = no hyperparameters
            assert study.configurations(method)
        assert len({r.run_id for r in study.plan({})}) > 0


def test_default_benchmark_is_separated_and_covers_every_protocol(tmp_path):
    # The separation checks need streams, not trained backbones: the debug stand-ins keep the
    # test from pretraining the tiny ViT and tiny CLIP.
    text = (ROOT / "default.yaml").read_text()
    text = text.replace("backbone: tiny_vit", "backbone: debug_vit").replace(
        "backbone: tiny_clip", "backbone: debug_clip"
    )
    (tmp_path / "default.yaml").write_text(text)
    sweep = load_sweep(tmp_path / "default.yaml")
    assert {s.name for s in sweep.studies} == {"tune_eval", "cross_scenario", "oracle"}
    assert {s.kind for s in sweep.studies} == {"class_incremental", "test_time"}
    families = {"finetune", "l2", "ewc", "hft", "mos", "simplecil", "clip_zeroshot", "cpe_clip", "coop"}
    families |= {"source", "bn_adapt", "tent", "lame", "itta", "eata", "sar", "cotta", "avalanche:LwF"}
    assert families <= {m for s in sweep.studies for m in s.spaces}
    sweep.prepare(None)  # runs every separation check, writes nothing
    for study in sweep.studies:
        check = sweep.check(study.study)
        assert check["passed"]
        if study.name != "oracle":
            assert check["shared_samples"] == 0 and check["eval_samples"] > 0
