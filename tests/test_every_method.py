"""Registry-generated: every registered method on every compatible debug scenario."""

import pytest

from ctta import list_methods
from ctta.testing import check_method, debug_specs

METHODS = [m for m in list_methods() if not m.endswith(":*")]


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_on_its_debug_scenarios(method):
    records = check_method(method)
    assert len(records) == len(debug_specs(method))
    for rec in records:
        assert rec["trainable_params"] >= 0
        if rec["kind"] == "test_time":
            assert sum(rec["online_n"]) > 0
        else:
            assert len(rec["acc_seen"]) == len(rec["acc_matrix"]) >= 2
        if rec["kind"] == "domain_incremental":  # every domain before and after every task
            t = len(rec["acc_matrix"])
            assert len(rec["acc_initial"]) == t and "fwt" in rec["metrics"]
            assert all(len(row) == t and None not in row for row in rec["acc_matrix"])
