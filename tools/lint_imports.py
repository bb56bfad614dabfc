"""Check the import contracts of pyproject.toml ([tool.importlinter]) with lint-imports.

methods/, scenarios/ and protocols/ are the packages ctta.methods, ctta.scenarios and
ctta.protocols (a setuptools package-dir mapping), but import-linter finds a package's
modules by walking its folder, where they are not. So the contracts are checked on a copy
of the tree laid out as it is imported: ctta/ with the three folders inside.

    python tools/lint_imports.py            # stage a copy in a temporary folder and check it
    python tools/lint_imports.py --tree D   # check a tree already staged in D (D/ctta/...)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLUGIN_FOLDERS = ("methods", "scenarios", "protocols")


def stage(dest: Path) -> Path:
    """Copy ctta/ and the plugin folders into `dest` as the package they are imported as."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "ctta", dest / "ctta", ignore=ignore)
    for folder in PLUGIN_FOLDERS:
        shutil.copytree(REPO / folder, dest / "ctta" / folder, ignore=ignore)
    return dest


def check(tree: Path) -> subprocess.CompletedProcess:
    """lint-imports on the staged `tree` (its copy of ctta shadows the installed one)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # lint-imports' own entry point, run by this interpreter (works in any venv that has it)
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--no-cache", str(REPO / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, help="a tree staged already (holding ctta/)")
    args = parser.parse_args()
    if args.tree is not None:
        result = check(args.tree)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = check(stage(Path(tmp)))
    sys.stdout.write(
        result.stdout[result.stdout.find("Contracts") :] if result.returncode == 0 else result.stdout
    )
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
