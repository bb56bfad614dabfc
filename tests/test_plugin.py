"""The plugin story end to end: a method in another package, installed with pip, run by the CLI."""

import subprocess
import sys
import textwrap

import pytest

PYPROJECT = textwrap.dedent("""
    [build-system]
    requires = ["setuptools>=68"]
    build-backend = "setuptools.build_meta"

    [project]
    name = "ctta-testplugin"
    version = "0.1.0"

    [project.entry-points."ctta.methods"]
    nearest_mean = "ctta_testplugin:NearestMean"
    broken_method = "ctta_testplugin_missing:Nothing"
""")

MODULE = textwrap.dedent('''
    """A throwaway third-party method: Euclidean nearest class mean on frozen features."""
    from dataclasses import dataclass

    import torch
    from ctta import Method, hp
    from ctta.kit.params import freeze
    from ctta.kit.features import extract_features


    class NearestMean(Method):
        """Nearest class mean (Euclidean) on frozen backbone features."""

        stream_kinds = frozenset({"class_incremental"})

        @dataclass
        class HParams:
            shrink: float = hp(0.0, space=(0.0, 0.5), doc="shrink means towards their average")

        def setup(self, backbone, info):
            self.info, self.model = info, freeze(backbone)
            self.means = torch.zeros(info.num_classes, backbone.feature_dim, device=info.device)

        def learn(self, task):
            feats, labels = extract_features(self.model, task.train, device=self.device)
            for c in task.classes:
                self.means[c] = feats[labels == c].mean(0)
            return {}

        def predict(self, x):
            means = self.means
            means = (1 - self.hparams.shrink) * means + self.hparams.shrink * means.mean(0)
            return -torch.cdist(self.model.features(x), means)
''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    src = tmp_path_factory.mktemp("plugin")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "ctta_testplugin.py").write_text(MODULE)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(src)], check=True)
    yield
    subprocess.run([*pip, "uninstall", "-y", "ctta-testplugin"], check=True)


def ctta(*args):
    return subprocess.run(
        [sys.executable, "-m", "ctta.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_installed_plugin_is_listed_and_runs(plugin, tmp_path):
    listed = ctta("list", "methods")
    assert listed.returncode == 0, listed.stderr
    lines = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "Nearest class mean (Euclidean)" in lines["nearest_mean"]
    assert "failed to load: ModuleNotFoundError" in lines["broken_method"]  # broken plugin breaks only itself
    assert "tent" in lines
    run = ctta(
        "run",
        "--scenario",
        "class_incremental",
        "-S",
        "dataset=digits",
        "-S",
        "increment=5",
        "-S",
        "train_per_class=10",
        "-S",
        "test_per_class=5",
        "--method",
        "nearest_mean",
        "-H",
        "shrink=0.5",
        "--backbone",
        "debug_vit",
        "--results",
        str(tmp_path),
    )
    assert run.returncode == 0, run.stderr
    assert "nearest_mean on class_incremental (debug_vit, seed 1993): done" in run.stdout
    broken = ctta(
        "run", "--scenario", "class_incremental", "--method", "broken_method", "--backbone", "debug_vit"
    )
    assert broken.returncode == 2
    assert "method 'broken_method' failed to load: ModuleNotFoundError" in broken.stderr
