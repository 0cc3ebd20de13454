"""Scratch: what N tasks cost the driver process itself, one Tune run with dispatchers (A) or one Tuner
per task in threads (B): the driver's private memory and CPU seconds, with dummy trials.

    python proto_scale.py A|B N STORAGE
"""
import os
import resource
import sys
import threading
import time

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator
import ray.tune.logger  # noqa: F401,E402

sys.path.insert(0, os.path.dirname(__file__))
from proto_dispatch import TaskScheduler, TaskSearch  # noqa: E402

TRIAL_S = float(os.environ.get("TRIAL_S", "20"))


def trainable(config):
    for epoch in range(1, int(TRIAL_S) + 1):
        time.sleep(1)
        tune.report({"loss": 1 / epoch, "epoch": epoch})


def private_mb():
    f = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/smaps_rollup").read().splitlines()[1:] if l.endswith("kB")}
    return (f["Private_Dirty"]) // 1024


def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main():
    mode, n, storage = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    tasks = [f"t{i:02d}" for i in range(n)]
    ray.init(address="local", num_cpus=max(2, n), include_dashboard=False)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(n)

    base_mem, base_cpu, t0 = private_mb(), cpu_s(), time.time()
    peak = [base_mem]
    done = threading.Event()

    def watch():
        while not done.wait(0.5):
            peak.append(private_mb())

    threading.Thread(target=watch, daemon=True).start()
    fn = tune.with_resources(trainable, {"cpu": 0.5})
    callbacks = [tune.logger.CSVLoggerCallback(), tune.logger.JsonLoggerCallback()]
    if mode == "A":
        inner = {t: BasicVariantGenerator(max_concurrent=1) for t in tasks}
        for i, alg in enumerate(inner.values()):
            alg._uuid_prefix = f"ab{i:03d}_"
        search = TaskSearch(inner, {t: {"lr": tune.uniform(0, 1)} for t in tasks}, {t: 1 for t in tasks})
        sched = TaskScheduler({t: ASHAScheduler(metric="loss", mode="min", time_attr="epoch", max_t=int(TRIAL_S)) for t in tasks},
                              search)
        tune.Tuner(fn, tune_config=tune.TuneConfig(search_alg=search, scheduler=sched),
                   run_config=tune.RunConfig(name="all", storage_path=storage, verbose=0, callbacks=callbacks)).fit()
    else:
        for t in tasks:
            tune.register_trainable(f"s_{t}", fn)

        def one(t):
            tune.Tuner(f"s_{t}", param_space={"lr": tune.uniform(0, 1)},
                       tune_config=tune.TuneConfig(metric="loss", mode="min", num_samples=1,
                                                   scheduler=ASHAScheduler(time_attr="epoch", max_t=int(TRIAL_S))),
                       run_config=tune.RunConfig(name=t, storage_path=storage, verbose=0,
                                                 callbacks=[tune.logger.CSVLoggerCallback(), tune.logger.JsonLoggerCallback()])).fit()

        threads = [threading.Thread(target=one, args=(t,)) for t in tasks]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    done.set()
    wall = time.time() - t0
    print(f"mode {mode}, {n} tasks: wall {wall:.1f} s, driver CPU {cpu_s() - base_cpu:.1f} s, "
          f"driver private memory {base_mem} MB before, peak {max(peak)} MB (+{max(peak) - base_mem} MB)", flush=True)


if __name__ == "__main__":
    main()
