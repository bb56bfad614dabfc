"""The architecture holds: imports only point down (import-linter contracts of pyproject.toml),
every layer says what it is, and no module grows past 400 lines without saying why."""

import ast
import importlib
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import lint_imports  # noqa: E402

LAYERS = ("cli", "core", "data", "kit", "models", "plan", "report", "run", "sweep", "zoo")


def test_import_contracts_hold(tmp_path):
    result = lint_imports.check(lint_imports.stage(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "where, line, broken",
    [
        # a function-local import from a lower layer up to a higher one
        ("ctta/core/errors.py", "def _f():\n    from ..run import engine\n", "Layers"),
        # a TYPE_CHECKING import closing a circle inside one layer
        (
            "ctta/data/images.py",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .datasets import DataSpec\n",
            "No import circle",
        ),
        # a method that reaches past the toolkit, and one that imports another method
        ("ctta/methods/tent.py", "from ctta.models.backbone import NORM_TYPES\n", "Plugins import only"),
        ("ctta/methods/tent.py", "from ctta.methods import lame\n", "never imports another"),
        # a lower layer importing the facade that plugins import
        ("ctta/kit/heads.py", "def _f():\n    from ctta import hp\n", "facade"),
    ],
)
def test_a_new_upward_import_breaks_a_contract(tmp_path, where, line, broken):
    tree = lint_imports.stage(tmp_path)
    path = tree / where
    path.write_text(path.read_text() + "\n\n" + line)
    result = lint_imports.check(tree)
    assert result.returncode != 0
    report = result.stdout[result.stdout.index("Broken contracts") :]
    assert broken in report


def test_every_layer_explains_itself_in_its_package_docstring():
    for layer in LAYERS:
        doc = importlib.import_module(f"ctta.{layer}").__doc__ or ""
        assert len(doc.split()) >= 20, f"ctta.{layer} needs a one-paragraph docstring"


def test_no_module_over_400_lines_without_a_stated_reason():
    long = []
    for path in sorted((REPO / "ctta").rglob("*.py")):
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > 400 and "Over 400 lines:" not in doc:
            long.append(f"{path.relative_to(REPO)} ({lines} lines)")
    assert not long, f"split these or state why in the docstring ('Over 400 lines: ...'): {long}"


def test_the_toolkit_declares_what_it_exports():
    import ctta.kit

    assert len(ctta.kit.__all__) == len(set(ctta.kit.__all__))
    for name in ctta.kit.__all__:
        assert getattr(ctta.kit, name) is not None, name
    public = {n for n in vars(ctta.kit) if not n.startswith("_")} - set(LAYERS) - {
        "adapters", "augment", "class_stats", "disjointness", "features", "heads", "params",
        "prompts", "regularization", "source", "stages", "streams", "test_time", "training",
    }  # fmt: skip
    assert public <= set(ctta.kit.__all__), sorted(public - set(ctta.kit.__all__))
