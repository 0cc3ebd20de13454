"""Manifest schema: every field's validation, field paths with lines, did-you-mean, merging."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator.config.plan import load_manifest, parse_manifest
from orchestrator.config.problems import ManifestError
from orchestrator.config.space import grid_points

GOOD = """\
name: seasons-and-animals
storage: s3://bucket/cyclegan-runs
tracking: {uri: sqlite:///mlflow.db}
defaults:
  train: {n_epochs: 100, n_epochs_decay: 100, crop_size: 256, netG: resnet_9blocks}
  resources: {workers: 1, gpus_per_worker: 1}
search:
  space:
    lambda_cyc: {choice: [5, 10, 20]}
    lambda_idt: {uniform: [0.0, 1.0]}
    pool_size: {choice: [0, 50]}
  num_samples: 12
  algorithm: random
  scheduler: {type: asha, grace_period: 5, reduction_factor: 3}
  metric: fid
  max_concurrent_trials: 4
tasks:
  - {name: horse2zebra, data: s3://datasets/horse2zebra.zip}
  - {name: summer2winter, data: s3://datasets/summer2winter_yosemite/, search: {num_samples: 4}, train: {crop_size: 128}}
  - {name: demo, data: "synthetic://stripes?size=32&n_train=200&n_test=40"}
"""  # noqa: E501 (test data as the user writes it)


def _problems(text: str) -> str:
    with pytest.raises(ManifestError) as err:
        parse_manifest(textwrap.dedent(text), "m.yaml")
    return str(err.value)


def test_the_issue_example_is_valid_and_merges_per_task_overrides():
    loaded = parse_manifest(GOOD, "m.yaml")
    plans = {p.name: p for p in loaded.plans}
    assert list(plans) == ["horse2zebra", "summer2winter", "demo"]
    assert (
        plans["horse2zebra"].train["crop_size"] == 256
        and plans["summer2winter"].train["crop_size"] == 128
    )
    # the paper's baseline (lambda 10, identity 0.5, pool 50) comes on top of the sampled trials
    assert (
        plans["horse2zebra"].trial_count == 12 + 1 and plans["summer2winter"].trial_count == 4 + 1
    )
    assert (
        plans["summer2winter"].search.scheduler.grace_period == 5
    )  # the rest of search is inherited
    assert plans["demo"].resources.gpus_per_worker == 1
    assert plans["demo"].search.resolved_mode == "min"  # fid: lower is better
    assert len(loaded.sha256) == 64


def test_aliases_expand_to_the_papers_weights():
    plan = parse_manifest(GOOD, "m.yaml").plans[0]
    config = plan.trial_config({"lambda_cyc": 20, "lambda_idt": 0.3, "pool_size": 0}, "t1")
    assert (
        config.lambda_A == config.lambda_B == 20
        and config.lambda_identity == 0.3
        and config.pool_size == 0
    )
    assert not hasattr(config, "lambda_cyc")


def test_mode_is_implied_by_the_metric_or_given():
    text = GOOD.replace("metric: fid", "metric: psnr")
    assert parse_manifest(text).plans[0].search.resolved_mode == "max"
    text = GOOD.replace("metric: fid", "metric: psnr\n  mode: min")
    assert parse_manifest(text).plans[0].search.resolved_mode == "min"


def test_grid_counts_every_combination_once_and_choices_become_axes():
    text = """\
    name: g
    search:
      algorithm: grid
      num_samples: 2
      space: {lambda_cyc: {grid: [5, 10]}, pool_size: {choice: [0, 25, 50]}, lr: 0.0001}
    tasks: [{name: t, data: /d}]
    """
    plan = parse_manifest(textwrap.dedent(text)).plans[0]
    # num_samples 2 would repeat the grid: each of its 6 combinations runs once
    assert plan.asked == 2 * 2 * 3 and plan.trial_count == plan.distinct == 2 * 3
    assert plan.capped == (
        "task t: only 6 different configuration(s) to run, fewer than the 12 trials asked "
        "(num_samples 2 x 6 grid points): each runs once, 6 trial(s)"
    )
    assert plan.train["lr"] == 0.0001  # constants in the space are plain options
    assert len(grid_points(plan.space)) == 6


CASES = [
    ("name: [x]\ntasks: [{name: t, data: /d}]", "name (line 1): Input should be a valid string"),
    (
        "name: bad name\ntasks: [{name: t, data: /d}]",
        "name (line 1): 'bad name' is not a valid name",
    ),
    ("name: x", "tasks: is required"),
    ("name: x\ntasks: []", "tasks (line 2): must not be empty"),
    (
        "name: x\ntaks: []\ntasks: [{name: t, data: /d}]",
        "taks (line 2): unknown field (did you mean 'tasks'?)",
    ),
    ("name: x\ntasks: [{name: t}]", "tasks[0].data (line 2): is required"),
    (
        "name: x\ntasks:\n  - {name: t, data: /d}\n  - {name: t, data: /e}",
        "task name 't' is used twice",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, trian: {}}]",
        "tasks[0].trian (line 2): unknown field (did you mean 'train'?)",
    ),
    (
        "name: x\ndefaults: {train: {n_epoch: 3}}\ntasks: [{name: t, data: /d}]",
        "defaults.train.n_epoch (line 2): unknown training option (did you mean 'n_epochs'?)",
    ),
    (
        "name: x\ndefaults: {train: {netG: resnet}}\ntasks: [{name: t, data: /d}]",
        "defaults.train.netG (line 2): unknown generator",
    ),
    (
        "name: x\ndefaults: {train: {lr: fast}}\ntasks: [{name: t, data: /d}]",
        "defaults.train.lr (line 2): must be a number, got 'fast'",
    ),
    (
        "name: x\ndefaults: {train: {dataroot: /x}}\ntasks: [{name: t, data: /d}]",
        "defaults.train.dataroot (line 2): is set by the orchestrator",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, train: {crop_size: 300}}]",
        "tasks[0].train.crop_size (line 2): 300 is larger than --load_size 286",
    ),
    (
        "name: x\ndefaults: {resources: {workers: 0}}\ntasks: [{name: t, data: /d}]",
        "defaults.resources.workers (line 2): must be >= 1, got 0",
    ),
    (
        "name: x\ndefaults: {resources: {workers: 2, gpus_per_worker: 0.5}}\ntasks: [{name: t, "
        "data: /d}]",
        "fractional GPUs break NCCL DDP",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, resources: {gpus: 1}}]",
        "tasks[0].resources.gpus (line 2): unknown field (did you mean 'gpus_per_worker'?)",
    ),
    (
        "name: x\nsearch: {space: {lambda_cyc: {choice: []}}}\ntasks: [{name: t, data: /d}]",
        "search.space.lambda_cyc.choice (line 2): must be a non-empty list of values",
    ),
    (
        "name: x\nsearch: {space: {lambda_cyc: {choice: [5, -1]}}}\ntasks: [{name: t, data: /d}]",
        "search.space.lambda_cyc.choice[1] (line 2): must be 0 or more",
    ),
    (
        "name: x\nsearch: {space: {lambda_idt: {unifrm: [0, 1]}}}\ntasks: [{name: t, data: /d}]",
        "(got unifrm) (did you mean 'uniform'?)",
    ),
    (
        "name: x\nsearch: {space: {pool_size: {uniform: [50, 0]}}}\ntasks: [{name: t, data: /d}]",
        "search.space.pool_size.uniform (line 2): low (50) must be below high (0)",
    ),
    (
        "name: x\nsearch: {space: {lr: {loguniform: [0, 1]}}}\ntasks: [{name: t, data: /d}]",
        "search.space.lr.loguniform (line 2): bounds must be > 0",
    ),
    (
        "name: x\nsearch: {space: {pool_size: {randint: [0.5, 3]}}}\ntasks: [{name: t, data: /d}]",
        "search.space.pool_size.randint (line 2): bounds must be integers",
    ),
    (
        "name: x\nsearch: {space: {lr: {quniform: [0.1, 1]}}}\ntasks: [{name: t, data: /d}]",
        "search.space.lr.quniform (line 2): must be a list of 3 numbers ([low, high, q])",
    ),
    (
        "name: x\nsearch: {space: {lamda_cyc: {choice: [1]}}}\ntasks: [{name: t, data: /d}]",
        "unknown training option (did you mean 'lambda_cyc'?)",
    ),
    (
        "name: x\nsearch: {space: {netG: {choice: [resnet_9blocks, foo]}}}\ntasks: [{name: t, "
        "data: /d}]",
        "search.space.netG.choice[1] (line 2): unknown generator 'foo'",
    ),
    (
        "name: x\nsearch: {num_samples: 0}\ntasks: [{name: t, data: /d}]",
        "search.num_samples (line 2): must be >= 1, got 0",
    ),
    (
        "name: x\nsearch: {algorithm: bayes}\ntasks: [{name: t, data: /d}]",
        "search.algorithm (line 2): unknown algorithm 'bayes'; use one of random, grid, optuna",
    ),
    (
        "name: x\nsearch: {algorithm: {type: optuna, n_startup: 2}}\ntasks: [{name: t, data: /d}]",
        "search.algorithm.n_startup (line 2): unknown field (did you mean 'n_startup_trials'?)",
    ),
    (
        "name: x\nsearch: {algorithm: {type: optuna, n_startup_trials: -1}}\ntasks: [{name: t, "
        "data: /d}]",
        "search.algorithm.n_startup_trials (line 2): must be >= 0, got -1",
    ),
    (
        "name: x\nsearch: {algorithm: {n_startup_trials: 2}}\ntasks: [{name: t, data: /d}]",
        "search.algorithm (line 2): a name (random, grid, optuna) or a mapping {type: NAME, ...its "
        "options}",
    ),
    (
        "name: x\nsearch: {algorithm: grid, space: {lr: {uniform: [0.1, 1]}}}\ntasks: [{name: t, "
        "data: /d}]",
        "grid search cannot sample ranges (lr)",
    ),
    (
        "name: x\nsearch: {algorithm: optuna, space: {lr: {grid: [0.1, 1]}}}\ntasks: [{name: t, "
        "data: /d}]",
        "optuna cannot take grid entries",
    ),
    (
        "name: x\nsearch: {metric: fdi}\ntasks: [{name: t, data: /d}]",
        "search.metric (line 2): unknown metric 'fdi' (did you mean 'fid'?)",
    ),
    (
        "name: x\nsearch: {mode: up}\ntasks: [{name: t, data: /d}]",
        "search.mode (line 2): Input should be 'min' or 'max'",
    ),
    (
        "name: x\nsearch: {scheduler: {type: asha, grace_period: 500}}\ntasks: [{name: t, data: "
        "/d}]",
        "search.scheduler.grace_period (line 2): 500 epochs is longer than the 200 epochs a trial "
        "runs",
    ),
    (
        "name: x\nsearch: {scheduler: {type: hyperband}}\ntasks: [{name: t, data: /d}]",
        "search.scheduler (line 2): unknown scheduler 'hyperband'; use one of none, asha",
    ),
    (
        "name: x\nsearch: {scheduler: {type: asha, grace: 2}}\ntasks: [{name: t, data: /d}]",
        "search.scheduler.grace (line 2): unknown field (did you mean 'grace_period'?)",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, search: {scheduler: {type: asha, reduction_factor: "
        "1}}}]",
        "tasks[0].search.scheduler.reduction_factor (line 2): must be > 1, got 1",
    ),
    (
        "name: x\nsearch: {divergence_factor: 1}\ntasks: [{name: t, data: /d}]",
        "search.divergence_factor (line 2): must be > 1, got 1",
    ),
    (
        "name: x\nsearch: {time_budget_s: 0}\ntasks: [{name: t, data: /d}]",
        "search.time_budget_s (line 2): must be > 0, got 0",
    ),
    (
        "name: x\nsearch: {max_failed_trials: 0}\ntasks: [{name: t, data: /d}]",
        "search.max_failed_trials (line 2): must be >= 1, got 0",
    ),
    (
        "name: x\nsearch: {algorithm: optuna, space: {lambda_cyc: {choice: [5, 20]}}}\ntasks: "
        "[{name: t, data: /d}]",
        "search.baseline (line 2): the baseline's lambda_cyc=10.0 (the space has {'choice': [5, "
        "20]}) lies outside the search space, "
        "and optuna only evaluates points inside it: add the paper's value to the space, or set "
        "baseline: false",
    ),
    (
        "name: x\nsearch: {space: {netD: {choice: [pixel]}}}\ndefaults: {train: {crop_size: 16, "
        "load_size: 16}}\n"
        "tasks: [{name: t, data: /d}]",
        "search.baseline (line 2): the baseline (netD='basic') is not a valid configuration of "
        "this task",
    ),
    (
        "name: x\nsearch: {sheduler: {}}\ntasks: [{name: t, data: /d}]",
        "search.sheduler (line 2): unknown field (did you mean 'scheduler'?)",
    ),
    (
        "name: x\ntracking: {url: http://x}\ntasks: [{name: t, data: /d}]",
        "tracking.url (line 2): unknown field (did you mean 'uri'?)",
    ),
    (
        "name: x\nsearch: {max_concurrent_trials: 0}\ntasks: [{name: t, data: /d}]",
        "search.max_concurrent_trials (line 2): must be >= 1",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, search: {space: {lambda_cyc: {choice: [x]}}}}]",
        "tasks[0].search.space.lambda_cyc.choice[0] (line 2): must be a number, got 'x'",
    ),
    (
        "name: x\ntasks: [{name: t, data: /d, search: {num_samples: -1}}]",
        "tasks[0].search.num_samples (line 2): must be >= 1, got -1",
    ),
    ("[1, 2]", "a manifest is a YAML mapping"),
    ("name: x\n  bad: indentation: here", "not valid YAML (line 2"),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[1][:40] for c in CASES])
def test_malformed_manifests_name_the_field_and_line(text, expected):
    assert expected in _problems(text)


def test_every_problem_is_listed_at_once():
    text = """\
    name: bad name
    defaults: {train: {n_epoch: 1}, resources: {workers: 0}}
    search: {num_samples: 0, space: {lambda_cyc: {choice: []}}}
    tasks: [{name: t, data: ""}]
    """
    message = _problems(text)
    for part in (
        "name (line 1)",
        "defaults.train.n_epoch",
        "defaults.resources.workers",
        "search.num_samples",
        "search.space.lambda_cyc.choice",
        "tasks[0].data",
    ):
        assert part in message
    assert message.startswith("m.yaml: 6 problem(s):")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ManifestError, match="nope.yaml: manifest not found"):
        load_manifest(tmp_path / "nope.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ManifestError, match="dir.yaml: cannot read the manifest"):
        load_manifest(tmp_path / "dir.yaml")


def test_yaml_tags_are_refused_safely():
    assert "not valid YAML" in _problems(
        "name: !!python/object/apply:os.system ['echo pwned']\ntasks: []"
    )


@pytest.mark.parametrize("text,expected", CASES[::3], ids=[c[1][:40] for c in CASES[::3]])
def test_validate_command_exits_2_with_the_message_and_no_traceback(
    tmp_path, capsys, text, expected
):
    from cyclegan.commands.runner import run_cli
    from orchestrator.commands import main

    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    assert run_cli(main, ["validate", str(path), "--offline"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.startswith("error: ")


def test_validate_checks_the_datasets_unless_offline(tmp_path, capsys, tiny_dataset):
    from cyclegan.commands.runner import run_cli
    from orchestrator.commands import main

    path = tmp_path / "m.yaml"
    path.write_text(
        f"name: x\ntasks:\n  - {{name: good, data: {tiny_dataset}}}\n  - {{name: bad, data: "
        f"{tmp_path}/missing}}\n"
    )
    assert run_cli(main, ["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert (
        "tasks[1].data (bad):" in err
        and "missing: dataset folder not found" in err
        and "tasks[0]" not in err
    )
    assert run_cli(main, ["validate", str(path), "--offline"]) == 0
    assert "valid; 2 task(s), 2 trial(s)" in capsys.readouterr().out


def test_quniform_on_a_whole_number_option_gives_integers():
    text = (
        "name: x\nsearch: {space: {batch_size: {quniform: [1, 4, 1]}, lr: {quniform: [0.1, 0.5, "
        "0.1]}}}\ntasks: [{name: t, data: /d}]\n"
    )
    plan = parse_manifest(text).plans[0]
    config = plan.trial_config({"batch_size": 2.0, "lr": 0.2}, "t1")  # what Ray's quniform gives
    assert config.batch_size == 2 and isinstance(config.batch_size, int) and config.lr == 0.2


def test_a_task_with_a_bad_field_still_has_its_other_fields_checked():
    message = _problems("""\
    name: x
    tasks:
      - {name: "t\\n", data: "s3://x", train: {n_epoch: 1}, search: {num_samples: 0}}
    """)
    for part in (
        "tasks[0].name (line 3)",
        "tasks[0].data (line 3): not a valid S3 bucket name",
        "tasks[0].train.n_epoch (line 3)",
        "tasks[0].search.num_samples (line 3)",
    ):
        assert part in message


def test_anchors_and_merge_keys_still_work_without_duplicate_complaints():
    text = """\
    name: x
    defaults:
      train: &base {n_epochs: 1, n_epochs_decay: 1}
    tasks:
      - {name: t, data: /d, train: {<<: *base, n_epochs: 2}}
    """
    assert parse_manifest(textwrap.dedent(text)).plans[0].train["n_epochs"] == 2


# ------------------------------------------------------------------------------------------------
# The paper's baseline, the algorithm and scheduler table


def _plan(text: str):
    return parse_manifest(textwrap.dedent(text)).plans[0]


def test_the_baseline_takes_the_papers_values_unless_the_task_sets_its_own():
    plan = _plan("""\
    name: b
    defaults: {train: {lambda_identity: 0.0}}
    search:
      space: {lambda_cyc: {choice: [5, 20]}, lambda_idt: {choice: [0.0, 0.5]}, pool_size: {choice: [0, 10]}, lr: {loguniform: [1.0e-5, 1.0e-3]}}
      num_samples: 4
    tasks: [{name: t, data: /d}]
    """)  # noqa: E501 (test data as the user writes it)
    # lambda 10, pool 50 and lr 2e-4 from the paper; no identity loss, as the task says (a painting
    # task would keep 0.5)
    assert plan.baseline == {"lambda_cyc": 10.0, "lambda_idt": 0.0, "pool_size": 50, "lr": 0.0002}
    assert (
        plan.baseline_added and plan.trial_count == 4 + 1
    )  # random search: the baseline comes on top
    assert (
        plan.trial_config(plan.baseline, "t1").lambda_A
        == plan.trial_config(plan.baseline, "t1").lambda_B
        == 10.0
    )


def test_a_grid_that_holds_the_baseline_runs_it_once_and_one_that_does_not_gets_it_on_top():
    holds = _plan(
        "name: g\nsearch: {algorithm: grid, space: {lambda_cyc: {grid: [5, 10]}}}\ntasks: [{name: "
        "t, data: /d}]"
    )
    assert (
        holds.baseline == {"lambda_cyc": 10.0}
        and not holds.baseline_added
        and holds.trial_count == 2
    )
    lacks = _plan(
        "name: g\nsearch: {algorithm: grid, space: {lambda_cyc: {grid: [5, "
        "20]}}}\ntasks: [{name: t, data: /d}]"
    )
    assert lacks.baseline_added and lacks.trial_count == 2 + 1


def test_nothing_searched_means_no_duplicate_trial_and_baseline_false_means_none():
    plain = _plan("name: p\nsearch: {num_samples: 2}\ntasks: [{name: t, data: /d}]")
    # the one configuration of an empty space runs once, whatever num_samples says
    assert plain.baseline == {} and not plain.baseline_added and plain.trial_count == 1
    off = _plan(
        "name: p\nsearch: {baseline: false, space: {lambda_cyc: {choice: [5, 20]}}}\ntasks: "
        "[{name: t, data: /d}]"
    )
    assert off.baseline is None and not off.baseline_added and off.trial_count == 1


def test_algorithm_and_scheduler_take_a_name_or_options_and_a_task_may_switch_them():
    plan = _plan("""\
    name: o
    search:
      algorithm: {type: optuna, n_startup_trials: 3}
      scheduler: {type: asha, grace_period: 2}
      space: {lambda_cyc: {uniform: [5, 15]}}
    tasks: [{name: t, data: /d, search: {scheduler: none}}]
    """)
    assert (plan.search.algorithm.type, plan.search.algorithm.n_startup_trials) == ("optuna", 3)
    assert (
        plan.search.scheduler.type == "none"
    )  # the task's own choice: asha's options are not carried over
    assert (
        _plan(
            "name: o\nsearch: {scheduler: asha}\ntasks: [{name: t, data: /d}]"
        ).search.scheduler.grace_period
        == 1
    )


def test_a_missing_package_is_named_with_the_field_that_needs_it(monkeypatch):
    from dataclasses import replace

    from orchestrator.search import ALGORITHMS

    monkeypatch.setitem(
        ALGORITHMS, "optuna", replace(ALGORITHMS["optuna"], requires="optuna_not_installed")
    )
    message = _problems("name: x\ntasks: [{name: t, data: /d, search: {algorithm: optuna}}]")
    assert (
        "tasks[0].search.algorithm (line 2): optuna needs the Python package "
        "'optuna_not_installed', which is not installed here: "
        "pip install optuna_not_installed (make setup installs it)"
    ) in message
    assert ALGORITHMS["random"].missing_dependency() is None


def test_the_docs_list_every_algorithm_and_scheduler_with_their_options():
    from pathlib import Path

    from orchestrator.search.tables import markdown

    docs = (Path(__file__).resolve().parents[2] / "docs" / "manifest.md").read_text()
    assert markdown() in docs, (
        "docs/manifest.md: paste the output of `python -m orchestrator.search`"
    )
