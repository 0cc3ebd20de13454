"""The Tune function trainable of every task: what runs in a Tune trial process.

A one-worker trial trains here, in this process (orchestrator.trial.session); a trial with several
workers drives a Ray Train DDP run (orchestrator.trial.ray_train). Either way the trial is named
after its task and its trial id, so a retried or resumed trial continues from its last checkpoint
instead of starting over. Torch is imported only once a trial starts: the driver imports this module
to build the trainable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ray import tune

from orchestrator.config.plan import TaskPlan
from orchestrator.search.schedulers.pbt import searched_fields
from orchestrator.storage.best import Ranking
from orchestrator.storage.location import storage_child
from orchestrator.sweep.router import TASK_KEY, without_task
from orchestrator.tracking.context import TrackingContext

PREEMPTION_WATCHER_VAR = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


@dataclass
class SweepContext:
    """What every trial of a run needs to know, beyond its own task."""

    experiment: str
    storage: str
    resume: bool = False
    tracking: dict[str, TrackingContext] = field(
        default_factory=dict
    )  # per task, made by the tracking layer

    @property
    def trials_storage(self) -> str:
        """Where the trials' runs live: one folder per trial, named by `trial_run_name`."""
        return storage_child(self.storage, self.experiment, "trials")


def run_trial(config: dict[str, Any], plans: dict[str, TaskPlan], ctx: SweepContext) -> None:
    """The Tune function trainable of every task: the trial's task is `config["task"]`. A one-worker
    trial trains here, in this process; a trial with several workers drives a Ray Train DDP run.
    Either reports every epoch to Tune and keeps its checkpoints in `<trials storage>/<task>-<trial
    id>/`, so a retried or resumed trial continues from its last checkpoint instead of starting
    over."""
    plan = plans[config[TASK_KEY]]
    trial_id = tune.get_context().get_trial_id()
    tracking = ctx.tracking[plan.name].for_trial(trial_id) if plan.name in ctx.tracking else None
    from orchestrator.trial.spec import TrialSpec

    # Worker failures fail a Ray Train trial (max_failures 0); Tune retries it (FailureConfig) and
    # the TorchTrainer, relaunched under the same name and storage, continues from the trial's last
    # checkpoint.
    spec = TrialSpec(
        plan.trial_config(without_task(config), trial_id),
        plan.resources,
        ctx.trials_storage,
        ranking=Ranking(plan.search.metric, plan.search.resolved_mode),
        tracking=tracking,
        max_failures=0,
        callbacks=() if plan.resources.trains_in_trial else _report_to_tune(),
    )
    if plan.resources.trains_in_trial:
        from orchestrator.trial.session import TrialSession, train_in_trial

        session = TrialSession
        if plan.exploits:
            from orchestrator.trial.pbt_session import session_factory

            session = session_factory(
                trial_id, without_task(config), searched_fields(plan.space), tracking
            )
        train_in_trial(spec, session)
        return
    from orchestrator.trial.ray_train import train_on_ray

    # Ray Train hands this process's setting to the run's controller: no PreemptionWatcher actor per
    # trial (it tells workers of draining nodes, which nothing here uses), unless the user asked for
    # one.
    os.environ.setdefault(PREEMPTION_WATCHER_VAR, "0")
    train_on_ray(spec)


def _report_to_tune() -> tuple:
    """The Ray Train run's report callback: each epoch's report becomes the Tune trial's."""
    from ray.tune.integration.ray_train import TuneReportCallback

    return (TuneReportCallback(),)
