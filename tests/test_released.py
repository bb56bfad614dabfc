"""Released test sets in their exact layouts (tiny fakes): CIFAR-10-C's .npy files, ImageNet-C's
and Tiny-ImageNet-C's folders, ImageNet-R/-A/-Sketch; the corruption scenario streaming them in
every setting, the clean stream, the ImageNet-1k masks, and one-line errors for bad roots."""

from __future__ import annotations

import pickle
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from ctta.cli import main
from ctta.data import imagenet_classes as inc
from ctta.data.datasets import load_dataset
from ctta.run.store import Store
from ctta.scenarios.corruption import Corruption

N = 20  # images per severity in the fake CIFAR-10-C
CORR = ("gaussian_noise", "contrast")
NETS = textwrap.dedent('''
    """Tiny networks with a head over ImageNet or CIFAR classes (untrained, declared trained)."""
    import torch
    from torch import nn


    def build(num_classes=10):
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes),
        )


    def favours(first=999, second=0):
        """A 1000-way net whose logits rank ImageNet class `first` top, then `second`."""
        net = build(1000)
        with torch.no_grad():
            net[-1].weight.zero_()
            net[-1].bias.zero_()
            net[-1].bias[first] = 100.0
            net[-1].bias[second] = 50.0
        return net
''')


# --------------------------------------------------------------------------- fake releases
def write_cifar_c(root: Path, corruptions=CORR, n: int = N) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """CIFAR-10-C's layout: <corruption>.npy (5n×32×32×3 uint8, severity-major), labels.npy."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(n) % 10)
    np.save(root / "labels.npy", np.tile(labels, 5))
    images = {c: rng.integers(0, 256, (5 * n, 32, 32, 3), dtype=np.uint8) for c in corruptions}
    for c, x in images.items():
        np.save(root / f"{c}.npy", x)
    return images, labels


def write_torchvision_cifar10(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """The test batch and class names of torchvision's CIFAR-10 folder."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    (folder / "test_batch").write_bytes(pickle.dumps({"data": data, "labels": labels.tolist()}))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


@pytest.fixture
def unchecked_cifar(monkeypatch):
    """torchvision checks the real files' MD5 sums; the fakes have others."""
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)


def write_pictures(folder: Path, wnids, per_class: int = 2, size: int = 8, seed: int = 0) -> None:
    """`<folder>/<wnid>/<file>.JPEG`, the same file names in every folder of one release."""
    rng = np.random.default_rng(seed)
    for w in wnids:
        (folder / w).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / w / f"ILSVRC2012_val_{w[-3:]}{i:02d}.JPEG", quality=95)


def write_imagenet_c(root: Path, wnids, corruptions=CORR, per_class: int = 2) -> None:
    for c in corruptions:
        for s in range(1, 6):
            write_pictures(root / c / str(s), wnids, per_class, seed=10 * s + len(c))


WNIDS = ("n01443537", "n01484850")  # goldfish, great white shark: ImageNet classes 1 and 2, both in R


def nets(folder: Path, monkeypatch) -> None:
    (folder / "released_nets.py").write_text(NETS)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "released_nets", raising=False)


