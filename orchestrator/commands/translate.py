"""`python -m orchestrator translate --model models:/NAME@ALIAS --input REF --output REF`: a
folder or an S3 prefix translated by a registered generator, as a Ray Data job
(orchestrator/batch/): on the cluster with `--address auto` or under `ray job submit`, on a private
local Ray otherwise.
"""

from __future__ import annotations

import argparse

from .registry_options import add_registry_options


def register(subparsers) -> None:
    translate = subparsers.add_parser(
        "translate",
        help="translate a folder or an S3 prefix with a registered generator (a Ray Data job)",
        description="Translate every image under --input with a model from the registry, e.g. "
        "--model models:/cyclegan-horse2zebra@champion, writing each at its relative key under "
        "--output at its exact size. A rerun translates only what is missing or was written by "
        "another model version; unreadable images are skipped and listed in "
        "<output>/_translation.json.",
    )
    translate.add_argument(
        "--model",
        required=True,
        help="registered model: models:/<name>@<alias> (resolved to its version once, at the "
        "start) or models:/<name>/<version>",
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
        help="a folder (or one image) or s3://bucket/prefix/: every image under it, read lazily "
        "(on a cluster a folder must be on a file system every node sees)",
    )
    translate.add_argument(
        "--output",
        required=True,
        help="a folder or s3://bucket/prefix/: each translation at its input's relative key",
    )
    translate.add_argument(
        "--format",
        default="png",
        choices=("png", "jpg", "webp"),
        help="the translations' file format (default: png); the key's extension follows it",
    )
    translate.add_argument(
        "--workers",
        default="1",
        metavar="N|MIN-MAX",
        help="translating actors, each holding the generator once: a number, or a range Ray Data "
        "autoscales within (default: 1)",
    )
    translate.add_argument(
        "--gpus-per-worker",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs each translating actor reserves (default: 0, CPU)",
    )
    translate.add_argument(
        "--batch-size",
        type=int,
        default=16,
        metavar="N",
        help="images per block through the stages; images of one size in a block translate "
        "as one batch (default: 16)",
    )
    translate.add_argument(
        "--overwrite",
        action="store_true",
        help="translate every image again, even those already there from this model version",
    )
    translate.add_argument(
        "--dry-run",
        action="store_true",
        help="say how many images there are, how many are already translated, and what would "
        "start; translate nothing",
    )
    translate.add_argument(
        "--address",
        default=None,
        help="the Ray cluster to run on (auto, ray://..., an IP); default: $RAY_ADDRESS, else a "
        "private local Ray",
    )
    translate.add_argument(
        "--s3-endpoint-url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint for s3:// input and output, e.g. MinIO or Ceph (default: "
        "$AWS_ENDPOINT_URL_S3, then $AWS_ENDPOINT_URL, then AWS)",
    )
    add_registry_options(translate)
    translate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cyclegan.errors import UserError
    from orchestrator.batch.job import JobOptions, parse_workers, run_translation

    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: give at least 1")
    if args.gpus_per_worker < 0:
        raise UserError(f"--gpus-per-worker {args.gpus_per_worker:g}: give 0 or more")
    options = JobOptions(
        model=args.model,
        input=args.input,
        output=args.output,
        direction=args.direction,
        format=args.format,
        workers=parse_workers(args.workers),
        gpus_per_worker=args.gpus_per_worker,
        batch_size=args.batch_size,
        overwrite=args.overwrite,
        dry_run=args.dry_run,
        address=args.address,
        endpoint_url=args.s3_endpoint_url,
        tracking_uri=args.tracking_uri,
    )
    return run_translation(options)
