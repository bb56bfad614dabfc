"""The README's "write your own method" example works as printed."""

import re
from pathlib import Path

from ctta.core.registry import METHODS
from ctta.run.engine import execute
from ctta.testing import check_method

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert text.index("make demo") < text.index("##")


def test_write_your_own_method_example_runs():
    code = re.search(r"<!-- example:method -->\n```python\n(.*?)```", README.read_text(), re.S).group(1)
    namespace: dict = {}
    try:
        exec(compile(code, str(README), "exec"), namespace)
        records = check_method("linear_probe")
        assert records and all(r["trainable_params"] < r["total_params"] for r in records)
        rec = execute(
            {
                "scenario": {
                    "name": "class_incremental",
                    "dataset": "digits",
                    "increment": 5,
                    "train_per_class": 30,
                    "test_per_class": 10,
                },
                "method": {"name": "linear_probe", "lr": 0.2, "epochs": 3},
                "backbone": "debug_vit",
                "seed": 1,
            }
        )
        assert rec["status"] == "done"
        # The head has learned something: above chance on the first task's five classes.
        assert rec["acc_matrix"][0][0] > 100 / 5
    finally:
        METHODS.unregister("linear_probe")
