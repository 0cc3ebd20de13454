"""The model registry: the best generators of each task as versions of `<prefix><task>`.

`register_best` logs the best trial's two generators as one pyfunc model (see
pyfunc_model.py for its input/output contract), registers it as a new version, tags the
version with its metric, hyperparameters, run and dataset, and moves the alias `champion`
to it only when it strictly beats the current champion on the same metric and mode.
The lookups behind `python -m orchestrator models` are orchestrator.tracking.models.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image

import cyclegan
import orchestrator.tracking.pyfunc_model as pyfunc_model
from cyclegan.errors import UserError
from cyclegan.networks import size_multiple
from cyclegan.run_files import LATEST, network_file
from orchestrator.redact import MAX_TAG_VALUE, mask_value
from orchestrator.tracking.client import reported_as
from orchestrator.tracking.mlflow_internals import using_uri
from orchestrator.tracking.pyfunc_model import IMAGE_COLUMN, encode_png, generator_config
from orchestrator.tracking.runs import SEARCHED_AS_TAG

log = logging.getLogger(__name__)

CHAMPION = "champion"
DEFAULT_PREFIX = "cyclegan-"
MODEL_NAME = "generators"  # the logged model's name inside the trial's run
GENERATOR_FILES = {name: network_file(LATEST, name) for name in ("G_A", "G_B")}
HP_PREFIX = (
    "hp."  # a version's hyperparameter tags: hp.<TrainConfig field> (orchestrator.config.aliases)
)


@dataclass
class Registration:
    """What `register_best` did."""

    name: str
    version: str
    metric: str
    mode: str
    value: float
    champion: bool  # the alias now points at this version
    previous_champion: str | None = None
    previous_value: float | None = None
    reason: str = ""

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    def summary(self) -> str:
        head = f"{self.name} v{self.version} ({self.metric}={self.value:.4g})"
        return (
            f"{head}: {CHAMPION} ({self.reason})"
            if self.champion
            else f"{head}: registered, not {CHAMPION} ({self.reason})"
        )


def signature() -> ModelSignature:
    images = Schema([ColSpec("string", IMAGE_COLUMN)])
    return ModelSignature(
        inputs=images,
        outputs=Schema([ColSpec("string", IMAGE_COLUMN)]),
        params=ParamSchema([ParamSpec("direction", "string", "AtoB")]),
    )


def input_example(config: dict[str, Any]) -> pd.DataFrame:
    """One small gradient image, as large as the generator's smallest input."""
    side = max(size_multiple(config["netG"]), 16)
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(ramp, (side, 1)),
            np.tile(ramp[:, None], (1, side)),
            np.full((side, side), 128, np.uint8),
        ],
        -1,
    )
    channels = config["input_nc"] if config["direction"] == "AtoB" else config["output_nc"]
    img = Image.fromarray(pixels) if channels == 3 else Image.fromarray(pixels[:, :, 0])
    return pd.DataFrame({IMAGE_COLUMN: [encode_png(img)]})


# What the model's code (pyfunc_model.py and the shipped cyclegan package) imports.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pillow", "tqdm", "boto3", "filelock")


def _pip_requirements() -> list[str]:
    """Pinned to what is installed here (without local tags such as +cu130): given explicitly,
    MLflow does not have to load the model again to guess them."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def _checkpoint_files(
    client: MlflowClient, run_id: str, checkpoint_dir: str | Path | None, tmp: Path
) -> tuple[Path, dict | None]:
    """A local folder with latest_net_G_A/G_B.pth: the given one, else the run's best (or final)
    checkpoint artifacts. Also the config.json logged beside them, if any."""
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
    else:
        folder = None
        for kind in ("best", "final"):
            names = {
                Path(a.path).name for a in client.list_artifacts(run_id, f"checkpoints/{kind}")
            }
            if set(GENERATOR_FILES.values()) <= names:
                folder = Path(client.download_artifacts(run_id, f"checkpoints/{kind}", str(tmp)))
                break
        if folder is None:
            raise UserError(
                f"run {run_id}: no checkpoints/best or checkpoints/final artifacts with "
                f"{' and '.join(GENERATOR_FILES.values())}; pass the checkpoint folder"
            )
    missing = [name for name in GENERATOR_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"{folder}: missing {', '.join(missing)}; register a folder holding both generators"
        )
    config_file = folder / "config.json"
    return folder, (json.loads(config_file.read_text()) if config_file.is_file() else None)


def zip_package(target: Path) -> Path:
    """The cyclegan package's sources as one zip (importable through zipimport)."""
    package = Path(cyclegan.__file__).parent
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(package.rglob("*.py")):
            if "__pycache__" not in source.parts:
                archive.write(source, Path("cyclegan") / source.relative_to(package))
    return target


@dataclass(frozen=True)
class Candidate:
    """The best trial of a task, as `register_best` registers it.

    `checkpoint_dir` holds latest_net_G_A.pth / latest_net_G_B.pth (default: the run's
    `checkpoints/best`, else `checkpoints/final` artifacts); `config` is the trial's training
    config (default: the config.json logged with the checkpoint). `step` is the epoch the
    metric comes from; `tags` are set on the version besides its metric, run and hyperparameters.
    """

    task: str
    run_id: str
    metric: str
    value: float
    mode: str
    step: int = 0
    config: dict[str, Any] | None = None
    checkpoint_dir: str | Path | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)


def register_best(uri: str, candidate: Candidate, prefix: str = DEFAULT_PREFIX) -> Registration:
    """Log the candidate's generators as a pyfunc model in its run, register them as a new version
    of `<prefix><task>` and move `champion` to it if its value beats the champion's. MLflow's
    errors come as a TrackingError."""
    with reported_as():
        return _register(uri, candidate, prefix)


