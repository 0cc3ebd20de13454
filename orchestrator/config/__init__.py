"""The manifest as a typed plan: schema, problems, search space, resources. Imports no ray, mlflow or torch."""

from orchestrator.config.manifest import load_manifest

__all__ = ["load_manifest"]
