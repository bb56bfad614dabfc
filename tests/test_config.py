from dataclasses import dataclass
from typing import Literal

import pytest

from ctta import UserError, hp
from ctta.core.config import as_dict, build_config, check_value, search_space


@dataclass
class HP:
    lr: float = hp(0.1, space=(0.01, 0.1), doc="step")
    steps: int = hp(1)
    kind: Literal["a", "b"] = hp("a", space=("a", "b"))
    pats: tuple[str, ...] = hp(("x.*",))
    maybe: int | None = hp(None)


def test_defaults_and_space():
    c = build_config(HP, {}, "m")
    assert as_dict(c) == {"lr": 0.1, "steps": 1, "kind": "a", "pats": ["x.*"], "maybe": None}
    assert search_space(HP) == {
        "lr": (0.01, 0.1),
        "steps": (1,),
        "kind": ("a", "b"),
        "pats": (("x.*",),),
        "maybe": (None,),
    }


def test_coercion():
    c = build_config(HP, {"lr": 1, "steps": 2.0, "pats": ["a", "b"], "maybe": 3}, "m")
    assert c.lr == 1.0 and isinstance(c.lr, float)
    assert c.steps == 2 and isinstance(c.steps, int)
    assert c.pats == ("a", "b")
    assert c.maybe == 3


@pytest.mark.parametrize(
    "values, message",
    [
        ({"lrr": 1}, "m: unknown option 'lrr'; valid options: lr, steps, kind, pats, maybe"),
        ({"lr": "fast"}, "m: option 'lr': expected a number, got 'fast'"),
        ({"steps": 1.5}, "m: option 'steps': expected an integer, got 1.5"),
        ({"kind": "c"}, "m: option 'kind': invalid value 'c'; valid choices: a, b"),
        ({"pats": "x"}, "m: option 'pats': expected a list, got 'x'"),
        ({"steps": True}, "m: option 'steps': expected an integer, got True"),
    ],
)
def test_errors_name_key_and_choices(values, message):
    with pytest.raises(UserError) as err:
        build_config(HP, values, "m")
    assert str(err.value) == message


def test_check_value_for_search_spaces():
    assert check_value(HP, "lr", 3, "grid") == 3.0
    with pytest.raises(UserError, match="grid: option 'lr': expected a number"):
        check_value(HP, "lr", "x", "grid")
