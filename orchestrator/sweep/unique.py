"""No configuration runs twice in a task: a proposal of its search algorithm that already ran is
withdrawn.

Random search over `choice` lists, a grid repeated `num_samples` times and Optuna's sampler all
propose points that already ran, the baseline's among them. Where a task's space is wholly discrete
(choice, grid, randint, quniform), `UniqueTrials` wraps its search algorithm
(orchestrator.sweep.router.TaskSearchSpec): a proposal whose configuration already ran is withdrawn
(its algorithm hears that it ended in error: Tune's variant generator frees its place, Optuna
records a failed trial) and the next one is asked for, at most RETRIES in a row; then the task's
search ends, with a warning. It also ends after `limit` trials: the task's trial count, which the
manifest caps at the space's size (TaskPlan.trial_count). A continuous space is not wrapped: its
samples practically never repeat, and comparing them would only cost time.

Only the configurations trials start with are compared: PBT's exploits change a running trial's
values later, which is PBT's own search. The configurations seen are saved with the search state, so
a resumed sweep does not run again what ran before it stopped.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from ray import cloudpickle
from ray.tune.experiment import Trial
from ray.tune.search import SearchAlgorithm

from orchestrator import ray_internals
from orchestrator.sweep.repeats import unwrapped

RETRIES = 100  # proposals in a row that already ran, before a task's search gives up
STATE_FILE = "unique-trials-{}.pkl"

logger = logging.getLogger(__name__)


def point_key(config: dict[str, Any]) -> tuple:
    """A configuration as a set member: 10 and 10.0 are the same λ, True is not 1."""

    def canonical(value: Any) -> Any:
        if isinstance(value, bool):
            return ("bool", value)
        if isinstance(value, (int, float)):
            return float(value)
        try:
            hash(value)
        except TypeError:
            return repr(value)
        return value

    return tuple(sorted((str(k), canonical(v)) for k, v in config.items()))


class UniqueTrials(SearchAlgorithm):
    """One task's search algorithm, each configuration once, at most `limit` trials (see the module
    docstring)."""

    def __init__(self, inner: SearchAlgorithm, limit: int, task: str = "", retries: int = RETRIES):
        super().__init__()
        self.inner, self.limit, self.task, self.retries = inner, limit, task, retries
        self.seen: set[tuple] = set()
        self.created = 0
        self.streak = 0  # proposals withdrawn since the last trial created
        self.ended_early: str | None = None  # why the search gave up, for the task's summary
        self.ids: set[str] = set()  # the trials it created (its inner algorithm knows them)

    @property
    def total_samples(self) -> int:
        return self.limit

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments) -> None:
        """The inner algorithm gets enough samples to replace every withdrawn proposal (this
        wrapper counts the trials)."""
        own = []
        for experiment in ray_internals.experiment_list(experiments):
            experiment = copy.copy(experiment)
            samples = experiment.spec.get("num_samples", 1) + self.limit * self.retries
            experiment.spec = {**experiment.spec, "num_samples": samples}
            own.append(experiment)
        self.inner.add_configurations(own)

    def next_trial(self) -> Trial | None:
        while not self.is_finished():
            trial = self.inner.next_trial()
            if trial is None:  # none now (a concurrency limit), or none ever again
                if self.inner.is_finished():
                    self.set_finished()
                return None
            key = point_key(trial.config)
            if key not in self.seen:
                self.seen.add(key)
                self.ids.add(trial.trial_id)
                self.created, self.streak = self.created + 1, 0
                if self.created >= self.limit:
                    self.set_finished()
                return trial
            self.inner.on_trial_complete(trial.trial_id, error=True)
            self.streak += 1
            if self.streak >= self.retries:
                self.ended_early = (
                    f"its search proposed {self.streak} configurations in a row that already ran; "
                    f"it ended after {self.created} of {self.limit} trials"
                )
                logger.warning("task %s: %s", self.task, self.ended_early)
                self.set_finished()
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.ids:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if trial_id in self.ids:
            self.inner.on_trial_complete(trial_id, result=result, error=error)

    def adopt(self, trial_id: str, config: dict) -> None:
        """A trial of this task it did not create: one the run restored whose creation came after
        the search state it was restored from (a driver stopped between two saves of the state).
        It counts, so that the search ends after the task's trial count and never waits for more."""
        if trial_id in self.ids:
            return
        self.ids.add(trial_id)
        self.seen.add(point_key(config))
        self.created += 1
        if self.created >= self.limit:
            self.set_finished()

    # -- saved with the experiment's state (orchestrator.sweep.router.TaskSearch) ---------------
    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        self.inner.save_to_dir(dirpath, session_str=session_str)
        state = {
            "seen": self.seen,
            "created": self.created,
            "ids": self.ids,
            "finished": self.is_finished(),
        }
        tmp = Path(dirpath, f".tmp-{STATE_FILE.format(session_str)}")
        with open(tmp, "wb") as f:
            cloudpickle.dump(state, f)
        os.replace(tmp, Path(dirpath, STATE_FILE.format(session_str)))

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath) or any(Path(dirpath).glob(STATE_FILE.format("*")))

    def restore_from_dir(self, dirpath: str) -> None:
        if self.inner.has_checkpoint(dirpath):
            self.inner.restore_from_dir(dirpath)
        if saved := list(Path(dirpath).glob(STATE_FILE.format("*"))):
            with open(max(saved), "rb") as f:
                state = cloudpickle.load(f)
            self.seen, self.created = state["seen"], state["created"]
            self.ids = state.get("ids", set())
            if state["finished"]:
                self.set_finished()


def ended_early(algorithms: dict[str, SearchAlgorithm]) -> dict[str, str]:
    """The tasks (of a TaskSearch's `inner`) whose search gave up before their trial count, and
    why."""
    inner = {task: unwrapped(alg) for task, alg in algorithms.items()}
    return {
        task: alg.ended_early
        for task, alg in inner.items()
        if isinstance(alg, UniqueTrials) and alg.ended_early
    }


def adopted(algorithm: SearchAlgorithm | None, trial_id: str, result: dict | None) -> bool:
    """Whether `algorithm` counted a trial the run restored without its search knowing it
    (UniqueTrials.adopt); only UniqueTrials does."""
    if not isinstance(algorithm, UniqueTrials):
        return False
    algorithm.adopt(trial_id, (result or {}).get("config") or {})
    return True
