"""One Ray Tune run for many tasks: each task keeps its own search algorithm and scheduler.

A sweep of a manifest is one Tune run in the driver process (no Tune driver per task). Every
trial's config carries its task (`config["task"]`), and two dispatchers route by it:

- `TaskSearch` (a `SearchAlgorithm`) holds one search algorithm per task, built for the task's
  space, metric, mode, sample count and concurrency (`TaskSearchSpec`): a `BasicVariantGenerator`
  for random and grid search, a `SearchGenerator` around a `Searcher` such as Optuna's. The tasks
  take turns creating trials, and at most `max_concurrent` trials of the whole manifest are live.
- `TaskScheduler` (a `TrialScheduler`) holds one scheduler per task (ASHA, FIFO, and PBT the same
  way) and shows each the run through `TaskView`: only its task's trials, its task's search
  algorithm, and the run's pausing and saving of trials (nothing else of the controller). ASHA
  therefore compares only trials of the same task. It also ends the tasks whose guard says stop
  (`stops`, orchestrator.search.guards.TaskGuards), as Tune's own stopper ends a run.
(`search.repeats`: orchestrator.sweep.repeats; private Tune names: orchestrator.ray_internals.)

Tune pickles both into the run's `tuner.pkl` and restores them on `Tuner.restore`, then loads the
search state from the experiment folder: each task's algorithm saves its own files there, named
`<Tune's file name>-@<task>@<session>` (e.g. `searcher-state-@horse2zebra@2026-01-01_10-00-00.pkl`).
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ray import cloudpickle
from ray.tune import Callback
from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm, Searcher, SearchGenerator
from ray.tune.search.concurrency_limiter import ConcurrencyLimiter

from orchestrator import ray_internals
from orchestrator.sweep.repeats import RepeatedTrials, unwrapped
from orchestrator.sweep.unique import UniqueTrials, adopted

TASK_KEY = "task"  # the config key naming a trial's task
STATE_FILE = "task-search-state-{}.pkl"
ENDED = (Trial.TERMINATED, Trial.ERROR)


def task_of(trial) -> str | None:
    return (getattr(trial, "config", None) or {}).get(TASK_KEY)


def without_task(config: dict | None) -> dict:
    """A trial's hyperparameters: its config without the task."""
    return {k: v for k, v in (config or {}).items() if k != TASK_KEY}


Item = TypeVar("Item")


def by_task(
    items: Iterable[Item], tasks: Iterable[str] = (), task: Callable[[Item], str | None] = task_of
) -> dict[str | None, list[Item]]:
    """`items` (trials, by default) grouped by their task, in order; every one of `tasks` has a
    list, even empty."""
    groups: dict[str | None, list[Item]] = {name: [] for name in tasks}
    for item in items:
        groups.setdefault(task(item), []).append(item)
    return groups


class RoundRobin:
    """The tasks take turns: each call asks them in order, starting after the one that gave last
    time."""

    def __init__(self, names: Iterable[str]):
        self.names, self.turn = list(names), 0

    def first(self, give: Callable[[str], Item | None]) -> Item | None:
        """The first thing `give(task)` gives, asking the tasks from this turn's; the next turn
        starts after that task."""
        for i in range(len(self.names)):
            index = (self.turn + i) % len(self.names)
            found = give(self.names[index])
            if found is not None:
                self.turn = (index + 1) % len(self.names)
                return found
        return None


@dataclass
class TaskSearchSpec:
    """One task's search: its algorithm and what Tune would have been given for it alone."""

    algorithm: SearchAlgorithm | Searcher
    space: dict[str, Any]
    num_samples: int
    metric: str
    mode: str
    max_concurrent: int | None = None  # trials of this task at once (None: no limit of its own)
    max_failures: int | None = None  # retries of a failed trial (None: the run's FailureConfig)
    unique: int | None = None  # at most this many configurations, each once (sweep.unique)
    repeats: int = 1  # trials per configuration, seeds `seed`, `seed + 1` ... (sweep.repeats)
    seed: int = 0
    search_alg: SearchAlgorithm = field(init=False)

    def __post_init__(self) -> None:
        alg = self.algorithm
        if isinstance(alg, Searcher):  # what Tune does with a Searcher and max_concurrent_trials
            limit = self.max_concurrent
            alg = SearchGenerator(ConcurrencyLimiter(alg, limit) if limit else alg)
        alg = alg if self.unique is None else UniqueTrials(alg, self.unique)
        repeated = RepeatedTrials(alg, self.repeats, self.seed, self.metric)
        self.search_alg = alg if self.repeats == 1 else repeated


class TaskStops(Protocol):
    def stopping(self) -> set[str]:
        """Tasks whose sweep must end now."""


