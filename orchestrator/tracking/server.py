"""Where MLflow runs go, and whether that server or store answers, checked before anything trains.

The embedded default is a sqlite store beside the working directory (`sqlite:///./mlflow.db`,
artifacts in `./mlartifacts/`); a server is probed with its health endpoint and a bounded call, so
an unreachable MLflow fails in seconds with one message instead of hanging a sweep.
"""

from __future__ import annotations

import base64
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from cyclegan.errors import UserError
from orchestrator.redact import mask_text

DEFAULT_DB = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
UI_PORT = 5000  # `mlflow ui`'s default
# MLflow 3's UI opens an experiment on its GenAI overview unless told otherwise: this query
# parameter (or the user's stored choice) selects the model-training view, with the runs.
RUNS_VIEW = "workflowType=machine_learning"


def runs_page(uri: str, experiment_id: str) -> str:
    """How to open the experiment's runs in MLflow's UI: the page's URL on a tracking server, else
    the `mlflow ui` command for the store and the URL it will serve."""
    route = f"#/experiments/{experiment_id}/runs?{RUNS_VIEW}"
    shown = mask_text(uri)
    if urllib.parse.urlsplit(uri).scheme in ("http", "https"):
        return f"{shown.rstrip('/')}/{route}"
    return (
        f"mlflow ui --backend-store-uri '{shown}' --host 127.0.0.1 --port {UI_PORT}, then "
        f"http://127.0.0.1:{UI_PORT}/{route}"
    )


def resolve_tracking_uri(manifest_uri: str | None = None, cwd: str | Path | None = None) -> str:
    """The manifest's `tracking.uri`, else $MLFLOW_TRACKING_URI, else `sqlite:///<cwd>/mlflow.db`.

    A relative sqlite path is made absolute against `cwd`: Ray workers run in other folders.
    """
    cwd = Path(cwd or Path.cwd()).resolve()
    uri = manifest_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{cwd / DEFAULT_DB}"
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        uri = f"sqlite:///{cwd / db}" + (uri[uri.index("?") :] if "?" in uri else "")
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a local `sqlite:///` URI; None for anything else."""
    if not uri.startswith("sqlite:///") or ":memory:" in uri:
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def default_artifact_location(uri: str) -> str | None:
    """Artifacts of a local sqlite store live beside the database, in `mlartifacts/`;
    a server decides for itself (None)."""
    db = sqlite_path(uri)
    return (db.parent / DEFAULT_ARTIFACTS).resolve().as_uri() if db else None


def check_tracking(uri: str, timeout: float = 10.0) -> None:
    """Raise UserError, naming the URI, when the tracking store cannot be used; takes seconds.

    Called before any training starts: MLflow's own client retries a dead server for minutes.
    """
    shown = mask_text(uri)
    hint = (
        "start it, or set tracking.uri in the manifest (or MLFLOW_TRACKING_URI) to a running "
        "MLflow server"
    )
    db = sqlite_path(uri)
    if db is not None:
        if not db.parent.is_dir():
            raise UserError(
                f"tracking URI {shown}: folder {db.parent} does not exist; create it or choose "
                f"another sqlite path"
            )
        if not os.access(db.parent, os.W_OK) or (db.exists() and not os.access(db, os.W_OK)):
            raise UserError(
                f"tracking URI {shown}: {db} is not writable; choose another sqlite path"
            )
        return
    if uri.startswith(("http://", "https://")):
        _probe_health(uri, shown, hint, timeout)
    _call_with_timeout(
        lambda: MlflowClient(uri).search_experiments(max_results=1),
        timeout,
        f"MLflow tracking server {shown}",
        hint,
    )


def _probe_health(uri: str, shown: str, hint: str, timeout: float) -> None:
    parts = urllib.parse.urlsplit(uri)
    headers = {}
    if parts.username is not None:  # urllib wants credentials in a header, not in the host
        user = urllib.parse.unquote(parts.username)
        token = base64.b64encode(f"{user}:{urllib.parse.unquote(parts.password or '')}".encode())
        headers["Authorization"] = f"Basic {token.decode()}"
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    request = urllib.request.Request(
        urllib.parse.urlunsplit(parts).rstrip("/") + "/health", headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read(64)
    except urllib.error.HTTPError as err:
        if err.code in (401, 403):
            raise UserError(
                f"MLflow tracking server {shown} refused access (HTTP {err.code}): set "
                f"MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
            ) from None
        if err.code != 404:  # a 404 may be a proxy path; the API call below decides
            raise UserError(
                f"MLflow tracking server {shown} is not healthy (HTTP {err.code} on /health): "
                f"{hint}"
            ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise UserError(
            f"MLflow tracking server {shown} is not reachable ({mask_text(str(reason))}): {hint}"
        ) from None


def _call_with_timeout(call, timeout: float, what: str, hint: str):
    """Run `call` in a daemon thread; a UserError if it fails or takes longer than `timeout`."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = call()
        except Exception as err:  # reported below, masked
            outcome["error"] = err

    worker = threading.Thread(target=target, daemon=True, name="mlflow-check")
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise UserError(f"{what} did not answer within {timeout:g} s: {hint}")
    if "error" in outcome:
        message = (
            str(outcome["error"]).splitlines()[0]
            if str(outcome["error"])
            else outcome["error"].__class__.__name__
        )
        raise UserError(f"{what} failed: {mask_text(message)[:300]}")
    return outcome.get("value")
