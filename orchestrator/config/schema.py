"""The manifest's schema: pydantic models, one description per field (docs/manifest.md is their
reference).

Each model checks what it can alone (names, bounds, known metrics, MLflow's limits on names); what
depends on several sections (a task's merged options, its search space, its scheduler) is checked
when each task is planned (orchestrator.config.plan).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cyclegan.metric_names import EPOCH_METRICS, EVAL_METRICS, base_metric
from cyclegan.metric_names import mode as metric_mode
from orchestrator.config.delivery import Deliver
from orchestrator.config.problems import did_you_mean, short
from orchestrator.config.resources import Resources
from orchestrator.search import ALGORITHMS, SCHEDULERS, AlgorithmField, SchedulerField

KNOWN_METRICS = EVAL_METRICS + EPOCH_METRICS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _known(value: str) -> str:
    base = base_metric(value)
    if base not in KNOWN_METRICS and not base.startswith("loss_"):
        raise ValueError(
            f"unknown metric {value!r}{did_you_mean(base, KNOWN_METRICS)}; use one of "
            f"{', '.join(KNOWN_METRICS)}"
        )
    return value


class Constraint(_Strict):
    """A condition the best trial must meet besides ranking first (orchestrator.sweep.constraints):
    its `metric`, at the epoch that ranks it, at most `max`, at least `min`, or at most
    `baseline_factor` times worse than the baseline trial's."""

    metric: str = Field(description="the constrained metric, e.g. dino_struct")
    max: float | None = Field(None, description="the metric's largest allowed value")
    min: float | None = Field(None, description="the metric's smallest allowed value")
    baseline_factor: float | None = Field(
        None,
        ge=1,
        description="at most this many times worse than the baseline's value (1.2: within 20%)",
    )

    _known_metric = field_validator("metric")(classmethod(lambda cls, v: _known(v)))

    @model_validator(mode="after")
    def _one_bound(self) -> Constraint:
        if sum(v is not None for v in (self.max, self.min, self.baseline_factor)) != 1:
            raise ValueError("give exactly one of max, min, baseline_factor")
        return self


class Search(_Strict):
    space: dict[str, Any] = Field(
        default_factory=dict, description="training option -> constant or distribution"
    )
    num_samples: int = Field(
        1,
        ge=1,
        description=(
            "trials to sample (with grid: repeats of the whole grid); the baseline comes on top; "
            "no configuration runs twice (a smaller discrete space runs each point once)"
        ),
    )
    algorithm: AlgorithmField = Field(
        default_factory=lambda: ALGORITHMS["random"].options(),
        description="a name, or {type: name, options...}: orchestrator.search",
    )
    scheduler: SchedulerField = Field(
        default_factory=lambda: SCHEDULERS["none"].options(),
        description="a name, or {type: name, options...}: orchestrator.search",
    )
    metric: str = Field(
        "fid",
        description=(
            "the number that ranks trials (by their best epoch): fid, kid, psnr, ssim, l1, "
            "cycle_l1, loss_G ..."
        ),
    )
    mode: Literal["min", "max"] | None = Field(
        None, description="min or max; implied by the metric when absent"
    )
    repeats: int = Field(
        1,
        ge=1,
        description=(
            "train each configuration with this many seeds (the training seed, seed + 1 ...) and "
            "rank configurations by their mean, its interval covering the seeds' spread"
        ),
    )
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="trials of this task running at once (default: what fits)"
    )
    max_failures: int = Field(
        2, ge=0, description="times a failed trial is retried from its last checkpoint"
    )
    seed: int | None = Field(None, description="seed of the search algorithm")
    baseline: bool = Field(
        True,
        description="run the paper's values of the searched hyperparameters as the first trial",
    )
    divergence_factor: float | None = Field(
        3.0,
        gt=1,
        description="a trial whose metric is this many times worse than the "
        "baseline's at the same epoch has diverged (null: only non-finite numbers)",
    )
    time_budget_s: float | None = Field(
        None, gt=0, description="stop the task's sweep after this many seconds"
    )
    max_failed_trials: int | None = Field(
        None, ge=1, description="stop the task's sweep once this many trials have failed"
    )
    allow_failed_trials: bool = Field(
        False,
        description="a trial of this task that failed for good does not make the run exit 1",
    )

    constraints: list[Constraint] = Field(
        default_factory=list,
        description="conditions the best trial must meet, e.g. "
        "{metric: dino_struct, baseline_factor: 1.2}: orchestrator.sweep.constraints",
    )

    _known_metric = field_validator("metric")(classmethod(lambda cls, v: _known(v)))

    @property
    def resolved_mode(self) -> str:
        if self.mode:
            return self.mode
        return metric_mode(self.metric)


