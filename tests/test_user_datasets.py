"""Datasets users bring: array files and Python factories, and every scenario taking them."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pytest
import torch

from ctta import UserError
from ctta.core.registry import create_scenario
from ctta.data.datasets import _load_cached, load_dataset
from ctta.data.images import iterate


def coded_images(n: int, size: int = 8) -> np.ndarray:
    """N×H×W×3 uint8 images whose every pixel is the sample's index (so alignment is checkable)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, 3)).copy()


def codes(data) -> list[int]:
    x, _ = data.load(np.arange(len(data)))
    return (x[:, 0, 0, 0] * 255).round().long().tolist()


def test_npz_with_its_own_split_in_both_layouts(tmp_path):
    x_test = np.random.default_rng(0).random((6, 3, 8, 8)).astype(np.float32)
    np.savez(
        tmp_path / "d.npz",
        x_train=coded_images(10),
        y_train=np.arange(10) % 2,
        x_test=x_test,
        y_test=np.array([0, 1, 1, 0, 1, 0]),
        class_names=np.array(["cat", "dog"]),
    )
    spec = {"name": "arrays", "path": str(tmp_path / "d.npz")}
    train, test = load_dataset(spec, "train", 8), load_dataset(spec, "test", 8)
    assert train.class_names == test.class_names == ("cat", "dog")
    assert codes(train) == list(range(10)) and train.targets.tolist() == [0, 1] * 5
    assert torch.equal(test.load(np.arange(6))[0], torch.from_numpy(x_test))  # float N×C×H×W kept as is
    assert test.targets.tolist() == [0, 1, 1, 0, 1, 0]
    assert load_dataset(spec, "train", 16).load([0])[0].shape == (1, 3, 16, 16)


