"""Every private MLflow name this project uses, in one place: an MLflow upgrade means re-reading
this file.

Each use was read against MLflow 3.17.2. `PRIVATE_NAMES` lists them as (module, attribute, why);
tests/unit/test_mlflow_internals.py checks that each still exists in the installed MLflow, and that
no other module of orchestrator/ touches a private MLflow name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mlflow
from mlflow.tracking._model_registry import utils as registry_utils  # private: see PRIVATE_NAMES
from mlflow.tracking._tracking_service import utils as tracking_utils  # private: see PRIVATE_NAMES

from orchestrator.redact import restored_environ

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
