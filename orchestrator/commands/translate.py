"""`python -m orchestrator translate --model URI --input REF --output DIR`: images through a
registered generator.

An input written as a URL (`s3://...`, or any scheme cyclegan.sources knows) is a dataset reference
like any training data: its scheme fetches it into the node-local cache (for S3: the endpoint option
and environment, retries, every key checked before anything is written, an unchanged prefix not
downloaded twice); no train/test layout is needed. A plain path (an image or a folder) is read in
place.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cyclegan.errors import UserError

from .registry_options import add_registry_options, tracking_uri


def register(subparsers) -> None:
    translate = subparsers.add_parser(
        "translate",
        help="translate a folder of images with a registered generator",
        description="Translate images with a model from the registry, e.g. "
        "--model models:/cyclegan-horse2zebra@champion.",
    )
    translate.add_argument(
        "--model",
        required=True,
        help=(
            "model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run>/<path> or a "
            "local folder"
        ),
    )
    translate.add_argument(
        "--direction",
        default="AtoB",
        choices=("AtoB", "BtoA"),
        help="AtoB translates the dataset's domain A into B; BtoA the other way (default: AtoB)",
    )
    translate.add_argument(
        "--input",
        required=True,
        help="an image, a folder of images, or s3://bucket/prefix (or s3://bucket/key.zip), "
        "fetched into the "
        "dataset cache like training data",
    )
    translate.add_argument(
        "--output", required=True, help="folder for the translated images (same relative names)"
    )
    translate.add_argument(
        "--s3-endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint for an s3:// --input, e.g. MinIO or Ceph (default: "
        "$AWS_ENDPOINT_URL_S3, "
        "then $AWS_ENDPOINT_URL, then AWS)",
    )
    translate.add_argument(
        "--cache-dir",
        default=None,
        metavar="DIR",
        help="the dataset cache an s3:// --input is fetched into "
        "(default: $CYCLEGAN_CACHE_DIR, else ~/.cache/cyclegan/datasets)",
    )
    add_registry_options(translate)
    translate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cyclegan.translate import translate_folder
    from orchestrator.tracking.client import TrackingError
    from orchestrator.tracking.models import load_registered_model

    # The input first: a bad one fails in seconds, before the model is loaded.
    source = (
        fetch_input(args.input, args.cache_dir, args.s3_endpoint_url)
        if "://" in args.input
        else Path(args.input)
    )
    uri = tracking_uri(args)
    try:
        model = load_registered_model(uri, args.model)
    except TrackingError as err:
        raise UserError(f"--model {args.model}: {err}") from None
    if not hasattr(model, "generator"):
        raise UserError(f"--model {args.model}: not a CycleGAN model registered by this project")
    net = model.generator(args.direction)
    written = translate_folder(net, source, Path(args.output), model.multiple)
    print(
        f"wrote {len(written)} translated image(s) to {args.output} ({args.model}, "
        f"{args.direction})"
    )
    return 0


def fetch_input(reference: str, cache_dir: str | None, endpoint_url: str | None) -> Path:
    """The folder holding what `reference` (s3://..., any scheme of cyclegan.sources) holds,
    relative names kept, through the dataset cache."""
    from cyclegan.data import IMG_EXTENSIONS
    from cyclegan.sources import fetch_dataset

    try:
        fetched = fetch_dataset(
            reference, cache_dir, endpoint_url=endpoint_url, require_layout=False
        )
    except UserError as err:
        raise UserError(f"--input {err}") from None
    if not any(p.is_file() and p.suffix.lower() in IMG_EXTENSIONS for p in fetched.tree.rglob("*")):
        raise UserError(
            f"--input {reference}: no images here (looked for {', '.join(IMG_EXTENSIONS)})"
        )
    return fetched.tree
