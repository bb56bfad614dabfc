import pytest

import ctta
from ctta import Method, UserError, create_method, list_methods
from ctta.core.registry import Registry

CORE_METHODS = {"finetune", "joint", "simplecil", "source", "bn_adapt", "tent"}


def test_core_methods_are_listed():
    assert CORE_METHODS <= set(list_methods())
    assert list_methods("*zzz*") == []
    assert list_methods("*tune") == ["finetune"]
    assert "tent" in list_methods("t*")


def test_unknown_name_lists_known_ones():
    with pytest.raises(UserError) as err:
        create_method("tnet")
    msg = str(err.value)
    assert msg.startswith("unknown method 'tnet'; valid choices: ")
    assert all(m in msg for m in CORE_METHODS)


def test_create_with_hparams_validates():
    m = create_method("tent", lr=0.5)
    assert m.hparams.lr == 0.5 and m.name == "tent"
    with pytest.raises(UserError, match="method 'tent': unknown option 'learning_rate'"):
        create_method("tent", learning_rate=0.5)


def test_duplicate_name_is_an_error():
    reg = Registry("thing", "ctta.test-things")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(ValueError, match="thing 'a' is already registered"):

        @reg.register("a")
        class B:
            pass


def test_family_names_resolve_through_their_factory():
    reg = Registry("thing", "ctta.test-things")

    @reg.register("fam", family=True)
    def make(suffix):
        return type(f"T_{suffix}", (), {})

    assert reg.get("fam:X").__name__ == "T_X"
    assert reg.get("fam:X").name == "fam:X"
    assert reg.names() == ["fam:*"]


def test_unregister_and_families_are_public():
    reg = Registry("thing", "ctta.test-things")

    @reg.register("a")
    class A:
        pass

    @reg.register("fam", family=True)
    def make(suffix):
        return type(f"T_{suffix}", (), {})

    assert reg.entries() == {"a": A} and list(reg.families()) == ["fam"]
    reg.unregister("a")
    reg.unregister("fam")
    reg.unregister("never-registered")  # ignored
    assert reg.entries() == {} and reg.families() == {}
    with pytest.raises(UserError, match="unknown thing 'a'"):
        reg.get("a")

    @reg.register("a")  # the name is free again
    class A2:
        pass

    assert reg.get("a") is A2


def test_broken_plugin_breaks_only_itself(monkeypatch):
    from importlib.metadata import EntryPoint

    eps = [
        EntryPoint("broken", "no_such_module_xyz:Thing", "ctta.test-things"),
        EntryPoint("good", "ctta.api:Method", "ctta.test-things"),
    ]
    monkeypatch.setattr("ctta.core.registry.entry_points", lambda group: [e for e in eps if e.group == group])
    reg = Registry("thing", "ctta.test-things")
    assert reg.names() == ["good"]
    assert "ModuleNotFoundError" in reg.broken()["broken"]
    with pytest.raises(UserError, match="thing 'broken' failed to load: ModuleNotFoundError"):
        reg.get("broken")
    assert reg.get("good") is Method


def test_every_builtin_method_declares_typed_hparams_with_nonempty_space():
    for name in list_methods():
        if name.endswith(":*"):
            continue
        cls = ctta.core.registry.METHODS.get(name)
        assert cls.__doc__, f"{name} has no docstring"
        for key, values in cls.search_space().items():
            assert len(values) >= 1, f"{name}.{key} has an empty search space"
        cls()  # defaults are valid


def test_hparams_dataclass_inheritance_keeps_reset_options():
    m = create_method("tent")
    assert {"episodic", "reset_every", "lr", "steps"} <= set(vars(m.hparams))
