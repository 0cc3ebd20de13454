"""A batch translation's side of the registry: the model resolved once (an alias becomes a version
before anything is translated, so a champion that moves mid-job does not mix two models), its
generator's file, and the translation recorded as a run in the model's experiment, tagged with the
version (and the version tagged with its latest translation).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from cyclegan.errors import UserError
from orchestrator.redact import MAX_TAG_VALUE, mask_text, restored_environ
from orchestrator.tracking.client import TrackingError, reported_as
from orchestrator.tracking.registry import version_generators

_MODEL_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?")
VERSION_TAG = "cyclegan.model_version"
NAME_TAG = "cyclegan.model_name"
LAST_TRANSLATION_TAG = "last_translation"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@dataclass(frozen=True)
class ResolvedModel:
    uri: str  # tracking and registry
    name: str
    version: str
    run_id: str | None
    experiment_id: str | None
    model_uri: str  # as the user gave it, for messages

    @property
    def identity(self) -> str:
        return f"{self.name}/{self.version}"


@dataclass(frozen=True)
class Generator:
    """The generator that translates one direction, as the translating actors load it."""

    state: bytes  # its state_dict file
    options: dict[str, Any]  # how to build it (cyclegan.checkpoint.load_generator's options)
    multiple: int  # the network's size multiple


def resolve_model(uri: str, model_uri: str) -> ResolvedModel:
    """The version `model_uri` (models:/<name>@<alias> or models:/<name>/<version>) names now.
    Nothing is downloaded: a rerun with every output there needs no generator."""
    found = _MODEL_URI.fullmatch(model_uri)
    if not found:
        raise UserError(
            f"--model {model_uri}: give a registered model, models:/<name>@<alias> or "
            "models:/<name>/<version> (for a checkpoint file: python -m cyclegan translate)"
        )
    name, alias, version = found["name"], found["alias"], found["version"]
    client = MlflowClient(uri, registry_uri=uri)
    try:
        mv = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, version)
        )
    except MlflowException as err:
        raise UserError(
            f"--model {model_uri}: not found at {mask_text(uri)} ({mask_text(err.message)[:200]}); "
            "`python -m orchestrator models list` shows the registered models"
        ) from None
    with reported_as(f"--model {model_uri}"):
        experiment_id = client.get_run(mv.run_id).info.experiment_id if mv.run_id else None
    return ResolvedModel(uri, name, str(mv.version), mv.run_id, experiment_id, model_uri)


def fetch_generator(model: ResolvedModel, direction: str) -> Generator:
    """The version's generator that translates `direction` (AtoB: the dataset's domain A into
    B), downloaded from the registry."""
    from cyclegan.networks import size_multiple

    with reported_as(f"--model {model.model_uri}"), restored_environ([PROGRESS_BAR_ENV]):
        os.environ[PROGRESS_BAR_ENV] = "false"  # three tiny files: no bars on the terminal
        files, config = version_generators(model.uri, model.name, model.version)
    # G_A maps the training's "A" side; a model trained BtoA has its sides the other way round.
    use_a = (direction == "AtoB") == (config["direction"] == "AtoB")
    in_nc, out_nc = (
        (config["input_nc"], config["output_nc"])
        if use_a
        else (config["output_nc"], config["input_nc"])
    )
    return Generator(
        files["G_A" if use_a else "G_B"],
        {
            "netG": config["netG"],
            "ngf": config["ngf"],
            "norm": config["norm"],
            "input_nc": in_nc,
            "output_nc": out_nc,
            "dropout": config["dropout"],
        },
        size_multiple(config["netG"]),
    )


def record_translation(model: ResolvedModel, report: dict[str, Any]) -> str:
    """A run in the model's experiment with the translation's counts and throughput, tagged with
    the version; the version's `last_translation` tag points at it. Returns the run id."""
    client = MlflowClient(model.uri, registry_uri=model.uri)
    counts = report["counts"]
    tags = {
        NAME_TAG: model.name,
        VERSION_TAG: model.version,
        "cyclegan.kind": "translation",
        "cyclegan.direction": report["direction"],
        "cyclegan.input": mask_text(report["input"]),
        "cyclegan.output": mask_text(report["output"]),
        "mlflow.runName": f"translate-{model.name}-v{model.version}",
    }
    try:
        run = client.create_run(model.experiment_id or "0", tags=tags)
        run_id = run.info.run_id
        for key in ("translated", "already_there", "failed"):
            client.log_metric(run_id, key, counts[key])
        client.log_metric(run_id, "images_per_s", report["throughput"]["images_per_s"])
        client.log_dict(run_id, report, "_translation.json")
        client.set_terminated(run_id, "FINISHED" if report["complete"] else "FAILED")
        summary = (
            f"{counts['translated']} translated, {counts['already_there']} already there, "
            f"{counts['failed']} failed -> {mask_text(report['output'])} (run {run_id})"
        )
        client.set_model_version_tag(
            model.name, model.version, LAST_TRANSLATION_TAG, summary[:MAX_TAG_VALUE]
        )
    except MlflowException as err:
        raise TrackingError(f"recording the translation: {mask_text(err.message)[:300]}") from None
    return run_id
