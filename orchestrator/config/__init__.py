"""The manifest as a typed plan: schema, problems, search space, resources. Imports no ray, mlflow or torch.

`load_manifest` loads on first use: the search registries import `orchestrator.config.aliases`, and an
eager import of the manifest's modules here would make that a cycle.
"""


def __getattr__(name: str):
    if name == "load_manifest":
        from orchestrator.config.manifest import load_manifest

        return load_manifest
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["load_manifest"]
