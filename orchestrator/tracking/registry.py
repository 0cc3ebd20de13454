"""The model registry: the best generators of each task as versions of `<prefix><task>`.

`register_best` logs the best trial's two generators as one pyfunc model (see
pyfunc_model.py for its input/output contract) with their evaluation's evidence, registers it
as a new version, tags the version with its metric and interval, protocol, hyperparameters, run
and dataset, and moves the alias `champion` to it when the promotion rule says so
(orchestrator.tracking.promotion: it must beat the untranslated inputs and, by the manifest's
`tracking.promote`, the champion).
The lookups behind `python -m orchestrator models` are orchestrator.tracking.models.
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput
from mlflow.exceptions import MlflowException

import orchestrator.tracking.pyfunc_model as pyfunc_model
from cyclegan.errors import UserError
from cyclegan.run_files import EVALUATION_FILE, UNTRANSLATED_FILE
from cyclegan.scores import Difference, Scores
from orchestrator.redact import MAX_TAG_VALUE, mask_value
from orchestrator.tracking.client import reported_as
from orchestrator.tracking.mlflow_internals import using_uri
from orchestrator.tracking.model_links import describe_registered_model, link_model_metrics
from orchestrator.tracking.model_package import (
    GENERATOR_FILES,
    checkpoint_files,
    input_example,
    pip_requirements,
    signature,
    zip_package,
)
from orchestrator.tracking.naming import param_string
from orchestrator.tracking.promotion import DEFAULT_RULE, Challenger, Champion, Decision, decide
from orchestrator.tracking.pyfunc_model import generator_config
from orchestrator.tracking.runs import SEARCHED_AS_TAG

log = logging.getLogger(__name__)

CHAMPION = "champion"
DEFAULT_PREFIX = "cyclegan-"
MODEL_NAME = "generators"  # the logged model's name inside the trial's run
HP_PREFIX = (
    "hp."  # a version's hyperparameter tags: hp.<TrainConfig field> (orchestrator.config.aliases)
)
EVIDENCE = "evaluation"  # the model's artifact holding its evaluation.npz (cyclegan.scores)


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
    interval: tuple[float, float] | None = None  # the value's 95 % interval
    improvement: Difference | None = None  # over the previous champion, same images and protocol
    over_untranslated: Difference | None = None

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


def register_best(
    uri: str,
    candidate: Candidate,
    prefix: str = DEFAULT_PREFIX,
    promote: str = DEFAULT_RULE,
    reevaluate=None,
) -> Registration:
    """Log the candidate's generators as a pyfunc model in its run, register them as a new version
    of `<prefix><task>` and move `champion` to it if the promotion rule says so. MLflow's errors
    come as a TrackingError.

    Args:
        uri: the tracking and registry URI.
        candidate: the task's best trial (its checkpoint folder may hold the evidence files).
        prefix: registered models are named `<prefix><task>`.
        promote: the rule (orchestrator.tracking.promotion): significant, better or always.
        reevaluate: `reevaluate(version)` -> that champion's Scores under the candidate's
            protocol, for a champion evaluated under another one (None: such a champion is not
            compared, and keeps the alias).
    """
    with reported_as():
        return _register(uri, candidate, prefix, promote, reevaluate)


def _load_scores(path: Path) -> Scores | None:
    try:
        return Scores.load(path) if path.is_file() else None
    except ValueError as err:
        log.warning("%s; the promotion goes without it", err)
        return None


def _register(
    uri: str, candidate: Candidate, prefix: str, promote: str, reevaluate
) -> Registration:
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
        folder, logged_config = checkpoint_files(
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
        challenger = Challenger(
            metric,
            mode,
            float(value),
            _load_scores(folder / EVALUATION_FILE),
            _load_scores(folder / UNTRANSLATED_FILE),
        )
        if challenger.scores is not None:
            artifacts[EVIDENCE] = str(folder / EVALUATION_FILE)
        version_tags = _version_tags(
            task,
            run,
            metric,
            value,
            mode,
            candidate.hyperparameters,
            candidate.dataset,
            {**_evidence_tags(challenger), **candidate.tags},
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
                pip_requirements=pip_requirements(),
            )
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=candidate.step)])
            link_model_metrics(client, logged.model_id, run, challenger, candidate.step)
            version = mlflow.register_model(info.model_uri, name, tags=version_tags).version
    client.set_registered_model_tag(name, "task", task)
    describe_registered_model(client, name, task, metric, mode)
    client.update_model_version(
        name, str(version), description=_description(version_tags, candidate.step)
    )
    champion = _champion(client, uri, name, str(version))
    decision = decide(promote, challenger, champion, reevaluate)
    if decision.promote:
        client.set_registered_model_alias(name, CHAMPION, str(version))
    result = _registration(name, str(version), challenger, champion, decision)
    for key, tag in {**_decision_tags(decision), "champion_decision": decision.reason}.items():
        client.set_model_version_tag(name, str(version), key, tag[:MAX_TAG_VALUE])
    log.info("%s", result.summary())
    return result


def _registration(
    name: str, version: str, challenger: Challenger, champion: Champion | None, decision: Decision
) -> Registration:
    scores = challenger.scores
    return Registration(
        name,
        version,
        challenger.metric,
        challenger.mode,
        challenger.value,
        champion=decision.promote,
        previous_champion=champion.version if champion else None,
        previous_value=champion.value if champion else None,
        reason=decision.reason,
        interval=scores.interval(challenger.metric) if scores else None,
        improvement=decision.improvement,
        over_untranslated=decision.over_untranslated,
    )


def _evidence_tags(challenger: Challenger) -> dict[str, str]:
    """The value's interval, the protocol, and the untranslated inputs' value under it."""
    scores, nothing, metric = challenger.scores, challenger.untranslated, challenger.metric
    if scores is None:
        return {}
    low, high = scores.interval(metric)
    tags = {"metric_ci_low": repr(low), "metric_ci_high": repr(high), "protocol": scores.protocol}
    if nothing is not None and nothing.comparable(scores) is None:
        tags["untranslated_value"] = repr(nothing.value(metric))
    return tags


def _decision_tags(decision: Decision) -> dict[str, str]:
    tags = {}
    for prefix, difference in (
        ("improvement", decision.improvement),
        ("over_untranslated", decision.over_untranslated),
    ):
        if difference is not None:
            tags[prefix] = repr(difference.estimate)
            tags[f"{prefix}_ci_low"] = repr(difference.low)
            tags[f"{prefix}_ci_high"] = repr(difference.high)
    return tags


def _champion(client: MlflowClient, uri: str, name: str, version: str) -> Champion | None:
    """The current champion (None when there is none, or it is `version` itself) with the
    evaluation evidence it was registered with, if any."""
    current = champion_version(client, name)
    if current is None or current.version == version:
        return None
    tags, scores = current.tags, None
    # Only versions registered with their evidence carry a protocol; asking a server for a file a
    # version lacks could hang (mlflow 3.17 with S3 artifacts), so the others are not asked.
    if tags.get("protocol"):
        with tempfile.TemporaryDirectory(prefix="cyclegan-champion-") as tmp:
            try:
                with using_uri(uri):
                    path = mlflow.artifacts.download_artifacts(
                        artifact_uri=f"models:/{name}/{current.version}/artifacts/{EVALUATION_FILE}",
                        dst_path=tmp,
                    )
                scores = _load_scores(Path(path))
            except (MlflowException, OSError):  # its evidence could not be read: none
                scores = None
    return Champion(
        current.version,
        tags.get("metric"),
        tags.get("mode"),
        as_float(tags.get("metric_value")),
        scores,
    )


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
        **{f"{HP_PREFIX}{k}": param_string(v) for k, v in hyperparameters.items()},
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
    interval = (
        f" [95% interval {float(tags['metric_ci_low']):.4g}, {float(tags['metric_ci_high']):.4g}]"
        if "metric_ci_low" in tags
        else ""
    )
    reference = (
        f" The untranslated test images score {float(tags['untranslated_value']):.4g}."
        if "untranslated_value" in tags
        else ""
    )
    text = (
        f"Trial {tags.get('trial')} of task {tags['task']} (run {tags['run_id']}): "
        f"{tags['metric']}={float(tags['metric_value']):.4g}{interval} "
        f"({tags['mode']}) at epoch {epoch}.{reference} Hyperparameters: "
        f"{hyperparameters or 'the task as it is'}."
    )
    protocol = f" Evaluation protocol: {tags['protocol']}." if tags.get("protocol") else ""
    searched = f" Searched as: {tags[SEARCHED_AS_TAG]}." if tags.get(SEARCHED_AS_TAG) else ""
    return text + searched + protocol


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


def version_generators(uri: str, name: str, version: str) -> tuple[dict[str, bytes], dict]:
    """A registered version's two generator files (by network: G_A, G_B) and how to build them
    (its generators.json)."""
    files = {}
    with reported_as(), tempfile.TemporaryDirectory(prefix="cyclegan-version-") as tmp:
        with using_uri(uri):
            for net, file_name in {**GENERATOR_FILES, "config": "generators.json"}.items():
                path = mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}/artifacts/{file_name}", dst_path=tmp
                )
                files[net] = Path(path).read_bytes()
    return {k: v for k, v in files.items() if k != "config"}, json.loads(files["config"])
