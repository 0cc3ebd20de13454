"""Scratch prototype: one Tune run for several tasks, each with its own search algorithm, sample count,
concurrency, metric/mode and scheduler, routed by config["task"]; a manifest-level concurrency limit;
restore after the driver is killed.

    python proto_dispatch.py run STORAGE        # fresh run (kill it midway to test restore)
    python proto_dispatch.py resume STORAGE     # Tuner.restore + fit

(RAY_AUTH_MODE=disabled, a private local Ray; EPOCH_S sets the dummy epoch's seconds.)
"""

from __future__ import annotations

import copy
import json
import os
from ray import cloudpickle as pickle
import sys
import time
import uuid

import ray
from ray import tune
from ray.tune.experiment import _convert_to_experiment_list
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import BasicVariantGenerator, SearchAlgorithm

TASKS = {
    # name: (space, num_samples, max_concurrent, metric, mode, scheduler)
    "a": ({"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4])}, 1, 2, "loss", "min", "asha"),
    "b": ({"q": tune.uniform(0, 1)}, 3, 1, "acc", "max", "asha"),
    "c": ({"z": tune.choice([1, 2])}, 2, 0, "loss", "min", "fifo"),
}
MANIFEST_MAX_CONCURRENT = 3
EPOCHS = 6
SCRATCH = os.environ.get("PROTO_SCRATCH", "/tmp/sweep-proto")  # the trials' checkpoints and start log


def trainable(config):
    """Reports the task's own metric only (no common key) every 'epoch'; checkpoints each epoch."""
    task = config["task"]
    start = 1
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            start = json.load(open(os.path.join(d, "s.json")))["epoch"] + 1
    with open(f"{SCRATCH}/starts.txt", "a") as f:
        f.write(f"{tune.get_context().get_trial_id()} {task} start_epoch={start} pid={os.getpid()} t={time.time():.1f}\n")
    knob = config.get("lr", config.get("q", config.get("z", 1)))
    for epoch in range(start, EPOCHS + 1):
        time.sleep(float(os.environ.get('EPOCH_S', '0.5')))
        value = {"a": 1 / (epoch * knob), "b": knob * epoch / EPOCHS, "c": 1 / (epoch + knob)}[task]
        d = f"{SCRATCH}/ck/{tune.get_context().get_trial_id()}-{epoch}"
        os.makedirs(d, exist_ok=True)
        json.dump({"epoch": epoch}, open(os.path.join(d, "s.json"), "w"))
        tune.report({TASKS[task][3]: value, "epoch": epoch, "task_name": task, "pid": os.getpid(), "wall": time.time()},
                    checkpoint=tune.Checkpoint.from_directory(d))


class TaskSearch(SearchAlgorithm):
    """Per-task search algorithms behind one Tune run. Each trial's config carries "task"; the
    manifest-level limit caps live trials across tasks; tasks take turns (round robin)."""

    CKPT_FILE = "task-search-state.pkl"

    def __init__(self, inner: dict[str, SearchAlgorithm], spaces: dict[str, dict], samples: dict[str, int],
                 max_failures: dict[str, int] | None = None, max_concurrent: int = 0):
        self._inner, self._spaces, self._samples = inner, spaces, samples
        self._max_failures = max_failures or {}
        self.max_concurrent = max_concurrent
        self._live: dict[str, str] = {}        # trial id -> task
        self._turn = 0
        self._finished = False

    @property
    def metric(self):
        return None   # per task: Tune must not require one metric in every result

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True   # the inner algorithms were built with their task's metric and mode

    @property
    def total_samples(self) -> int:
        return sum(alg.total_samples for alg in self._inner.values())

    def add_configurations(self, experiments) -> None:
        (experiment,) = _convert_to_experiment_list(experiments)
        for task, alg in self._inner.items():
            own = copy.copy(experiment)
            own.spec = {**experiment.spec, "config": {**self._spaces[task], "task": task}, "num_samples": self._samples[task]}
            if task in self._max_failures:
                own.spec["max_failures"] = self._max_failures[task]
            alg.add_configurations([own])

    def next_trial(self):
        if self.max_concurrent and len(self._live) >= self.max_concurrent:
            return None
        names = list(self._inner)
        for i in range(len(names)):
            task = names[(self._turn + i) % len(names)]
            trial = self._inner[task].next_trial()
            if trial is not None:
                self._turn = (self._turn + i + 1) % len(names)
                self._live[trial.trial_id] = task
                return trial
        if all(alg.is_finished() for alg in self._inner.values()):
            self.set_finished()
        return None

    def _task(self, trial_id: str) -> str | None:
        return self._live.get(trial_id)

    def on_trial_result(self, trial_id, result):
        task = self._task(trial_id)
        if task:
            self._inner[task].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id, result=None, error=False):
        task = self._live.pop(trial_id, None)
        if task:
            self._inner[task].on_trial_complete(trial_id, result=result, error=error)

    def is_finished(self) -> bool:
        return self._finished

    def set_finished(self):
        self._finished = True

    # One file for every inner state: the inner algorithms' own files would overwrite each other.
    def save_to_dir(self, dirpath, session_str="default"):
        state = {"live": self._live, "turn": self._turn, "finished": self._finished,
                 "inner": {task: alg.get_state() for task, alg in self._inner.items()}}
        tmp = os.path.join(dirpath, f".{self.CKPT_FILE}.tmp")
        with open(tmp, "wb") as f:
            pickle.dump(state, f)
        os.replace(tmp, os.path.join(dirpath, self.CKPT_FILE))

    def has_checkpoint(self, dirpath) -> bool:
        return os.path.exists(os.path.join(dirpath, self.CKPT_FILE))

    def restore_from_dir(self, dirpath):
        with open(os.path.join(dirpath, self.CKPT_FILE), "rb") as f:
            state = pickle.load(f)
        self._live, self._turn, self._finished = state["live"], state["turn"], state["finished"]
        for task, inner_state in state["inner"].items():
            self._inner[task].set_state(inner_state)


class _TaskView:
    """What one task's scheduler sees of the TuneController: only its task's trials."""

    def __init__(self, controller, task: str, search_alg):
        self._controller, self._task, self.search_alg = controller, task, search_alg

    def get_trials(self):
        return [t for t in self._controller.get_trials() if t.config.get("task") == self._task]

    def get_live_trials(self):
        return [t for t in self._controller.get_live_trials() if t.config.get("task") == self._task]

    def __getattr__(self, name):
        return getattr(self._controller, name)


class TaskScheduler(TrialScheduler):
    """Per-task schedulers (ASHA, PBT, FIFO) behind one Tune run, routed by config["task"]."""

    def __init__(self, inner: dict[str, TrialScheduler], search: TaskSearch):
        super().__init__()
        self._inner, self._search = inner, search
        self._turn = 0

    @property
    def metric(self):
        return None

    @property
    def supports_buffered_results(self):
        return all(s.supports_buffered_results for s in self._inner.values())

    def set_search_properties(self, metric, mode, **spec) -> bool:
        return True

    def _route(self, controller, trial):
        task = trial.config["task"]
        return self._inner[task], _TaskView(controller, task, self._search._inner[task])

    def on_trial_add(self, controller, trial):
        inner, view = self._route(controller, trial)
        inner.on_trial_add(view, trial)

    def on_trial_error(self, controller, trial):
        inner, view = self._route(controller, trial)
        inner.on_trial_error(view, trial)

    def on_trial_result(self, controller, trial, result):
        inner, view = self._route(controller, trial)
        return inner.on_trial_result(view, trial, result)

    def on_trial_complete(self, controller, trial, result):
        inner, view = self._route(controller, trial)
        inner.on_trial_complete(view, trial, result)

    def on_trial_remove(self, controller, trial):
        inner, view = self._route(controller, trial)
        inner.on_trial_remove(view, trial)

    def choose_trial_to_run(self, controller):
        names = list(self._inner)
        for i in range(len(names)):
            task = names[(self._turn + i) % len(names)]
            trial = self._inner[task].choose_trial_to_run(_TaskView(controller, task, self._search._inner[task]))
            if trial is not None:
                self._turn = (self._turn + i + 1) % len(names)
                return trial
        return None

    def debug_string(self) -> str:
        return "; ".join(f"{task}: {s.debug_string()}" for task, s in self._inner.items())


def build():
    inner_search = {t: BasicVariantGenerator(max_concurrent=spec[2]) for t, spec in TASKS.items()}
    # Trial ids must be unique across tasks: generators made within the same 0.4 ms share a prefix.
    base = uuid.uuid4().hex[:4]
    for i, alg in enumerate(inner_search.values()):
        alg._uuid_prefix = f"{base}{i:02d}_"
    search = TaskSearch(inner_search, {t: s[0] for t, s in TASKS.items()}, {t: s[1] for t, s in TASKS.items()},
                        max_concurrent=MANIFEST_MAX_CONCURRENT)
    scheds = {t: (ASHAScheduler(metric=s[3], mode=s[4], time_attr="epoch", max_t=EPOCHS, grace_period=1, reduction_factor=2)
                  if s[5] == "asha" else FIFOScheduler()) for t, s in TASKS.items()}
    return search, TaskScheduler(scheds, search)


def main():
    mode, storage = sys.argv[1], sys.argv[2]
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(MANIFEST_MAX_CONCURRENT))
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    fn = tune.with_resources(trainable, {"cpu": 1})
    if mode == "run":
        search, sched = build()
        tuner = tune.Tuner(fn, tune_config=tune.TuneConfig(search_alg=search, scheduler=sched,
                                                           trial_dirname_creator=lambda t: f"{t.config['task']}-{t.trial_id}"),
                           run_config=tune.RunConfig(name="proto", storage_path=storage, verbose=0,
                                                     failure_config=tune.FailureConfig(max_failures=1)))
    else:
        tuner = tune.Tuner.restore(os.path.join(storage, "proto"), fn, resume_errored=True)
    grid = tuner.fit()
    rows = []
    for r in grid:
        task = r.config["task"]
        metric = TASKS[task][3]
        rows.append((task, r.path.rsplit("/", 1)[-1], r.metrics.get("epoch"), metric, r.metrics.get(metric),
                     {k: v for k, v in r.config.items() if k != "task"}, "error" if r.error else "ok"))
    for row in sorted(rows):
        print(*row)
    print("max concurrent seen:", max_concurrency(storage))


def max_concurrency(storage):
    """From the trials' result rows: the most trials with overlapping [first, last] report times."""
    spans = []
    root = os.path.join(storage, "proto")
    for d in os.listdir(root):
        path = os.path.join(root, d, "result.json")
        if os.path.exists(path):
            times = [json.loads(line)["wall"] for line in open(path) if line.strip()]
            spans.append((min(times) - 0.5, max(times)))
    return max((sum(1 for a, b in spans if a <= t <= b) for t, _ in spans), default=0)


if __name__ == "__main__":
    main()
