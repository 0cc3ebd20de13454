"""The manifest as a typed plan: schema, problems, search space, resources. Imports no ray, mlflow or torch."""

from orchestrator.config.plan import LoadedManifest, TaskPlan, load_manifest, parse_manifest
from orchestrator.config.problems import ManifestError

__all__ = ["LoadedManifest", "ManifestError", "TaskPlan", "load_manifest", "parse_manifest"]
