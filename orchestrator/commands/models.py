"""`python -m orchestrator models list|show` and `python -m orchestrator translate --model ...`.

`register_models(subparsers)` and `register_translate(subparsers)` add the commands to a
parser; each sets `run` to a function `(args) -> exit code`. `main(argv)` is a parser
with just these commands (tests, and anyone wiring them elsewhere).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

from cyclegan.commands.runner import run_cli
from cyclegan.errors import UserError

log = logging.getLogger(__name__)

TRACKING_HELP = "MLflow tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)"


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", default=None, help=TRACKING_HELP)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")


def register_models(subparsers) -> None:
    models = subparsers.add_parser("models", help="registered generators: list them, show one task's versions",
                                   description="Look up the CycleGAN models in the MLflow model registry.")
    actions = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every <prefix>* model with its champion version, metric, dataset and date")
    listing.add_argument("--prefix", default="cyclegan-", help="registered model name prefix (default: cyclegan-)")
    _common(listing)
    listing.set_defaults(run=_list)
    show = actions.add_parser("show", help="one task's versions, metrics, hyperparameters and which one is champion")
    show.add_argument("task", help="task name (the model is <prefix><task>) or the full registered model name")
    show.add_argument("--prefix", default="cyclegan-", help="registered model name prefix (default: cyclegan-)")
    _common(show)
    show.set_defaults(run=_show)


def register_translate(subparsers) -> None:
    translate = subparsers.add_parser("translate", help="translate a folder of images with a registered generator",
                                      description="Translate images with a model from the registry, e.g. "
                                                  "--model models:/cyclegan-horse2zebra@champion.")
    translate.add_argument("--model", required=True,
                           help="model URI: models:/<name>@<alias>, models:/<name>/<version>, runs:/<run>/<path> or a local folder")
    translate.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA"),
                           help="AtoB translates the dataset's domain A into B; BtoA the other way (default: AtoB)")
    translate.add_argument("--input", required=True, help="an image, a folder of images, or s3://bucket/prefix")
    translate.add_argument("--output", required=True, help="folder for the translated images (same relative names)")
    translate.add_argument("--s3-endpoint-url", default=None, metavar="URL",
                           help="S3-compatible endpoint for an s3:// --input, e.g. MinIO or Ceph (default: $AWS_ENDPOINT_URL_S3, "
                                "then $AWS_ENDPOINT_URL, then AWS)")
    _common(translate)
    translate.set_defaults(run=_translate)


# ------------------------------------------------------------------------------------------------


def _uri(args) -> str:
    from ..tracking import check_tracking, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    check_tracking(uri)
    return uri


def _date(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _number(value) -> str:
    return f"{value:.4g}" if value is not None else "-"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def _list(args) -> int:
    from ..registry import list_models

    uri = _uri(args)
    models = list_models(uri, args.prefix)
    if not models:
        print(f"no registered models named {args.prefix}* at {_shown(uri)}")
        return 0
    rows = [["MODEL", "CHAMPION", "METRIC", "VALUE", "DATASET", "REGISTERED", "LATEST"]]
    for m in models:
        c = m.champion
        rows.append([m.name, f"v{c.version}" if c else "-", c.metric or "-" if c else "-", _number(c.value) if c else "-",
                     (c.dataset or "-") if c else "-", _date(c.created) if c else "-", f"v{m.latest_version}" if m.latest_version else "-"])
    print(_table(rows))
    return 0


def _show(args) -> int:
    from ..registry import show_model

    info = show_model(_uri(args), args.task, args.prefix)
    c = info.champion
    print(f"{info.name}  (task {info.task}, {len(info.versions)} version(s))")
    print(f"champion: v{c.version}  {c.metric}={_number(c.value)} ({c.mode})  dataset {c.dataset or '-'}  run {c.run_id}"
          if c else "champion: none")
    rows = [["VERSION", "ALIASES", "METRIC", "VALUE", "TRIAL", "RUN", "CREATED", "HYPERPARAMETERS"]]
    for v in info.versions:
        hp = " ".join(f"{k}={val}" for k, val in sorted(v.hyperparameters.items()))
        rows.append([f"v{v.version}", ",".join(v.aliases) or "-", v.metric or "-", _number(v.value), v.trial or "-",
                     (v.run_id or "-")[:12], _date(v.created), hp[:80] or "-"])
    print(_table(rows))
    return 0


def _shown(uri: str) -> str:
    from ..redact import mask_text

    return mask_text(uri)


def _translate(args) -> int:
    import mlflow
    from mlflow.exceptions import MlflowException

    from cyclegan.translate import translate_folder

    from ..registry import using_uri

    with tempfile.TemporaryDirectory(prefix="cyclegan-translate-") as tmp:
        # The input first: a bad one fails in seconds, before the model is loaded.
        source = _download_s3(args.input, Path(tmp), args.s3_endpoint_url) if args.input.startswith("s3://") else Path(args.input)
        uri = _uri(args)
        try:
            with using_uri(uri):
                model = mlflow.pyfunc.load_model(args.model).unwrap_python_model()
        except MlflowException as err:
            raise UserError(f"--model {args.model}: cannot load it from {_shown(uri)}: {_shown(err.message)[:300]}") from None
        if not hasattr(model, "generator"):
            raise UserError(f"--model {args.model}: not a CycleGAN model registered by this project")
        net = model.generator(args.direction)
        written = translate_folder(net, source, Path(args.output), model.multiple)
    print(f"wrote {len(written)} translated image(s) to {args.output} ({args.model}, {args.direction})")
    return 0


def _download_s3(uri: str, target: Path, endpoint: str | None) -> Path:
    """Download the images under s3://bucket/prefix into `target`, keeping relative paths; a key
    that would land outside `target` is refused. Endpoint, retries and credentials as for datasets."""
    from cyclegan.data import IMG_EXTENSIONS
    from cyclegan.sources.s3 import download_prefix

    try:
        written = download_prefix(uri, target, IMG_EXTENSIONS, endpoint=endpoint, folder="the download folder")
    except UserError as err:
        raise UserError(f"--input {_shown(str(err))}") from None
    if not written:
        raise UserError(f"--input {_shown(uri)}: no images under this prefix")
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrator", description="CycleGAN model registry commands.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_models(commands)
    register_translate(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.debug:
        logging.getLogger().setLevel(logging.DEBUG)
    return args.run(args)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