def run(folder: Path, scenario: dict, method: str = "source", backbone: dict | None = None) -> dict:
    """`ctta run` of a spec in `folder` (its own store); the record."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "scenario": {"name": "corruption", "batch_size": 8, **scenario},
        "method": method,
        "backbone": backbone or {"name": "released_nets:build", "image_size": 32, "normalize": "none"},
        "seed": 0,
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    main(["run", str(folder / "spec.yaml"), "--results", str(folder / "res")])
    (record,) = Store(folder / "res").records()
    return record


# --------------------------------------------------------------------------- the stream reads the files
def identify(images: dict[str, np.ndarray]) -> dict[bytes, tuple[str, int, int]]:
    """(corruption, severity, position) of every released image, by its bytes."""
    out = {}
    for c, x in images.items():
        for row in range(len(x)):
            out[x[row].tobytes()] = (c, row // N + 1, row % N)
    return out


def streamed(scenario: Corruption, size: int = 32):
    stream = scenario.build(seed=3, image_size=size, device="cpu")
    items = []
    for batch, y in stream.batches():
        pixels = (batch.x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        items += [(batch.domain, p.tobytes(), int(label)) for p, label in zip(pixels, y)]
    return stream, items


@pytest.mark.parametrize(
    "setting, order, zipf",
    [
        ("single", "iid", 0.0),
        ("continual", "class_sorted", 0.0),
        ("gradual", "dirichlet", 0.0),
        ("mixed", "iid", 1.0),
    ],
)
def test_cifar_c_streams_the_released_rows(tmp_path, setting, order, zipf):
    images, labels = write_cifar_c(tmp_path / "c10c")
    scenario = Corruption(
        dataset={"name": "cifar10c", "root": str(tmp_path / "c10c")},
        corruptions=list(CORR),
        severity=3,
        setting=setting,
        order=order,
        zipf=zipf,
        batch_size=8,
    )
    stream, items = streamed(scenario)
    rows = identify(images)
    read = [rows[p] for _, p, _ in items]  # KeyError: an image that is not in the files
    assert [label for *_, label in items] == [labels[pos] for _, _, pos in read]
    positions = sorted(set(stream.test.indices.tolist()))
    if zipf:
        assert len(positions) < N
    if setting == "mixed":  # every (picture, corruption) once, corruptions interleaved
        assert sorted((c, pos) for c, _, pos in read) == sorted((c, p) for c in CORR for p in positions)
        assert {d for d, *_ in items} == {"mixed"} and {s for _, s, _ in read} == {3}
        assert len({c for c, _, _ in read[:8]}) == 2
        return
    assert [d for d, *_ in items] == [c for c, _, _ in read]  # the domain is the corruption read
    levels = (1, 2, 3, 4, 5, 4, 3, 2, 1) if setting == "gradual" else (3,)
    blocks = [(c, s) for c in CORR for s in levels]
    n = len(positions)
    assert [(c, s) for c, s, _ in read] == [b for b in blocks for _ in range(n)]
    for i in range(len(blocks)):
        block = [pos for _, _, pos in read[i * n : (i + 1) * n]]
        assert sorted(block) == positions
        if order == "class_sorted":  # each class in one run
            runs = [labels[p] for p in block]
            assert sum(a != b for a, b in zip(runs, runs[1:])) == len(set(runs)) - 1
    assert stream.reset_on_domain_change == (setting == "single")
    assert stream.info.source is None and "without training data" in stream.info.source_training_refused


def test_cifar_c_halves_are_disjoint_pictures(tmp_path):
    """first_half / second_half split the positions; the overlap check sees pictures, not files."""
    from ctta.kit import compare

    write_cifar_c(tmp_path / "c10c")
    base = {"dataset": {"name": "cifar10c", "root": str(tmp_path / "c10c")}, "batch_size": 8}
    tune = Corruption(**base, corruptions=["contrast"], samples="first_half").build(
        seed=0, image_size=32, device="cpu"
    )
    same = Corruption(**base, corruptions=["gaussian_noise"], samples="first_half").build(
        seed=0, image_size=32, device="cpu"
    )
    other = Corruption(**base, corruptions=["gaussian_noise"], samples="second_half").build(
        seed=0, image_size=32, device="cpu"
    )
    assert compare([tune.test], [other.test])["shared_samples"] == 0
    assert compare([tune.test], [same.test])["shared_samples"] == N // 2


def test_folder_release_reads_each_variant_and_the_clean_folder(tmp_path):
    write_imagenet_c(tmp_path / "inc", WNIDS)
    write_pictures(tmp_path / "val", WNIDS, seed=99)
    dataset = {"name": "imagenet_c", "root": str(tmp_path / "inc"), "clean_root": str(tmp_path / "val")}
    scenario = Corruption(
        dataset=dataset,
        corruptions=["none", "contrast"],
        setting="gradual",
        batch_size=3,
        order="class_sorted",
    )
    stream, items = streamed(scenario, size=8)
    expected = {}
    for folder, key in [(tmp_path / "val", ("none", 0))] + [
        (tmp_path / "inc" / "contrast" / str(s), ("contrast", s)) for s in range(1, 6)
    ]:
        for label, w in enumerate(WNIDS):
            for f in sorted((folder / w).iterdir()):
                expected.setdefault(key, []).append((f.name, label))
    pixels = {}
    for key, files in expected.items():
        folder = tmp_path / "val" if key[0] == "none" else tmp_path / "inc" / key[0] / str(key[1])
        data = load_dataset({**dataset, "corruption": key[0], "severity": max(key[1], 1)}, "test", 8)
        x, _ = data.load(np.arange(len(data)))
        for img, (name, label) in zip((x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy(), files):
            pixels[img.tobytes()] = (key, name, label)
        assert sorted(str(Path(p).relative_to(folder)) for p in data.source_paths()) == sorted(
            f"{WNIDS[label]}/{name}" for name, label in files
        )
    read = [pixels[p] for _, p, _ in items]
    assert [key for key, *_ in read] == [("none", 0)] * 4 + [
        ("contrast", s) for s in (1, 2, 3, 4, 5, 4, 3, 2, 1) for _ in range(4)
    ]
    assert [label for *_, label in items] == [label for *_, label in read]
    assert [d for d, *_ in items] == ["none"] * 4 + ["contrast"] * 36
    assert stream.info.num_classes == 2 and stream.info.imagenet_classes == (1, 2)
    assert stream.info.source is not None and len(stream.info.source) == 4  # the clean folder
    assert "stream's own pictures" in stream.info.source_training_refused


# --------------------------------------------------------------------------- ctta run end to end
def test_ctta_run_on_released_files_in_several_settings(tmp_path, monkeypatch, unchecked_cifar):
    images, labels = write_cifar_c(tmp_path / "c10c")
    write_torchvision_cifar10(tmp_path / "cifar", images["contrast"][:N] // 2, labels)
    nets(tmp_path, monkeypatch)
    c10c = {"name": "cifar10c", "root": str(tmp_path / "c10c")}
    cases = [
        ({"dataset": c10c, "setting": "single"}, "tent", 2 * N, ["gaussian_noise", "contrast"]),
        ({"dataset": c10c, "setting": "gradual", "order": "class_sorted"}, "bn_adapt", 18 * N, None),
        ({"dataset": c10c, "setting": "mixed", "order": "dirichlet", "zipf": 1.0}, "lame", None, ["mixed"]),
        (
            {"dataset": {**c10c, "clean_root": str(tmp_path / "cifar")}, "corruptions": ["none", "contrast"]},
            "eata",
            2 * N,
            ["none", "contrast"],
        ),
    ]
    for scenario, method, count, domains in cases:
        rec = run(
            tmp_path / method, {**scenario, "corruptions": scenario.get("corruptions", list(CORR))}, method
        )
        assert rec["status"] == "done", rec.get("error")
        assert count is None or sum(rec["online_n"]) == count
        assert domains is None or list(dict.fromkeys(rec["online_domain"])) == domains
        assert 0 <= rec["metrics"]["online_acc"] <= 100


def test_ctta_run_on_folder_releases(tmp_path, monkeypatch):
    write_imagenet_c(tmp_path / "tinyc", ("n01443537", "n01629819"), corruptions=("fog",), per_class=3)
    nets(tmp_path, monkeypatch)
    rec = run(
        tmp_path / "t",
        {"dataset": {"name": "tiny_imagenet_c", "root": str(tmp_path / "tinyc")}, "corruptions": ["fog"]},
        "tent",
        {"name": "released_nets:build", "num_classes": 2, "image_size": 8, "normalize": "none"},
    )
    assert rec["status"] == "done", rec.get("error")
    assert sum(rec["online_n"]) == 6 and set(rec["online_domain"]) == {"fog"}


# --------------------------------------------------------------------------- the clean stream
@pytest.mark.parametrize("clean", [{"severity": 0}, {"corruptions": ["none"]}])
@pytest.mark.parametrize("order", ["iid", "class_sorted"])
def test_clean_stream_is_the_test_set_unchanged(clean, order):
    scenario = Corruption(dataset="digits", test_per_class=4, batch_size=16, order=order, **clean)
    stream = scenario.build(seed=0, image_size=16, device="cpu")
    x = torch.cat([b.x for b, _ in stream.batches()])
    domains = {b.domain for b, _ in stream.batches()}
    test = stream.test
    order_seen = []
    clean_x, _ = test.load(np.arange(len(test)))
    for img in x:  # every streamed image is a clean test image, each once
        order_seen.append(int(torch.nonzero((clean_x - img).abs().flatten(1).amax(1) == 0)[0]))
    assert sorted(order_seen) == list(range(len(test))) and domains == {"none"}
    labels = test.targets[order_seen]
    changes = int((labels[1:] != labels[:-1]).sum())
    assert changes == 9 if order == "class_sorted" else changes > 9


def test_generated_corruptions_unchanged_by_the_clean_option():
    """A generated stream is the same with or without a clean segment before it."""
    base = {"dataset": "digits", "test_per_class": 4, "batch_size": 16, "setting": "continual", "severity": 3}
    plain = Corruption(**base, corruptions=["gaussian_noise"]).build(seed=0, image_size=16, device="cpu")
    with_clean = Corruption(**base, corruptions=["gaussian_noise", "none"]).build(
        seed=0, image_size=16, device="cpu"
    )
    a = torch.cat([b.x for b, _ in plain.batches()])
    b = torch.cat([b.x for b, _ in with_clean.batches()])
    assert torch.equal(a, b[: len(a)])
    clean, _ = with_clean.test.load(np.arange(len(with_clean.test)))

    def nearest(x):  # distance of each image to the closest clean test image
        return torch.cdist(x.flatten(1), clean.flatten(1)).amin(1)

    assert (nearest(b[len(a) :]) < 0.02).all() and (nearest(a) > 1).all()  # cdist rounds


# --------------------------------------------------------------------------- ImageNet-1k masks
def test_official_masks():
    assert len(inc.IMAGENET_R) == len(inc.IMAGENET_A) == len(inc.TINY_IMAGENET) == 200
    for mask in (inc.IMAGENET_R, inc.IMAGENET_A, inc.TINY_IMAGENET):
        assert list(mask) == sorted(set(mask)) and 0 <= mask[0] and mask[-1] < 1000
    wnids = inc.wnids()
    assert len(wnids) == 1000 and list(wnids) == sorted(wnids)
    assert wnids[1] == "n01443537" and 1 in inc.IMAGENET_R  # goldfish: in ImageNet-R, not in ImageNet-A
    assert inc.IMAGENET_A[:4] == (6, 11, 13, 15) and inc.IMAGENET_R[:4] == (1, 2, 4, 6)
    assert inc.IMAGENET_A[-3:] == (986, 987, 988) and inc.IMAGENET_R[-3:] == (981, 983, 988)


def test_full_trees_give_the_standard_masks(tmp_path):
    wnids = inc.wnids()
    for name, mask in (("imagenet_a", inc.IMAGENET_A), ("imagenet_r", inc.IMAGENET_R)):
        write_pictures(tmp_path / name, [wnids[i] for i in mask], per_class=1, size=4)
        data = load_dataset({"name": name, "root": str(tmp_path / name), "test_fraction": 1.0}, "test", 4)
        assert data.imagenet_classes == mask and data.class_names == tuple(wnids[i] for i in mask)
        assert len(data) == 200


def test_imagenet_head_is_restricted_to_the_set_classes(tmp_path, monkeypatch):
    """ImageNet-R's wnid classes 1 and 2 on a head that ranks class 999 first, then 2: restricted
    to the set's classes, every prediction is class 2 (label 1)."""
    write_pictures(tmp_path / "r", WNIDS, per_class=3)
    sorted((tmp_path / "r" / WNIDS[1]).iterdir())[-1].unlink()  # 3 goldfish, 2 sharks
    nets(tmp_path, monkeypatch)
    backbone = {
        "name": "released_nets:favours",
        "first": 999,
        "second": 2,
        "image_size": 8,
        "normalize": "none",
    }
    for name in ("imagenet_r", "imagenet_sketch"):
        scenario = {
            "dataset": {"name": name, "root": str(tmp_path / "r"), "test_fraction": 1.0},
            "corruptions": ["none"],
        }
        rec = run(tmp_path / name, scenario, "source", backbone)
        assert rec["status"] == "done", rec.get("error")
        assert sum(rec["online_correct"]) == 2 and sum(rec["online_n"]) == 5


