"""Tune's population-based schedulers as the sweep builds them (orchestrator.search.strategies): PBT here, PB2 in
orchestrator.search.pb2; what a PBT trial does is orchestrator.search.pbt and orchestrator.trial.pbt_session."""

from __future__ import annotations

from ray.tune.experiment import Trial
from ray.tune.schedulers import PopulationBasedTraining

from orchestrator import ray_internals


class ResumedSynchRepair:
    """A repair of Tune's PBT (and PB2). Synchronous PBT (`synch: true`) runs a paused trial only while it is
    behind the next look; after a resumed sweep the trials can stand at different epochs, a look then lands on
    the furthest one's epoch, and every trial waits for a look that no running trial will ever reach. When
    nothing runs and every waiting trial is at or past the next look, the look moves one interval on."""

    def choose_trial_to_run(self, tune_controller) -> Trial | None:
        trial = super().choose_trial_to_run(tune_controller)
        if trial is not None or not ray_internals.pbt_synch(self):
            return trial
        trials = tune_controller.get_trials()
        waiting = [t for t in trials if t.status in (Trial.PENDING, Trial.PAUSED)]
        if not waiting or any(t.status == Trial.RUNNING for t in trials):
            return None
        times = [ray_internals.pbt_last_train_time(self, t) for t in waiting]
        if min(times) < ray_internals.pbt_next_look(self):
            return None
        ray_internals.pbt_move_next_look(self, max(times))
        return super().choose_trial_to_run(tune_controller)


class TaskPopulation(ResumedSynchRepair, PopulationBasedTraining):
    """Tune's PBT, repaired (ResumedSynchRepair)."""
