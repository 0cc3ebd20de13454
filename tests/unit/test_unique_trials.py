"""No configuration runs twice in a task (orchestrator.sweep.unique), without a Ray cluster.

Each task's search is built as the sweep builds it (orchestrator.sweep.tuner._task_search) from a
manifest, with Tune's real variant generator and Optuna's real searcher; trials are created and
completed as Tune's loop would.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest
from ray.tune.experiment import Experiment
from ray.tune.search import BasicVariantGenerator, Searcher, SearchGenerator

from cyclegan.commands.runner import run_cli
from orchestrator.commands import main
from orchestrator.config.baseline import matches
from orchestrator.config.plan import parse_manifest
from orchestrator.search.build import guard, tune_metric
from orchestrator.search.guards import TaskGuards
from orchestrator.sweep.router import TaskSearch, TaskSearchSpec, task_of, without_task
from orchestrator.sweep.tuner import _task_search
from orchestrator.sweep.unique import ended_early

SMALL = """\
name: small
search:
  algorithm: {algorithm}
  space:
    lambda_cyc: {{choice: [5, 10]}}
    lambda_idt: {{choice: [0.0, 0.5]}}
  num_samples: {samples}
  seed: 0
tasks:
  - {{name: t, data: /d}}
"""


def _plans(text: str):
    return parse_manifest(textwrap.dedent(text)).plans


def _search(plans, tmp_path) -> TaskSearch:
    guards = TaskGuards({plan.name: guard(plan) for plan in plans})
    search, _ = _task_search(plans, 0, guards)
    search.add_configurations(
        Experiment(name="run", run=lambda config: None, config={}, storage_path=str(tmp_path))
    )
    return search


def _sweep(search: TaskSearch, plans, limit: int = 200) -> dict[str, list[dict]]:
    """Every trial the search creates, each completed at once with a result, as Tune's loop would;
    each task's configurations in order of creation."""
    metrics = {plan.name: tune_metric(plan) for plan in plans}
    configs: dict[str, list[dict]] = {plan.name: [] for plan in plans}
    for i in range(limit):
        trial = search.next_trial()
        if trial is None:
            break
        task = task_of(trial)
        configs[task].append(without_task(trial.config))
        search.on_trial_complete(trial.trial_id, {metrics[task]: float(i)})
    assert search.next_trial() is None and search.is_finished()
    return configs


def _distinct(configs: list[dict]) -> bool:
    return not any(matches(a, b) for i, a in enumerate(configs) for b in configs[:i])


@pytest.mark.parametrize("algorithm", ["random", "grid", "optuna"])
def test_the_baselines_point_and_points_already_run_are_never_suggested_again(tmp_path, algorithm):
    (plan,) = plans = _plans(SMALL.format(algorithm=algorithm, samples=3))
    configs = _sweep(_search(plans, tmp_path), plans)["t"]
    # the paper's point runs once (first, or as one of the grid's points); the space's 4 points
    # each run once
    assert [matches(c, plan.baseline) for c in configs].count(True) == 1, configs
    assert matches(configs[0], plan.baseline) or algorithm == "grid"
    assert _distinct(configs) and len(configs) == plan.trial_count == 4, configs


