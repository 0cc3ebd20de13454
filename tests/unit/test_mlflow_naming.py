"""How values and names look in MLflow (orchestrator.tracking.naming): one string per value, the
params worth a column, metric namespaces."""

from __future__ import annotations

from cyclegan.config import TrainConfig
from orchestrator.tracking.naming import (
    hyperparameter_names,
    metric_name,
    param_string,
    task_metric_name,
    trial_params,
)


def test_one_value_has_one_string_and_nothing_is_not_a_string():
    assert param_string(10.0) == param_string(10) == "10"
    assert param_string(0.0002) == "0.0002" and param_string(1e-05) == "1e-05"
    assert param_string([5.0, 10]) == "[5, 10]" and param_string(True) == "True"
    assert param_string(None) is None and param_string("") is None and param_string(" ") is None
    assert param_string("resnet_9blocks") == "resnet_9blocks"


def test_a_trials_params_are_its_hyperparameters_and_what_differs_from_the_defaults():
    config = TrainConfig(
        dataroot="s3://data/zebra",
        name="zebra-trial_1",
        checkpoints_dir="/tmp/ray/session_1/artifacts",
        lambda_A=10,
        ngf=16,
    ).to_record()
    params = trial_params(config, hyperparameters=["lambda_A", "lr"])
    assert params == {"dataroot": "s3://data/zebra", "lambda_A": "10", "lr": "0.0002", "ngf": "16"}
    assert hyperparameter_names({"space.lr.loguniform": "[1e-4, 1e-3]", "search.mode": "max"}) == [
        "lr"
    ]


def test_timings_and_task_summaries_get_their_own_names():
    assert metric_name("epoch_time_s") == "time/epoch_time_s"
    assert metric_name("data_wait_fraction") == "time/data_wait_fraction"
    assert metric_name("pairs_per_s") == "throughput/pairs_per_s"
    assert metric_name("psnr") == "psnr" and metric_name("loss_G") == "loss_G"
    assert metric_name("best_psnr") == "best_psnr"  # the trial's series keeps its name
    assert task_metric_name("best_psnr") == "best/psnr"
    assert task_metric_name("best_psnr_ci_low") == "best/psnr_ci_low"
    assert task_metric_name("improvement_over_baseline") == "improvement/over_baseline"
    assert task_metric_name("untranslated_psnr") == "untranslated/psnr"
