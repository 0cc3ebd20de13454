"""The registered CycleGAN: both generators behind one MLflow `pyfunc` model.

This file is logged as the model's code ("models from code"), with the `cyclegan`
package as one zip artifact (one file to upload and download instead of dozens), so a
registered version loads wherever the model's pip requirements are installed. It must
not import ray or anything from `orchestrator`, and imports `cyclegan` only once the
shipped copy is on the path.

Contract (the same from Python and from `mlflow models serve`):
- input: a pandas DataFrame with one string column `image`: each row an encoded image
  file (PNG, JPEG, ...) in base64; any size, RGB or grayscale.
- params: `direction`: "AtoB" (default) translates the dataset's domain A into B,
  "BtoA" the other way.
- output: a DataFrame with one string column `image`: base64 PNGs, the translated
  images at the input's exact size (padded to the generator's multiple, then cropped back),
  exactly what `python -m cyclegan translate` writes for the same file.
"""

# No `from __future__ import annotations`: MLflow reads predict's type hints at load time.
import base64
import io
import json
import sys
from typing import Any

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from PIL import Image

DIRECTIONS = ("AtoB", "BtoA")
IMAGE_COLUMN = "image"
# What the config artifact keeps of a TrainConfig: enough to rebuild both generators.
CONFIG_KEYS = ("netG", "ngf", "norm", "dropout", "input_nc", "output_nc", "direction")


def generator_config(train_config: dict[str, Any]) -> dict[str, Any]:
    """The generator-building subset of a training config (TrainConfig defaults fill the gaps)."""
    from cyclegan.config import TrainConfig

    defaults = TrainConfig().to_dict()
    return {key: train_config.get(key, defaults[key]) for key in CONFIG_KEYS}


def encode_png(img: Image.Image) -> str:
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def decode_image(text: str, channels: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(base64.b64decode(text, validate=True))) as img:
            return img.convert("RGB" if channels == 3 else "L")
    except Exception as err:  # bad base64 or not an image: say which, not where in PIL
        raise _bad_input(
            f"column {IMAGE_COLUMN!r}: not a base64-encoded image file ({err.__class__.__name__})"
        ) from None


def _bad_input(message: str) -> MlflowException:
    # INVALID_PARAMETER_VALUE: the scoring server answers 400, not 500.
    return MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def use_shipped_code(code_zip: str | None) -> None:
    """Import `cyclegan` from the model's zip unless this process already imported it
    (the same rule MLflow applies to `code_paths`)."""
    if code_zip and "cyclegan" not in sys.modules and code_zip not in sys.path:
        sys.path.insert(0, code_zip)


class CycleGANModel(mlflow.pyfunc.PythonModel):
    """Artifacts: `G_A`, `G_B` (state_dicts), `config` (JSON from `generator_config`) and
    `code` (the cyclegan package, zipped)."""

    def load_context(self, context) -> None:
        use_shipped_code(context.artifacts.get("code"))
        from cyclegan.checkpoint import load_generator
        from cyclegan.networks import size_multiple
        from cyclegan.translate import translate_image

        self._translate_image = translate_image
        with open(context.artifacts["config"]) as f:
            self.config = json.load(f)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        c = self.config
        # G_A maps the training's "A" side; with direction BtoA that side is the dataset's B.
        files = (
            {"AtoB": "G_A", "BtoA": "G_B"}
            if c["direction"] == "AtoB"
            else {"AtoB": "G_B", "BtoA": "G_A"}
        )
        self.generators: dict[str, torch.nn.Module] = {}
        for direction, name in files.items():
            in_nc, out_nc = (
                (c["input_nc"], c["output_nc"])
                if name == "G_A"
                else (c["output_nc"], c["input_nc"])
            )
            self.generators[direction] = load_generator(
                context.artifacts[name],
                netG=c["netG"],
                ngf=c["ngf"],
                norm=c["norm"],
                input_nc=in_nc,
                output_nc=out_nc,
                dropout=c["dropout"],
                device=device,
            )
        self.multiple = size_multiple(c["netG"])

    def generator(self, direction: str) -> torch.nn.Module:
        if direction not in DIRECTIONS:
            raise _bad_input(f"direction {direction!r}: use AtoB or BtoA")
        return self.generators[direction]

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        net = self.generator((params or {}).get("direction") or "AtoB")
        frame = (
            model_input
            if isinstance(model_input, pd.DataFrame)
            else pd.DataFrame({IMAGE_COLUMN: list(model_input)})
        )
        if IMAGE_COLUMN not in frame.columns:
            raise _bad_input(
                f"expected a column {IMAGE_COLUMN!r} of base64-encoded images, got columns "
                f"{list(frame.columns)}"
            )
        channels = next(net.parameters()).shape[1]
        out = [
            encode_png(self._translate_image(net, decode_image(text, channels), self.multiple))
            for text in frame[IMAGE_COLUMN]
        ]
        return pd.DataFrame({IMAGE_COLUMN: out})


mlflow.models.set_model(CycleGANModel())
