"""The registry's lookups: `python -m orchestrator models list|show` and `translate --model`.

Versions of `<prefix><task>` with their metric and hyperparameters, and which one is the champion;
orchestrator.tracking.registry writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cyclegan.errors import UserError
from orchestrator.redact import mask_text
from orchestrator.tracking.client import TrackingError, all_pages, reported_as
from orchestrator.tracking.mlflow_internals import using_uri
from orchestrator.tracking.registry import (
    CHAMPION,
    DEFAULT_PREFIX,
    HP_PREFIX,
    as_float,
    champion_version,
)


@dataclass
class VersionInfo:
    version: str
    created: datetime
    aliases: list[str]
    metric: str | None
    mode: str | None
    value: float | None
    run_id: str | None
    trial: str | None
    dataset: str | None
    hyperparameters: dict[str, str] = field(default_factory=dict)
    interval: tuple[float, float] | None = None  # the value's 95 % interval
    protocol: str | None = None  # how it was evaluated (cyclegan.scores)
    untranslated: float | None = None  # the untranslated test images' value, same protocol
    evaluation: str | None = None  # its other evaluated metrics with their intervals
    decision: str | None = None  # why it is, or is not, the champion


@dataclass
class ModelInfo:
    name: str
    task: str
    champion: VersionInfo | None
    latest_version: str | None
    versions: list[VersionInfo] = field(
        default_factory=list
    )  # newest first; filled by show_model only


# ------------------------------------------------------------------------------------------------
# Registering


def _version_info(mv) -> VersionInfo:
    tags = mv.tags or {}
    return VersionInfo(
        version=str(mv.version),
        created=datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc),
        aliases=list(getattr(mv, "aliases", []) or []),
        metric=tags.get("metric"),
        mode=tags.get("mode"),
        value=as_float(tags.get("metric_value")),
        run_id=tags.get("run_id") or mv.run_id,
        trial=tags.get("trial"),
        dataset=tags.get("dataset"),
        hyperparameters={
            k.removeprefix(HP_PREFIX): v for k, v in tags.items() if k.startswith(HP_PREFIX)
        },
        interval=_interval(tags),
        protocol=tags.get("protocol"),
        untranslated=as_float(tags.get("untranslated_value")),
        evaluation=tags.get("evaluation") or None,
        decision=tags.get("champion_decision"),
    )


def _interval(tags: dict) -> tuple[float, float] | None:
    low, high = as_float(tags.get("metric_ci_low")), as_float(tags.get("metric_ci_high"))
    return (low, high) if low is not None and high is not None else None


def list_models(uri: str, prefix: str = DEFAULT_PREFIX) -> list[ModelInfo]:
    """Every registered model named `<prefix>*`, with its champion (if any), sorted by name."""
    client = MlflowClient(uri, registry_uri=uri)
    # LIKE treats "_" as a wildcard: keep exact prefix matches only.
    with reported_as(f"model registry at {mask_text(uri)}"):
        models = all_pages(client.search_registered_models, f"name LIKE '{prefix}%'")
    found = [m for m in models if m.name.startswith(prefix)]
    out = []
    for model in sorted(found, key=lambda m: m.name):
        champion = champion_version(client, model.name)
        latest = max((int(v.version) for v in model.latest_versions or []), default=None)
        out.append(
            ModelInfo(
                model.name,
                model.name.removeprefix(prefix),
                _version_info(champion) if champion else None,
                str(latest) if latest is not None else None,
            )
        )
    return out


def show_model(uri: str, task: str, prefix: str = DEFAULT_PREFIX) -> ModelInfo:
    """One task's registered model with all its versions (newest first). `task` may also be
    the full model name."""
    client = MlflowClient(uri, registry_uri=uri)
    name = task if task.startswith(prefix) else f"{prefix}{task}"
    try:
        registered = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise UserError(
                f"no registered model {name!r} at {mask_text(uri)}; "
                "`python -m orchestrator models list` shows the ones there"
            ) from None
        raise UserError(
            f"model registry at {mask_text(uri)}: {mask_text(err.message)[:300]}"
        ) from None
    with reported_as(f"model registry at {mask_text(uri)}"):
        versions = all_pages(client.search_model_versions, f"name = '{name}'")
    infos = sorted((_version_info(v) for v in versions), key=lambda v: int(v.version), reverse=True)
    for info in infos:  # version searches may leave aliases out; the registered model has them all
        info.aliases = sorted(
            alias
            for alias, version in (registered.aliases or {}).items()
            if str(version) == info.version
        )
    champion = next((v for v in infos if CHAMPION in v.aliases), None)
    return ModelInfo(
        name, name.removeprefix(prefix), champion, infos[0].version if infos else None, infos
    )


def load_registered_model(uri: str, model_uri: str):
    """The Python model behind `model_uri` (models:/<name>@<alias>, models:/<name>/<version>,
    runs:/..., a folder) from the registry at `uri`; a TrackingError when MLflow cannot load it."""
    try:
        with using_uri(uri):
            return mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    except MlflowException as err:
        raise TrackingError(
            f"cannot load it from {mask_text(uri)}: {mask_text(err.message)[:300]}"
        ) from None
