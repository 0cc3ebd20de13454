"""Every private Ray or Tune name the orchestrator uses, in one file: an upgrade of Ray is this file
to re-read.

Each function or class below reaches one private name (an attribute, method or module whose name
starts with `_`, or `ray.experimental`/`ray._private`/`ray.tune.execution`) because no public API
does the same thing; each says why. All were read against Ray 2.60.0 (READ_AGAINST). `FENCED` lists
them (module, attribute, why); tests/unit/test_ray_internals.py checks each still exists with the
same shape in the installed Ray, and that no other module of orchestrator/ touches a private Ray
name.

Ray is imported inside the functions: the driver and the trial processes both import this module,
and neither should pay for a Ray package it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

READ_AGAINST = "2.60.0"


@dataclass(frozen=True)
class Fenced:
    """One private Ray name used here. `attribute` is a dotted path in `module`; `instance` marks an
    attribute that `__init__` of the class before its last dot assigns (not a class attribute);
    `params`: the first parameters a callable must still take."""

    module: str
    attribute: str
    why: str
    instance: bool = False
    params: tuple[str, ...] = ()


FENCED: tuple[Fenced, ...] = (
    Fenced(
        "ray.tune.tuner",
        "Tuner._local_tuner",
        "a restored Tuner's run and tune configs (no public getter)",
        instance=True,
    ),
    Fenced(
        "ray.tune.impl.tuner_internal",
        "TunerInternal.get_run_config",
        "a restored run's RunConfig",
        params=("self",),
    ),
    Fenced(
        "ray.tune.impl.tuner_internal",
        "TunerInternal._tune_config",
        "a restored run's TuneConfig (no getter at all)",
        instance=True,
    ),
    Fenced(
        "ray.tune.execution.class_cache",
        "ENV_VARS_TO_PROPAGATE",
        "the driver variables Tune copies into every trial's runtime env (AWS credentials among "
        "them)",
    ),
    Fenced(
        "ray.tune.search.basic_variant",
        "BasicVariantGenerator._uuid_prefix",
        "the trial id prefix: two generators made in the same instant would name trials alike",
        instance=True,
    ),
    Fenced(
        "ray.tune.experiment.experiment",
        "_convert_to_experiment_list",
        "what Tune hands a search algorithm's add_configurations, as Experiment objects",
        params=("experiments",),
    ),
    Fenced(
        "ray.tune.execution.tune_controller",
        "TrialRunnerWrapper._tune_controller",
        "the TuneController behind the wrapper Tune gives schedulers",
        instance=True,
    ),
    Fenced(
        "ray.tune.execution.tune_controller",
        "TuneController._schedule_trial_stop",
        "stop one trial as Tune's stopper stop_all does (no scheduler or search hears of it)",
        params=("self", "trial"),
    ),
    Fenced(
        "ray.tune.execution.tune_controller",
        "TuneController._schedule_trial_save",
        "Tune's PBT saves a trial through its controller by this name",
        params=("self", "trial", "result"),
    ),
    Fenced(
        "ray.tune.logger.logger",
        "LoggerCallback._restore_from_remote",
        "Tune replaces the driver's result files with storage's on a trial's restart",
        params=("self", "file_name", "trial"),
    ),
    Fenced(
        "ray.tune.schedulers.pbt",
        "PopulationBasedTraining._synch",
        "PBT's synchronous mode",
        instance=True,
    ),
    Fenced(
        "ray.tune.schedulers.pbt",
        "PopulationBasedTraining._trial_state",
        "per trial: its last_train_time",
        instance=True,
    ),
    Fenced(
        "ray.tune.schedulers.pbt",
        "_PBTTrialState.last_train_time",
        "when a trial last reported, in time_attr",
        instance=True,
    ),
    Fenced(
        "ray.tune.schedulers.pbt",
        "PopulationBasedTraining._next_perturbation_sync",
        "the next synchronous look",
        instance=True,
    ),
    Fenced(
        "ray.tune.schedulers.pbt",
        "PopulationBasedTraining._perturbation_interval",
        "the interval between looks",
        instance=True,
    ),
    Fenced(
        "ray.experimental.internal_kv",
        "_internal_kv_initialized",
        "whether this process can read the GCS's store",
    ),
    Fenced(
        "ray.experimental.internal_kv",
        "_internal_kv_get",
        "the autoscaler's status report (no public reader)",
        params=("key",),
    ),
    Fenced(
        "ray._private.worker",
        "_global_node",
        "this session's Ray node: its log folder (no public API names it)",
    ),
    Fenced(
        "ray._private.node", "Node.get_logs_dir_path", "the session's log folder", params=("self",)
    ),
    Fenced(
        "ray.train.v2._internal.exceptions",
        "UserExceptionWithTraceback._base_exc",
        "the exception a Train worker raised, inside Ray's wrapper",
        instance=True,
    ),
)


# -- the Tuner -----------------------------------------------------------------------------------


def restored_configs(tuner) -> tuple[Any, Any]:
    """A restored Tuner's (RunConfig, TuneConfig), to change in place before `fit()`: Tune restores
    the previous driver's callbacks and stoppers, and `Tuner.restore` takes no new ones."""
    internal = tuner._local_tuner
    return internal.get_run_config(), internal._tune_config


