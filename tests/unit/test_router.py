"""The per-task router of a sweep's one Tune run (orchestrator.sweep.router), without a Ray cluster.

Tune's trials, search algorithms and schedulers are real; the TuneController is a stand-in with
what Tune gives schedulers (get_trials, get_live_trials, pause_trial, ...).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from ray import tune
from ray.tune.experiment import Experiment, Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, Searcher

from orchestrator.sweep.router import (
    STATE_FILE,
    TaskCallbacks,
    TaskScheduler,
    TaskSearch,
    TaskSearchSpec,
    TaskView,
    by_task,
    task_of,
)


class Controller:
    """A TuneController as its schedulers see it, recording what they ask of it."""

    def __init__(self, trials: list[Trial] = ()):
        self.trials = list(trials)
        self.search_alg = "the whole run's"
        self.paused: list[Trial] = []
        self.saved: list[Trial] = []
        self.stopped: list[Trial] = []

    def get_trials(self) -> list[Trial]:
        return self.trials

    def get_live_trials(self) -> set[Trial]:
        return {t for t in self.trials if t.status not in (Trial.TERMINATED, Trial.ERROR)}

    def pause_trial(self, trial: Trial, should_checkpoint: bool = True) -> None:
        self.paused.append(trial)

    def stop_trial(
        self, trial: Trial
    ) -> None:  # Tune's wrapper has it; no scheduler of the sweep needs it
        self.stopped.append(trial)

    def _schedule_trial_save(self, trial: Trial, result: dict | None = None) -> str:
        self.saved.append(trial)
        return "saving"

    def _schedule_trial_stop(
        self, trial: Trial
    ) -> None:  # as Tune's: the trial is TERMINATED at once
        self.stopped.append(trial)
        trial.set_status(Trial.TERMINATED)


class Recorder(Searcher):
    """A searcher suggesting `limit` configs and recording what it hears."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.suggested, self.results, self.completed, self.properties = (
            limit,
            [],
            [],
            [],
            None,
        )

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self.properties = (metric, mode, config)
        return True

    def suggest(self, trial_id: str):
        if len(self.suggested) >= self.limit:
            return Searcher.FINISHED
        self.suggested.append(trial_id)
        return {"lr": 0.1 * len(self.suggested)}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.results.append(trial_id)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        self.completed.append(trial_id)

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_bytes(pickle.dumps(self.suggested))

    def restore(self, checkpoint_path: str) -> None:
        self.suggested = pickle.loads(Path(checkpoint_path).read_bytes())


def _trainable(config):
    pass


def _search(
    tmp_path: Path,
    samples: dict[str, int],
    max_concurrent: int | None = None,
    searchers: dict | None = None,
) -> TaskSearch:
    """A TaskSearch of tasks named by `samples` (random search, or `searchers`), given its
    experiment."""
    specs = {
        task: TaskSearchSpec(
            (searchers or {}).get(task) or BasicVariantGenerator(),
            {"lr": tune.uniform(0, 1)},
            n,
            metric=f"loss_{task}",
            mode="min",
        )
        for task, n in samples.items()
    }
    search = TaskSearch(specs, max_concurrent=max_concurrent)
    search.add_configurations(
        Experiment(name="run", run=_trainable, config={}, storage_path=str(tmp_path))
    )
    return search


def _trial(task: str, trial_id: str, status: str = Trial.PENDING) -> Trial:
    trial = Trial("_trainable", config={"task": task, "lr": 0.5}, trial_id=trial_id, stub=True)
    trial.set_status(status)
    return trial


def _created(search: TaskSearch, n: int) -> list[Trial | None]:
    return [search.next_trial() for _ in range(n)]


def test_trials_are_grouped_by_their_task_in_order():
    trials = [_trial("a", "a1"), _trial("b", "b1"), _trial("a", "a2")]
    assert by_task(trials, ["a", "b", "c"]) == {
        "a": [trials[0], trials[2]],
        "b": [trials[1]],
        "c": [],
    }
    assert by_task([{"t": "x"}, {"t": "y"}], task=lambda d: d["t"]) == {
        "x": [{"t": "x"}],
        "y": [{"t": "y"}],
    }


# -- TaskSearch ----------------------------------------------------------------------------------


def test_each_tasks_searcher_sees_only_its_own_trials(tmp_path):
    searchers = {"a": Recorder(2), "b": Recorder(2)}
    search = _search(tmp_path, {"a": 2, "b": 2}, searchers=searchers)
    trials = [t for t in _created(search, 5) if t is not None]
    assert [task_of(t) for t in trials] == ["a", "b", "a", "b"]
    for trial in trials:
        search.on_trial_result(trial.trial_id, {"loss": 1.0})
        search.on_trial_complete(trial.trial_id, {"loss": 1.0})
    for task, searcher in searchers.items():
        own = [t.trial_id for t in trials if task_of(t) == task]
        assert searcher.suggested == searcher.results == searcher.completed == own
        metric, mode, config = searcher.properties
        assert (metric, mode, config["task"]) == (f"loss_{task}", "min", task)


