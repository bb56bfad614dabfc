"""domain_shift: source/target roles, DomainBed's model-selection streams, disjointness."""

import numpy as np
import pytest
import torch

from ctta import UserError, create_scenario
from ctta.core.registry import DATASETS
from ctta.data.datasets import digits
from ctta.data.images import ImageData
from ctta.run.engine import execute

DOMAINS = ("red", "green", "blue", "inverted")


def tinted_digits(*, split: str, image_size: int) -> ImageData:
    """digits in four colour domains (every image once per domain), for these tests."""
    base = digits(split=split, image_size=image_size)
    keep = np.flatnonzero(np.arange(len(base)) % 6 == 0)  # a few images per class keep the tests fast
    x, y = base.load(keep)
    views = [
        x * torch.tensor(c).view(1, 3, 1, 1) for c in ([1.0, 0.3, 0.3], [0.3, 1.0, 0.3], [0.3, 0.3, 1.0])
    ]
    views.append(1 - x)
    return ImageData.from_arrays(
        torch.cat(views),
        np.tile(y.numpy(), len(DOMAINS)),
        base.class_names,
        name="tinted_digits",
        domains=np.repeat(np.arange(len(DOMAINS)), len(keep)),
        domain_names=DOMAINS,
    )


@pytest.fixture(scope="module", autouse=True)
def dataset():
    DATASETS.register("tinted_digits")(tinted_digits)
    yield
    DATASETS.unregister("tinted_digits")


def build(**options):
    scenario = create_scenario("domain_shift", dataset="tinted_digits", batch_size=16, **options)
    return scenario.build(seed=0, image_size=16, device=torch.device("cpu"))


def domains_of(data: ImageData) -> set[str]:
    return {data.domain_names[d] for d in np.unique(data.domains)}


def streamed(stream) -> list[str]:
    return list(dict.fromkeys(b.domain for b, _ in stream.batches()))


def test_default_roles_train_on_every_other_domain_and_stream_the_last():
    s = build()
    assert domains_of(s.info.source) == {"red", "green", "blue"}
    assert streamed(s) == ["inverted"] and domains_of(s.test) == {"inverted"}
    assert s.reset_on_domain_change


def test_model_selection_streams():
    sources = ("red", "green", "blue")
    evaluation = build(targets=("inverted",))
    training = build(targets=("inverted",), selection="training_domain")
    oracle = build(targets=("inverted",), selection="oracle")
    lodo = build(targets=("inverted",), selection="leave_one_out", held_out="green")
    assert streamed(training) == list(sources) and domains_of(training.info.source) == set(sources)
    assert streamed(oracle) == ["inverted"]
    assert streamed(lodo) == ["green"] and domains_of(lodo.info.source) == {"red", "blue"}
    keys = {name: set(s.test.sample_keys()) for name, s in [("eval", evaluation), ("oracle", oracle)]}
    assert not keys["eval"] & keys["oracle"]  # the oracle's held-out split never meets the scored one
    for s in (evaluation, training, oracle, lodo):  # nothing streamed was trained on
        assert not set(s.test.sample_keys()) & set(s.info.source.sample_keys())


def test_validation_configs_for_a_protocol():
    scenario = create_scenario("domain_shift", dataset="tinted_digits", targets=["blue"])
    configs = scenario.validation_configs("leave_one_out", image_size=16)
    assert [c["held_out"] for c in configs] == ["red", "green", "inverted"]
    assert all(c["selection"] == "leave_one_out" for c in configs)
    (oracle,) = scenario.validation_configs("oracle", image_size=16)
    assert oracle["selection"] == "oracle" and oracle["targets"] == ["blue"]
    with pytest.raises(UserError, match="valid choices: training_domain, leave_one_out, oracle"):
        scenario.validation_configs("test", image_size=16)


def test_bad_domains_are_user_errors():
    with pytest.raises(UserError, match="unknown domain 'purple'; valid choices: red, green, blue, inverted"):
        build(targets=("purple",))
    with pytest.raises(UserError, match="needs held_out"):
        build(selection="leave_one_out")
    with pytest.raises(UserError, match="disjoint"):
        build(targets=("red",), sources=("red", "blue"))
    with pytest.raises(UserError, match="records no domains"):
        create_scenario("domain_shift", dataset="digits").build(
            seed=0, image_size=16, device=torch.device("cpu")
        )


def test_continual_targets_with_label_shift_run_end_to_end():
    spec = {
        "scenario": {
            "name": "domain_shift",
            "dataset": "tinted_digits",
            "targets": ["blue", "inverted"],
            "setting": "continual",
            "order": "class_sorted",
            "batch_size": 8,
            "source_epochs": 1,
            "source_per_class": 10,
        },
        "method": "lame",
        "backbone": "debug_vit",
        "seed": 0,
    }
    rec = execute(spec, device="cpu")
    assert rec["status"] == "done", rec.get("error")
    assert rec["online_domain"][0] == "blue" and rec["online_domain"][-1] == "inverted"
    assert {"acc@blue", "acc@inverted"} <= set(rec["metrics"])
