"""Experiment manifests: one YAML file, many domain pairs (tasks), one search space.

The schema is typed (pydantic) and validated once, up front. Every problem is
reported with its field path and line (`tasks[1].train.crop_size (line 14): ...`),
unknown names get a did-you-mean, and nothing starts until the file is clean.
Reference: docs/manifest.md.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import re
import reprlib
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cyclegan.config import TrainConfig, option_problem
from cyclegan.errors import UserError
from cyclegan.metric_names import EPOCH_METRICS, EVAL_METRICS, base_metric
from cyclegan.metric_names import mode as metric_mode
from cyclegan.sources import DatasetRef, parse_reference
from orchestrator.config.aliases import ALIASES, expand_aliases, fields_of
from orchestrator.config.baseline import in_values
from orchestrator.config.resources import Resources
from orchestrator.search import ALGORITHMS, EXPLOITS_ONE_WORKER, SCHEDULERS, TABLES, AlgorithmField, SchedulerField

TRAIN_FIELDS = {f.name: f for f in fields(TrainConfig)}
# Set by the orchestrator itself, never by a manifest.
RESERVED_TRAIN_FIELDS = ("dataroot", "name", "checkpoints_dir", "continue_train")
DISTRIBUTIONS = ("choice", "grid", "uniform", "loguniform", "randint", "quniform")
KNOWN_METRICS = EVAL_METRICS + EPOCH_METRICS


class ManifestError(UserError):
    """A manifest with problems; the message lists every one of them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Search(_Strict):
    space: dict[str, Any] = Field(default_factory=dict, description="training option -> constant or distribution")
    num_samples: int = Field(1, ge=1, description="trials to sample (with grid: repeats of the whole grid); the baseline comes on top")
    algorithm: AlgorithmField = Field(default_factory=lambda: ALGORITHMS["random"].options(),
                                      description="a name, or {type: name, options...}: orchestrator.search")
    scheduler: SchedulerField = Field(default_factory=lambda: SCHEDULERS["none"].options(),
                                      description="a name, or {type: name, options...}: orchestrator.search")
    metric: str = Field("fid", description="the number that ranks trials (by their best epoch): fid, kid, psnr, ssim, l1, cycle_l1, loss_G ...")
    mode: Literal["min", "max"] | None = Field(None, description="min or max; implied by the metric when absent")
    max_concurrent_trials: int | None = Field(None, ge=1, description="trials of this task running at once (default: what fits)")
    max_failures: int = Field(2, ge=0, description="times a failed trial is retried from its last checkpoint")
    seed: int | None = Field(None, description="seed of the search algorithm")
    baseline: bool = Field(True, description="run the paper's values of the searched hyperparameters as the first trial")
    divergence_factor: float | None = Field(3.0, gt=1, description="a trial whose metric is this many times worse than the "
                                            "baseline's at the same epoch has diverged (null: only non-finite numbers)")
    time_budget_s: float | None = Field(None, gt=0, description="stop the task's sweep after this many seconds")
    max_failed_trials: int | None = Field(None, ge=1, description="stop the task's sweep once this many trials have failed")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        base = base_metric(value)
        if base not in KNOWN_METRICS and not base.startswith("loss_"):
            raise ValueError(f"unknown metric {value!r}{_did_you_mean(base, KNOWN_METRICS)}; use one of {', '.join(KNOWN_METRICS)}")
        return value

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


