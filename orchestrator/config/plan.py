"""Experiment manifests: one YAML file, many domain pairs (tasks), one search space, planned once.

`parse_manifest` validates everything up front: every problem is reported with its field path and
line (`tasks[1].train.crop_size (line 14): ...`), unknown names get a did-you-mean, and nothing
starts until the file is clean. What comes out is one `TaskPlan` per task: its constant options as a
TrainConfig (validated here, once), its search space, resources and search settings.
`TaskPlan.trial_config` is the one place a sampled point becomes a trial's TrainConfig.
Reference: docs/manifest.md.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cyclegan.config import TrainConfig, eval_metric_list, option_problem
from cyclegan.errors import UserError
from cyclegan.metric_names import EVAL_METRICS, base_metric
from cyclegan.sources import DatasetRef, parse_reference
from orchestrator.config.aliases import expand_aliases, fields_of
from orchestrator.config.baseline import in_values
from orchestrator.config.delivery import Deliver
from orchestrator.config.options import TRAIN_FIELDS, check_train_value, train_options
from orchestrator.config.problems import ManifestError, Problem, Wording, field_path, short
from orchestrator.config.resources import Resources
from orchestrator.config.schema import Manifest, Search, Task, lenient_manifest, model_at
from orchestrator.config.sizes import combined_config
from orchestrator.config.source import parse_yaml, read_manifest
from orchestrator.config.space import (
    Distribution,
    distinct_configurations,
    grid_size,
    space_problems,
)
from orchestrator.config.strategy_checks import search_field, strategy_problems
from orchestrator.search import ALGORITHMS, SCHEDULERS, TABLES

WORDING = Wording(TABLES, model_at)


@dataclass
class TaskPlan:
    """What the sweep needs of one task, once everything is merged and checked."""

    name: str
    data: str
    # The constant options (defaults.train + task.train + the space's constants), dataroot = data;
    # a searched option holds a placeholder here (its default, or the first combination of the
    # searched size options), which each trial's sample replaces.
    base: TrainConfig
    space: dict[str, Any]  # searched options: name -> distribution dict (aliases kept)
    resources: Resources
    search: Search
    # num_samples (times the grid's size) and the baseline, at most `distinct`: no configuration
    # runs twice; times search.repeats (each configuration's seeds)
    trial_count: int
    # The paper's values of the searched options (search-space names), None with `baseline: false`;
    # and whether it is a trial of its own (Tune's points_to_evaluate) or one the search runs anyway
    # (a grid point, or the only configuration of a space with nothing searched).
    baseline: dict[str, Any] | None = None
    baseline_added: bool = False
    # `data` parsed, once, where the manifest is loaded: the dataset checks take it as it is.
    dataset: DatasetRef | None = None
    set_fields: tuple[str, ...] = ()  # the TrainConfig fields the manifest sets, in its order
    distinct: int | None = None  # the different trials it can run (None: a continuous space)
    deliver: Deliver | None = None  # what the champion translates at the end of each job

    @property
    def asked(self) -> int:
        """The trials the manifest asks for: num_samples (times the grid's size), the baseline,
        each `repeats` times."""
        configurations = self.search.num_samples * grid_size(self.space) + int(self.baseline_added)
        return configurations * self.search.repeats

    @property
    def configurations(self) -> int:
        """The different configurations it runs (each as `search.repeats` trials)."""
        return self.trial_count // self.search.repeats

    @property
    def capped(self) -> str | None:
        """One line when the space holds fewer configurations than the trials asked, else None."""
        if self.trial_count >= self.asked:
            return None
        grid = grid_size(self.space)
        asked = f"num_samples {self.search.num_samples}" + (
            f" x {grid} grid points" if grid > 1 else ""
        )
        if self.baseline_added:
            asked += " + the baseline"
        return (
            f"task {self.name}: only {self.distinct} different configuration(s) to run, fewer "
            f"than the {self.asked} trials asked ({asked}): each runs once, "
            f"{self.trial_count} trial(s)"
        )

    @property
    def train(self) -> dict[str, Any]:
        """The constant options the manifest sets (what MLflow records of the task), by TrainConfig
        field."""
        return {name: getattr(self.base, name) for name in self.set_fields}

    @property
    def exploits(self) -> bool:
        """Whether the task's trials continue from each other's checkpoints (pbt, pb2:
        orchestrator.search.schedulers)."""
        return SCHEDULERS[self.search.scheduler.type].exploits

    @property
    def total_epochs(self) -> int:
        """Epochs of each trial: the constant lr ones and the decay ones."""
        return self.base.total_epochs

    def trial_config(self, sampled: Mapping[str, Any], trial_id: str) -> TrainConfig:
        """The TrainConfig of trial `trial_id`: the constant options, one sample of the space
        (aliases expanded, TrainConfig's types), what the task's metric and scheduler need, the
        trial's name. The one place a sample becomes a configuration, checked once."""
        from orchestrator.storage.location import trial_run_name

        values = train_options(sampled)
        values.update(self._evaluation_options())
        values.update(
            self._checkpoint_options(values.get("save_epoch_freq", self.base.save_epoch_freq))
        )
        return self.base.replace(**values, name=trial_run_name(self.name, trial_id))

    @property
    def evaluated_metrics(self) -> list[str]:
        """The test-split metrics each trial evaluates (the manifest's and what ranking needs)."""
        chosen = self._evaluation_options().get("eval_metrics", self.base.eval_metrics)
        return eval_metric_list(chosen)

    def _evaluation_options(self) -> dict[str, Any]:
        """An evaluation metric is only reported when the test split is evaluated: with one as the
        task's metric (or a constraint's), evaluate every epoch, including those metrics."""
        wanted = [self.search.metric, *(c.metric for c in self.search.constraints)]
        wanted = [base_metric(m) for m in wanted if base_metric(m) in EVAL_METRICS]
        if not wanted:
            return {}
        metrics = eval_metric_list(
            self.base.eval_metrics if "eval_metrics" in self.set_fields else ""
        )
        metrics += [m for m in dict.fromkeys(wanted) if m not in metrics]
        return {"eval_freq": 1, "eval_metrics": ",".join(metrics)}

    def _checkpoint_options(self, save_epoch_freq: int) -> dict[str, Any]:
        """A scheduler that exploits (PBT) looks every perturbation_interval epochs: a checkpoint at
        each of its multiples, with the task's own checkpoint epochs kept."""
        if not self.exploits:
            return {}
        return {
            "save_epoch_freq": math.gcd(
                self.search.scheduler.perturbation_interval, save_epoch_freq
            )
        }


@dataclass
class LoadedManifest:
    path: Path
    manifest: Manifest
    plans: list[TaskPlan]
    sha256: str
    lines: dict[str, int] = field(default_factory=dict)


def parse_manifest(text: str, path: Path | str = "<manifest>") -> LoadedManifest:
    """Validate a manifest; raise ManifestError listing every problem, or return the plans."""
    path = Path(path)
    data, lines, duplicates = parse_yaml(text, path)
    problems: list[Problem] = list(duplicates)
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        problems += [WORDING.problem(e) for e in err.errors()]
        manifest = lenient_manifest(data)
    _check_shared(manifest, problems)
    plans = []
    for i, task in enumerate(manifest.tasks):
        plan = _plan_task(i, task, manifest, problems) if isinstance(task, Task) else None
        if plan:
            plans.append(plan)
    if problems:
        for p in problems:
            p.line = (
                p.line
                or lines.get(p.path)
                or lines.get(re.sub(r"\[\d+\]$", "", p.path))
                or lines.get(p.path.rsplit(".", 1)[0])
            )
        unique = list(dict.fromkeys(str(p) for p in problems))
        raise ManifestError(f"{path}: {len(unique)} problem(s):\n  " + "\n  ".join(unique))
    return LoadedManifest(path, manifest, plans, hashlib.sha256(text.encode()).hexdigest(), lines)


def load_manifest(path: str | Path) -> LoadedManifest:
    path = Path(path)
    return parse_manifest(read_manifest(path), path)


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        merged = isinstance(value, dict) and isinstance(out.get(key), dict) and key != "space"
        if (
            key in TABLES
            and merged
            and value.get("type", out[key].get("type")) != out[key].get("type")
        ):
            merged = False  # another algorithm or scheduler: the base's options are not its options
        out[key] = _merge(out[key], value) if merged else value
    if "space" in override and "space" in base:
        out["space"] = {**base["space"], **override["space"]}
    return out


def _check_shared(manifest: Manifest, problems: list[Problem]) -> None:
    """Check defaults.train and the shared search space once, whatever becomes of the tasks."""
    for key, value in manifest.defaults.train.items():
        if problem := check_train_value(key, value):
            problems.append(Problem(f"defaults.train.{key}", problem))
    for key, spec in manifest.search.space.items():
        problems += space_problems("search.space", key, spec)


def _plan_task(
    index: int, task: Task, manifest: Manifest, problems: list[Problem]
) -> TaskPlan | None:
    prefix = f"tasks[{index}]"
    start = len(problems)
    salvaged = not task.model_fields_set >= {
        "name",
        "data",
    }  # its name or data is invalid, and reported
    dataset = None
    if "data" in task.model_fields_set:
        dataset, problem = _parse_data_reference(task.data)
        if problem:
            problems.append(Problem(f"{prefix}.data", problem))
    train: dict[str, Any] = {}
    set_in: dict[str, str] = {}  # training option -> the field path that set it
    bad: set[str] = set()
    for source, values in (
        ("defaults.train", manifest.defaults.train),
        (f"{prefix}.train", task.train),
    ):
        for key, value in values.items():
            problem = check_train_value(key, value)
            if problem:
                problems.append(Problem(f"{source}.{key}", problem))
            for target in fields_of(key):
                train[target] = value
                set_in[target] = f"{source}.{key}"
                (bad.add if problem else bad.discard)(target)
    try:
        resources = Resources(**{**manifest.defaults.resources.model_dump(), **task.resources})
    except ValidationError as err:
        problems += [
            Problem(field_path((prefix, "resources", *e["loc"])), WORDING.message(e, Resources))
            for e in err.errors()
        ]
        resources = None
    try:
        search = Search(**_merge(manifest.search.model_dump(exclude_unset=True), task.search))
    except ValidationError as err:
        for e in err.errors():
            loc, options = WORDING.strategy_loc(e["loc"])
            problems.append(
                Problem(field_path((prefix, "search", *loc)), WORDING.message(e, options or Search))
            )
        search = None
    base = None
    if search is not None:
        where = f"{prefix}.search.space" if task.search.get("space") else "search.space"
        for key, spec in search.space.items():
            problems += space_problems(where, key, spec)
        problems += strategy_problems(prefix, task, search, train, resources)
        if base_metric(search.metric) in EVAL_METRICS and train.get("eval_freq", 1) != 1:
            problems.append(
                Problem(
                    f"{prefix}.train.eval_freq"
                    if "eval_freq" in task.train
                    else "defaults.train.eval_freq",
                    f"search.metric {search.metric} needs an evaluation every epoch: set eval_freq "
                    f"to 1 or leave it out",
                )
            )
        space_ok = {k: v for k, v in search.space.items() if not space_problems(where, k, v)}
        valid = {k: v for k, v in train.items() if k not in bad}
        data = {"dataroot": task.data} if "data" in task.model_fields_set else {}
        base, found = combined_config(prefix, {**valid, **data}, set_in, space_ok, where)
        problems += found
    if len(problems) > start or resources is None or search is None or salvaged:
        return None
    space = {k: v for k, v in search.space.items() if isinstance(v, dict)}
    train.update(
        expand_aliases({k: v for k, v in search.space.items() if not isinstance(v, dict)})
    )  # constants are just options
    if ALGORITHMS[search.algorithm.type].exhaustive:  # a choice in a grid search is a grid axis
        space = {k: ({"grid": v["choice"]} if "choice" in v else v) for k, v in space.items()}
    for (
        key,
        (_, spec),
    ) in (
        search.scheduler.searched().items()
    ):  # a trial's first value of a PBT mutation, as Tune samples it
        space.setdefault(key, {"choice": spec} if isinstance(spec, list) else spec)
    baseline = baseline_point(train, space) if search.baseline else None
    if baseline is not None and (problem := _baseline_problem(baseline, train, space, search)):
        problems.append(Problem(search_field(prefix, task, "baseline"), problem))
        return None
    # A baseline the search runs anyway (a point of its grid, or the one configuration of an empty
    # space) is not added.
    added = baseline is not None and not all(
        "grid" in spec and in_values(baseline[k], spec["grid"]) for k, spec in space.items()
    )
    count = search.num_samples * grid_size(space) + int(added)
    distinct = distinct_configurations(space, baseline, added)
    return TaskPlan(
        task.name,
        task.data,
        base,
        space,
        resources,
        search,
        (count if distinct is None else min(count, distinct)) * search.repeats,
        baseline,
        added,
        dataset,
        tuple(train),
        distinct,
        task.deliver,
    )


def baseline_point(train: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The baseline's value of each searched option (search-space names): the task's own constant
    value if it sets one, else the paper's (TrainConfig's defaults are the paper's values)."""
    point = {}
    for name in space:
        target = fields_of(name)[0]
        point[name] = train.get(target, TRAIN_FIELDS[target].default)
    return point


def _baseline_problem(
    point: dict[str, Any], train: dict[str, Any], space: dict[str, Any], search: Search
) -> str | None:
    """Why the baseline cannot run in this task: outside a space that the algorithm keeps to, or an
    invalid configuration (a paper's value that the task's other options cannot take)."""
    if ALGORITHMS[search.algorithm.type].baseline_in_space:
        outside = [
            f"{k}={point[k]!r} (the space has {short(spec)})"
            for k, spec in space.items()
            if not Distribution.of(spec).contains(point[k])
        ]
        if outside:
            return (
                f"the baseline's {', '.join(outside)} lies outside the search space, and "
                f"{search.algorithm.type} only "
                "evaluates points inside it: add the paper's value to the space, or set baseline: "
                "false"
            )
    problem = option_problem({**train, **expand_aliases(point)})
    if problem:
        return (
            f"the baseline ({', '.join(f'{k}={v!r}' for k, v in point.items())}) is not a valid "
            f"configuration of this task: "
            f"--{problem[0]}: {problem[1]}; set the option in the task's train, or baseline: false"
        )
    return None


def _parse_data_reference(ref: str) -> tuple[DatasetRef | None, str | None]:
    """A dataset reference parsed (scheme, bucket, archive suffix, synthetic kind and parameters),
    offline; or what is wrong with it."""
    try:
        return parse_reference(ref), None
    except UserError as err:
        return None, str(err).removeprefix(f"{ref.strip()}: ")
