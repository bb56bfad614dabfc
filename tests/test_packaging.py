"""A normal (wheel) install and the editable install both provide ctta.methods/scenarios/protocols."""

import subprocess
import sys
import zipfile
from pathlib import Path

import ctta.methods
import ctta.scenarios

ROOT = Path(__file__).resolve().parents[1]


def test_editable_install_maps_top_level_folders():
    assert Path(ctta.methods.__file__).parent == ROOT / "methods"
    assert Path(ctta.scenarios.__file__).parent == ROOT / "scenarios"


def test_wheel_contains_and_imports_the_mapped_packages(tmp_path):
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)], check=True
    )
    wheel = next(tmp_path.glob("ctta-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "ctta/run/engine.py",
        "ctta/methods/tent.py",
        "ctta/scenarios/class_incremental.py",
        "ctta/protocols/__init__.py",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("methods/", "scenarios/", "protocols/", "tests/")) for n in names)
    # A fresh venv with the wheel in its site-packages and this environment's dependencies
    # on a .pth (paths in a .pth are not site dirs, so the editable finder is not loaded).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True)
    (site / "deps.pth").write_text("\n".join(p for p in sys.path if p.endswith("site-packages")))
    code = "import ctta.methods.tent as t, ctta.scenarios.class_incremental as c; print(t.__file__); print(c.__file__)"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert out.stdout.split() == [
        str(site / "ctta/methods/tent.py"),
        str(site / "ctta/scenarios/class_incremental.py"),
    ]
