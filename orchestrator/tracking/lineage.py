"""What a run was made from, in MLflow's own terms, so its UI shows it where users look.

- the experiment is a model-training one (`mlflow.experimentKind`), so MLflow 3's UI opens on its
  runs rather than on the GenAI overview of traces;
- the dataset is a run input (Runs table "Dataset" column) of each trial and of its task's run:
  its masked reference as a source the UI displays (s3, local, http, external), a digest of its
  content from the file listing (names and sizes), a schema and a profile (images per split);
- the code version (`mlflow.source.git.commit`) and the manifest (masked) on the task's parent run;
- MLflow's system metrics (CPU, memory, disk, network, GPU) on a trial's run, when asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag
from mlflow.exceptions import MlflowException
from mlflow.types import ColSpec, Schema
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT
from PIL import Image

from orchestrator.redact import mask_text

log = logging.getLogger(__name__)

# The experiment tag MLflow 3's UI reads to choose its landing page (server/js: ExperimentKind).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
MANIFEST_ARTIFACT_DIR = "manifest"
DIGEST_CHARS = 16  # MLflow stores at most 36
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# A CycleGAN dataset's rows: an image file and the split (trainA, testB, ...) it belongs to.
IMAGE_SCHEMA = Schema([ColSpec("binary", "image"), ColSpec("string", "split")])


def mark_training_experiment(client: MlflowClient, experiment_id: str) -> None:
    """Tag the experiment as model training, unless someone chose another kind for it."""
    tags = client.get_experiment(experiment_id).tags
    if EXPERIMENT_KIND_TAG not in tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)


def content_digest(folder: str | Path) -> str:
    """A digest of a dataset folder from its files' relative paths and sizes (stat only)."""
    root = Path(folder)
    entries = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        for name in sorted(files):
            path = Path(directory, name)
            entries.append(f"{path.relative_to(root).as_posix()}\t{path.stat().st_size}\n")
    return hashlib.sha256("".join(entries).encode()).hexdigest()[:DIGEST_CHARS]


def dataset_name(reference: str) -> str:
    """A short name for the UI: the reference's last path part, without an archive suffix."""
    tail = mask_text(reference).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "dataset"
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        tail = tail.removesuffix(suffix)
    return tail


def dataset_source(reference: str) -> tuple[str, dict[str, str]]:
    """The source type and source of a dataset reference, in the forms MLflow's UI displays (and
    links): s3 and local with a `uri`, http and external (synthetic://, archives elsewhere) with a
    `url`."""
    masked = mask_text(reference)
    scheme = urlsplit(masked).scheme.lower()
    if scheme == "s3":
        return "s3", {"uri": masked}
    if scheme in ("http", "https"):
        return "http", {"url": masked}
    if not scheme or scheme == "file" or len(scheme) == 1:  # a path (or a Windows drive)
        return "local", {"uri": masked}
    return "external", {"url": masked}


def dataset_profile(folder: str | Path) -> dict[str, Any]:
    """What the UI's dataset drawer shows: images per split, their size on disk, and the size of
    the first training image (its header only is read)."""
    root, profile, first = Path(folder), {}, None
    total = 0
    for split in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(p for p in split.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if images:
            profile[f"{split.name}_images"] = len(images)
            total += sum(p.stat().st_size for p in images)
            first = first or images[0]
    profile["size_mb"] = round(total / 1e6, 3)
    if first is not None:
        try:
            with Image.open(first) as image:
                profile["image_size"] = f"{image.width}x{image.height}"
        except OSError:
            pass
    return profile


def dataset_entity(reference: str, folder: str | Path) -> Dataset:
    """The dataset as MLflow records it: name, digest of the content, source, schema and profile."""
    source_type, source = dataset_source(reference)
    return Dataset(
        name=dataset_name(reference),
        digest=content_digest(folder),
        source_type=source_type,
        source=json.dumps(source),
        schema=json.dumps({"mlflow_colspec": IMAGE_SCHEMA.to_dict()}),
        profile=json.dumps(dataset_profile(folder)),
    )


DATASET_ATTEMPTS = 3


def log_dataset_input(
    client: MlflowClient,
    run_id: str,
    reference: str,
    folder: str | Path,
    context: str = "train",
    dataset: Dataset | None = None,
) -> Dataset:
    """Log the dataset as an input of the run (see `dataset_entity`); returns it.

    Args:
        client: a client of the run's tracking store.
        run_id: the run.
        reference: the dataset as the manifest names it (masked here).
        folder: where it was resolved to; its file listing makes the digest and profile.
        context: the input's role, MLflow's `mlflow.data.context` tag.
        dataset: the entity made earlier for the same data (not made again).
    """
    dataset = dataset or dataset_entity(reference, folder)
    inputs = [DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])]
    attempt = 1
    while True:
        try:
            client.log_inputs(run_id, datasets=inputs)
            return dataset
        except MlflowException as err:
            # Two trials of a task start together and log the same dataset: MLflow's store looks
            # it up, finds none, and both insert it; the second insert breaks the uniqueness of
            # (experiment, name, digest). Once the first is committed, a retry links to it.
            duplicate = any(s in str(err).lower() for s in ("unique constraint", "duplicate"))
            if not duplicate or attempt == DATASET_ATTEMPTS:
                raise
            time.sleep(0.2 * attempt)
            attempt += 1


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the git checkout holding `path` (default: this code); None outside one
    (e.g. a `ray job submit` working directory) or without git."""
    path = Path(path or Path(__file__).resolve().parent)

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, timeout=10
        )

    try:
        done = git("rev-parse", "HEAD")
        # Code installed in an ignored folder of some checkout (a .venv in a repository) is not its
        # code.
        ignored = done.returncode == 0 and git("check-ignore", "-q", ".").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and not ignored and len(commit) == 40 else None


def log_task_lineage(
    uri: str, run_id: str, manifest_path: str | Path | None, commit: str | None = None
) -> None:
    """On a task's parent run: the code version (when there is a git commit) and the manifest,
    masked, as `manifest/<file name>`."""
    client = MlflowClient(uri)
    commit = commit or git_commit()
    if commit:
        client.set_tag(run_id, MLFLOW_GIT_COMMIT, commit)
    if manifest_path and Path(manifest_path).is_file():
        name = Path(manifest_path).name
        client.log_text(
            run_id,
            mask_text(Path(manifest_path).read_text(encoding="utf-8", errors="replace")),
            f"{MANIFEST_ARTIFACT_DIR}/{name}",
        )


def start_system_metrics(uri: str, run_id: str, resume: bool, sampling_interval: float = 10.0):
    """Start MLflow's system-metrics thread for the run (it stops when the run ends or on
    `.finish()`); None when it cannot run here (psutil missing)."""
    try:
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id, sampling_interval=sampling_interval, resume_logging=resume, tracking_uri=uri
        )
    except ImportError as err:
        log.warning("system metrics are off: %s (install psutil)", err)
        return None
    monitor.start()
    return monitor