def test_restrict_head_keeps_the_chosen_logits():
    from ctta.models.factory import create_backbone

    backbone = create_backbone({"name": "small_cnn", "width": 4, "image_size": 16})
    backbone.reset_head(1000)
    x = torch.rand(3, 3, 16, 16)
    full = backbone(x)
    backbone.restrict_head(inc.IMAGENET_R)
    assert torch.equal(backbone(x), full[:, list(inc.IMAGENET_R)])


# --------------------------------------------------------------------------- one-line errors
def error_of(capsys, tmp_path, scenario: dict, backbone=None) -> str:
    with pytest.raises(SystemExit) as exit_:
        run(tmp_path, scenario, "source", backbone)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err.strip().removeprefix("ctta: error: ")


def test_bad_roots_are_one_line_errors_naming_the_layout(tmp_path, monkeypatch, capsys):
    nets(tmp_path, monkeypatch)
    images, _ = write_cifar_c(tmp_path / "good")
    npy = "expected <root>/<corruption>.npy (5 x 10000 images, N×32×32×3 uint8, severity-major) and <root>/labels.npy"
    folders = "expected <root>/<corruption>/<severity 1-5>/<wnid>/*.JPEG (ImageNet-1k wnids)"
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "labels.npy", np.arange(7))
    short = tmp_path / "short"
    write_cifar_c(short)
    np.save(short / "contrast.npy", images["contrast"][:30])
    write_imagenet_c(tmp_path / "inc", WNIDS, corruptions=("fog",))
    (tmp_path / "inc" / "fog" / "1" / "n99999999").mkdir()
    write_imagenet_c(tmp_path / "partial", WNIDS, corruptions=("fog",))
    next((tmp_path / "partial" / "fog" / "4" / WNIDS[0]).iterdir()).unlink()
    small = {"name": "released_nets:build", "num_classes": 1000, "image_size": 8, "normalize": "none"}
    cases = [
        (
            {"name": "cifar10c", "root": str(tmp_path / "nowhere")},
            CORR,
            None,
            f"cifar10c root {tmp_path / 'nowhere'}: {npy}",
        ),
        ({"name": "cifar10c", "root": str(bad)}, CORR, None, f"cifar10c root {bad}: {npy}"),
        (
            {"name": "cifar10c", "root": str(short)},
            ["contrast"],
            None,
            "contrast.npy holds uint8 (30, 32, 32, 3)",
        ),
        (
            {"name": "cifar10c", "root": str(tmp_path / "good")},
            ["fog"],
            None,
            "fog.npy is missing (corruptions found: contrast, gaussian_noise)",
        ),
        (
            {"name": "cifar10c", "root": str(tmp_path / "good")},
            ["none"],
            None,
            "cifar10c: corruption none streams the clean set: pass clean_root=",
        ),
        (
            {"name": "imagenet_c", "root": str(tmp_path / "nowhere")},
            ["fog"],
            small,
            f"imagenet_c root {tmp_path / 'nowhere'}: {folders}",
        ),
        (
            {"name": "imagenet_c", "root": str(tmp_path / "inc")},
            ["snow"],
            small,
            "snow/ is missing (corruptions found: fog)",
        ),
        ({"name": "imagenet_c", "root": str(tmp_path / "inc")}, ["fog"], small, "holds folders n99999999"),
        (
            {"name": "imagenet_a", "root": str(tmp_path / "inc" / "fog" / "1")},
            ["none"],
            small,
            "imagenet_a: class folders n01443537",
        ),
        (
            {"name": "imagenet_a", "root": str(tmp_path / "nowhere")},
            ["none"],
            small,
            "imagenet_a not found at",
        ),
        (
            {"name": "cifar10c", "root": str(tmp_path / "good"), "severity": 2},
            CORR,
            None,
            "dataset 'cifar10c': leave out 'severity'",
        ),
    ]
    for i, (dataset, corruptions, backbone, message) in enumerate(cases):
        err = error_of(
            capsys,
            tmp_path / str(i),
            {"dataset": dataset, "corruptions": list(corruptions), "setting": "gradual"},
            backbone,
        )
        assert message in err, (message, err)
    # a variant that lacks a picture the others hold: found when the stream reaches it
    scenario = Corruption(
        dataset={"name": "imagenet_c", "root": str(tmp_path / "partial")},
        corruptions=["fog"],
        setting="gradual",
    )
    stream = scenario.build(seed=0, image_size=8, device="cpu")
    with pytest.raises(Exception, match=r"imagenet_c fog/4: holds 3 images that are not the 4 pictures"):
        list(stream.batches())


def test_released_sets_refuse_to_train_a_source_model(tmp_path, monkeypatch, capsys):
    write_cifar_c(tmp_path / "c10c")
    nets(tmp_path, monkeypatch)
    err = error_of(
        capsys,
        tmp_path / "a",
        {"dataset": {"name": "cifar10c", "root": str(tmp_path / "c10c")}, "corruptions": ["contrast"]},
        {"name": "small_cnn", "width": 4, "image_size": 32},
    )
    assert err.startswith(
        "backbone 'small_cnn': a source model cannot be trained here: cifar10c is a released test set without training data"
    )
    write_pictures(tmp_path / "a_set", WNIDS)
    with pytest.raises(Exception, match="imagenet_a is a test set|has no training split"):
        load_dataset({"name": "imagenet_a", "root": str(tmp_path / "a_set")}, "train", 8)