def test_npz_holdout_keeps_labels_and_domains_with_their_images(tmp_path):
    n = 60
    labels = np.array(["eel", "cat", "dog"])[np.arange(n) % 3]
    domains = np.array(["photo", "sketch"])[(np.arange(n) // 3) % 2]
    np.savez(tmp_path / "d.npz", images=coded_images(n)[..., 0], labels=labels, domains=domains)  # grey N×H×W
    spec = {"name": "arrays", "path": str(tmp_path / "d.npz"), "test_fraction": 0.3}
    train, test = load_dataset(spec, "train", 8), load_dataset(spec, "test", 8)
    assert train.class_names == ("cat", "dog", "eel") and train.domain_names == ("photo", "sketch")
    assert len(train) == 42 and len(test) == 18  # 3 of the 10 in each (class, domain) cell
    assert sorted(codes(train) + codes(test)) == list(range(n))
    for data in (train, test):
        for i, y, d in zip(codes(data), data.targets, data.domains):
            assert data.class_names[y] == labels[i] and data.domain_names[d] == domains[i]
    # stratified by class and domain: every (class, domain) cell is in the test split
    assert len({(y, d) for y, d in zip(test.targets, test.domains)}) == 6


def test_npy_with_label_file_and_a_separate_test_file(tmp_path):
    np.save(tmp_path / "x.npy", coded_images(12))
    np.save(tmp_path / "y.npy", np.eye(3)[np.arange(12) % 3])  # one-hot rows
    np.savez(tmp_path / "test.npz", data=coded_images(4), targets=np.arange(4) % 3)
    spec = {
        "name": "arrays",
        "path": str(tmp_path / "x.npy"),
        "labels": str(tmp_path / "y.npy"),
        "test_path": str(tmp_path / "test.npz"),
        "class_names": ["a", "b", "c"],
    }
    train, test = load_dataset(spec, "train", 8), load_dataset(spec, "test", 8)
    assert (
        len(train) == 12 and train.targets.tolist() == [0, 1, 2] * 4 and train.class_names == ("a", "b", "c")
    )
    assert codes(test) == [0, 1, 2, 3] and test.targets.tolist() == [0, 1, 2, 0]


def test_array_file_errors_name_the_problem(tmp_path):
    np.savez(tmp_path / "d.npz", pixels=coded_images(4), y=np.arange(4))
    np.savez(tmp_path / "short.npz", x=coded_images(4), y=np.arange(3))
    np.save(tmp_path / "x.npy", coded_images(4))
    cases = [
        (
            {"path": "d.npz"},
            r"d.npz: no images array \(images/x/X/data/imgs/inputs\); its arrays: pixels, y; ",
        ),
        ({"path": "d.npz", "images_key": "pixels", "labels_key": "z"}, r"no labels array \(z\); its arrays"),
        ({"path": "short.npz"}, r"short.npz: arrays of different lengths \(4 images, 3 labels\)"),
        ({"path": "x.npy"}, r"x.npy: an .npy holds only images; pass labels=<labels .npy file>"),
        (
            {"path": "d.npz", "labels": "y.npy"},
            r"labels=/domains= name .npy files; in an .npz use labels_key=",
        ),
        ({"path": "missing.npz"}, r"array file .*missing.npz does not exist"),
        (
            {"path": "d.npz", "images_key": "pixels", "class_names": ["a"]},
            r"d.npz: labels: 3 samples have a class id outside 0..0 \(1 class names\): samples 1, 2, 3; ids 1, 2, 3",
        ),
    ]
    for options, message in cases:
        options = {k: str(tmp_path / v) if k == "path" else v for k, v in options.items()}
        with pytest.raises(UserError, match=message):
            load_dataset({"name": "arrays", **options}, "train", 8)


def test_cached_data_follows_the_file_not_its_name(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=coded_images(10), y=np.arange(10) % 2)
    spec = {"name": "arrays", "path": str(path)}
    before = load_dataset(spec, "train", 8).identity()
    np.savez(path, x=coded_images(10)[::-1], y=np.arange(10) % 2)
    os.utime(path, ns=(1, 1))
    _load_cached.cache_clear()
    assert load_dataset(spec, "train", 8).identity() != before


FACTORIES = textwrap.dedent('''
    import numpy as np
    import torch
    from PIL import Image

    CALLS = []

    class Pets(torch.utils.data.Dataset):
        """torchvision's convention: train=True/False, PIL images of any size, .classes."""
        classes = ["cat", "dog", "eel"]

        def __init__(self, train=True, n=12):
            self.n, self.offset = n, 0 if train else 100

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return Image.new("RGB", (20, 12), (self.offset + i, 0, 0)), i % 3

    def tensors(split, n=8):
        CALLS.append(split)
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return torch.utils.data.TensorDataset(torch.rand(n, 3, 8, 8, generator=g), torch.arange(n) % 2)

    def everything(n=40):
        """No split argument: ctta holds out a test split; items carry a domain."""
        CALLS.append("everything")
        return [(np.full((8, 8, 3), i, np.uint8), ["x", "y"][i % 2], ("day", "night")[2 * i // n]) for i in range(n)]

    def normalised():
        return [(torch.randn(3, 8, 8), 0)]
''')


@pytest.fixture
def factories(tmp_path, monkeypatch):
    (tmp_path / "byo_data.py").write_text(FACTORIES)
    monkeypatch.syspath_prepend(str(tmp_path))
    import byo_data

    yield byo_data
    import sys

    sys.modules.pop("byo_data", None)
    _load_cached.cache_clear()


def test_factory_datasets_in_every_split_convention(factories):
    train = load_dataset({"name": "byo_data:Pets"}, "train", 8)
    test = load_dataset({"name": "byo_data:Pets", "n": 6}, "test", 8)
    assert train.class_names == ("cat", "dog", "eel") and len(train) == 12 and len(test) == 6
    assert codes(train) == list(range(12)) and codes(test) == list(range(100, 106))  # 20×12 centre-fitted
    lazy = load_dataset({"name": "byo_data:Pets", "in_memory": False}, "train", 8)
    assert torch.equal(next(iterate(lazy, 12))[0], next(iterate(train, 12))[0])  # read on access, same images

    split = [load_dataset({"name": "byo_data:tensors"}, s, 8) for s in ("train", "test")]
    assert factories.CALLS == ["train", "test"] and [len(d) for d in split] == [8, 8]
    assert not torch.equal(split[0].load([0])[0], split[1].load([0])[0])

    factories.CALLS.clear()
    held = [
        load_dataset({"name": "byo_data:everything", "test_fraction": 0.5}, s, 8) for s in ("train", "test")
    ]
    assert factories.CALLS == ["everything"]  # read once for both splits
    assert sorted(codes(held[0]) + codes(held[1])) == list(range(40))
    assert held[0].class_names == ("x", "y") and held[0].domain_names == ("day", "night")
    for data in held:
        assert [data.domain_names[d] for d in data.domains] == [
            ("day", "night")[i // 20] for i in codes(data)
        ]

    with pytest.raises(
        UserError,
        match=r"dataset 'byo_data:normalised': float images must lie in \[0, 1\] \(got -.*, in images 0\); "
        r"give unnormalised images \(no Normalize",
    ):
        load_dataset("byo_data:normalised", "train", 8)
    with pytest.raises(
        UserError, match=r"dataset 'byo_data:Pets': unknown option 'root'; valid options: class_names"
    ):
        load_dataset({"name": "byo_data:Pets", "root": "x"}, "train", 8)
    with pytest.raises(
        UserError, match=r"dataset 'byo_data:Pets': unknown option 'image_size'"
    ):  # ctta's own
        load_dataset({"name": "byo_data:Pets", "image_size": 32}, "train", 8)


def test_every_scenario_takes_every_kind_of_source(tmp_path, factories):
    from PIL import Image

    np.savez(tmp_path / "d.npz", x=coded_images(60), y=np.arange(60) % 6)
    for d in range(2):
        for c in range(6):
            (tmp_path / "tree" / f"dom{d}" / f"class{c}").mkdir(parents=True)
            for i in range(5):
                colour = (40 * c + 5 * i, 100 * d, 0)  # every image differs
                Image.new("RGB", (10, 10), colour).save(
                    tmp_path / "tree" / f"dom{d}" / f"class{c}" / f"{i}.png"
                )
    sources = {
        "arrays": {"name": "arrays", "path": str(tmp_path / "d.npz")},
        "factory": {"name": "byo_data:everything", "n": 60},
        "folder per domain": {
            "name": "imagefolder",
            "root": str(tmp_path / "tree"),
            "domains": ["dom0", "dom1"],
        },
    }
    cpu = torch.device("cpu")
    for source in sources.values():
        cl = create_scenario("class_incremental", dataset=source, increment=1).build(
            seed=0, image_size=8, device=cpu
        )
        assert cl.info.num_tasks == cl.info.num_classes == len(load_dataset(source, "train", 8).class_names)
        assert all(len(t.train) > 0 for t in cl.tasks) and all(len(d) > 0 for d in cl.tests)
        tta = create_scenario("corruption", dataset=source, corruptions=["contrast"], batch_size=4)
        stream = tta.build(seed=0, image_size=8, device=cpu)
        assert sum(len(y) for _, y in stream.batches()) == len(stream.test) > 0
        assert not set(stream.info.source.sample_keys()) & set(stream.test.sample_keys())
        # domains as recorded, or made by transforms where the source records none
        domains = {"transforms": ["none", "rotate:90"]} if "domains" not in source else {}
        dil = create_scenario("domain_incremental", dataset=source, **domains).build(
            seed=0, image_size=8, device=cpu
        )
        assert dil.info.num_tasks == 2 and all(
            t.classes == tuple(range(dil.info.num_classes)) for t in dil.tasks
        )
        assert all(len(t.train) > 0 for t in dil.tasks) and all(len(d) > 0 for d in dil.tests)