def stop_propagating_env_vars(drop: Callable[[str], bool]) -> None:
    """Keep the driver variables named by `drop` out of the trials' runtime envs: Tune copies each
    name in ENV_VARS_TO_PROPAGATE that the driver has (a module-level set, no option says
    otherwise)."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE.difference_update(
        {n for n in class_cache.ENV_VARS_TO_PROPAGATE if drop(n)}
    )


# -- search algorithms ---------------------------------------------------------------------------


def set_trial_id_prefix(generator, prefix: str) -> None:
    """Name a BasicVariantGenerator's trials `<prefix><counter>` (its constructor takes no
    prefix)."""
    generator._uuid_prefix = prefix


def experiment_list(experiments) -> list:
    """What Tune hands `add_configurations` (an Experiment, a list or a dict) as a list of
    Experiments."""
    from ray.tune.experiment.experiment import _convert_to_experiment_list

    return _convert_to_experiment_list(experiments)


# -- the controller schedulers see ---------------------------------------------------------------


def schedule_trial_stop(controller, trial) -> None:
    """Stop `trial` as Tune's stopper stop_all does: no scheduler, search or callback hears of it.
    `controller` is what Tune gives a scheduler (a wrapper around the TuneController) or the
    controller."""
    run = getattr(controller, "_tune_controller", controller)
    run._schedule_trial_stop(trial)


class ControllerFacade:
    """What the schedulers the sweep uses (FIFO, ASHA, PBT, PB2) call on the controller, passed on
    to `self.controller` (Tune's wrapper). Tune 2.60's own wrapper (TuneController._wrapped) allows
    more (stop_trial, _set_trial_status); none of these schedulers calls them. A subclass chooses
    the trials and the search algorithm a scheduler sees."""

    def __init__(self, controller):
        self.controller = controller

    def pause_trial(self, trial, should_checkpoint: bool = True) -> None:
        self.controller.pause_trial(trial, should_checkpoint=should_checkpoint)

    def _schedule_trial_save(self, trial, result: dict | None = None):
        """PBT's exploit saves the trial it copies by this private name."""
        return self.controller._schedule_trial_save(trial, result=result)


# -- result loggers ------------------------------------------------------------------------------


class RestoreFromRemoteHook:
    """Put before a Tune LoggerCallback: it restores a trial's result file from storage (its private
    `_restore_from_remote`) only when `restores_from_remote` says so."""

    def restores_from_remote(self, file_name: str, trial) -> bool:
        return True

    def _restore_from_remote(self, file_name: str, trial) -> None:
        if self.restores_from_remote(file_name, trial):
            super()._restore_from_remote(file_name, trial)


# -- population-based training -------------------------------------------------------------------
# Tune's PBT keeps its synchronous mode's state in private attributes; the repair of a resumed
# synchronous sweep (orchestrator.search.schedulers.pbt) reads and moves it.


def pbt_synch(scheduler) -> bool:
    return scheduler._synch


def pbt_last_train_time(scheduler, trial) -> float:
    return scheduler._trial_state[trial].last_train_time


def pbt_next_look(scheduler) -> float:
    return scheduler._next_perturbation_sync


def pbt_move_next_look(scheduler, after: float) -> None:
    """The next synchronous look: one interval after `after`."""
    scheduler._next_perturbation_sync = after + scheduler._perturbation_interval


# -- the cluster ---------------------------------------------------------------------------------


def autoscaling_status() -> bytes | None:
    """The autoscaler's status report (JSON) in the GCS's store; None when there is none or this
    process cannot read the store. Only `ray status` reads it, through the same private store."""
    from ray.experimental.internal_kv import _internal_kv_get, _internal_kv_initialized

    if not _internal_kv_initialized():
        return None
    return _internal_kv_get("__autoscaling_status") or None


def session_logs_dir() -> str | None:
    """The log folder of the Ray session this process runs (None without one): no public API names
    it."""
    import ray._private.worker

    node = getattr(ray._private.worker, "_global_node", None)
    try:
        return node.get_logs_dir_path() if node is not None else None
    except Exception:
        return None


def wrapped_error(error: BaseException) -> BaseException | None:
    """The exception inside Ray's wrapper of a worker's error: Train's UserExceptionWithTraceback
    keeps it privately; a RayTaskError's `cause` is public."""
    return getattr(error, "_base_exc", None) or getattr(error, "cause", None)
