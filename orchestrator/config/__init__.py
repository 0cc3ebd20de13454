"""The manifest as a typed plan: schema, problems, search space, resources. Imports no ray, mlflow
or torch.

The names below load on first use: the search registries import `orchestrator.config.aliases`, and
an eager import of the plan here (which reads those registries) would make that a cycle.
"""

_NAMES = {
    "LoadedManifest": "plan",
    "TaskPlan": "plan",
    "load_manifest": "plan",
    "parse_manifest": "plan",
    "ManifestError": "problems",
}


def __getattr__(name: str):
    if name in _NAMES:
        import importlib

        return getattr(importlib.import_module(f"orchestrator.config.{_NAMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_NAMES)
