"""Names MLflow would refuse (registered models, experiments) fail `validate`, with the field path,
before anything trains."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.utils.validation import _validate_experiment_name, _validate_model_name

from orchestrator.config.plan import load_manifest
from orchestrator.config.problems import ManifestError

TASK = '{name: horse2zebra, data: "synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0"}'


def _manifest(tmp_path, tracking: str, task: str = TASK):
    path = tmp_path / "m.yaml"
    path.write_text(f"name: names\ntracking: {tracking}\ntasks:\n  - {task}\n")
    return path


REFUSED = [
    ('{registry_prefix: "team/"}', "tracking.registry_prefix (line 2)", "'/'"),
    ('{registry_prefix: "org:team-"}', "tracking.registry_prefix (line 2)", "':'"),
    ('{registry_prefix: "..hidden-"}', "tracking.registry_prefix (line 2)", "'..'"),
    ('{registry_prefix: "my team "}', "tracking.registry_prefix (line 2)", "' '"),
    ('{registry_prefix: "cyc\\n"}', "tracking.registry_prefix (line 2)", "'\\n'"),
    (
        '{registry_prefix: "' + "p" * 250 + '"}',
        "tracking.registry_prefix + tasks[0].name",
        "at most 256",
    ),
    ('{experiment: ""}', "tracking.experiment (line 2)", "1 to 500"),
    ('{experiment: "' + "e" * 501 + '"}', "tracking.experiment (line 2)", "1 to 500"),
]


@pytest.mark.parametrize("tracking,where,what", REFUSED)
def test_names_mlflow_refuses_fail_validation_with_the_field_path(tmp_path, tracking, where, what):
    with pytest.raises(ManifestError) as caught:
        load_manifest(_manifest(tmp_path, tracking))
    assert where in str(caught.value) and what in str(caught.value), str(caught.value)


@pytest.mark.parametrize("prefix", ["team/", "org:team-", "..hidden-", "p" * 250])
def test_what_we_refuse_mlflow_refuses_too(prefix):
    """The rules are MLflow's own (3.17): its validator (or its 256-character column) refuses
    these."""
    name = f"{prefix}horse2zebra"
    if len(name) > 256:
        return
    with pytest.raises(MlflowException):
        _validate_model_name(name)


@pytest.mark.parametrize(
    "tracking",
    [
        '{registry_prefix: "cyclegan-"}',
        '{registry_prefix: ""}',
        '{registry_prefix: "team_a.v2-"}',
        '{experiment: "CycleGAN sweeps (2026)"}',
    ],
)
def test_names_mlflow_accepts_pass(tmp_path, tracking):
    loaded = load_manifest(_manifest(tmp_path, tracking))
    tracking_cfg = loaded.manifest.tracking
    _validate_model_name(f"{tracking_cfg.registry_prefix}horse2zebra")
    _validate_experiment_name(tracking_cfg.experiment or loaded.manifest.name)