class TaskSearch(SearchAlgorithm):
    """One search algorithm per task behind one Tune run (see the module docstring)."""

    def __init__(
        self,
        tasks: dict[str, TaskSearchSpec],
        max_concurrent: int | None = None,
        stops: TaskStops | None = None,
    ):
        self.specs = tasks
        self.inner = {task: spec.search_alg for task, spec in tasks.items()}
        self.max_concurrent, self.stops = max_concurrent, stops
        self.live: dict[str, str] = {}  # live trial id -> task
        self.ended: set[str] = set()  # tasks ended early (TaskScheduler.end_task)
        self.turns = RoundRobin(self.inner)
        # BasicVariantGenerator names trials <5 hex digits of a uuid1>_<counter>, the counter from 0
        # in each generator: generators made in the same instant would give two tasks the same trial
        # ids.
        prefixes: set[str] = set()
        for task, spec in tasks.items():
            if isinstance(unique := unwrapped(spec.search_alg), UniqueTrials):
                unique.task = task
            if isinstance(alg := spec.algorithm, BasicVariantGenerator):
                while (prefix := uuid.uuid4().hex[:5] + "_") in prefixes:
                    pass
                prefixes.add(prefix)
                ray_internals.set_trial_id_prefix(alg, prefix)

    @property
    def metric(self) -> None:
        return None  # per task: Tune must not ask every result for one metric

    @property
    def mode(self) -> None:
        return None

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # each task's algorithm gets its own in add_configurations

    @property
    def total_samples(self) -> int:
        return sum(alg.total_samples for alg in self.inner.values())

    def add_configurations(self, experiments) -> None:
        (experiment,) = ray_internals.experiment_list(experiments)
        for task, spec in self.specs.items():
            own = copy.copy(experiment)
            config = {**spec.space, TASK_KEY: task}
            own.spec = {**experiment.spec, "config": config, "num_samples": spec.num_samples}
            if spec.max_failures is not None:
                own.spec["max_failures"] = spec.max_failures
            self.inner[task].set_search_properties(
                spec.metric, spec.mode, config, **own.public_spec
            )
            self.inner[task].add_configurations([own])

    def next_trial(self) -> Trial | None:
        if self.max_concurrent and len(self.live) >= self.max_concurrent:
            return None
        stopping = self.stops.stopping() if self.stops else set()

        def create(task: str) -> Trial | None:
            if task in self.ended or task in stopping:
                return None
            trial = self.inner[task].next_trial()
            if trial is not None:
                self.live[trial.trial_id] = task
            return trial

        trial = self.turns.first(create)
        if trial is not None:
            return trial
        if all(
            t in self.ended or t in stopping or alg.is_finished() for t, alg in self.inner.items()
        ):
            self.set_finished()
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if task := self.live.get(trial_id) or self._restored(trial_id, result):
            self.inner[task].on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if task := self.live.pop(trial_id, None) or self._restored(trial_id, result):
            self.inner[task].on_trial_complete(trial_id, result=result, error=error)

    def _restored(self, trial_id: str, result: dict | None) -> str | None:
        """The task of a restored trial its search did not know, if its algorithm counts it."""
        task = ((result or {}).get("config") or {}).get(TASK_KEY)
        return task if adopted(unwrapped(self.inner.get(task)), trial_id, result) else None

    def end_task(self, task: str) -> None:
        """No more trials of `task`; its live trials (stopped without a word to the search, as
        Tune's own stop_all does) free their places."""
        self.ended.add(task)
        self.live = {trial_id: t for trial_id, t in self.live.items() if t != task}

    # -- saved with the experiment's state ---------------------------------------------------
    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        for task, alg in self.inner.items():  # Tune's own files, one set per task
            alg.save_to_dir(dirpath, session_str=f"@{task}@{session_str}")
        state = {
            "live": self.live,
            "ended": self.ended,
            "turn": self.turns.turn,
            "finished": self.is_finished(),
        }
        tmp = Path(dirpath, f".tmp-{STATE_FILE.format(session_str)}")
        with open(tmp, "wb") as f:
            cloudpickle.dump(state, f)
        os.replace(tmp, Path(dirpath, STATE_FILE.format(session_str)))

    def has_checkpoint(self, dirpath: str) -> bool:
        return any(Path(dirpath).glob(STATE_FILE.format("*")))

    def restore_from_dir(self, dirpath: str) -> None:
        with open(max(Path(dirpath).glob(STATE_FILE.format("*"))), "rb") as f:
            state = cloudpickle.load(f)
        self.live, self.ended, self.turns.turn = state["live"], state["ended"], state["turn"]
        if state["finished"]:
            self.set_finished()
        for task, alg in self.inner.items():
            with _task_files(dirpath, task) as own:
                if alg.has_checkpoint(own):
                    alg.restore_from_dir(own)


@contextlib.contextmanager
def _task_files(dirpath: str, task: str) -> Iterator[str]:
    """A folder holding links to `task`'s own state files under their Tune names' patterns: where
    its algorithm's `restore_from_dir` finds them (and no other task's)."""
    marker = f"-@{task}@"
    with tempfile.TemporaryDirectory(prefix="cyclegan-task-search-") as tmp:
        for path in Path(dirpath).iterdir():
            if marker in path.name and not path.name.startswith("."):
                os.symlink(path, Path(tmp, path.name))
        yield tmp


