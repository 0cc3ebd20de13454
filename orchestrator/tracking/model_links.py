"""What MLflow 3 shows beside a logged model and a registered one, written when a version is
registered (orchestrator.tracking.registry):

- the model's score as metrics linked to the logged model (MLflow 3 links a metric to a model by
  its `model_id`), with the trial's dataset, so the experiment's Models tab ranks the generators
  and names the data they were scored on;
- the registered model's description: what its versions are and how one becomes the champion.
"""

from __future__ import annotations

import time

from mlflow import MlflowClient
from mlflow.entities import Metric, Run

from orchestrator.tracking.promotion import Challenger


def link_model_metrics(
    client: MlflowClient, model_id: str, run: Run, challenger: Challenger, step: int
) -> None:
    """Log the model's score (its metric and interval) at `step` in `run`, linked to logged model
    `model_id` and to the run's training dataset.

    Args:
        client: a client of the tracking store.
        model_id: the logged model.
        run: the trial's run the model was logged from.
        challenger: the model's metric, value and evaluation evidence.
        step: the epoch the value comes from.
    """
    scores, metric = challenger.scores, challenger.metric
    low, high = scores.interval(metric) if scores else (None, None)
    metrics = {metric: challenger.value, f"{metric}_ci_low": low, f"{metric}_ci_high": high}
    inputs = run.inputs.dataset_inputs if run.inputs else []
    dataset = inputs[0].dataset if inputs else None
    client.log_batch(
        run.info.run_id,
        metrics=[
            Metric(
                key,
                float(value),
                _logged_at(client, run.info.run_id, key, float(value), step),
                step,
                model_id=model_id,
                dataset_name=dataset.name if dataset else None,
                dataset_digest=dataset.digest if dataset else None,
            )
            for key, value in metrics.items()
            if value is not None
        ],
    )


def _logged_at(client: MlflowClient, run_id: str, key: str, value: float, step: int) -> int:
    """When the run logged `value` as `key` at `step` (the epoch's own point: logged again with its
    timestamp, the store keeps one point and links it), else now."""
    for point in client.get_metric_history(run_id, key):
        if point.step == step and point.value == value:
            return point.timestamp
    return int(time.time() * 1000)


def describe_registered_model(
    client: MlflowClient, name: str, task: str, metric: str, mode: str
) -> None:
    """The registered model's description (the registry's model page and list).

    Args:
        client: a client of the registry.
        name: the registered model.
        task: the task whose generators it holds.
        metric: what ranks its versions.
        mode: max or min.
    """
    better = "higher" if mode == "max" else "lower"
    client.update_registered_model(
        name,
        description=(
            f"CycleGAN generators of task {task} (G_A: A to B, G_B: B to A) as one pyfunc model. "
            f"Each version is the best trial of a sweep by {metric} ({better} is better), scored "
            f"on the test split; the alias `champion` marks the version to use, moved only when "
            f"the promotion rule says a new version beats it. Load it with "
            f"mlflow.pyfunc.load_model('models:/{name}@champion') or serve it with "
            f"`python -m orchestrator models serve {task}`."
        ),
    )
