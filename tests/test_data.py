import pickle

import numpy as np
import pytest
import torch

from ctta import UserError
from ctta.data.datasets import load_dataset
from ctta.data.images import ImageData, iterate
from ctta.data.splits import class_pool, per_class, sample_pool


def test_digits_splits_are_real_and_disjoint():
    train = load_dataset("digits", "train", 16)
    test = load_dataset("digits", "test", 16)
    assert len(train) + len(test) == 1797
    x, y = train.load(np.arange(4))
    assert x.shape == (4, 3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    assert set(np.unique(train.targets)) == set(range(10))
    assert not set(train.sample_keys()) & set(test.sample_keys())


def test_relabel_orders_classes_and_keeps_only_them():
    train = load_dataset("digits", "train", 8)
    view = train.relabel([7, 2, 5])
    assert view.class_names == ("7", "2", "5")
    assert set(np.unique(view.targets)) == {0, 1, 2}
    original = train.targets
    assert len(view) == int(np.isin(original, [7, 2, 5]).sum())
    _, y = view.load(np.flatnonzero(view.targets == 0)[:3])
    assert (y == 0).all()


def test_views_pickle_as_references():
    train = load_dataset("digits", "train", 32).relabel([3, 1])
    blob = pickle.dumps(train.subset(np.arange(10)))
    assert len(blob) < 2000  # not the images
    back = pickle.loads(blob)
    assert back.class_names == ("3", "1") and len(back) == 10
    assert torch.equal(back.load(np.arange(10))[0], train.load(np.arange(10))[0])
    assert back.identity() == train.subset(np.arange(10)).identity()


def test_pools_are_disjoint_and_seed_independent():
    assert class_pool(10, "first_half") == [0, 1, 2, 3, 4]
    assert class_pool(10, "second_half") == [5, 6, 7, 8, 9]
    assert class_pool(10, "2:4") == [2, 3]
    with pytest.raises(UserError, match="invalid class pool 'third'"):
        class_pool(10, "third")
    test = load_dataset("digits", "test", 8)
    a, b = sample_pool(test, "first_half"), sample_pool(test, "second_half")
    assert not set(a.indices) & set(b.indices)
    assert len(a) + len(b) == len(test)
    capped = per_class(test, 3, seed=1)
    assert np.bincount(capped.targets).tolist() == [3] * 10
    assert not np.array_equal(capped.indices, per_class(test, 3, seed=2).indices)


def test_iterate_shuffles_deterministically_and_covers_everything():
    data = load_dataset("digits", "test", 8)
    ys = [y for _, y in iterate(data, 64, shuffle=True, seed=3)]
    again = [y for _, y in iterate(data, 64, shuffle=True, seed=3)]
    assert all(torch.equal(a, b) for a, b in zip(ys, again))
    assert sorted(torch.cat(ys).tolist()) == sorted(data.targets.tolist())


def test_from_arrays_layouts_and_errors():
    hwc = np.zeros((5, 8, 8, 3), np.uint8)
    chw = np.zeros((5, 3, 8, 8), np.float32)
    for arr in (hwc, chw):
        d = ImageData.from_arrays(arr, np.arange(5) % 2, image_size=4)
        assert d.load(np.arange(2))[0].shape == (2, 3, 4, 4)
    with pytest.raises(UserError, match="5 images but 4 labels"):
        ImageData.from_arrays(hwc, np.arange(4))
    with pytest.raises(UserError, match=r"float images must lie in \[0, 1\]"):
        ImageData.from_arrays(chw + 2, np.arange(5))


def test_imagefolder_layouts(tmp_path):
    from PIL import Image

    for split in ("train", "test"):
        for cls, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            folder = tmp_path / "pets" / split / cls
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (20, 12), colour).save(folder / f"{i}.png")
    train = load_dataset({"name": "imagefolder", "root": str(tmp_path / "pets")}, "train", 8)
    assert train.class_names == ("cat", "dog") and len(train) == 6
    x, y = train.load(np.array([0, 5]))
    assert x.shape == (2, 3, 8, 8)
    assert x[0, 0].mean() > 0.9 and x[1, 2].mean() > 0.9 and y.tolist() == [0, 1]
    batches = list(iterate(train, 4))
    assert [len(b[1]) for b in batches] == [4, 2]


def test_missing_data_gives_how_to():
    with pytest.raises(UserError, match="pacs not found at .*download PACS"):
        load_dataset({"name": "pacs", "root": "/nonexistent/pacs"}, "train", 32)
    with pytest.raises(UserError, match="cifar10 not found under .*download=true"):
        load_dataset({"name": "cifar10", "root": "/nonexistent/c10"}, "test", 32)
    with pytest.raises(UserError, match="dataset 'digits': unknown option 'root'; valid options: "):
        load_dataset({"name": "digits", "root": "x"}, "test", 32)
    with pytest.raises(UserError, match="unknown dataset 'digitz'"):
        load_dataset("digitz", "test", 32)
