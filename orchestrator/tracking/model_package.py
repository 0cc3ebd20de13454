"""What a registered version holds: the pyfunc model's files (the generators, their config, the
cyclegan package's code), its signature, input example and pinned requirements."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
from PIL import Image

import cyclegan
from cyclegan.errors import UserError
from cyclegan.networks import size_multiple
from cyclegan.run_files import LATEST, network_file
from orchestrator.tracking.pyfunc_model import IMAGE_COLUMN, encode_png

GENERATOR_FILES = {name: network_file(LATEST, name) for name in ("G_A", "G_B")}


def signature() -> ModelSignature:
    images = Schema([ColSpec("string", IMAGE_COLUMN)])
    return ModelSignature(
        inputs=images,
        outputs=Schema([ColSpec("string", IMAGE_COLUMN)]),
        params=ParamSchema([ParamSpec("direction", "string", "AtoB")]),
    )


def input_example(config: dict[str, Any]) -> pd.DataFrame:
    """One small gradient image, as large as the generator's smallest input."""
    side = max(size_multiple(config["netG"]), 16)
    ramp = np.linspace(0, 255, side, dtype=np.uint8)
    pixels = np.stack(
        [
            np.tile(ramp, (side, 1)),
            np.tile(ramp[:, None], (1, side)),
            np.full((side, side), 128, np.uint8),
        ],
        -1,
    )
    channels = config["input_nc"] if config["direction"] == "AtoB" else config["output_nc"]
    img = Image.fromarray(pixels) if channels == 3 else Image.fromarray(pixels[:, :, 0])
    return pd.DataFrame({IMAGE_COLUMN: [encode_png(img)]})


# What the model's code (pyfunc_model.py and the shipped cyclegan package) imports.
REQUIREMENTS = ("mlflow", "torch", "numpy", "pandas", "pillow", "tqdm", "boto3", "filelock")


def pip_requirements() -> list[str]:
    """Pinned to what is installed here (without local tags such as +cu130): given explicitly,
    MLflow does not have to load the model again to guess them."""
    from importlib.metadata import PackageNotFoundError, version

    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def checkpoint_files(
    client: MlflowClient, run_id: str, checkpoint_dir: str | Path | None, tmp: Path
) -> tuple[Path, dict | None]:
    """A local folder with latest_net_G_A/G_B.pth: the given one, else the run's best (or final)
    checkpoint artifacts. Also the config.json logged beside them, if any."""
    if checkpoint_dir is not None:
        folder = Path(checkpoint_dir)
    else:
        folder = None
        for kind in ("best", "final"):
            names = {
                Path(a.path).name for a in client.list_artifacts(run_id, f"checkpoints/{kind}")
            }
            if set(GENERATOR_FILES.values()) <= names:
                folder = Path(client.download_artifacts(run_id, f"checkpoints/{kind}", str(tmp)))
                break
        if folder is None:
            raise UserError(
                f"run {run_id}: no checkpoints/best or checkpoints/final artifacts with "
                f"{' and '.join(GENERATOR_FILES.values())}; pass the checkpoint folder"
            )
    missing = [name for name in GENERATOR_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise UserError(
            f"{folder}: missing {', '.join(missing)}; register a folder holding both generators"
        )
    config_file = folder / "config.json"
    return folder, (json.loads(config_file.read_text()) if config_file.is_file() else None)


def zip_package(target: Path) -> Path:
    """The cyclegan package's sources as one zip (importable through zipimport)."""
    package = Path(cyclegan.__file__).parent
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for source in sorted(package.rglob("*.py")):
            if "__pycache__" not in source.parts:
                archive.write(source, Path("cyclegan") / source.relative_to(package))
    return target