def test_the_tasks_take_turns_creating_trials_and_one_that_runs_out_leaves_the_others_theirs(
    tmp_path,
):
    search = _search(tmp_path, {"a": 1, "b": 3, "c": 2})
    trials = _created(search, 7)
    assert [task_of(t) for t in trials[:6]] == ["a", "b", "c", "b", "c", "b"]
    assert trials[6] is None
    assert (
        len({t.trial_id for t in trials[:6]}) == 6
    )  # two generators made at once name their trials apart


def test_the_end_of_one_tasks_search_does_not_end_the_others(tmp_path):
    search = _search(tmp_path, {"a": 1, "b": 2})
    first, second = _created(search, 2)
    assert (task_of(first), task_of(second)) == ("a", "b")
    assert search.inner["a"].is_finished() or search.inner["a"].next_trial() is None
    assert not search.is_finished()
    assert task_of(search.next_trial()) == "b"
    assert search.next_trial() is None and search.is_finished()


def test_at_most_max_concurrent_trials_of_all_tasks_are_live(tmp_path):
    search = _search(tmp_path, {"a": 5, "b": 5}, max_concurrent=3)
    trials = _created(search, 4)
    assert [task_of(t) for t in trials[:3]] == ["a", "b", "a"] and trials[3] is None
    search.on_trial_complete(trials[1].trial_id, {"loss": 1.0})
    assert task_of(search.next_trial()) == "b"  # b's turn: a place is free again
    assert search.next_trial() is None
    search.end_task("a")  # an ended task's two live trials free their places too
    assert [task_of(t) for t in _created(search, 3)] == ["b", "b", None]