class Tracking(_Strict):
    uri: str | None = Field(None, description="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else a local sqlite store)")
    experiment: str | None = Field(None, description="MLflow experiment name (default: the manifest's name)")
    registry_prefix: str = Field("cyclegan-", description="registered models are named <prefix><task>")
    system_metrics: bool = Field(False, description="log MLflow's system metrics (CPU, memory, disk, network, GPU) on each trial's run")

    @field_validator("registry_prefix")
    @classmethod
    def _registrable_prefix(cls, value: str) -> str:
        if not _REGISTRY_PREFIX.fullmatch(value):
            bad = sorted({c for c in value if not _REGISTRY_PREFIX.fullmatch(c)})
            raise ValueError(f"{value!r}: MLflow model names cannot hold {' '.join(repr(c) for c in bad)}; "
                             "use letters, digits, '_', '.' and '-'")
        if value.startswith(".."):
            raise ValueError(f"{value!r}: MLflow refuses model names starting with '..'")
        return value

    @field_validator("experiment")
    @classmethod
    def _experiment_name(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or len(value) > MAX_EXPERIMENT_NAME or value != value.strip()):
            raise ValueError(f"MLflow experiment names are 1 to {MAX_EXPERIMENT_NAME} characters, "
                             "without leading or trailing spaces")
        return value


class Defaults(_Strict):
    train: dict[str, Any] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)


# Names become folder names (storage, checkpoints, results) and MLflow names.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NAME_LENGTH = 64


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(f"{_short(value)} is not a valid name: use letters, digits, '_', '.' and '-', starting with a letter or digit")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{_short(value)} is {len(value)} characters long; a name has at most {MAX_NAME_LENGTH} (it becomes a folder name)")
    return value


class Task(_Strict):
    name: str = Field(description="unique task name (letters, digits, _ . -)")
    data: str = Field(min_length=1, description="dataset reference: folder, s3://, archive or synthetic://")
    train: dict[str, Any] = Field(default_factory=dict)
    resources: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)

    _valid_name = field_validator("name")(classmethod(lambda cls, v: _check_name(v)))


class Manifest(_Strict):
    name: str = Field(description="the experiment's name")
    description: str = ""
    storage: str | None = Field(None, description="where trials checkpoint: a folder or s3://bucket/prefix (default ./runs)")
    max_concurrent_trials: int | None = Field(None, ge=1, description="trials running at once across all tasks "
                                              "(default: as many as the cluster holds)")
    tracking: Tracking = Field(default_factory=Tracking)
    defaults: Defaults = Field(default_factory=Defaults)
    search: Search = Field(default_factory=Search)
    tasks: list[Task] = Field(min_length=1)

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
                raise ValueError(f"tracking.registry_prefix + tasks[{i}].name: the registered model name {name[:40]!r}... "
                                 f"is {len(name)} characters; MLflow takes at most {MAX_MODEL_NAME}")
        return self


# ------------------------------------------------------------------------------------------------
# What the sweep needs per task, once everything is merged and checked


@dataclass
class TaskPlan:
    name: str
    data: str
    train: dict[str, Any]            # constant training options (defaults.train + task.train)
    space: dict[str, Any]            # searched options: name -> distribution dict (aliases kept)
    resources: Resources
    search: Search
    trial_count: int                 # exact for grid, else num_samples; the baseline included
    # The paper's values of the searched options (search-space names), None with `baseline: false`;
    # and whether it is a trial of its own (Tune's points_to_evaluate) or one the search runs anyway
    # (a grid point, or the only configuration of a space with nothing searched).
    baseline: dict[str, Any] | None = None
    baseline_added: bool = False
    # `data` parsed, once, where the manifest is loaded: the dataset checks take it as it is.
    dataset: DatasetRef | None = None

    @property
    def total_epochs(self) -> int:
        """Epochs of each trial: the constant lr ones and the decay ones."""
        return total_epochs(self.train)

    def trial_config(self, sampled: dict[str, Any]) -> dict[str, Any]:
        """Constant options + one sample of the space, aliases expanded: TrainConfig fields only."""
        return {**self.train, **train_options(sampled)}


def total_epochs(train: Mapping[str, Any]) -> int:
    """Epochs of a training with the options `train` (TrainConfig's defaults for those unset)."""
    return train.get("n_epochs", TrainConfig.n_epochs) + train.get("n_epochs_decay", TrainConfig.n_epochs_decay)