def _register(uri: str, candidate: Candidate, prefix: str) -> Registration:
    task, run_id, metric, value, mode = (
        candidate.task,
        candidate.run_id,
        candidate.metric,
        candidate.value,
        candidate.mode,
    )
    if mode not in ("min", "max"):
        raise ValueError(f"mode {mode!r}: use min or max")
    name = f"{prefix}{task}"
    client = MlflowClient(uri, registry_uri=uri)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="cyclegan-register-") as tmp_dir:
        tmp = Path(tmp_dir)
        folder, logged_config = _checkpoint_files(
            client, run_id, candidate.checkpoint_dir, tmp / "download"
        )
        train_config = candidate.config or logged_config
        if train_config is None:
            raise UserError(
                f"{folder}: no config.json beside the checkpoint; pass the trial's training config"
            )
        gen_config = generator_config(train_config)
        (tmp / "generators.json").write_text(json.dumps(gen_config, indent=2))
        artifacts = {
            "G_A": str(folder / GENERATOR_FILES["G_A"]),
            "G_B": str(folder / GENERATOR_FILES["G_B"]),
            "config": str(tmp / "generators.json"),
            "code": str(zip_package(tmp / "cyclegan.zip")),
        }
        version_tags = _version_tags(
            task,
            run,
            metric,
            value,
            mode,
            candidate.hyperparameters,
            candidate.dataset,
            candidate.tags,
        )
        with using_uri(uri):
            logged = mlflow.initialize_logged_model(
                name=MODEL_NAME,
                source_run_id=run_id,
                experiment_id=run.info.experiment_id,
                tags={k: v for k, v in version_tags.items() if not k.startswith(HP_PREFIX)},
                params={
                    k.removeprefix(HP_PREFIX): v
                    for k, v in version_tags.items()
                    if k.startswith(HP_PREFIX)
                },
            )
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                model_id=logged.model_id,
                python_model=pyfunc_model.__file__,
                artifacts=artifacts,
                signature=signature(),
                input_example=input_example(gen_config),
                pip_requirements=_pip_requirements(),
            )
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=candidate.step)])
            version = mlflow.register_model(info.model_uri, name, tags=version_tags).version
    client.set_registered_model_tag(name, "task", task)
    client.update_model_version(
        name, str(version), description=_description(version_tags, candidate.step)
    )
    result = _maybe_crown(client, name, str(version), metric, float(value), mode)
    client.set_model_version_tag(
        name, str(version), "champion_decision", result.reason[:MAX_TAG_VALUE]
    )
    log.info("%s", result.summary())
    return result


def _version_tags(
    task: str,
    run,
    metric: str,
    value: float,
    mode: str,
    hyperparameters: dict[str, Any],
    dataset: str | None,
    extra: dict[str, Any],
) -> dict[str, str]:
    tags = {
        "task": task,
        "metric": metric,
        "metric_value": repr(float(value)),
        "mode": mode,
        "run_id": run.info.run_id,
        "trial": run.data.tags.get("trial", run.info.run_name),
        "dataset": dataset or run.data.tags.get("dataset", ""),
        **{f"{HP_PREFIX}{k}": v for k, v in hyperparameters.items()},
        **extra,
    }
    return {k: mask_value(k, v)[:MAX_TAG_VALUE] for k, v in tags.items() if v is not None}


def _description(tags: dict[str, str], epoch: int) -> str:
    """The version's description, from its tags: where it comes from, its score, its hyperparameters
    (the tags' names)."""
    hyperparameters = " ".join(
        f"{k.removeprefix(HP_PREFIX)}={v}"
        for k, v in sorted(tags.items())
        if k.startswith(HP_PREFIX)
    )
    text = (
        f"Trial {tags.get('trial')} of task {tags['task']} (run {tags['run_id']}): "
        f"{tags['metric']}={float(tags['metric_value']):.4g} "
        f"({tags['mode']}) at epoch {epoch}. Hyperparameters: "
        f"{hyperparameters or 'the task as it is'}."
    )
    return text + (f" Searched as: {tags[SEARCHED_AS_TAG]}." if tags.get(SEARCHED_AS_TAG) else "")


def _better(value: float, than: float, mode: str) -> bool:
    return value < than if mode == "min" else value > than


def _maybe_crown(
    client: MlflowClient, name: str, version: str, metric: str, value: float, mode: str
) -> Registration:
    result = Registration(name, version, metric, mode, value, champion=False)
    current = champion_version(client, name)
    if not math.isfinite(value):
        result.reason = f"{metric} is {value}"
        return result
    if current is None or current.version == version:
        result.champion, result.reason = True, "first champion"
    else:
        tags = current.tags
        result.previous_champion = current.version
        result.previous_value = as_float(tags.get("metric_value"))
        if (tags.get("metric"), tags.get("mode")) != (metric, mode):
            result.reason = (
                f"champion v{current.version} is ranked by {tags.get('metric') or 'no metric'} "
                f"({tags.get('mode') or 'no mode'}), not {metric} ({mode}); move the alias by hand "
                f"to change"
            )
            return result
        previous = result.previous_value
        if previous is not None and math.isfinite(previous) and not _better(value, previous, mode):
            result.reason = (
                f"champion v{current.version} has {metric}={previous:.4g}, at least as good"
            )
            return result
        result.champion, result.reason = (
            True,
            f"beats v{current.version} ({metric}={previous:.4g})"
            if previous is not None
            else f"v{current.version} has no {metric} value",
        )
    client.set_registered_model_alias(name, CHAMPION, version)
    return result


def as_float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def champion_version(client: MlflowClient, name: str):
    """The ModelVersion holding `champion`, or None."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


# ------------------------------------------------------------------------------------------------
# Lookups
