"""`search.repeats: k` in Tune: each configuration its search algorithm proposes runs as k trials,
seeds `seed`, `seed + 1` ... (TrainConfig.seed), and the algorithm learns from their mean.

`RepeatedTrials` wraps a task's search algorithm (outside UniqueTrials, which then sees each
configuration once): a proposal becomes k trials, the proposal itself (seed + 0) and k - 1 copies
(Tune's `Trial.reset`: a new id, the same settings). Once all k have ended, the algorithm hears that
its proposal ended with the mean of their results (as Tune's own `Repeater` does for a Searcher;
this wraps any SearchAlgorithm, random search and grids included). How results rank by the mean:
orchestrator.sweep.seeds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ray import cloudpickle
from ray.tune.experiment import Trial
from ray.tune.search import SearchAlgorithm

from orchestrator.sweep.seeds import SEED_KEY

STATE_FILE = "repeated-trials-{}.pkl"


class RepeatedTrials(SearchAlgorithm):
    def __init__(self, inner: SearchAlgorithm, repeats: int, seed: int, metric: str):
        super().__init__()
        self.inner, self.repeats, self.seed, self.ranked_by = inner, repeats, seed, metric
        self.queue: list[Trial] = []  # copies created, not yet handed to Tune
        self.proposal: dict[str, str] = {}  # trial id -> the id of the proposal it repeats
        self.ended: dict[str, dict[str, dict | None]] = {}  # proposal -> trial id -> result

    @property
    def total_samples(self) -> int:
        return self.inner.total_samples * self.repeats

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return self.inner.set_search_properties(metric, mode, config, **spec)

    def add_configurations(self, experiments) -> None:
        self.inner.add_configurations(experiments)

    def next_trial(self) -> Trial | None:
        if self.queue:
            return self.queue.pop(0)
        trial = self.inner.next_trial()
        if trial is None:
            if self.inner.is_finished():
                self.set_finished()
            return None
        trial.config = {**trial.config, SEED_KEY: self.seed}
        self.proposal[trial.trial_id] = trial.trial_id
        for r in range(1, self.repeats):
            copy = trial.reset()
            copy.config = {**trial.config, SEED_KEY: self.seed + r}
            copy.evaluated_params = {**(trial.evaluated_params or {}), SEED_KEY: self.seed + r}
            self.proposal[copy.trial_id] = trial.trial_id
            self.queue.append(copy)
        return trial

    def is_finished(self) -> bool:
        return super().is_finished() and not self.queue

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if self.proposal.get(trial_id) == trial_id:  # the proposal's own results, as they come
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        proposal = self.proposal.get(trial_id)
        if proposal is None:
            return
        ended = self.ended.setdefault(proposal, {})
        ended[trial_id] = None if error else result
        if len(ended) < self.repeats:
            return
        results = [r for r in ended.values() if r is not None]
        values = [
            float(r[self.ranked_by])
            for r in results
            if isinstance(r.get(self.ranked_by), (int, float)) and math.isfinite(r[self.ranked_by])
        ]
        mean = None
        if results:
            mean = (
                {**results[0], self.ranked_by: sum(values) / len(values)} if values else results[0]
            )
        self.inner.on_trial_complete(proposal, result=mean, error=mean is None)

    # -- saved with the experiment's state (orchestrator.sweep.router.TaskSearch) ---------------
    def save_to_dir(self, dirpath: str, session_str: str = "default") -> None:
        self.inner.save_to_dir(dirpath, session_str=session_str)
        state = {"proposal": self.proposal, "ended": self.ended, "queue": self.queue}
        tmp = Path(dirpath, f".tmp-{STATE_FILE.format(session_str)}")
        with open(tmp, "wb") as f:
            cloudpickle.dump(state, f)
        os.replace(tmp, Path(dirpath, STATE_FILE.format(session_str)))

    def has_checkpoint(self, dirpath: str) -> bool:
        return self.inner.has_checkpoint(dirpath)

    def restore_from_dir(self, dirpath: str) -> None:
        self.inner.restore_from_dir(dirpath)
        if saved := list(Path(dirpath).glob(STATE_FILE.format("*"))):
            with open(max(saved), "rb") as f:
                state = cloudpickle.load(f)
            self.proposal, self.ended, self.queue = (
                state["proposal"],
                state["ended"],
                state["queue"],
            )


def unwrapped(algorithm: SearchAlgorithm | None) -> SearchAlgorithm | None:
    """The algorithm a RepeatedTrials wraps (others as they are)."""
    return algorithm.inner if isinstance(algorithm, RepeatedTrials) else algorithm
