"""class_incremental presets and class pools."""

import pytest
import torch

from ctta import UserError, create_scenario
from ctta.plan.spec import RunSpec


def _build(**config):
    return create_scenario("class_incremental", **config).build(
        seed=1993, image_size=8, device=torch.device("cpu")
    )


def test_presets_set_dataset_and_split_and_explicit_options_win():
    s = create_scenario("class_incremental", preset="cifar100_b50inc10")
    assert s.split() == ("cifar100", 50, 10)
    s = create_scenario("class_incremental", preset="imagenet_r_b0inc20", increment=40)
    assert s.split() == ("imagenet_r", 0, 40)
    stream = _build(preset="digits_b0inc2")
    assert stream.info.extra["task_sizes"] == [2] * 5
    assert _build(preset="digits_b0inc2", increment=5).info.extra["task_sizes"] == [5, 5]
    with pytest.raises(UserError, match="unknown class-incremental preset 'cifar_b0inc10'.*cifar100_b0inc10"):
        create_scenario("class_incremental", preset="cifar_b0inc10")
    # the preset is part of the run's identity; unset options stay unset
    spec = RunSpec.parse(
        {
            "scenario": {"name": "class_incremental", "preset": "cub200_b0inc10"},
            "method": "finetune",
            "backbone": "debug_vit",
        }
    )
    assert spec.scenario["preset"] == "cub200_b0inc10" and spec.scenario["increment"] is None


def test_class_pools_are_disjoint_and_give_the_same_shape():
    first = _build(preset="digits_b0inc2", classes="first_half")
    second = _build(preset="digits_b0inc2", classes="second_half")
    a, b = set(first.info.extra["class_order"]), set(second.info.extra["class_order"])
    assert a and b and not a & b
    assert first.info.extra["task_sizes"] == second.info.extra["task_sizes"] == [2, 2]
    keys = {k for _, d in first.data() for k in d.sample_keys()}
    assert not keys & {k for _, d in second.data() for k in d.sample_keys()}
