"""Manifest schema: every field's validation, field paths with lines, did-you-mean, merging."""

from __future__ import annotations

import textwrap

import pytest

from orchestrator.manifest import ManifestError, grid_points, load_manifest, parse_manifest

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
"""


def _problems(text: str) -> str:
    with pytest.raises(ManifestError) as err:
        parse_manifest(textwrap.dedent(text), "m.yaml")
    return str(err.value)


def test_the_issue_example_is_valid_and_merges_per_task_overrides():
    loaded = parse_manifest(GOOD, "m.yaml")
    plans = {p.name: p for p in loaded.plans}
    assert list(plans) == ["horse2zebra", "summer2winter", "demo"]
    assert plans["horse2zebra"].train["crop_size"] == 256 and plans["summer2winter"].train["crop_size"] == 128
    assert plans["horse2zebra"].trial_count == 12 and plans["summer2winter"].trial_count == 4
    assert plans["summer2winter"].search.scheduler.grace_period == 5  # the rest of search is inherited
    assert plans["demo"].resources.gpus_per_worker == 1
    assert plans["demo"].search.resolved_mode == "min"  # fid: lower is better
    assert len(loaded.sha256) == 64


def test_aliases_expand_to_the_papers_weights():
    plan = parse_manifest(GOOD, "m.yaml").plans[0]
    config = plan.trial_config({"lambda_cyc": 20, "lambda_idt": 0.3, "pool_size": 0})
    assert config["lambda_A"] == config["lambda_B"] == 20 and config["lambda_identity"] == 0.3 and config["pool_size"] == 0
    assert "lambda_cyc" not in config


def test_mode_is_implied_by_the_metric_or_given():
    text = GOOD.replace("metric: fid", "metric: psnr")
    assert parse_manifest(text).plans[0].search.resolved_mode == "max"
    text = GOOD.replace("metric: fid", "metric: psnr\n  mode: min")
    assert parse_manifest(text).plans[0].search.resolved_mode == "min"


def test_grid_counts_every_combination_and_choices_become_axes():
    text = """\
    name: g
    search:
      algorithm: grid
      num_samples: 2
      space: {lambda_cyc: {grid: [5, 10]}, pool_size: {choice: [0, 25, 50]}, lr: 0.0001}
    tasks: [{name: t, data: /d}]
    """
    plan = parse_manifest(textwrap.dedent(text)).plans[0]
    assert plan.trial_count == 2 * 2 * 3
    assert plan.train["lr"] == 0.0001  # constants in the space are plain options
    assert len(grid_points(plan.space)) == 6


CASES = [
    ("name: [x]\ntasks: [{name: t, data: /d}]", "name (line 1): Input should be a valid string"),
    ("name: bad name\ntasks: [{name: t, data: /d}]", "name (line 1): 'bad name' is not a valid name"),
    ("name: x", "tasks: is required"),
    ("name: x\ntasks: []", "tasks (line 2): must not be empty"),
    ("name: x\ntaks: []\ntasks: [{name: t, data: /d}]", "taks (line 2): unknown field (did you mean 'tasks'?)"),
    ("name: x\ntasks: [{name: t}]", "tasks[0].data (line 2): is required"),
    ("name: x\ntasks:\n  - {name: t, data: /d}\n  - {name: t, data: /e}", "task name 't' is used twice"),
    ("name: x\ntasks: [{name: t, data: /d, trian: {}}]", "tasks[0].trian (line 2): unknown field (did you mean 'train'?)"),
    ("name: x\ndefaults: {train: {n_epoch: 3}}\ntasks: [{name: t, data: /d}]",
     "defaults.train.n_epoch (line 2): unknown training option (did you mean 'n_epochs'?)"),
    ("name: x\ndefaults: {train: {netG: resnet}}\ntasks: [{name: t, data: /d}]", "defaults.train.netG (line 2): unknown generator"),
    ("name: x\ndefaults: {train: {lr: fast}}\ntasks: [{name: t, data: /d}]", "defaults.train.lr (line 2): must be a number, got 'fast'"),
    ("name: x\ndefaults: {train: {dataroot: /x}}\ntasks: [{name: t, data: /d}]", "defaults.train.dataroot (line 2): is set by the orchestrator"),
    ("name: x\ntasks: [{name: t, data: /d, train: {crop_size: 300}}]", "tasks[0].train.crop_size (line 2): 300 is larger than --load_size 286"),
    ("name: x\ndefaults: {resources: {workers: 0}}\ntasks: [{name: t, data: /d}]", "defaults.resources.workers (line 2): must be >= 1, got 0"),
    ("name: x\ndefaults: {resources: {workers: 2, gpus_per_worker: 0.5}}\ntasks: [{name: t, data: /d}]", "fractional GPUs break NCCL DDP"),
    ("name: x\ntasks: [{name: t, data: /d, resources: {gpus: 1}}]", "tasks[0].resources.gpus (line 2): unknown field (did you mean 'gpus_per_worker'?)"),
    ("name: x\nsearch: {space: {lambda_cyc: {choice: []}}}\ntasks: [{name: t, data: /d}]",
     "search.space.lambda_cyc.choice (line 2): must be a non-empty list of values"),
    ("name: x\nsearch: {space: {lambda_cyc: {choice: [5, -1]}}}\ntasks: [{name: t, data: /d}]",
     "search.space.lambda_cyc.choice[1] (line 2): must be 0 or more"),
    ("name: x\nsearch: {space: {lambda_idt: {unifrm: [0, 1]}}}\ntasks: [{name: t, data: /d}]", "(got unifrm) (did you mean 'uniform'?)"),
    ("name: x\nsearch: {space: {pool_size: {uniform: [50, 0]}}}\ntasks: [{name: t, data: /d}]", "search.space.pool_size.uniform (line 2): low (50) must be below high (0)"),
    ("name: x\nsearch: {space: {lr: {loguniform: [0, 1]}}}\ntasks: [{name: t, data: /d}]", "search.space.lr.loguniform (line 2): bounds must be > 0"),
    ("name: x\nsearch: {space: {pool_size: {randint: [0.5, 3]}}}\ntasks: [{name: t, data: /d}]", "search.space.pool_size.randint (line 2): bounds must be integers"),
    ("name: x\nsearch: {space: {lr: {quniform: [0.1, 1]}}}\ntasks: [{name: t, data: /d}]", "search.space.lr.quniform (line 2): must be a list of 3 numbers ([low, high, q])"),
    ("name: x\nsearch: {space: {lamda_cyc: {choice: [1]}}}\ntasks: [{name: t, data: /d}]", "unknown training option (did you mean 'lambda_cyc'?)"),
    ("name: x\nsearch: {space: {netG: {choice: [resnet_9blocks, foo]}}}\ntasks: [{name: t, data: /d}]", "search.space.netG.choice[1] (line 2): unknown generator 'foo'"),
    ("name: x\nsearch: {num_samples: 0}\ntasks: [{name: t, data: /d}]", "search.num_samples (line 2): must be >= 1, got 0"),
    ("name: x\nsearch: {algorithm: bayes}\ntasks: [{name: t, data: /d}]", "search.algorithm (line 2): Input should be 'random', 'grid' or 'optuna'"),
    ("name: x\nsearch: {algorithm: grid, space: {lr: {uniform: [0.1, 1]}}}\ntasks: [{name: t, data: /d}]", "grid search cannot sample ranges (lr)"),
    ("name: x\nsearch: {algorithm: optuna, space: {lr: {grid: [0.1, 1]}}}\ntasks: [{name: t, data: /d}]", "optuna cannot take grid entries"),
    ("name: x\nsearch: {metric: fdi}\ntasks: [{name: t, data: /d}]", "search.metric (line 2): unknown metric 'fdi' (did you mean 'fid'?)"),
    ("name: x\nsearch: {mode: up}\ntasks: [{name: t, data: /d}]", "search.mode (line 2): Input should be 'min' or 'max'"),
    ("name: x\nsearch: {scheduler: {type: asha, grace_period: 500}}\ntasks: [{name: t, data: /d}]",
     "search.scheduler.grace_period (line 2): 500 epochs is longer than the 200 epochs a trial runs"),
    ("name: x\nsearch: {scheduler: {type: hyperband}}\ntasks: [{name: t, data: /d}]", "search.scheduler.type (line 2): Input should be 'asha' or 'none'"),
    ("name: x\nsearch: {sheduler: {}}\ntasks: [{name: t, data: /d}]", "search.sheduler (line 2): unknown field (did you mean 'scheduler'?)"),
    ("name: x\ntracking: {url: http://x}\ntasks: [{name: t, data: /d}]", "tracking.url (line 2): unknown field (did you mean 'uri'?)"),
    ("name: x\nsearch: {max_concurrent_trials: 0}\ntasks: [{name: t, data: /d}]", "search.max_concurrent_trials (line 2): must be >= 1"),
    ("name: x\ntasks: [{name: t, data: /d, search: {space: {lambda_cyc: {choice: [x]}}}}]",
     "tasks[0].search.space.lambda_cyc.choice[0] (line 2): must be a number, got 'x'"),
    ("name: x\ntasks: [{name: t, data: /d, search: {num_samples: -1}}]", "tasks[0].search.num_samples (line 2): must be >= 1, got -1"),
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
    for part in ("name (line 1)", "defaults.train.n_epoch", "defaults.resources.workers", "search.num_samples",
                 "search.space.lambda_cyc.choice", "tasks[0].data"):
        assert part in message
    assert message.startswith("m.yaml: 6 problem(s):")


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(ManifestError, match="nope.yaml: manifest not found"):
        load_manifest(tmp_path / "nope.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(ManifestError, match="dir.yaml: cannot read the manifest"):
        load_manifest(tmp_path / "dir.yaml")


def test_yaml_tags_are_refused_safely():
    assert "not valid YAML" in _problems("name: !!python/object/apply:os.system ['echo pwned']\ntasks: []")


@pytest.mark.parametrize("text,expected", CASES[::3], ids=[c[1][:40] for c in CASES[::3]])
def test_validate_command_exits_2_with_the_message_and_no_traceback(tmp_path, capsys, text, expected):
    from cyclegan.commands.runner import run_cli
    from orchestrator.cli import main

    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text))
    assert run_cli(main, ["validate", str(path), "--offline"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and err.startswith("error: ")


def test_validate_checks_the_datasets_unless_offline(tmp_path, capsys, tiny_dataset):
    from cyclegan.commands.runner import run_cli
    from orchestrator.cli import main

    path = tmp_path / "m.yaml"
    path.write_text(f"name: x\ntasks:\n  - {{name: good, data: {tiny_dataset}}}\n  - {{name: bad, data: {tmp_path}/missing}}\n")
    assert run_cli(main, ["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "tasks[1].data (bad):" in err and "missing: dataset folder not found" in err and "tasks[0]" not in err
    assert run_cli(main, ["validate", str(path), "--offline"]) == 0
    assert "valid; 2 task(s), 2 trial(s)" in capsys.readouterr().out


def test_quniform_on_a_whole_number_option_gives_integers():
    text = "name: x\nsearch: {space: {batch_size: {quniform: [1, 4, 1]}, lr: {quniform: [0.1, 0.5, 0.1]}}}\ntasks: [{name: t, data: /d}]\n"
    plan = parse_manifest(text).plans[0]
    config = plan.trial_config({"batch_size": 2.0, "lr": 0.2})  # what Ray's quniform gives
    assert config["batch_size"] == 2 and isinstance(config["batch_size"], int) and config["lr"] == 0.2


def test_a_task_with_a_bad_field_still_has_its_other_fields_checked():
    message = _problems("""\
    name: x
    tasks:
      - {name: "t\\n", data: "s3://x", train: {n_epoch: 1}, search: {num_samples: 0}}
    """)
    for part in ("tasks[0].name (line 3)", "tasks[0].data (line 3): not a valid S3 bucket name", "tasks[0].train.n_epoch (line 3)",
                 "tasks[0].search.num_samples (line 3)"):
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
