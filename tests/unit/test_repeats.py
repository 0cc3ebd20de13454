"""search.repeats: the seeds' mean and its interval, configurations ranked by their mean, and the
Tune wrapper that runs each proposal k times and tells its algorithm the mean."""

from __future__ import annotations

import math

import pytest
from ray.tune import register_trainable
from ray.tune.experiment import Trial
from ray.tune.search import SearchAlgorithm

from cyclegan.errors import UserError
from orchestrator.config.plan import parse_manifest
from orchestrator.sweep.repeats import RepeatedTrials
from orchestrator.sweep.results import TaskResult, TrialRecord, summary_table
from orchestrator.sweep.seeds import best_configuration, seed_mean


def test_the_seeds_interval_is_students_t_and_covers_the_spread_and_the_test_images_noise():
    two = seed_mean([1.0, 3.0])
    # t(0.975, 1 dof) = 12.706; sd = sqrt(2); half-width = 12.706 * sqrt(2) / sqrt(2)
    assert two.value == 2.0
    assert (two.low, two.high) == pytest.approx((2 - 12.7062, 2 + 12.7062), rel=1e-4)
    many = seed_mean([10.0, 10.1, 9.9, 10.0, 10.0, 14.0])  # an outlier seed: the range still in
    assert many.low <= 9.9 and many.high >= 14.0
    # One seed: only the test images' noise, its own bootstrap interval.
    one = seed_mean([5.0], [[4.0, 6.5]])
    assert (one.value, one.low, one.high) == (5.0, 4.0, 6.5)
    # Close seeds with wide test-image intervals: the images' noise sets the width.
    close = seed_mean([5.0, 5.01], [[3.0, 7.0], [3.2, 7.2], None])
    assert (close.low, close.high) == pytest.approx((3.1, 7.1))
    assert math.isnan(seed_mean([1.0, 2.0], [[float("nan"), 1.0]]).value) is False


def _trial(trial_id, lr, seed, metric, ci=None, status="finished"):
    return TrialRecord(
        trial_id, {"lr": lr, "seed": seed}, status, metric, 2, [], None, best_epoch=2, metric_ci=ci
    )


def test_configurations_rank_by_their_seeds_mean_not_by_a_lucky_seed():
    trials = [
        _trial("a0", 0.0002, 0, 1.0),  # the luckiest seed of all...
        _trial("a1", 0.0002, 1, 5.0),  # ...of the configuration with the worse mean (3.0)
        _trial("b0", 0.001, 0, 2.5),
        _trial("b1", 0.001, 1, 2.0),  # mean 2.25
    ]
    configurations, best = best_configuration(trials, "min")
    assert [c["params"] for c in configurations] == [{"lr": 0.001}, {"lr": 0.0002}]
    assert configurations[0]["mean"] == pytest.approx(2.25) and best.trial_id == "b1"
    assert configurations[0]["trials"] == ["b0", "b1"]
    low, high = configurations[0]["ci"]
    assert low <= 2.0 and high >= 2.5  # the interval includes the seed spread
    _, best_max = best_configuration(trials, "max")
    assert best_max.trial_id == "a1"  # max: the configuration with mean 3.0, its best seed

    result = TaskResult("t", "d", "fid", "min", trials, best.trial_id, repeats=2)
    result.configurations = configurations
    table = summary_table([result])
    assert "fid=2.25 [" in table and "mean of 2 seeds (min); this seed 2 @ epoch 2" in table


class Proposals(SearchAlgorithm):
    """A search algorithm that proposes the given configs and records what it hears."""

    def __init__(self, configs):
        super().__init__()
        self.configs, self.heard = list(configs), []

    def next_trial(self):
        if not self.configs:
            self.set_finished()
            return None
        return Trial("repeats-test", config=self.configs.pop(0))

    def on_trial_complete(self, trial_id, result=None, error=False):
        self.heard.append((trial_id, result, error))


def _trainable(config):
    pass


def test_each_proposal_runs_with_k_seeds_and_its_algorithm_hears_their_mean():
    register_trainable("repeats-test", _trainable)
    inner = Proposals([{"lr": 1}, {"lr": 2}])
    repeated = RepeatedTrials(inner, repeats=3, seed=7, metric="best_fid")
    trials = []
    while (trial := repeated.next_trial()) is not None:
        trials.append(trial)
    assert [(t.config["lr"], t.config["seed"]) for t in trials] == [
        (1, 7), (1, 8), (1, 9), (2, 7), (2, 8), (2, 9),
    ]  # fmt: skip
    assert len({t.trial_id for t in trials}) == 6 and repeated.is_finished()
    first = trials[0].trial_id
    for trial, value in zip(trials[:3], (3.0, 6.0, None)):
        repeated.on_trial_complete(
            trial.trial_id, None if value is None else {"best_fid": value}, error=value is None
        )
    # Once all three ended (one failed): the proposal's own id, the mean of the others.
    assert inner.heard == [(first, {"best_fid": 4.5}, False)]
    for trial in trials[3:]:
        repeated.on_trial_complete(trial.trial_id, error=True)
    assert inner.heard[1] == (trials[3].trial_id, None, True)


def test_repeats_multiply_the_trials_and_are_refused_where_they_make_no_sense():
    base = """
name: r
tasks:
  - name: t
    data: synthetic://colorshift
    search: {repeats: 2, num_samples: 3, space: {lr: {loguniform: [1.0e-4, 1.0e-3]}}%s}
"""
    (plan,) = parse_manifest(base % "").plans
    assert (plan.trial_count, plan.configurations, plan.asked) == (8, 4, 8)  # 3 + the baseline
    with pytest.raises(UserError, match=r"repeats 2: .*seed"):
        parse_manifest(base % ", space: {seed: {choice: [1, 2]}}")
    with pytest.raises(UserError, match=r"repeats 2: scheduler pbt"):
        parse_manifest(
            base % ", scheduler: {type: pbt, perturbation_interval: 1, "
            "hyperparam_mutations: {lr: [1.0e-4, 1.0e-3]}}"
        )
