"""How this package talks to MLflow: every page of a search, and MLflow's errors as a TrackingError.

Everything here works through an explicit `MlflowClient(uri)`, never the fluent API's global state
(except where MLflow offers nothing else: mlflow_internals.using_uri).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from mlflow.exceptions import MlflowException

from cyclegan.errors import UserError
from orchestrator.redact import mask_text

PAGE_SIZE = 1000  # the most MLflow's searches return per page


class TrackingError(UserError):
    """MLflow refused or failed, in words for the user (masked): what callers outside this package
    catch."""


def all_pages(search: Callable[..., Any], *args: Any, **kwargs: Any) -> list:
    """Every result of a paged MLflow search (`client.search_runs`, `search_model_versions`, ...),
    called with `args` and `kwargs` plus the page size and token."""
    items, token = [], None
    while True:
        page = search(*args, max_results=PAGE_SIZE, page_token=token, **kwargs)
        items += list(page)
        token = page.token
        if not token:
            return items


@contextlib.contextmanager
def reported_as(what: str | None = None) -> Iterator[None]:
    """MLflow errors in the block become a TrackingError: `<what>: <message>`, masked, or the
    message alone without `what`."""
    try:
        yield
    except MlflowException as err:
        message = mask_text(err.message)[:300]
        raise TrackingError(f"{what}: {message}" if what else message) from None
