"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017) in plain PyTorch. No Ray, no MLflow.

The paper's model and loop: networks (built from the entries of architectures), losses, pool,
schedules, model (one training step), trainer (the loop), checkpoint. Around them: config (the one
TrainConfig), data, sources/ (dataset references: folders, archives, S3, synthetic, the node cache),
evaluate and metrics, speed, translate, and commands/ (`python -m cyclegan`). docs/architecture.md
has the map.

The public names are imported on first use, so that `python -m cyclegan --help`, option errors
and the orchestrator's manifest checks answer without loading torch (seconds on a small machine).
"""

from importlib import import_module

_EXPORTS = {
    "CycleGAN": "model",
    "TrainConfig": "config",
    "Trainer": "trainer",
    "UserError": "errors",
    "load_generator": "checkpoint",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cyclegan' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