class TaskView(ray_internals.ControllerFacade):
    """What one task's scheduler sees of the Tune run: that task's trials and search algorithm, and
    the run's pausing and saving of trials (ControllerFacade); nothing else of the controller."""

    def __init__(
        self, controller, task: str, search_alg: SearchAlgorithm, trials: list | None = None
    ):
        super().__init__(controller)
        self.task, self.search_alg = task, search_alg
        self.trials = trials

    def get_trials(self) -> list:
        if self.trials is not None:
            return self.trials
        return [t for t in self.controller.get_trials() if task_of(t) == self.task]

    def get_live_trials(self) -> set:
        return {t for t in self.controller.get_live_trials() if task_of(t) == self.task}


class TaskScheduler(TrialScheduler):
    """One trial scheduler per task behind one Tune run (see the module docstring)."""

    def __init__(
        self,
        schedulers: dict[str, TrialScheduler],
        search: TaskSearch,
        metrics: dict[str, tuple[str, str]] | None = None,
        stops: TaskStops | None = None,
    ):
        super().__init__()
        self.inner, self.search, self.stops = schedulers, search, stops
        for task, (metric, mode) in (metrics or {}).items():
            schedulers[task].set_search_properties(metric, mode)
        self.turns = RoundRobin(schedulers)

    @property
    def metric(self) -> None:
        return None

    @property
    def supports_buffered_results(self) -> bool:
        return all(s.supports_buffered_results for s in self.inner.values())

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True  # each task's scheduler has its own

    def _route(self, controller, trial) -> tuple[TrialScheduler, TaskView]:
        task = task_of(trial)
        return self.inner[task], TaskView(controller, task, self.search.inner[task])

    def on_trial_add(self, controller, trial) -> None:
        inner, view = self._route(controller, trial)
        inner.on_trial_add(view, trial)

    def on_trial_error(self, controller, trial) -> None:
        inner, view = self._route(controller, trial)
        inner.on_trial_error(view, trial)

    def on_trial_result(self, controller, trial, result: dict) -> str:
        inner, view = self._route(controller, trial)
        return inner.on_trial_result(view, trial, result)

    def on_trial_complete(self, controller, trial, result: dict) -> None:
        inner, view = self._route(controller, trial)
        inner.on_trial_complete(view, trial, result)

    def on_trial_remove(self, controller, trial) -> None:
        inner, view = self._route(controller, trial)
        inner.on_trial_remove(view, trial)

    def choose_trial_to_run(self, controller) -> Trial | None:
        """Called at every step of the run: first end the tasks whose guard says stop, then let the
        tasks' schedulers take turns choosing."""
        trials = by_task(controller.get_trials(), self.inner)
        for task in (self.stops.stopping() if self.stops else set()) - self.search.ended:
            self.end_task(controller, task, trials.get(task, []))
        return self.turns.first(
            lambda task: self.inner[task].choose_trial_to_run(
                TaskView(controller, task, self.search.inner[task], trials[task])
            )
        )

    def end_task(self, controller, task: str, trials: list) -> None:
        """Stop `task`'s trials that have not ended and create no more: what Tune does to every
        trial when its stopper's stop_all() says so (TuneController._stop_experiment_if_needed), for
        one task. As there, no scheduler, search or callback hears of these stops: the sweep gives
        them the guard's reason itself."""
        for trial in trials:
            if trial.status not in ENDED:
                ray_internals.schedule_trial_stop(controller, trial)
        self.search.end_task(task)

    def debug_string(self) -> str:
        return "; ".join(f"{task}: {s.debug_string()}" for task, s in self.inner.items())


class TaskCallbacks(Callback):
    """Tune callbacks of one task each, behind the one run: a trial's events go to its task's
    callback, with only that task's trials in `trials`."""

    def __init__(self, callbacks: dict[str, Callback]):
        self.callbacks = callbacks

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        own = by_task(trials, self.callbacks)
        for task, callback in self.callbacks.items():
            callback.on_step_begin(iteration, own[task], **info)

    def _route(self, hook: str, iteration: int, trials: list, trial, **info) -> None:
        task = task_of(trial)
        if task in self.callbacks:
            getattr(self.callbacks[task], hook)(
                iteration, by_task(trials, [task])[task], trial, **info
            )

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._route("on_trial_start", iteration, trials, trial, **info)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        """Tune's hook after each report, handed to the trial's task's callback.

        Args:
            iteration: Tune's loop count; trials: every trial of the run (the task sees its own).
            trial: the trial that reported; result: its report.
            **info: Tune's other keyword arguments.
        """
        self._route("on_trial_result", iteration, trials, trial, result=result, **info)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._route("on_trial_complete", iteration, trials, trial, **info)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._route("on_trial_error", iteration, trials, trial, **info)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._route("on_trial_recover", iteration, trials, trial, **info)