# What MLflow 3.17 refuses (mlflow/utils/validation.py, its SQL schema): registered model names with
# '/' or ':', names that a path normalisation would change or that start with '..', longer than 256
# characters; experiment names that are empty or longer than 500. The prefix also keeps to the
# characters of task names, so `models:/<prefix><task>@champion` and the registry's filters work.
_REGISTRY_PREFIX = re.compile(r"[A-Za-z0-9_.-]*")
MAX_MODEL_NAME = 256
MAX_EXPERIMENT_NAME = 500


# When `champion` moves to a task's new best (orchestrator.tracking.promotion).
PromoteRule = Literal["significant", "better", "always"]


class Tracking(_Strict):
    uri: str | None = Field(
        None,
        description=(
            "MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else a local sqlite store)"
        ),
    )
    experiment: str | None = Field(
        None, description="MLflow experiment name (default: the manifest's name)"
    )
    registry_prefix: str = Field(
        "cyclegan-", description="registered models are named <prefix><task>"
    )
    system_metrics: bool = Field(
        False,
        description=(
            "log MLflow's system metrics (CPU, memory, disk, network, GPU) on each trial's run"
        ),
    )
    promote: PromoteRule = Field(
        "significant",
        description=(
            "when `champion` moves to a task's new best, which must also beat the untranslated "
            "inputs: significant (the 95% interval of its improvement over the champion, same "
            "test images and protocol, excludes zero), better (any improvement), always"
        ),
    )

    @field_validator("registry_prefix")
    @classmethod
    def _registrable_prefix(cls, value: str) -> str:
        if not _REGISTRY_PREFIX.fullmatch(value):
            bad = sorted({c for c in value if not _REGISTRY_PREFIX.fullmatch(c)})
            raise ValueError(
                f"{value!r}: MLflow model names cannot hold {' '.join(repr(c) for c in bad)}; "
                "use letters, digits, '_', '.' and '-'"
            )
        if value.startswith(".."):
            raise ValueError(f"{value!r}: MLflow refuses model names starting with '..'")
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        if value is not None and (
            not value.strip() or len(value) > MAX_EXPERIMENT_NAME or value != value.strip()
        ):
            raise ValueError(
                f"MLflow experiment names are 1 to {MAX_EXPERIMENT_NAME} characters, "
                "without leading or trailing spaces"
            )
        return value


class Defaults(_Strict):
    train: dict[str, Any] = Field(
        default_factory=dict,
        description="training options of every task (TrainConfig fields or aliases)",
    )
    resources: Resources = Field(
        default_factory=Resources, description="what each trial of every task gets"
    )


# Names become folder names (storage, checkpoints, results) and MLflow names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 64


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{short(value)} is not a valid name: use letters, digits, '_', '.' and '-', starting "
            f"with a letter or digit"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"{short(value)} is {len(value)} characters long; a name has at most {MAX_NAME_LENGTH} "
            f"(it becomes a folder name)"
        )
    return value


