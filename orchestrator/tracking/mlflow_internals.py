"""Every private MLflow name this project uses, in one place: an MLflow upgrade means re-reading
this file.

Each use was read against MLflow 3.17.2. `PRIVATE_NAMES` lists them as (module, attribute, why);
tests/unit/test_mlflow_internals.py checks that each still exists in the installed MLflow, and that
no other module of orchestrator/ touches a private MLflow name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mlflow
from mlflow.data.dataset_source import DatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import Dataset as DatasetEntity
from mlflow.tracking._model_registry import utils as registry_utils  # private: see PRIVATE_NAMES
from mlflow.tracking._tracking_service import utils as tracking_utils  # private: see PRIVATE_NAMES

from orchestrator.redact import mask_text, restored_environ

PRIVATE_NAMES: tuple[tuple[str, str, str], ...] = (
    (
        "mlflow.tracking._tracking_service.utils",
        "_tracking_uri",
        "using_uri: the fluent API's tracking URI as set (None when unset), to put it back exactly",
    ),
    (
        "mlflow.tracking._model_registry.utils",
        "_registry_uri",
        "using_uri: the registry URI as set, read and written back (set_registry_uri cannot unset "
        "it)",
    ),
    (
        "mlflow.data.dataset_source",
        "DatasetSource._get_source_type",
        "DatasetReference: the hook a DatasetSource subclass must implement (its source type)",
    ),
    (
        "mlflow.data.dataset_source",
        "DatasetSource._can_resolve",
        "DatasetReference: a required hook (MLflow's resolver asks every source class)",
    ),
    ("mlflow.data.dataset_source", "DatasetSource._resolve", "DatasetReference: a required hook"),
    (
        "mlflow.data.meta_dataset",
        "MetaDataset._to_mlflow_entity",
        "dataset_entity: the entity MlflowClient.log_inputs takes; no public way from a Dataset",
    ),
)


@contextlib.contextmanager
def using_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (log_model, register_model, load_model) at `uri` for the block,
    then put back exactly what was there: mlflow.set_*_uri also writes os.environ."""
    # MLflow 3.17.2: module globals of mlflow.tracking._tracking_service.utils /
    # _model_registry.utils.
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    with restored_environ(("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")):
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved[0])
            registry_utils._registry_uri = saved[
                1
            ]  # MLflow 3.17.2: set_registry_uri(None) would not unset it


class DatasetReference(DatasetSource):
    """A dataset as this project names it (folder, s3://, archive, synthetic://), masked.
    Metadata only: MLflow never loads it. The `_`-hooks are DatasetSource's, as of MLflow 3.17.2."""

    def __init__(self, uri: str):
        self.uri = mask_text(uri)

    @staticmethod
    def _get_source_type() -> str:
        return "cyclegan"

    def load(self, **kwargs) -> Any:
        raise NotImplementedError(
            "a cyclegan dataset reference is resolved by `cyclegan data`, not by MLflow"
        )

    @staticmethod
    def _can_resolve(raw_source: Any) -> bool:
        return False

    @classmethod
    def _resolve(cls, raw_source: Any) -> DatasetReference:
        return cls(str(raw_source))

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri}

    @classmethod
    def from_dict(cls, source_dict: dict[Any, Any]) -> DatasetReference:
        return cls(source_dict["uri"])


def dataset_entity(dataset: MetaDataset) -> DatasetEntity:
    """The entity form of a dataset, as `MlflowClient.log_inputs` takes it (MLflow 3.17.2:
    Dataset._to_mlflow_entity)."""
    return dataset._to_mlflow_entity()