def train_options(sampled: Mapping[str, Any]) -> dict[str, Any]:
    """One sample of the search space as training options, with TrainConfig's names and types: what a
    trial trains with, and what MLflow records of it (its run, its task's run, the registry)."""
    values = {}
    for target, value in expand_aliases(sampled).items():
        # quniform samples whole numbers as floats (256.0); validation allows it only for whole q and bounds
        integral = str(TRAIN_FIELDS[target].type) == "int" and isinstance(value, float) and value.is_integer()
        values[target] = int(value) if integral else value
    return values


@dataclass
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}" if self.path else self.message


@dataclass
class LoadedManifest:
    path: Path
    manifest: Manifest
    plans: list[TaskPlan]
    sha256: str
    lines: dict[str, int] = field(default_factory=dict)


def _short(value: Any) -> str:
    """repr(value), cut short: values in messages may be huge or deeply nested."""
    return reprlib.repr(value)


def _did_you_mean(name: str, options) -> str:
    name, options = str(name), list(options)
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.6) or [o for o in options if name and o.startswith(name)][:1]
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Bounds on what a manifest may make us read and build (a YAML "billion laughs" of nested aliases
# is a few hundred bytes that expand to billions of nodes).
MAX_MANIFEST_BYTES = 1 << 20
MAX_NODES = 100_000  # YAML nodes, each alias counted as often as it is used


def _read_manifest(path: Path) -> str:
    """The manifest's text: a regular file (a FIFO or /dev/zero is never opened), bounded, UTF-8."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise ManifestError(f"{path}: cannot read the manifest: {kind}; a manifest is a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a short YAML file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise ManifestError(f"{path}: not UTF-8 text (byte {err.start}, line {line}); save the manifest as UTF-8") from None


def _yaml_tree(text: str, path: Path) -> tuple[dict[str, int], list[Problem]]:
    """Field path -> 1-based line, and the duplicate keys, from the YAML node tree (safe loader).

    Raises ManifestError when the tree, aliases expanded, has more than MAX_NODES nodes: the walk
    stops there, before anything is built from the document."""
    lines: dict[str, int] = {}
    duplicates: list[Problem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines, duplicates  # safe_load reports it, with its line
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from None
    stack, count = [(root, ())] if root is not None else [], 0
    while stack:
        node, loc = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ManifestError(f"{path}: more than {MAX_NODES} YAML values once its aliases (*name) are expanded; "
                                "a manifest is a short file (is it a YAML bomb?)")
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                sub = loc + (key.value if isinstance(key, yaml.ScalarNode) else "?",)
                line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in first:
                        duplicates.append(Problem(_path(sub), f"duplicate key (first at line {first[key.value]}); remove one", line))
                    first.setdefault(key.value, line)
                lines.setdefault(_path(sub), line)
                stack.append((value, sub))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(_path(loc + (i,)), item.start_mark.line + 1)
                stack.append((item, loc + (i,)))
    return lines, duplicates


# ------------------------------------------------------------------------------------------------
# Checks of training options and search distributions


def _check_train_value(name: str, value: Any) -> str | None:
    """None if `value` is a valid value for training option `name`, else why not."""
    target = fields_of(name)[0]
    if target not in TRAIN_FIELDS:
        return f"unknown training option{_did_you_mean(name, list(TRAIN_FIELDS) + list(ALIASES))}"
    if target in RESERVED_TRAIN_FIELDS:
        return "is set by the orchestrator; remove it"
    expected = TRAIN_FIELDS[target].type
    kinds = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}[str(expected)]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        return f"must be {'a number' if expected == 'float' else 'an integer' if expected == 'int' else 'a ' + str(expected)}, got {_short(value)}"
    problem = option_problem({**_BASE_TRAIN, **expand_aliases({name: value})}, sizes=False)
    return problem[1] if problem else None


# A configuration in which any single valid option value validates (sizes are checked in combination).
_BASE_TRAIN = {"load_size": 4096, "crop_size": 1}


def _check_distribution(name: str, spec: Any) -> list[str]:
    """Problems with one search-space entry (constants are checked as training values)."""
    if not isinstance(spec, dict):
        problem = _check_train_value(name, spec)
        return [problem] if problem else []
    if len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        keys = ", ".join(map(str, spec)) or "nothing"
        return [f"a distribution is one of {', '.join(DISTRIBUTIONS)} (got {keys}){_did_you_mean(str(next(iter(spec), '')), DISTRIBUTIONS)}"]
    kind, args = next(iter(spec.items()))
    if kind in ("choice", "grid"):
        if not isinstance(args, list) or not args:
            return [f"{kind}: must be a non-empty list of values"]
        return [f"{kind}[{i}]: {p}" for i, v in enumerate(args) if (p := _check_train_value(name, v))]
    arity = 3 if kind == "quniform" else 2
    if not isinstance(args, list) or len(args) != arity or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        return [f"{kind}: must be a list of {arity} numbers ({'[low, high, q]' if arity == 3 else '[low, high]'})"]
    if not all(math.isfinite(a) for a in args):
        return [f"{kind}: must be finite numbers, got {args}"]
    low, high = args[0], args[1]
    if not low < high:
        return [f"{kind}: low ({low}) must be below high ({high})"]
    if kind == "loguniform" and low <= 0:
        return [f"{kind}: bounds must be > 0"]
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        return [f"{kind}: bounds must be integers"]
    if kind == "quniform" and not args[2] > 0:
        return [f"{kind}: q ({args[2]}) must be > 0"]
    if kind == "quniform" and not _sampled_values(spec):
        return [f"{kind}: no multiple of q ({args[2]}) lies between {low} and {high}"]
    target = TRAIN_FIELDS.get(fields_of(name)[0])
    if target is not None and str(target.type) == "int" and (kind in ("uniform", "loguniform") or not all(float(a).is_integer() for a in args)):
        return [f"{kind}: {name} is a whole number, and this samples fractions; use randint, quniform with whole numbers, or choice"]
    return [f"{kind}: {p}" for v in (low, high) if (p := _check_train_value(name, v))]


def _sampled_values(spec: dict, limit: int = 1000) -> list | None:
    """The values a choice, grid, randint or quniform entry can give (at most `limit` of them, evenly
    spread), or None for the continuous ones. Ray's quniform gives the multiples of q within the bounds."""
    kind, args = next(iter(spec.items()))
    if kind in ("choice", "grid"):
        values = list(args)
    elif kind == "randint":  # the manifest's upper bound is inclusive
        values = range(args[0], args[1] + 1)
    elif kind == "quniform":
        low, high, q = args
        first, last = math.ceil(low / q), math.floor(high / q)
        values = [k * q for k in range(first, last + 1)] if last - first < 10 * limit else [k * q for k in (first, last)]
    else:
        return None
    step = max(1, len(values) // limit)
    return [values[i] for i in range(0, len(values), step)] + ([values[-1]] if len(values) > 1 and (len(values) - 1) % step else [])


def _grid_size(space: dict[str, Any]) -> int:
    sizes = [len(spec["grid"]) for spec in space.values() if isinstance(spec, dict) and "grid" in spec]
    return int(_product(sizes))


def _product(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


# ------------------------------------------------------------------------------------------------


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        merged = isinstance(value, dict) and isinstance(out.get(key), dict) and key != "space"
        if key in TABLES and merged and value.get("type", out[key].get("type")) != out[key].get("type"):
            merged = False  # another algorithm or scheduler: the base's options are not its options
        out[key] = _merge(out[key], value) if merged else value
    if "space" in override and "space" in base:
        out["space"] = {**base["space"], **override["space"]}
    return out


def _check_shared(manifest: Manifest, problems: list[Problem]) -> None:
    """Check defaults.train and the shared search space once, whatever becomes of the tasks."""
    for key, value in manifest.defaults.train.items():
        if problem := _check_train_value(key, value):
            problems.append(Problem(f"defaults.train.{key}", problem))
    for key, spec in manifest.search.space.items():
        problems += _space_problems("search.space", key, spec)


def _space_problems(where: str, key: str, spec: Any) -> list[Problem]:
    out = []
    for p in _check_distribution(key, spec):
        sub, sep, message = p.partition(": ")
        distribution = sep and re.match(rf"^({'|'.join(DISTRIBUTIONS)})(\[\d+\])?$", sub)
        out.append(Problem(f"{where}.{key}.{sub}", message) if distribution else Problem(f"{where}.{key}", p))
    return out


def _plan_task(index: int, task: Task, manifest: Manifest, problems: list[Problem]) -> TaskPlan | None:
    prefix = f"tasks[{index}]"
    start = len(problems)
    salvaged = not task.model_fields_set >= {"name", "data"}  # its name or data is invalid, and reported
    dataset = None
    if "data" in task.model_fields_set:
        dataset, problem = _parse_data_reference(task.data)
        if problem:
            problems.append(Problem(f"{prefix}.data", problem))
    train: dict[str, Any] = {}
    set_in: dict[str, str] = {}  # training option -> the field path that set it
    bad: set[str] = set()
    for source, values in (("defaults.train", manifest.defaults.train), (f"{prefix}.train", task.train)):
        for key, value in values.items():
            problem = _check_train_value(key, value)
            if problem:
                problems.append(Problem(f"{source}.{key}", problem))
            for target in fields_of(key):
                train[target] = value
                set_in[target] = f"{source}.{key}"
                (bad.add if problem else bad.discard)(target)
    try:
        resources = Resources(**{**manifest.defaults.resources.model_dump(), **task.resources})
    except ValidationError as err:
        problems += [Problem(_path((prefix, "resources", *e["loc"])), _message(e, Resources)) for e in err.errors()]
        resources = None
    try:
        search = Search(**_merge(manifest.search.model_dump(exclude_unset=True), task.search))
    except ValidationError as err:
        for e in err.errors():
            loc, options = _strategy_loc(e["loc"])
            problems.append(Problem(_path((prefix, "search", *loc)), _message(e, options or Search)))
        search = None
    if search is not None:
        where = f"{prefix}.search.space" if task.search.get("space") else "search.space"
        for key, spec in search.space.items():
            problems += _space_problems(where, key, spec)
        problems += _strategy_problems(prefix, task, search, train, resources)
        if base_metric(search.metric) in EVAL_METRICS and train.get("eval_freq", 1) != 1:
            problems.append(Problem(f"{prefix}.train.eval_freq" if "eval_freq" in task.train else "defaults.train.eval_freq",
                                    f"search.metric {search.metric} needs an evaluation every epoch: set eval_freq to 1 or leave it out"))
    if search is not None:
        where = f"{prefix}.search.space" if task.search.get("space") else "search.space"
        space_ok = {k: v for k, v in search.space.items() if not _space_problems(where, k, v)}
        problems += _combination_problems(prefix, {k: v for k, v in train.items() if k not in bad}, set_in, space_ok, where)
    if len(problems) > start or resources is None or search is None or salvaged:
        return None
    space = {k: v for k, v in search.space.items() if isinstance(v, dict)}
    train.update(expand_aliases({k: v for k, v in search.space.items() if not isinstance(v, dict)}))  # constants are just options
    if ALGORITHMS[search.algorithm.type].exhaustive:  # a choice in a grid search is a grid axis
        space = {k: ({"grid": v["choice"]} if "choice" in v else v) for k, v in space.items()}
    for key, (_, spec) in search.scheduler.searched().items():  # a trial's first value of a PBT mutation, as Tune samples it
        space.setdefault(key, {"choice": spec} if isinstance(spec, list) else spec)
    baseline = baseline_point(train, space) if search.baseline else None
    if baseline is not None and (problem := _baseline_problem(baseline, train, space, search)):
        problems.append(Problem(_search_field(prefix, task, "baseline"), problem))
        return None
    # A baseline the search runs anyway (a point of its grid, or the one configuration of an empty space) is not added.
    added = baseline is not None and not all("grid" in spec and in_values(baseline[k], spec["grid"]) for k, spec in space.items())
    count = search.num_samples * _grid_size(space) + int(added)
    return TaskPlan(task.name, task.data, train, space, resources, search, count, baseline, added, dataset)


def _search_field(prefix: str, task: Task, name: str) -> str:
    """The path of search field `name` as the user wrote it: the task's own, else the shared one."""
    return f"{prefix}.search.{name}" if name in task.search else f"search.{name}"


def _strategy_problems(prefix: str, task: Task, search: Search, train: dict[str, Any], resources: Resources | None) -> list[Problem]:
    """What the chosen algorithm and scheduler say of the space, the trial length, the workers and this Python."""
    out = []
    algorithm, scheduler = ALGORITHMS[search.algorithm.type], SCHEDULERS[search.scheduler.type]
    if algorithm.searcher and not scheduler.takes_searcher:
        out.append(Problem(_search_field(prefix, task, "algorithm"), f"scheduler {scheduler.name} cannot follow the suggestions of "
                           f"algorithm {algorithm.name}: use algorithm random or grid ({scheduler.name} explores by itself)"))
    if scheduler.exploits and resources is not None and resources.workers > 1:
        where = f"{prefix}.resources.workers" if "workers" in task.resources else "defaults.resources.workers"
        out.append(Problem(where, f"{resources.workers} workers with scheduler {scheduler.name} ({_search_field(prefix, task, 'scheduler')}): "
                                  f"{scheduler.name} runs trials of one worker only ({EXPLOITS_ONE_WORKER}); "
                                  "set workers: 1, or choose another scheduler"))
    ranges = [k for k, s in search.space.items() if isinstance(s, dict) and next(iter(s), None) not in ("choice", "grid")]
    if algorithm.exhaustive and ranges:
        out.append(Problem(_search_field(prefix, task, "algorithm"),
                           f"{algorithm.name} search cannot sample ranges ({', '.join(ranges)}); use grid/choice lists or algorithm random"))
    if not algorithm.takes_grid and any(isinstance(s, dict) and "grid" in s for s in search.space.values()):
        out.append(Problem(_search_field(prefix, task, "algorithm"), f"{algorithm.name} cannot take grid entries; use choice instead"))
    epochs = total_epochs(train)
    for name, options in (("algorithm", search.algorithm), ("scheduler", search.scheduler)):
        strategy = TABLES[name][options.type]
        field_path = _search_field(prefix, task, name)
        if missing := strategy.missing_dependency():
            out.append(Problem(field_path, f"{strategy.name} needs the Python package '{missing}', which is not installed here: "
                                           f"pip install {missing} (make setup installs it), or choose another {name}"))
        out += [Problem(f"{field_path}.{option}", message) for option, message in options.problems(epochs)]
        for key, (option, spec) in options.searched().items():
            out += _searched_problems(f"{field_path}.{option}", key, spec)
    return out


def _searched_problems(where: str, key: str, spec: Any) -> list[Problem]:
    """A scheduler's own search entry (e.g. a PBT mutation): a list of values, or a distribution other than grid."""
    if isinstance(spec, dict) and "grid" in spec:
        return [Problem(f"{where}.{key}.grid", "a scheduler's entries are not grid axes; use a list or choice")]
    if not isinstance(spec, (list, dict)):
        return [Problem(f"{where}.{key}", f"must be a list of values or a distribution ({', '.join(d for d in DISTRIBUTIONS if d != 'grid')}), "
                                          f"got {_short(spec)}")]
    if isinstance(spec, list):  # checked as a choice, reported at the list's own path
        return [Problem(p.path.replace(f"{where}.{key}.choice", f"{where}.{key}"), p.message)
                for p in _space_problems(where, key, {"choice": spec})]
    return _space_problems(where, key, spec)


def baseline_point(train: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The baseline's value of each searched option (search-space names): the task's own constant
    value if it sets one, else the paper's (TrainConfig's defaults are the paper's values)."""
    point = {}
    for name in space:
        target = fields_of(name)[0]
        point[name] = train.get(target, TRAIN_FIELDS[target].default)
    return point


def _baseline_problem(point: dict[str, Any], train: dict[str, Any], space: dict[str, Any], search: Search) -> str | None:
    """Why the baseline cannot run in this task: outside a space that the algorithm keeps to, or an
    invalid configuration (a paper's value that the task's other options cannot take)."""
    if ALGORITHMS[search.algorithm.type].baseline_in_space:
        outside = [f"{k}={point[k]!r} (the space has {_short(spec)})" for k, spec in space.items() if not _contains(spec, point[k])]
        if outside:
            return (f"the baseline's {', '.join(outside)} lies outside the search space, and {search.algorithm.type} only "
                    "evaluates points inside it: add the paper's value to the space, or set baseline: false")
    problem = option_problem({**train, **expand_aliases(point)})
    if problem:
        return (f"the baseline ({', '.join(f'{k}={v!r}' for k, v in point.items())}) is not a valid configuration of this task: "
                f"--{problem[0]}: {problem[1]}; set the option in the task's train, or baseline: false")
    return None


def _contains(spec: dict, value: Any) -> bool:
    kind, args = next(iter(spec.items()))
    if kind in ("choice", "grid"):
        return in_values(value, args)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return args[0] <= value <= args[1]


# Options the networks' size rules depend on: a search over them is checked combination by combination.
SIZE_OPTIONS = ("crop_size", "load_size", "preprocess", "netG", "netD", "n_layers_D")
MAX_COMBINATIONS = 2000


def _combination_problems(prefix: str, train: dict[str, Any], set_in: dict[str, str], space: dict[str, Any], where: str) -> list[Problem]:
    """What TrainConfig says of the options together (crop vs load size, sizes the networks cannot take),
    for the constant options and every combination of the searched size options."""
    constants = expand_aliases({k: v for k, v in space.items() if not isinstance(v, dict)})
    axes = {k: _sampled_values(v) for k, v in space.items() if isinstance(v, dict) and fields_of(k)[0] in SIZE_OPTIONS}
    axes = {k: v for k, v in axes.items() if v}
    combos = itertools.islice(itertools.product(*axes.values()), MAX_COMBINATIONS)
    for combo in combos:
        sampled = dict(zip(axes, combo))
        try:
            TrainConfig(**{**train, **constants, **sampled})
        except (UserError, TypeError, ValueError) as err:
            message = str(err)
            option = re.match(r"^--(\w+): ", message)
            name = option.group(1) if option else ""
            if name in axes or name in constants:
                path = f"{where}.{name}"
            else:
                path = set_in.get(name, f"{prefix}.train")
            detail = message[option.end():] if option else message
            chosen = f" (when the search picks {', '.join(f'{k}={v}' for k, v in sampled.items())})" if sampled else ""
            return [Problem(path, detail + chosen)]
    return []


def _parse_data_reference(ref: str) -> tuple[DatasetRef | None, str | None]:
    """A dataset reference parsed (scheme, bucket, archive suffix, synthetic kind and parameters), offline;
    or what is wrong with it."""
    try:
        return parse_reference(ref), None
    except UserError as err:
        return None, str(err).removeprefix(f"{ref.strip()}: ")


def _problem(error: dict) -> Problem:
    loc = error["loc"]
    if loc and loc[-1] == "[key]" or error["type"] == "invalid_key":  # a YAML key that is a number, a list...
        key = loc[-2] if loc[-1] == "[key]" else loc[-1]
        parent = loc[:-2] if loc[-1] == "[key]" else loc[:-1]
        return Problem(_path(parent), f"{_short(key)} is not a field name (keys are names, such as crop_size)")
    loc, options = _strategy_loc(loc)
    return Problem(_path(loc), _message(error, options or _model_for(loc)))


def _strategy_loc(loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """Pydantic puts the entry's name after `algorithm` / `scheduler` in an error's location
    (`scheduler.asha.grace_period`): drop it, and return that entry's options model."""
    for i, part in enumerate(loc[:-1]):
        name = loc[i + 1]
        if part in TABLES and isinstance(name, str) and name in TABLES[part]:
            return loc[:i + 1] + loc[i + 2:], TABLES[part][name].options
    return loc, None


def _message(error: dict, model: type[BaseModel]) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type") and error["loc"] and error["loc"][-1] in TABLES:
        field_name = error["loc"][-1]
        names = list(TABLES[field_name])
        if "tag" in ctx:
            return f"unknown {field_name} {ctx['tag']!r}{_did_you_mean(ctx['tag'], names)}; use one of {', '.join(names)}"
        return f"a name ({', '.join(names)}) or a mapping {{type: NAME, ...its options}}"
    if kind == "extra_forbidden":
        return f"unknown field{_did_you_mean(str(error['loc'][-1]), model.model_fields)}"
    if kind == "missing":
        return "is required"
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit  # "> 1", not "> 1.0"
        return f"must be {bounds[kind]} {limit}, got {_short(error['input'])}"
    if kind in ("string_too_short", "too_short"):
        return "must not be empty"
    return error["msg"].removeprefix("Value error, ")


def _model_for(loc: tuple) -> type[BaseModel]:
    models: dict[str, type[BaseModel]] = {"tracking": Tracking, "defaults": Defaults, "search": Search, "resources": Resources}
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
    for key, value in (values.items() if isinstance(values, dict) else ()):
        try:
            model(**{key: value})
            kept[key] = value
        except (ValidationError, TypeError):
            pass
    try:
        return model(**kept)
    except ValidationError:
        return model()


def _lenient(data: dict) -> Manifest:
    """The manifest with its invalid parts dropped, to list every problem in one go."""
    tasks = []
    for item in data.get("tasks") if isinstance(data.get("tasks"), list) else []:
        try:
            tasks.append(Task.model_validate(item))
        except ValidationError as err:  # keep its valid fields: the task's other problems are still found
            invalid = {e["loc"][0] for e in err.errors() if e["loc"]}
            kept = {k: v for k, v in item.items() if k not in invalid and k in Task.model_fields} if isinstance(item, dict) else {}
            tasks.append(Task.model_construct(**kept) if isinstance(item, dict) else None)
    return Manifest.model_construct(name=str(data.get("name")), tasks=tasks, tracking=_salvage(Tracking, data.get("tracking")),
                                    defaults=_salvage(Defaults, data.get("defaults")), search=_salvage(Search, data.get("search")))


def parse_manifest(text: str, path: Path | str = "<manifest>") -> LoadedManifest:
    """Validate a manifest; raise ManifestError listing every problem, or return the plans."""
    path = Path(path)
    if len(text) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a short YAML file")
    lines, duplicates = _yaml_tree(text, path)  # first: it bounds what safe_load may build
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ManifestError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest is a YAML mapping with at least 'name' and 'tasks'")
    problems: list[Problem] = list(duplicates)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        problems += [_problem(e) for e in err.errors()]
        manifest = _lenient(data)
    _check_shared(manifest, problems)
    plans = []
    for i, task in enumerate(manifest.tasks):
        plan = _plan_task(i, task, manifest, problems) if isinstance(task, Task) else None
        if plan:
            plans.append(plan)
    if problems:
        for p in problems:
            p.line = p.line or lines.get(p.path) or lines.get(re.sub(r"\[\d+\]$", "", p.path)) or lines.get(p.path.rsplit(".", 1)[0])
        unique = list(dict.fromkeys(str(p) for p in problems))
        raise ManifestError(f"{path}: {len(unique)} problem(s):\n  " + "\n  ".join(unique))
    return LoadedManifest(path, manifest, plans, hashlib.sha256(text.encode()).hexdigest(), lines)


def load_manifest(path: str | Path) -> LoadedManifest:
    path = Path(path)
    return parse_manifest(_read_manifest(path), path)


def grid_points(space: dict[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the grid axes (for --dry-run listings)."""
    axes = {k: v["grid"] for k, v in space.items() if "grid" in v}
    keys = list(axes)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(axes[k] for k in keys))] if keys else [{}]
