"""Population-based training (`search.scheduler: pbt`): what `validate` refuses, and two sweeps on a
real local Ray with a real MLflow: a hopeless trial ends up exploiting a learning one (lineage in
MLflow and the results), and a PBT sweep whose driver is killed resumes with its lineage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import sweep_in_process
from orchestrator.config.plan import parse_manifest
from orchestrator.config.problems import ManifestError

REPO = Path(__file__).resolve().parents[2]
DATA = "synthetic://colorshift?size=32&n_train=10&n_test=2&seed=0"


def _problems(text: str) -> str:
    with pytest.raises(ManifestError) as err:
        parse_manifest(textwrap.dedent(text), "m.yaml")
    return str(err.value)


# ------------------------------------------------------------------------------------------------
# validate


def test_pbt_options_and_mutations_are_checked_with_their_field_paths():
    message = _problems(f"""\
        name: p
        defaults: {{train: {{n_epochs: 2, n_epochs_decay: 1}}}}
        search:
          scheduler:
            type: pbt
            perturbation_interval: 4
            hyperparam_mutations:
              lambda_cyc: [1, 10, -2]
              lr: {{loguniform: [1.0e-3, 1.0e-5]}}
              lamda_idt: [0.5]
              pool_size: {{grid: [10, 50]}}
              lambda_A: 3
        tasks: [{{name: t, data: "{DATA}"}}]
        """)
    assert (
        "search.scheduler.perturbation_interval (line 6): 4 epochs is longer than the 3 epochs a "
        "trial runs" in message
    )
    assert (
        "search.scheduler.hyperparam_mutations.lambda_cyc[2] (line 8): must be 0 or more" in message
    )
    assert (
        "search.scheduler.hyperparam_mutations.lr.loguniform (line 9): low (0.001) must be below "
        "high (1e-05)" in message
    )
    assert (
        "search.scheduler.hyperparam_mutations.lamda_idt[0] (line 10): unknown training option "
        "(did you mean 'lambda_idt'?)" in message
    )
    assert (
        "search.scheduler.hyperparam_mutations.pool_size.grid (line 11): a scheduler's entries are "
        "not grid axes; use a list or choice" in message
    )
    assert (
        "search.scheduler.hyperparam_mutations.lambda_A (line 12): must be a list of values or a "
        "distribution" in message
    )


def test_pb2_takes_ranges_of_numbers_and_needs_scikit_learn(monkeypatch):
    from dataclasses import replace

    from orchestrator.search import SCHEDULERS

    message = _problems(f"""\
        name: p
        search:
          scheduler: {{type: pb2, perturbation_interval: 1, hyperparam_bounds: {{pool_size: [10, 50], lr: [0.001], lambda_cyc: [20, 5]}}}}
        tasks: [{{name: t, data: "{DATA}"}}]
        """)  # noqa: E501 (test data as the user writes it)
    assert (
        "search.scheduler.hyperparam_bounds.pool_size.uniform (line 3): pool_size is a whole "
        "number, and this samples fractions" in message
    )
    assert (
        "search.scheduler.hyperparam_bounds.lr.uniform (line 3): must be a list of 2 numbers "
        "([low, high])" in message
    )
    assert (
        "search.scheduler.hyperparam_bounds.lambda_cyc.uniform (line 3): low (20.0) must be below "
        "high (5.0)" in message
    )
    monkeypatch.setitem(
        SCHEDULERS, "pb2", replace(SCHEDULERS["pb2"], module="sklearn_not_installed")
    )
    message = _problems(f"""\
        name: p
        search: {{scheduler: {{type: pb2, perturbation_interval: 1, hyperparam_bounds: {{lr: [0.0001, 0.0004]}}}}}}
        tasks: [{{name: t, data: "{DATA}"}}]
        """)  # noqa: E501 (test data as the user writes it)
    assert (
        "search.scheduler (line 2): pb2 needs the Python package 'scikit-learn', which is not "
        "installed here: pip install scikit-learn" in message
    )


def test_pbt_needs_mutations_and_an_interval():
    message = _problems(f"""\
        name: p
        search: {{scheduler: {{type: pbt, hyperparam_mutations: {{}}, quantile_fraction: 0.7}}}}
        tasks: [{{name: t, data: "{DATA}"}}]
        """)
    assert "search.scheduler.perturbation_interval (line 2): is required" in message
    assert "search.scheduler.hyperparam_mutations (line 2): " in message
    assert "search.scheduler.quantile_fraction (line 2): must be <= 0.5, got 0.7" in message


def test_pbt_refuses_trials_of_several_workers_and_a_searcher():
    message = _problems(f"""\
        name: p
        defaults: {{resources: {{workers: 2}}}}
        search:
          algorithm: optuna
          space: {{lambda_cyc: {{uniform: [5.0, 15.0]}}}}
          scheduler: {{type: pbt, perturbation_interval: 1, hyperparam_mutations: {{lr: [0.0001, 0.0002]}}}}
        tasks:
          - {{name: t, data: "{DATA}"}}
          - {{name: u, data: "{DATA}", resources: {{workers: 1}}}}
        """)  # noqa: E501 (test data as the user writes it)
    assert (
        "defaults.resources.workers (line 2): 2 workers with scheduler pbt (search.scheduler): pbt "
        "runs trials of one "
        "worker only (an exploiting trial continues from its donor's checkpoint, and a trial of "
        "several workers is a Ray "
        "Train run, which always continues from its own); set workers: 1, or choose another "
        "scheduler"
    ) in message
    assert "tasks[1].resources" not in message  # the task with one worker is fine
    assert (
        "search.algorithm (line 4): scheduler pbt cannot follow the suggestions of algorithm "
        "optuna: use algorithm random "
        "or grid (pbt explores by itself)"
    ) in message


def test_a_mutated_option_outside_the_space_starts_from_a_sampled_value_and_the_baseline_from_the_papers():  # noqa: E501
    from orchestrator.search.schedulers.pbt import searched_fields

    loaded = parse_manifest(
        textwrap.dedent(f"""\
        name: p
        defaults: {{train: {{n_epochs: 4, n_epochs_decay: 2, save_epoch_freq: 4}}}}
        search:
          space: {{lambda_cyc: {{choice: [5, 10]}}}}
          scheduler: {{type: pbt, perturbation_interval: 6, hyperparam_mutations: {{lambda_cyc: [5, 10, 20], lr: {{loguniform: [1.0e-5, 1.0e-3]}}}}}}
        tasks: [{{name: t, data: "{DATA}"}}]
        """),  # noqa: E501 (test data as the user writes it)
        "m.yaml",
    )
    (plan,) = loaded.plans
    assert plan.space == {
        "lambda_cyc": {"choice": [5, 10]},
        "lr": {"loguniform": [1e-5, 1e-3]},
    }  # the space's own entry wins
    assert plan.baseline == {"lambda_cyc": 10.0, "lr": 0.0002} and plan.baseline_added
    assert plan.exploits and searched_fields(plan.space) == ["lambda_A", "lambda_B", "lr"]
    # a checkpoint at every multiple of the interval, and at the task's own checkpoint epochs
    assert plan.trial_config(plan.baseline, "t1").save_epoch_freq == 2


def test_synchronous_pbt_moves_its_next_look_on_when_every_paused_trial_is_past_it():
    """After a resumed sweep the trials stand at different epochs: Tune's synchronous PBT then set
    its next look at the furthest trial's epoch and ran nothing ever again (every trial waited for a
    look none would reach)."""
    from types import SimpleNamespace

    from ray.tune.experiment import Trial
    from ray.tune.schedulers import PopulationBasedTraining

    from orchestrator.search.schedulers.pbt import repaired

    class Stub:  # what PBT reads of a trial here; hashable, as Tune's trials are
        def __init__(self, status: str):
            self.status = status

    pbt = repaired(PopulationBasedTraining)(
        time_attr="epoch",
        metric="cycle_l1",
        mode="min",
        perturbation_interval=2,
        synch=True,
        hyperparam_mutations={"lr": [1e-4, 2e-4]},
    )
    ahead, behind = Stub(Trial.PAUSED), Stub(Trial.PAUSED)
    pbt._trial_state = {
        ahead: SimpleNamespace(last_train_time=5),
        behind: SimpleNamespace(last_train_time=5),
    }
    pbt._next_perturbation_sync = 5
    controller = SimpleNamespace(get_trials=lambda: [ahead, behind])
    assert pbt.choose_trial_to_run(controller) is ahead and pbt._next_perturbation_sync == 7
    # while a trial runs, or one is behind the look, it is Tune's own rule
    pbt._next_perturbation_sync = 5
    running = Stub(Trial.RUNNING)
    assert (
        pbt.choose_trial_to_run(SimpleNamespace(get_trials=lambda: [ahead, behind, running]))
        is None
    )
    assert pbt._next_perturbation_sync == 5
    pbt._trial_state[behind].last_train_time = 3
    assert pbt.choose_trial_to_run(controller) is behind and pbt._next_perturbation_sync == 5


# ------------------------------------------------------------------------------------------------
# Sweeps

TINY = (
    "{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, "
    "n_epochs: 3, n_epochs_decay: 1}"
)

# lr 1e-9 learns nothing: at each epoch PBT looks at the two trials, the hopeless one is the bottom
# quantile, the learning one (the paper's lr, the baseline) the top, and the hopeless one continues
# from the learner's checkpoint with a neighbour of its lr in the list. No divergence guard: PBT,
# not the guard, deals with the poor trial.
PBT = f"""\
name: pbt-sweep
defaults:
  train: {TINY}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search:
  algorithm: grid
  space: {{lr: {{grid: [0.0002, 1.0e-9]}}}}
  metric: cycle_l1
  divergence_factor: null
  scheduler: {{type: pbt, perturbation_interval: 1, synch: true, hyperparam_mutations: {{lr: [0.0001, 0.0002, 0.0004]}}}}