class Task(_Strict):
    name: str = Field(description="unique task name (letters, digits, _ . -)")
    data: str = Field(
        min_length=1, description="dataset reference: folder, s3://, archive or synthetic://"
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="the task's training options, over defaults.train"
    )
    resources: dict[str, Any] = Field(
        default_factory=dict, description="the task's resources, over defaults.resources"
    )
    search: dict[str, Any] = Field(
        default_factory=dict,
        description="the task's search settings, merged into the shared search",
    )
    deliver: Deliver | None = Field(
        None,
        description="images the task's champion translates at the end of each job: "
        "{input, output, direction, format, workers, gpus_per_worker, batch_size}",
    )

    _valid_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))


class Manifest(_Strict):
    name: str = Field(description="the experiment's name")
    description: str = Field("", description="free text about the experiment")
    storage: str | None = Field(
        None, description="where trials checkpoint: a folder or s3://bucket/prefix (default ./runs)"
    )
    max_concurrent_trials: int | None = Field(
        None,
        ge=1,
        description="trials running at once across all tasks "
        "(default: as many as the cluster holds)",
    )
    tracking: Tracking = Field(
        default_factory=Tracking, description="where and how MLflow records the sweep"
    )
    defaults: Defaults = Field(default_factory=Defaults, description="what every task starts from")
    search: Search = Field(default_factory=Search, description="the search shared by the tasks")
    tasks: list[Task] = Field(min_length=1, description="the domain pairs, each swept on its own")

    _valid_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks: list[Task]) -> list[Task]:
        seen = set()
        for task in tasks:
            if task.name in seen:
                raise ValueError(f"task name {task.name!r} is used twice")
            seen.add(task.name)
        return tasks

    @model_validator(mode="after")
    def _model_names_fit(self) -> Manifest:
        for i, task in enumerate(self.tasks):
            name = f"{self.tracking.registry_prefix}{task.name}"
            if len(name) > MAX_MODEL_NAME:
                raise ValueError(
                    f"tracking.registry_prefix + tasks[{i}].name: the registered model name "
                    f"{name[:40]!r}... "
                    f"is {len(name)} characters; MLflow takes at most {MAX_MODEL_NAME}"
                )
        return self


def model_at(loc: tuple) -> type[BaseModel]:
    """The model whose fields hold the last name of an error's location `loc`."""
    models: dict[str, type[BaseModel]] = {
        "tracking": Tracking,
        "defaults": Defaults,
        "search": Search,
        "resources": Resources,
    }
    named = [p for p in loc[:-1] if isinstance(p, str)]
    if named and named[-1] in models:
        return models[named[-1]]
    if named and named[-1] == "tasks":
        return Task
    return Manifest


def _salvage(model: type[BaseModel], values: Any) -> BaseModel:
    """`model` built from the fields of `values` that are valid on their own (the invalid ones
    are already reported), so that checks depending on the valid ones still run."""
    kept = {}
    for key, value in values.items() if isinstance(values, dict) else ():
        try:
            model(**{key: value})
            kept[key] = value
        except (ValidationError, TypeError):
            pass
    try:
        return model(**kept)
    except ValidationError:
        return model()


def lenient_manifest(data: dict) -> Manifest:
    """The manifest with its invalid parts dropped, to list every problem in one go."""
    tasks = []
    for item in data.get("tasks") if isinstance(data.get("tasks"), list) else []:
        try:
            tasks.append(Task.model_validate(item))
        except (
            ValidationError
        ) as err:  # keep its valid fields: the task's other problems are still found
            invalid = {e["loc"][0] for e in err.errors() if e["loc"]}
            kept = (
                {k: v for k, v in item.items() if k not in invalid and k in Task.model_fields}
                if isinstance(item, dict)
                else {}
            )
            tasks.append(Task.model_construct(**kept) if isinstance(item, dict) else None)
    return Manifest.model_construct(
        name=str(data.get("name")),
        tasks=tasks,
        tracking=_salvage(Tracking, data.get("tracking")),
        defaults=_salvage(Defaults, data.get("defaults")),
        search=_salvage(Search, data.get("search")),
    )
