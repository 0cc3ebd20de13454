"""orchestrator.config.plan: a task's plan, and the one place a sampled point becomes a trial's
TrainConfig."""

from __future__ import annotations

import textwrap

import pytest

import cyclegan.config
from cyclegan.config import TrainConfig
from orchestrator.config.plan import parse_manifest
from orchestrator.config.resources import Resources, prepare_config


@pytest.fixture
def validations(monkeypatch) -> list[TrainConfig]:
    """Every TrainConfig whose rules run from now on."""
    seen: list[TrainConfig] = []
    original = TrainConfig.__post_init__

    def counting(self: TrainConfig) -> None:
        seen.append(self)
        original(self)

    monkeypatch.setattr(cyclegan.config.TrainConfig, "__post_init__", counting)
    return seen


def _plan(text: str):
    return parse_manifest(textwrap.dedent(text), "m.yaml").plans[0]


PBT = """\
    name: p
    defaults: {train: {n_epochs: 4, n_epochs_decay: 2, save_epoch_freq: 4, eval_metrics: l1}}
    search:
      metric: psnr
      space: {lambda_cyc: {choice: [5, 10]}, batch_size: {quniform: [1, 4, 1]}}
      scheduler: {type: pbt, perturbation_interval: 6, hyperparam_mutations: {lr: {loguniform: [1.0e-5, 1.0e-3]}}}
    tasks: [{name: t, data: synthetic://colorshift}]
    """  # noqa: E501 (test data as the user writes it)


def test_the_plan_carries_its_constant_options_as_one_trainconfig():
    plan = _plan(PBT)
    assert isinstance(plan.base, TrainConfig) and plan.base.dataroot == "synthetic://colorshift"
    assert plan.train == {
        "n_epochs": 4,
        "n_epochs_decay": 2,
        "save_epoch_freq": 4,
        "eval_metrics": "l1",
    }  # what the user set
    assert plan.total_epochs == 6 == plan.base.total_epochs


def test_a_sampled_point_becomes_a_trainconfig_once(validations):
    plan = _plan(PBT)
    validations.clear()
    config = plan.trial_config({"lambda_cyc": 5, "batch_size": 2.0, "lr": 1e-4}, "abc")
    assert len(validations) == 1 and validations[0] is config
    assert (config.lambda_A, config.lambda_B, config.batch_size, config.lr) == (5, 5, 2, 1e-4)
    assert (
        isinstance(config.batch_size, int)
        and config.name == "t-abc"
        and config.dataroot == "synthetic://colorshift"
    )


def test_the_metric_and_the_scheduler_options_land_in_the_trial_config():
    config = _plan(PBT).trial_config({"lambda_cyc": 10, "batch_size": 1, "lr": 2e-4}, "abc")
    # psnr is measured on the test split: every epoch, beside the task's own metrics
    assert config.eval_freq == 1 and config.eval_metrics == "l1,psnr"
    # PBT looks every 6 epochs, the task checkpoints every 4: a checkpoint every gcd(6, 4) = 2
    # epochs
    assert config.save_epoch_freq == 2
    plain = _plan("name: x\nsearch: {metric: loss_G}\ntasks: [{name: t, data: /d}]\n").trial_config(
        {}, "1"
    )
    assert (plain.eval_freq, plain.eval_metrics, plain.save_epoch_freq) == (
        TrainConfig.eval_freq,
        TrainConfig.eval_metrics,
        TrainConfig.save_epoch_freq,
    )


def test_a_searched_save_epoch_freq_is_kept_to_the_pbt_interval():
    config = _plan(PBT).trial_config(
        {"lambda_cyc": 10, "batch_size": 1, "lr": 2e-4, "save_epoch_freq": 3}, "abc"
    )
    assert config.save_epoch_freq == 3  # gcd(6, 3)


def test_preparing_a_trial_config_for_ray_builds_nothing_when_nothing_changes(
    validations, tmp_path
):
    config = TrainConfig(
        dataroot="synthetic://colorshift", name="t-1", checkpoints_dir=str(tmp_path)
    )
    validations.clear()
    assert prepare_config(config, Resources()) is config and validations == []
    moved = prepare_config(config, Resources(), name="t-2")
    assert moved.name == "t-2" and len(validations) == 1


def test_a_searched_size_grid_builds_one_trainconfig_and_reports_what_trainconfig_would(
    validations,
):
    text = """\
    name: x
    defaults: {train: {load_size: 1024}}
    search: {space: {crop_size: {randint: [64, 1063]}, netG: {choice: [unet_128, resnet_6blocks]}}}
    tasks: [{name: t, data: /d}]
    """
    with pytest.raises(Exception) as err:
        _plan(text)
    assert (
        len(validations) <= 2
    )  # the task's own TrainConfig (and the baseline's checks build none)
    assert "search.space.crop_size" in str(
        err.value
    ) and "(when the search picks crop_size=" in str(err.value)