tasks:
  - {{name: pbt, data: "{DATA}"}}
"""  # noqa: E501 (test data as the user writes it)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "manifest.yaml"
    path.write_text(text)
    return path


# PB2 picks the new lr within the bounds from a model of the population's results
PB2 = PBT.replace("type: pbt", "type: pb2").replace(
    "hyperparam_mutations: {lr: [0.0001, 0.0002, 0.0004]}",
    "hyperparam_bounds: {lr: [0.0001, 0.0004]}",
)


@pytest.mark.parametrize("scheduler", ["pbt", "pb2"])
def test_a_hopeless_trial_exploits_a_learning_one_and_mlflow_and_the_results_show_its_lineage(
    ray_session, tmp_path, capsys, monkeypatch, scheduler
):
    from mlflow import MlflowClient
    from mlflow.artifacts import load_dict

    from orchestrator.search.schedulers.pbt import DONOR_TAG, EXPLOITS_TAG, LINEAGE_ARTIFACT

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    loaded = parse_manifest(PBT if scheduler == "pbt" else PB2, tmp_path / "manifest.yaml")
    assert loaded.plans[0].search.scheduler.type == scheduler
    out, results = sweep_in_process(loaded, tmp_path, capsys)
    task = results["pbt"]
    assert len(task.trials) == 2 and all(
        t.status == "finished" and t.epochs == 4 for t in task.trials
    ), out
    learner = next(t for t in task.trials if t.baseline)
    hopeless = next(t for t in task.trials if not t.baseline)

    # the hopeless trial's first exploit: the learner's checkpoint, with a value from the mutation
    # list
    first = hopeless.lineage["exploits"][0]
    assert first["donor"] == learner.trial_id and first["old"] == {"lr": 1e-9}
    if scheduler == "pbt":  # a neighbour in the list (or, at resample_probability, any value of it)
        assert first["new"]["lr"] in (0.0001, 0.0002, 0.0004)
    else:  # within the bounds (PB2 computes in single precision)
        assert 0.0001 * (1 - 1e-6) <= first["new"]["lr"] <= 0.0004 * (1 + 1e-6)
    assert first["epoch"] == first["donor_epoch"] + 1
    assert first["checkpoint"].endswith(
        f"pbt-{learner.trial_id}/checkpoint_epoch_{first['donor_epoch']:04d}"
    )
    assert hopeless.params["lr"] != 1e-9  # its config now is the mutated one
    # its weights' schedule: the learner's values up to the donor epoch, then its own
    schedule = hopeless.lineage["schedule"]
    assert schedule[-1]["trial"] == hopeless.trial_id and schedule[-1]["values"] == hopeless.params
    assert all(s["trial"] in (learner.trial_id, hopeless.trial_id) for s in schedule)
    # hp/lr per epoch in the results: 1e-9 before its first exploit, the new values after
    by_epoch = {row["epoch"]: row["hp/lr"] for row in hopeless.history}
    assert sorted(by_epoch) == [1, 2, 3, 4] and by_epoch[1] == pytest.approx(1e-9)
    assert by_epoch[4] == pytest.approx(hopeless.params["lr"])
    assert learner.lineage["schedule"][0] == {
        "trial": learner.trial_id,
        "from_epoch": 1,
        "values": {"lr": 0.0002},
    }

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("pbt-sweep")
    run = client.search_runs([experiment.experiment_id], f"tags.trial = '{hopeless.trial_id}'")[0]
    exploits = hopeless.lineage["exploits"]
    assert run.data.tags[EXPLOITS_TAG] == str(len(exploits))
    assert run.data.tags[DONOR_TAG] == f"{exploits[-1]['donor']}@{exploits[-1]['donor_epoch']}"
    assert load_dict(f"runs:/{run.info.run_id}/{LINEAGE_ARTIFACT}")["exploits"][0] == first
    history = client.get_metric_history(run.info.run_id, "hp/lr")
    assert history[0].step == 1 and history[0].value == pytest.approx(1e-9)
    latest = {}
    for m in sorted(
        history, key=lambda m: m.timestamp
    ):  # an epoch logged again after an exploit that went back: the later one
        latest[m.step] = m.value
    assert latest[4] == pytest.approx(hopeless.params["lr"])
    learner_run = client.search_runs(
        [experiment.experiment_id], f"tags.trial = '{learner.trial_id}'"
    )[0]
    assert [m.value for m in client.get_metric_history(learner_run.info.run_id, "hp/lr")][:1] == [
        pytest.approx(2e-4)
    ]


def _driver(manifest: Path, cwd: Path, address: str, log: Path, *extra: str) -> subprocess.Popen:
    """`orchestrator run` in a process (and session) of its own, its output in `log`."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_AUTH_MODE": "disabled",
        "PYTHONUNBUFFERED": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/mlflow.db",
    }
    with open(log, "w") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "run",
                str(manifest),
                "--address",
                address,
                *extra,
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _first_exploit(trials: Path) -> tuple[str, dict] | None:
    """(trial run, its first exploit) from the pointers stored with the trials' checkpoints, once
    there is one."""
    for pointer in trials.glob("pbt-*/checkpoint_epoch_*/pbt.json"):
        try:
            exploits = json.loads(pointer.read_text())["lineage"]["exploits"]
        except (OSError, ValueError, KeyError):  # being written
            continue
        if exploits:
            return pointer.parent.parent.name, exploits[0]
    return None


