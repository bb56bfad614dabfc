"""Stream orderings, prior shift, and the corruption settings built on them."""

import numpy as np
import pytest
import torch

from ctta import UserError, create_scenario
from ctta.kit.streams import class_proportions, stream_order, zipf_subsample
from ctta.kit.test_time import TestTimeMethod
from ctta.run.engine import execute
from helpers import temporary_method

LABELS = np.repeat(np.arange(10), 50)  # 10 classes x 50 samples


def same_label_neighbours(labels: np.ndarray) -> float:
    """Fraction of consecutive stream positions with the same label (1/K for i.i.d. balanced data)."""
    return float(np.mean(labels[1:] == labels[:-1]))


@pytest.mark.parametrize("order", ["iid", "class_sorted", "dirichlet"])
def test_orders_are_seeded_permutations(order):
    a = stream_order(LABELS, order, seed=3, delta=0.5)
    assert sorted(a) == list(range(len(LABELS)))
    assert np.array_equal(a, stream_order(LABELS, order, seed=3, delta=0.5))
    assert not np.array_equal(a, stream_order(LABELS, order, seed=4, delta=0.5))


def test_class_sorted_is_one_run_per_class():
    labels = LABELS[stream_order(LABELS, "class_sorted", seed=0)]
    assert np.count_nonzero(labels[1:] != labels[:-1]) == 9


def test_dirichlet_correlation_falls_with_delta():
    corr = {
        d: np.mean(
            [
                same_label_neighbours(LABELS[stream_order(LABELS, "dirichlet", seed=s, delta=d)])
                for s in range(5)
            ]
        )
        for d in (0.01, 0.1, 1.0, 100.0)
    }
    iid = np.mean([same_label_neighbours(LABELS[stream_order(LABELS, "iid", seed=s)]) for s in range(5)])
    assert corr[0.01] > 0.95  # nearly class-sorted
    assert corr[0.01] > corr[0.1] > corr[1.0] > corr[100.0]
    assert abs(iid - 0.1) < 0.03  # i.i.d.: 1/K


def test_zipf_subsample_follows_the_power_law():
    keep = zipf_subsample(LABELS, 1.0, seed=0)
    counts = sorted(np.bincount(LABELS[keep]), reverse=True)
    assert counts[0] == 50  # the most frequent class keeps all it has
    expected = [50 / r for r in range(1, 11)]
    assert np.allclose(counts, expected, atol=1)
    assert np.array_equal(zipf_subsample(LABELS, 0.0, seed=0), np.arange(len(LABELS)))
    # a different seed ranks the classes differently
    other = zipf_subsample(LABELS, 1.0, seed=1)
    assert class_proportions(LABELS[keep]) != class_proportions(LABELS[other])


def test_bad_stream_options_are_user_errors():
    with pytest.raises(UserError, match="valid choices: iid, class_sorted, dirichlet"):
        stream_order(LABELS, "sorted", seed=0)
    for bad in ({"order": "random"}, {"delta": 0.0}, {"zipf": -1.0}, {"batch_size": 0}, {"severity": 6}):
        with pytest.raises(UserError):
            create_scenario("corruption", **bad)


# --------------------------------------------------------------------------- corruption settings
CORR = ("gaussian_noise", "contrast", "defocus_blur")


def layout(setting, **options):
    scenario = create_scenario("corruption", corruptions=CORR, setting=setting, **options)
    return scenario.segments(LABELS, seed=0)


@pytest.mark.parametrize("setting", ["single", "continual"])
def test_single_and_continual_stream_every_image_once_per_corruption(setting):
    segments = layout(setting)
    assert [s.domain for s in segments] == list(CORR)
    for d, s in enumerate(segments):
        assert sorted(s.positions) == list(range(len(LABELS)))
        assert (s.corruption == d).all() and s.severity == 5


def test_gradual_goes_up_and_down_in_severity():
    segments = layout("gradual")
    assert [s.severity for s in segments] == [1, 2, 3, 4, 5, 4, 3, 2, 1] * len(CORR)
    assert [s.domain for s in segments[:9]] == ["gaussian_noise"] * 9


def test_mixed_shuffles_every_image_corruption_pair_into_one_stream():
    (segment,) = layout("mixed")
    pairs = set(zip(segment.positions.tolist(), segment.corruption.tolist()))
    assert len(pairs) == len(segment.positions) == len(LABELS) * len(CORR)
    first = segment.corruption[:64]
    assert len(np.unique(first)) == len(CORR)  # neighbours carry different corruptions


def test_label_correlated_order_applies_within_each_corruption():
    for segment in layout("continual", order="class_sorted"):
        labels = LABELS[segment.positions]
        assert np.count_nonzero(labels[1:] != labels[:-1]) == 9


# --------------------------------------------------------------------------- built streams
def stream(**options):
    config = {"dataset": "digits", "corruptions": CORR[:2], "test_per_class": 3, "batch_size": 7, **options}
    return create_scenario("corruption", **config).build(seed=5, image_size=16, device=torch.device("cpu"))


def test_the_stream_is_identical_for_every_method_given_the_seed():
    a, b = list(stream().batches()), list(stream().batches())
    assert len(a) == len(b) == stream().num_batches == 2 * 5  # 30 images, batches of 7
    for (ba, ya), (bb, yb) in zip(a, b):
        assert torch.equal(ba.x, bb.x) and torch.equal(ya, yb) and ba.domain == bb.domain
    other = list(
        create_scenario(
            "corruption",
            **{"dataset": "digits", "corruptions": CORR[:2], "test_per_class": 3, "batch_size": 7},
        )
        .build(seed=6, image_size=16, device=torch.device("cpu"))
        .batches()
    )
    assert not all(torch.equal(ya, yo) for (_, ya), (_, yo) in zip(a, other))


def test_batch_size_one_and_prior_shift():
    s = stream(batch_size=1, zipf=2.0, setting="mixed")
    batches = list(s.batches())
    assert s.num_batches == len(batches) == 2 * len(s.test)
    assert all(b.x.shape[0] == 1 and b.domain == "mixed" for b, _ in batches)
    counts = np.bincount(s.test.targets, minlength=10)
    assert sorted(counts, reverse=True)[:2] == [3, 1]  # Zipf s=2 on 3 images per class: 3, 3/4, ...


class _CountResets(TestTimeMethod):
    """Answers with zeros and counts how often it is reset."""

    resets = 0

    def setup(self, backbone, info):
        self.info = info

    def adapt(self, x):
        return torch.zeros(len(x), self.info.num_classes)

    def reset(self):
        type(self).resets += 1


@pytest.mark.parametrize(
    "setting,per_domain,expected", [("single", False, 1), ("continual", False, 0), ("continual", True, 1)]
)
def test_resets_at_domain_changes(setting, per_domain, expected):
    class Method(_CountResets):
        reset_on_domain_change = per_domain
        resets = 0

    scenario = {
        "name": "corruption",
        "dataset": "digits",
        "corruptions": list(CORR[:2]),
        "setting": setting,
        "test_per_class": 2,
        "batch_size": 8,
        "source_epochs": 1,
        "source_per_class": 5,
    }
    with temporary_method("count_resets", Method):
        rec = execute(
            {"scenario": scenario, "method": "count_resets", "backbone": "debug_vit", "seed": 0}, device="cpu"
        )
    assert rec["status"] == "done", rec.get("error")
    assert Method.resets == expected
    assert set(rec["metrics"]) >= {"acc@gaussian_noise", "acc@contrast", "online_acc"}
