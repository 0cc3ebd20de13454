"""CycleGAN sweeps and distributed training on Ray, tracked in MLflow: the public API.

    from orchestrator import RunOptions, load_manifest, run_experiment, load_results
    loaded = load_manifest("experiments/quickstart.yaml")
    run_experiment(loaded, loaded.plans, RunOptions(storage="s3://my-runs/sweeps"))
    results = load_results("results/quickstart.json")

    from orchestrator import Resources, TrialSpec, train_on_ray
    config = TrainConfig(dataroot="s3://data/horse2zebra", name="h2z")
    result = train_on_ray(TrialSpec(config, Resources(workers=8)))

Each name loads on first use: importing `orchestrator` loads no ray, torch or mlflow (the command
lines start fast, and a driver imports only what it runs).
"""

from __future__ import annotations

# name -> the module that defines it
_PUBLIC = {
    "load_manifest": "orchestrator.config",
    "Resources": "orchestrator.config.resources",
    "Ranking": "orchestrator.storage.best",
    "RunOptions": "orchestrator.sweep.options",
    "run_experiment": "orchestrator.sweep.experiment",
    "load_results": "orchestrator.sweep.results",
    "TrialSpec": "orchestrator.trial.spec",
    "TrainResult": "orchestrator.trial.ray_train",
    "TrainingFailed": "orchestrator.trial.ray_train",
    "train_on_ray": "orchestrator.trial.ray_train",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> object:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'orchestrator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