def test_a_space_smaller_than_the_trials_asked_is_reported_by_validate_and_capped(tmp_path, capsys):
    text = SMALL.format(algorithm="random", samples=5)
    (plan,) = plans = _plans(text)
    assert (plan.asked, plan.distinct, plan.trial_count) == (6, 4, 4)
    path = tmp_path / "m.yaml"
    path.write_text(text)
    assert run_cli(main, ["validate", str(path), "--offline"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "4 trial(s)" in lines[0]
    assert lines[1:] == [
        "task t: only 4 different configuration(s) to run, fewer than the 6 trials asked "
        "(num_samples 5 + the baseline): each runs once, 4 trial(s)"
    ]
    configs = _sweep(_search(plans, tmp_path), plans)["t"]
    assert len(configs) == 4 and _distinct(configs)


def test_a_baseline_outside_the_space_is_one_more_configuration(tmp_path):
    text = SMALL.format(algorithm="grid", samples=2).replace("[5, 10]", "[5, 20]")
    (plan,) = plans = _plans(text)
    assert plan.baseline_added and (plan.asked, plan.distinct, plan.trial_count) == (9, 5, 5)
    configs = _sweep(_search(plans, tmp_path), plans)["t"]
    assert len(configs) == 5 and _distinct(configs) and matches(configs[0], plan.baseline)


@pytest.mark.parametrize("lr", ["{uniform: [0.0001, 0.0003]}", "{loguniform: [0.0001, 0.001]}"])
def test_continuous_spaces_are_left_as_they_are(tmp_path, lr):
    text = SMALL.format(algorithm="random", samples=20).replace(
        "  num_samples", f"    lr: {lr}\n  num_samples"
    )
    (plan,) = plans = _plans(text)
    assert plan.distinct is None and plan.capped is None and plan.trial_count == 21
    search = _search(plans, tmp_path)
    assert isinstance(search.inner["t"], BasicVariantGenerator)  # not wrapped: nothing compared
    assert len(_sweep(search, plans)["t"]) == 21


class Stubborn(Searcher):
    """Proposes the same point every time."""

    def suggest(self, trial_id: str):
        return {"lambda_cyc": 5}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass


def test_a_search_that_keeps_proposing_points_already_run_ends_with_a_warning(tmp_path, caplog):
    stubborn = TaskSearchSpec(Stubborn(), {}, 5, "loss", "min", unique=5)
    fine = TaskSearchSpec(BasicVariantGenerator(), {}, 2, "loss", "min")
    search = TaskSearch({"stubborn": stubborn, "fine": fine})
    search.add_configurations(
        Experiment(name="run", run=lambda config: None, config={}, storage_path=str(tmp_path))
    )
    with caplog.at_level(logging.WARNING, logger="orchestrator"):
        trials = [search.next_trial() for _ in range(5)]
    assert [task_of(t) if t else None for t in trials] == ["stubborn", "fine", "fine", None, None]
    assert search.is_finished() and search.inner["stubborn"].is_finished()
    why = "its search proposed 100 configurations in a row that already ran; it ended after 1 of 5"
    assert f"task stubborn: {why} trials" in caplog.text
    assert ended_early(search.inner) == {"stubborn": f"{why} trials"}  # for the task's summary


class Sequence(Searcher):
    """Proposes the values of lambda_cyc in `values`, in order; its position is its saved state."""

    def __init__(self, values: list[float]):
        super().__init__()
        self.values, self.position = values, 0

    def suggest(self, trial_id: str):
        if self.position == len(self.values):
            return Searcher.FINISHED
        self.position += 1
        return {"lambda_cyc": self.values[self.position - 1]}

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(str(self.position))

    def restore(self, checkpoint_path: str) -> None:
        self.position = int(Path(checkpoint_path).read_text())


def _sequence_search(tmp_path) -> TaskSearch:
    spec = TaskSearchSpec(Sequence([5, 10, 5, 20]), {}, 4, "loss", "min", unique=4)
    search = TaskSearch({"t": spec})
    search.add_configurations(
        Experiment(name="run", run=lambda config: None, config={}, storage_path=str(tmp_path))
    )
    return search


def test_a_resumed_search_does_not_run_again_what_ran_before(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    search = _sequence_search(tmp_path)
    before = [search.next_trial().config["lambda_cyc"] for _ in range(2)]
    search.save_to_dir(str(state), session_str="s1")

    restored = _sequence_search(tmp_path)
    restored.restore_from_dir(str(state))
    after = [trial.config["lambda_cyc"] for trial in iter(restored.next_trial, None)]
    assert (before, after) == ([5, 10], [20])  # 5 ran before the stop: withdrawn


def test_trials_restored_after_a_stale_search_state_count_and_the_search_ends(tmp_path):
    """A driver stopped between two saves: the run restores trials its search state never saw.
    They count (their configurations too), so the search ends at the task's trial count instead of
    waiting for more forever (the `ray job stop` + `--resume` sweep that hung)."""
    state = tmp_path / "state"
    state.mkdir()
    search = _sequence_search(tmp_path)  # 4 trials: lambda_cyc 5, 10, (5 withdrawn), 20
    search.next_trial()
    search.save_to_dir(str(state), session_str="s1")  # saved after one trial of the four...
    ran = [search.next_trial() for _ in range(2)]  # ...then two more before the stop

    restored = _sequence_search(tmp_path)
    restored.restore_from_dir(str(state))
    for trial in ran:  # Tune reports the restored trials to the search as they end
        restored.on_trial_complete(trial.trial_id, {"config": trial.config, "loss": 1.0})
    assert restored.inner["t"].created == 3
    assert [t.config["lambda_cyc"] for t in iter(restored.next_trial, None)] == []  # 20 ran too
    assert restored.is_finished()


def test_an_optuna_proposal_withdrawn_is_a_failed_trial_of_its_study(tmp_path):
    (plan,) = plans = _plans(SMALL.format(algorithm="optuna", samples=3))
    search = _search(plans, tmp_path)
    _sweep(search, plans)
    generator = search.inner["t"].inner
    assert isinstance(generator, SearchGenerator)
    study = generator.searcher._ot_study
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") == 4 and set(states) <= {"COMPLETE", "FAIL"}
