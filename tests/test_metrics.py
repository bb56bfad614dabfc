import pytest

from ctta.plan.metrics import continual_metrics, online_metrics


def test_continual_metrics_against_hand_computation():
    # A[i][j]: accuracy on task j after task i. Task 0 peaks after task 1 (95) -> the two
    # forgetting definitions differ.
    matrix = [[90.0, None, None], [95.0, 80.0, None], [50.0, 60.0, 85.0]]
    acc_seen = [90.0, 87.5, 65.0]
    m = continual_metrics(matrix, acc_seen)
    assert m["avg_inc_acc"] == pytest.approx((90 + 87.5 + 65) / 3)
    assert m["last_acc"] == 65.0
    assert m["first_acc"] == 90.0
    assert m["perf_drop"] == 25.0
    assert m["forgetting_max"] == pytest.approx(((95 - 50) + (80 - 60)) / 2)  # 32.5
    assert m["forgetting_first"] == pytest.approx(((90 - 50) + (80 - 60)) / 2)  # 30
    assert m["bwt"] == pytest.approx(-30.0)


def test_single_task_has_no_forgetting():
    m = continual_metrics([[70.0]], [70.0])
    assert m == {
        "avg_inc_acc": 70.0,
        "last_acc": 70.0,
        "first_acc": 70.0,
        "perf_drop": 0.0,
        "forgetting_max": 0.0,
        "forgetting_first": 0.0,
        "bwt": 0.0,
    }


def test_online_metrics_weight_by_samples_and_keep_domain_order():
    m = online_metrics([10, 10, 5], [5, 10, 5], ["fog", "fog", "snow"])
    assert m["online_acc"] == pytest.approx(80.0)
    assert m["online_err"] == pytest.approx(20.0)
    assert m["acc@fog"] == pytest.approx(75.0)
    assert m["acc@snow"] == pytest.approx(100.0)
    assert m["mean_domain_acc"] == pytest.approx(87.5)
    assert [k for k in m if k.startswith("acc@")] == ["acc@fog", "acc@snow"]
