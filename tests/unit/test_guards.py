"""The sweep's guard rails as rules: what makes a trial diverged, when a task's sweep stops early,
and which trial is the baseline. (On a real Ray, end to end: tests/e2e/test_sweep.py.)"""

from __future__ import annotations

import math

from orchestrator.config.baseline import baseline_trial, matches
from orchestrator.search.guards import DIVERGED, SweepGuard, far_worse, nonfinite


class _Trial:
    def __init__(
        self, trial_id: str, config: dict, last_result: dict | None = None, status: str = "RUNNING"
    ):
        self.trial_id, self.config, self.last_result, self.status = (
            trial_id,
            config,
            last_result or {},
            status,
        )


def _guard(**options) -> SweepGuard:
    guard = SweepGuard("fid", "min", {"lambda_cyc": 10.0}, **{"divergence_factor": 3.0, **options})
    guard.on_step_begin(0, [_Trial("b7", {"lambda_cyc": 10}), _Trial("a1", {"lambda_cyc": 5})])
    return guard


def test_the_baseline_is_the_first_trial_created_with_its_values_whatever_the_ids():
    trials = [
        ("f00d", {"lambda_cyc": 20}),
        ("beef", {"lambda_cyc": 10}),
        ("0001", {"lambda_cyc": 10.0}),
    ]
    assert (
        baseline_trial(trials, {"lambda_cyc": 10.0}) == "beef"
    )  # 10 and 10.0 are the same λ; "0001" came later
    assert (
        baseline_trial(trials, {"lambda_cyc": 7}) is None and baseline_trial(trials, None) is None
    )
    assert (
        baseline_trial(trials, {}) == "f00d"
    )  # nothing searched: every trial is the task as it is
    assert not matches({"lambda_cyc": 10}, {"lambda_cyc": 10, "pool_size": 50})


def test_non_finite_losses_or_metric_diverge_any_trial_the_baseline_too():
    guard = _guard()
    result = {"epoch": 2, "fid": 80.0, "loss_G": math.nan}
    assert guard("b7", result) is True and result[DIVERGED] == "at epoch 2: loss_G is nan"
    assert (
        nonfinite({"fid": math.inf, "lr": math.nan}, "fid") == "fid is inf"
    )  # lr is no loss: only the losses and the metric
    assert guard("a1", {"epoch": 1, "fid": 80.0, "loss_G": 3.0}) is False


def test_a_metric_far_worse_than_the_baselines_at_that_epoch_diverges():
    guard = _guard()
    assert (
        guard("a1", {"epoch": 1, "fid": 900.0}) is False
    )  # the baseline has not reported yet: nothing to compare with
    assert guard("b7", {"epoch": 1, "fid": 200.0}) is False
    assert guard("b7", {"epoch": 3, "fid": 100.0}) is False
    assert guard("a1", {"epoch": 1, "fid": 590.0}) is False  # under 3 x 200
    result = {"epoch": 2, "fid": 610.0}  # epoch 2: the baseline's latest earlier epoch, 1 (200)
    assert guard("a1", result) is True
    assert (
        result[DIVERGED] == "at epoch 2: fid 610 is more than 3x above the baseline's 200 (epoch 1)"
    )
    assert guard("a1", {"epoch": 4, "fid": 310.0}) is True  # epoch 4: against epoch 3's 100
    assert (
        guard("b7", {"epoch": 5, "fid": 5000.0}) is False
    )  # the baseline only diverges on non-finite numbers
    assert not _guard(divergence_factor=None)("a1", {"epoch": 4, "fid": 10_000.0})


def test_for_a_metric_to_maximize_far_worse_is_a_fraction_and_non_positive_baselines_are_not_compared():  # noqa: E501
    assert far_worse(5.0, 18.0, 3.0, "max") and not far_worse(7.0, 18.0, 3.0, "max")
    assert far_worse(61.0, 20.0, 3.0, "min") and not far_worse(59.0, 20.0, 3.0, "min")
    assert not far_worse(-50.0, -1.0, 3.0, "max") and not far_worse(10.0, 0.0, 3.0, "min")


def test_a_resumed_sweep_compares_with_the_baselines_last_result():
    guard = SweepGuard("fid", "min", {"lambda_cyc": 10.0}, divergence_factor=2.0)
    guard.on_step_begin(
        0,
        [
            _Trial("b7", {"lambda_cyc": 10}, {"epoch": 3, "fid": 50.0}, "TERMINATED"),
            _Trial("a1", {"lambda_cyc": 5}),
        ],
    )
    assert (
        guard("a1", {"epoch": 3, "fid": 101.0}) is True
        and guard("a1", {"epoch": 2, "fid": 101.0}) is False
    )
    assert guard.completed == {"b7"}  # it ended before the interruption: not stopped by this guard


def test_the_time_budget_and_the_failed_trials_stop_the_whole_sweep(monkeypatch):
    import orchestrator.search.guards as guards

    now = [1000.0]
    monkeypatch.setattr(guards.time, "monotonic", lambda: now[0])
    budget = _guard(time_budget_s=60)
    assert budget.stop_all() is False  # the clock starts at Tune's first step
    now[0] += 59
    assert budget.stop_all() is False
    now[0] += 1
    assert (
        budget.stop_all() is True and budget.stop_reason == "the task's time budget of 60 s ran out"
    )

    failures = _guard(max_failed_trials=2)
    failures.on_trial_error(0, [], _Trial("a1", {}))
    assert failures.stop_all() is False
    failures.on_trial_error(0, [], _Trial("a2", {}))
    assert (
        failures.stop_all() is True
        and failures.stop_reason == "2 trial(s) failed (search.max_failed_trials: 2)"
    )
    assert failures.completed == {"a1", "a2"}