def test_a_pbt_sweep_resumes_after_its_driver_is_killed_with_its_lineage(ray_session, tmp_path):
    manifest = _write(tmp_path, PBT.replace("n_epochs: 3,", "n_epochs: 5,"))
    first = _driver(manifest, tmp_path, ray_session, tmp_path / "first.log")
    deadline = time.monotonic() + 300
    try:  # kill the driver as soon as a trial has stored a checkpoint after exploiting the other
        while (
            not (found := _first_exploit(tmp_path / "runs" / "pbt-sweep" / "trials"))
            and first.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert found, (tmp_path / "first.log").read_text()[-4000:]
    run_name, exploit = found

    second = _driver(
        manifest, tmp_path, ray_session, tmp_path / "second.log", "--resume", "--verbose"
    )
    second.wait(timeout=300)
    out = (tmp_path / "second.log").read_text()
    assert second.returncode == 0, out[-4000:]
    assert (
        "resuming after epoch" in out
    )  # the trials continued from their checkpoints, not from scratch
    results = json.loads((tmp_path / "results" / "pbt-sweep.json").read_text())
    trials = results["tasks"][0]["trials"]
    assert len(trials) == 2 and all(t["status"] == "finished" and t["epochs"] == 6 for t in trials)
    exploiter = next(t for t in trials if f"pbt-{t['trial_id']}" == run_name)
    assert (
        exploiter["lineage"]["exploits"][0] == exploit
    )  # what it did before the kill is still its lineage
    # one row per epoch, up to the last (epochs reported after Tune last saved the run and before
    # the kill may be missing: the killed driver's copy of the result files is gone)
    epochs = [row["epoch"] for row in exploiter["history"]]
    assert len(epochs) == len(set(epochs)) and max(epochs) == 6 and epochs[0] == 1
