"""Scratch prototype B: one Tuner per task as today, but all in threads of the driver process (no
remote sweep_task per task), with a manifest-level limit on live trials shared by the Tuners.

    python proto_threads.py run STORAGE | resume STORAGE
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler


TASKS = {
    "a": ({"lr": tune.grid_search([0.1, 0.2, 0.3, 0.4])}, 1, 2, "loss", "min"),
    "b": ({"q": tune.uniform(0, 1)}, 3, 1, "acc", "max"),
    "c": ({"z": tune.choice([1, 2])}, 2, 0, "loss", "min"),
}
MANIFEST_MAX_CONCURRENT = 3
EPOCHS = 6
SCRATCH = os.environ.get("PROTO_SCRATCH", "/tmp/sweep-proto")  # the trials' checkpoints and start log


def trainable(config):
    task = config["task"]
    start = 1
    ckpt = tune.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            start = json.load(open(os.path.join(d, "s.json")))["epoch"] + 1
    with open(f"{SCRATCH}/starts_b.txt", "a") as f:
        f.write(f"{tune.get_context().get_trial_id()} {task} start_epoch={start} t={time.time():.1f}\n")
    knob = config.get("lr", config.get("q", config.get("z", 1)))
    for epoch in range(start, EPOCHS + 1):
        time.sleep(float(os.environ.get("EPOCH_S", "0.5")))
        value = {"a": 1 / (epoch * knob), "b": knob * epoch / EPOCHS, "c": 1 / (epoch + knob)}[task]
        d = f"{SCRATCH}/ckb/{tune.get_context().get_trial_id()}-{epoch}"
        os.makedirs(d, exist_ok=True)
        json.dump({"epoch": epoch}, open(os.path.join(d, "s.json"), "w"))
        tune.report({TASKS[task][3]: value, "epoch": epoch, "wall": time.time()}, checkpoint=tune.Checkpoint.from_directory(d))


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from proto_limit import Limited  # noqa: E402  # an importable module: pickled by reference, its lock never pickled


def run_task(task: str, storage: str, resume: bool, out: dict) -> None:
    space, samples, concurrent, metric, mode = TASKS[task]
    fn = f"proto_{task}"   # registered by the main thread: Tune's registry is not thread-safe
    path = os.path.join(storage, task)
    if resume and tune.Tuner.can_restore(path):
        tuner = tune.Tuner.restore(path, fn, resume_errored=True)
    else:
        tuner = tune.Tuner(fn, param_space={**space, "task": task},
                           tune_config=tune.TuneConfig(metric=metric, mode=mode, num_samples=samples,
                                                       search_alg=Limited(max_concurrent=concurrent),
                                                       scheduler=ASHAScheduler(time_attr="epoch", max_t=EPOCHS, grace_period=1,
                                                                               reduction_factor=2)),
                           run_config=tune.RunConfig(name=task, storage_path=storage, verbose=0))
    out[task] = tuner.fit()


def main():
    mode, storage = sys.argv[1], sys.argv[2]
    ray.init(address="local", num_cpus=4, include_dashboard=False)
    out: dict = {}
    for task in TASKS:
        tune.register_trainable(f"proto_{task}", tune.with_resources(trainable, {"cpu": 1}))
    threads = [threading.Thread(target=run_task, args=(t, storage, mode == "resume", out)) for t in TASKS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for task, grid in out.items():
        for r in grid:
            print(task, r.path.rsplit("/", 1)[-1], r.metrics.get("epoch"), r.metrics.get(TASKS[task][3]), "error" if r.error else "ok")
    spans = []
    for task in TASKS:
        for d in os.listdir(os.path.join(storage, task)):
            p = os.path.join(storage, task, d, "result.json")
            if os.path.exists(p):
                w = [json.loads(line)["wall"] for line in open(p) if line.strip()]
                spans.append((min(w) - float(os.environ.get("EPOCH_S", "0.5")), max(w)))
    print("max concurrent seen:", max(sum(1 for a, b in spans if a <= t <= b) for t, _ in spans))


if __name__ == "__main__":
    main()