def test_the_search_state_saved_per_task_is_restored_per_task(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    searchers = {"a": Recorder(3), "b": Recorder(3)}
    search = _search(tmp_path, {"a": 3, "b": 3}, searchers=searchers)
    trials = _created(search, 3)
    search.on_trial_complete(trials[0].trial_id, {"loss": 1.0})
    search.end_task("b")
    search.save_to_dir(str(state), session_str="s1")
    names = sorted(p.name for p in state.iterdir())
    assert STATE_FILE.format("s1") in names
    assert any("-@a@s1" in n for n in names) and any("-@b@s1" in n for n in names)

    again = {"a": Recorder(3), "b": Recorder(3)}
    restored = _search(tmp_path, {"a": 3, "b": 3}, searchers=again)
    assert restored.has_checkpoint(str(state))
    restored.restore_from_dir(str(state))
    assert (restored.live, restored.ended, restored.turns.turn) == (
        search.live,
        search.ended,
        search.turns.turn,
    )
    assert restored.is_finished() == search.is_finished()
    for task in ("a", "b"):
        assert again[task].suggested == searchers[task].suggested
    assert restored.next_trial().config["task"] == "a"  # b ended, a goes on


# -- TaskScheduler and TaskView ------------------------------------------------------------------


class Spy(FIFOScheduler):
    """A FIFO scheduler writing down the controller it is given and the trials it sees there."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, set[str]]] = []

    def on_trial_result(self, tune_controller, trial, result):
        self.seen.append(("result", {t.trial_id for t in tune_controller.get_trials()}))
        return super().on_trial_result(tune_controller, trial, result)

    def choose_trial_to_run(self, tune_controller):
        self.seen.append(("choose", {t.trial_id for t in tune_controller.get_trials()}))
        return super().choose_trial_to_run(tune_controller)


def _scheduler(
    search: TaskSearch, schedulers: dict[str, TrialScheduler], stops=None
) -> TaskScheduler:
    return TaskScheduler(
        schedulers, search, {task: (f"loss_{task}", "min") for task in schedulers}, stops=stops
    )


def test_a_tasks_scheduler_sees_only_its_tasks_trials(tmp_path):
    search = _search(tmp_path, {"a": 2, "b": 2})
    spies = {"a": Spy(), "b": Spy()}
    scheduler = _scheduler(search, spies)
    controller = Controller(
        [_trial("a", "a1"), _trial("b", "b1"), _trial("a", "a2", Trial.RUNNING)]
    )
    scheduler.choose_trial_to_run(controller)
    scheduler.choose_trial_to_run(controller)
    scheduler.on_trial_result(controller, controller.trials[2], {"loss_a": 1.0})
    assert spies["a"].seen == [("choose", {"a1", "a2"}), ("result", {"a1", "a2"})]
    assert spies["b"].seen == [("choose", {"b1"})]


def test_a_task_view_hands_on_only_what_the_schedulers_use(tmp_path):
    search = _search(tmp_path, {"a": 1, "b": 1})
    controller = Controller(
        [
            _trial("a", "a1", Trial.RUNNING),
            _trial("b", "b1", Trial.RUNNING),
            _trial("a", "a2", Trial.TERMINATED),
        ]
    )
    view = TaskView(controller, "a", search.inner["a"])
    assert [t.trial_id for t in view.get_trials()] == ["a1", "a2"]
    assert {t.trial_id for t in view.get_live_trials()} == {"a1"}
    assert view.search_alg is search.inner["a"]
    view.pause_trial(controller.trials[0], should_checkpoint=False)
    assert view._schedule_trial_save(controller.trials[0], result={}) == "saving"  # PBT's exploit
    assert controller.paused == controller.saved == [controller.trials[0]]
    for name in (
        "stop_trial",
        "_schedule_trial_stop",
        "paused",
        "get_all",
    ):  # the controller's, not the view's
        assert not hasattr(view, name), name


def test_asha_compares_only_trials_of_its_own_task(tmp_path):
    search = _search(tmp_path, {"a": 2, "b": 2})
    asha = {
        task: ASHAScheduler(
            time_attr="training_iteration", max_t=8, grace_period=1, reduction_factor=2
        )
        for task in "ab"
    }
    scheduler = _scheduler(search, asha)
    trials = {tid: _trial(tid[0], tid, Trial.RUNNING) for tid in ("a1", "b1", "b2")}
    controller = Controller(list(trials.values()))
    for trial in trials.values():
        scheduler.on_trial_add(controller, trial)
    result = scheduler.on_trial_result
    assert (
        result(controller, trials["a1"], {"training_iteration": 1, "loss_a": 1.0})
        == TrialScheduler.CONTINUE
    )
    # Far worse than a1, but the first of its task at this rung: one ASHA for both would stop it.
    assert (
        result(controller, trials["b1"], {"training_iteration": 1, "loss_b": 100.0})
        == TrialScheduler.CONTINUE
    )
    assert (
        result(controller, trials["b2"], {"training_iteration": 1, "loss_b": 200.0})
        == TrialScheduler.STOP
    )


def test_the_tasks_schedulers_take_turns_choosing(tmp_path):
    search = _search(tmp_path, {"a": 3, "b": 3})
    scheduler = _scheduler(search, {"a": FIFOScheduler(), "b": FIFOScheduler()})
    controller = Controller([_trial(task, f"{task}{i}") for task in "ab" for i in range(3)])
    chosen = []
    for _ in range(6):
        trial = scheduler.choose_trial_to_run(controller)
        trial.set_status(Trial.RUNNING)
        chosen.append(trial.trial_id)
    assert chosen == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert scheduler.choose_trial_to_run(controller) is None


class Stops:
    def __init__(self):
        self.tasks: set[str] = set()

    def stopping(self) -> set[str]:
        return self.tasks


def test_a_task_whose_guard_says_stop_ends_alone(tmp_path):
    stops = Stops()
    search = _search(tmp_path, {"a": 3, "b": 3}, max_concurrent=4)
    search.stops = stops
    scheduler = _scheduler(search, {"a": FIFOScheduler(), "b": FIFOScheduler()}, stops=stops)
    created = _created(search, 4)
    for trial in created[:2]:
        trial.set_status(Trial.RUNNING)
    controller = Controller(created)
    stops.tasks.add("a")
    chosen = scheduler.choose_trial_to_run(controller)
    assert task_of(chosen) == "b"
    assert {task_of(t) for t in controller.stopped} == {"a"} and len(controller.stopped) == 2
    assert "a" in search.ended and not search.is_finished()
    assert [task_of(t) for t in _created(search, 2)] == ["b", None]  # b's last sample; none of a's
    assert search.is_finished()


# -- TaskCallbacks -------------------------------------------------------------------------------


class Heard(tune.Callback):
    def __init__(self):
        self.heard: list[tuple[str, str | None, list[str]]] = []

    def on_step_begin(self, iteration, trials, **info):
        self.heard.append(("step", None, [t.trial_id for t in trials]))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self.heard.append(("result", trial.trial_id, [t.trial_id for t in trials]))


def test_each_tasks_callback_hears_only_its_trials():
    heard = {"a": Heard(), "b": Heard()}
    callbacks = TaskCallbacks(heard)
    trials = [_trial("a", "a1"), _trial("b", "b1"), _trial("a", "a2")]
    callbacks.on_step_begin(1, trials)
    callbacks.on_trial_result(1, trials, trials[1], {"loss": 1.0})
    assert heard["a"].heard == [("step", None, ["a1", "a2"])]
    assert heard["b"].heard == [("step", None, ["b1"]), ("result", "b1", ["b1"])]


@pytest.fixture(autouse=True)
def _no_ray_started():
    """The router's tests need no Ray: none of them starts one (the suite's shared Ray may run)."""
    import ray

    before = ray.is_initialized()
    yield
    assert ray.is_initialized() == before
