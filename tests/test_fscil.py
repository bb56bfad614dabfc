"""Few-shot class-incremental scenario: session shapes, presets, seeds and the standard index files."""

import numpy as np
import pytest
import torch
from PIL import Image

from ctta import UserError, create_scenario
from ctta.data.datasets import load_dataset
from ctta.run.engine import execute

CPU = torch.device("cpu")


def build(seed=0, **config):
    return create_scenario("few_shot_class_incremental", **config).build(seed=seed, image_size=8, device=CPU)


def per_class_counts(data):
    return np.bincount(data.targets, minlength=data.num_classes)


def test_base_session_then_way_shot_sessions():
    stream = build(preset="digits", shots=3)
    sizes = [len(t.classes) for t in stream.tasks]
    assert sizes == [4, 2, 2, 2] and stream.info.extra["task_sizes"] == sizes
    full = load_dataset("digits", "train", 8)
    order = stream.info.extra["class_order"]
    base = per_class_counts(stream.tasks[0].train)[:4]
    assert base.tolist() == [int((full.targets == c).sum()) for c in order[:4]]  # all base data
    for task in stream.tasks[1:]:
        assert per_class_counts(task.train)[list(task.classes)].tolist() == [3, 3]
        assert set(np.unique(task.train.targets)) == set(task.classes)
        assert task.seen_classes == tuple(range(task.classes[-1] + 1))
    for task, test in zip(stream.tasks, stream.tests):
        assert set(np.unique(test.targets)) == set(task.classes)


def test_seed_draws_class_order_and_shots_dataset_order_is_fixed():
    a, b = build(seed=0, preset="digits"), build(seed=1, preset="digits")
    assert a.info.extra["class_order"] != b.info.extra["class_order"]
    c, d = (
        build(seed=0, preset="digits", class_order="dataset"),
        build(seed=1, preset="digits", class_order="dataset"),
    )
    assert c.info.extra["class_order"] == d.info.extra["class_order"] == list(range(10))
    assert c.tasks[1].train.sample_keys() != d.tasks[1].train.sample_keys()  # shots follow the seed
    again = build(seed=1, preset="digits", class_order="dataset")
    assert again.tasks[1].train.sample_keys() == d.tasks[1].train.sample_keys()


def test_presets_have_the_standard_shapes_and_options_override_them():
    shapes = {
        "cifar100": ("cifar100", 60, 5, 5, 8),
        "miniimagenet": ("miniimagenet", 60, 5, 5, 8),
        "cub200": ("cub200", 100, 10, 5, 10),
        "glyphs": ("glyphs", 60, 5, 5, 8),
    }
    for preset, shape in shapes.items():
        c = create_scenario("few_shot_class_incremental", preset=preset).config
        dataset = c.dataset if isinstance(c.dataset, str) else c.dataset["name"]
        assert (dataset, c.base_classes, c.ways, c.shots, c.sessions) == shape
    assert create_scenario("few_shot_class_incremental", preset="cub200", shots=1).config.shots == 1
    with pytest.raises(UserError, match="unknown preset 'cifar10'; valid choices: cifar100"):
        create_scenario("few_shot_class_incremental", preset="cifar10")
    with pytest.raises(UserError, match="cannot hold 8 base classes plus 3 sessions"):
        build(preset="digits", base_classes=8)


def test_index_files_pick_the_listed_samples_of_an_array_dataset(tmp_path):
    full = load_dataset("digits", "train", 8)
    listed = {2: [i for i in np.flatnonzero(np.isin(full.targets, [6, 7]))[::40]]}
    listed[3] = [i for i in np.flatnonzero(np.isin(full.targets, [8, 9]))[::50]]
    for session, positions in listed.items():
        (tmp_path / f"session_{session}.txt").write_text("\n".join(map(str, positions)) + "\n")
    (tmp_path / "session_1.txt").write_text("ignored: the base session takes all data of its classes\n")
    stream = build(
        dataset="digits", base_classes=6, class_order="dataset", index_dir=str(tmp_path), test_per_class=2
    )
    assert stream.info.extra["class_order"] == list(range(10))
    assert [len(t.classes) for t in stream.tasks] == [6, 2, 2]
    for task, session in zip(stream.tasks[1:], (2, 3)):
        assert sorted(task.train.sample_keys()) == sorted(full.subset(listed[session]).sample_keys())
    (tmp_path / "session_3.txt").write_text("99999\n")
    with pytest.raises(UserError, match="session_3.txt: sample '99999' is not in the training split"):
        build(dataset="digits", base_classes=6, class_order="dataset", index_dir=str(tmp_path))


def test_index_files_match_image_folders_by_file_name(tmp_path):
    """CUB-200/miniImageNet lists hold paths under the authors' root; ours match by file name."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(5):
            folder = tmp_path / "data" / split / f"{c + 1:03d}.Bird_{c}"
            folder.mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"Bird_{c}_{split}_{i}.png")
    lines = [f"CUB_200_2011/images/004.Bird_3/Bird_3_train_{i}.png" for i in (0, 2)]
    lines += [f"CUB_200_2011/images/005.Bird_4/Bird_4_train_{i}.png" for i in (1, 3)]
    (tmp_path / "session_2.txt").write_text("\n".join(lines))
    dataset = {"name": "imagefolder", "root": str(tmp_path / "data")}
    stream = build(dataset=dataset, base_classes=3, class_order="dataset", index_dir=str(tmp_path))
    assert [len(t.classes) for t in stream.tasks] == [3, 2]
    assert stream.info.class_names[3:] == ("004.Bird_3", "005.Bird_4")
    names = sorted(p.rsplit("/", 1)[-1] for p in stream.tasks[1].train.source_paths())
    assert names == sorted(line.rsplit("/", 1)[-1] for line in lines)


def test_presets_survive_run_specs_that_fill_in_every_option():
    from ctta.plan.spec import RunSpec

    spec = RunSpec.parse(
        {
            "scenario": {"name": "few_shot_class_incremental", "preset": "cub200"},
            "method": "simplecil",
            "backbone": "debug_clip",
        }
    )
    config = create_scenario(**spec.scenario).config
    assert (config.base_classes, config.ways, config.sessions, config.class_order) == (100, 10, 10, "dataset")


def test_a_run_scores_every_session_over_all_seen_classes():
    spec = {
        "scenario": {"name": "few_shot_class_incremental", "preset": "digits", "base_per_class": 10},
        "method": {"name": "simplecil"},
        "backbone": "debug_clip",
        "seed": 0,
    }
    rec = execute(spec, device="cpu")
    assert rec["status"] == "done" and len(rec["acc_seen"]) == 4
    m = rec["metrics"]
    assert m["perf_drop"] == pytest.approx(rec["acc_seen"][0] - rec["acc_seen"][-1])
    assert m["avg_inc_acc"] == pytest.approx(np.mean(rec["acc_seen"]))
