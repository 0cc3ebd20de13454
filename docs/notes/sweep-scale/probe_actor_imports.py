"""Scratch: USS/PSS/private dirty memory of a Ray actor process after importing module sets (private local Ray).

    flock /tmp/heavy.lock env PYTHONPATH=. RAY_AUTH_MODE=disabled .venv/bin/python docs/notes/sweep-scale/probe_actor_imports.py
"""
import sys, time
import ray

SETS = {
    "bare actor": [],
    "ray.util.queue (like _QueueActor)": ["ray.util.queue"],
    "ray.train (like the Train helper actors)": ["ray.train"],
    "Train controller module, no torch": ["ray.train.v2._internal.execution.controller.controller"],
    "Train controller module + ray.train.torch (today)": ["ray.train.v2._internal.execution.controller.controller", "ray.train.torch"],
    "Tune trial, torch-free (ray.tune, DataParallelTrainer, TuneReportCallback, orchestrator.sweep)": [
        "ray.tune", "ray.train.v2.api.data_parallel_trainer", "ray.tune.integration.ray_train", "orchestrator.sweep"],
    "Tune trial today (+ orchestrator.train -> ray.train.torch)": [
        "ray.tune", "ray.tune.integration.ray_train", "orchestrator.sweep", "orchestrator.train"],
    "Tune driver, torch-free (ray.tune + orchestrator.sweep)": ["ray.tune", "orchestrator.sweep", "ray.tune.logger.json", "ray.tune.logger.csv"],
    "Tune driver today (+ tensorboardX -> torch)": ["ray.tune", "orchestrator.sweep", "tensorboardX"],
}

@ray.remote(num_cpus=0)
class Probe:
    def measure(self, modules):
        import importlib
        t = time.time()
        for m in modules:
            importlib.import_module(m)
        dt = time.time() - t
        f = {l.split(":")[0]: int(l.split()[1]) for l in open("/proc/self/smaps_rollup").read().splitlines()[1:] if l.endswith("kB")}
        return {"import_s": round(dt, 2), "uss_mb": (f["Private_Clean"] + f["Private_Dirty"]) // 1024, "pss_mb": f["Pss"] // 1024,
                "rss_mb": f["Rss"] // 1024, "private_dirty_mb": f["Private_Dirty"] // 1024, "anon_mb": f["Anonymous"] // 1024, "torch": "torch" in sys.modules}

ray.init(address="local", num_cpus=2, include_dashboard=False)
for name, modules in SETS.items():
    probe = Probe.remote()
    print(f"{name:<100} {ray.get(probe.measure.remote(modules))}", flush=True)
    ray.kill(probe)
    time.sleep(0.5)
ray.shutdown()
