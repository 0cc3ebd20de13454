"""`python -m cyclegan data inspect|fetch REF`: look at a dataset reference, or fill the cache with
it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..sources import ACCEPTED_FORMS, fetch_dataset

REQUIRED = ("trainA", "trainB")


@dataclass
class FolderReport:
    name: str
    images: int = 0
    bytes: int = 0
    unreadable: list[tuple[str, str]] = field(
        default_factory=list
    )  # (path relative to the root, why)


def inspect_folder(root: Path) -> list[FolderReport]:
    """One report per first-level folder of `root` (and '.' for files lying directly in it, but for
    a synthetic dataset's origin record)."""
    from PIL import UnidentifiedImageError

    from ..data import open_image
    from ..sources.synthetic import ORIGIN_FILE

    reports: dict[str, FolderReport] = {}
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or (name == ORIGIN_FILE and Path(dirpath) == root):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root)
            top = rel.parts[0] if len(rel.parts) > 1 else "."
            report = reports.setdefault(top, FolderReport(top))
            try:
                report.bytes += path.stat().st_size
                with open_image(path):  # the header only, as the training data loader's scan does
                    report.images += 1
            except (UnidentifiedImageError, OSError) as err:
                report.unreadable.append((str(rel), str(err) or err.__class__.__name__))
        if Path(dirpath) == root:
            for d in dirs:
                reports.setdefault(d, FolderReport(d))
    return [reports[k] for k in sorted(reports)]


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _origin(root: Path) -> str:
    """The `source` line of a generated dataset's origin record ('' when there is none or it is
    unreadable)."""
    from ..sources.synthetic import ORIGIN_FILE

    try:
        record = json.loads((root / ORIGIN_FILE).read_text())
    except (OSError, ValueError):
        return ""
    return str(record.get("source", "")) if isinstance(record, dict) else ""


def _fetch(args: argparse.Namespace, require_layout: bool):
    return fetch_dataset(
        args.ref,
        args.cache_dir,
        endpoint_url=args.s3_endpoint_url,
        show_progress=False if args.no_progress else None,
        require_layout=require_layout,
    )


def _inspect(args: argparse.Namespace) -> int:
    result = _fetch(args, require_layout=False)
    reports = inspect_folder(result.path)
    print(f"dataset: {args.ref}")
    print(f"local:   {result.path}")
    if origin := _origin(result.path):
        print(f"origin:  {origin}")
    print(f"{'folder':<16}{'images':>8}{'other':>8}{'size':>12}")
    for r in reports:
        folder = r.name + ("/" if r.name != "." else "")
        print(f"{folder:<16}{r.images:>8}{len(r.unreadable):>8}{human_size(r.bytes):>12}")
    images, unreadable = sum(r.images for r in reports), sum(len(r.unreadable) for r in reports)
    print(f"{'total':<16}{images:>8}{unreadable:>8}{human_size(sum(r.bytes for r in reports)):>12}")
    unreadable = [item for r in reports for item in r.unreadable]
    if unreadable:
        print(
            "files that are not readable images (training skips them, or stops with --strict_data):"
        )
        for rel, why in unreadable:
            print(f"  {rel}: {why}")
    counts = {r.name: r.images for r in reports}
    problems = [
        f"{name}/ is missing" if name not in counts else f"{name}/ has no readable images"
        for name in REQUIRED
        if not counts.get(name)
    ]
    if problems:
        raise DatasetError(
            f"{args.ref}: {'; '.join(problems)}; a training dataset needs images in trainA/ and "
            f"trainB/"
        )
    return 0


def _fetch_command(args: argparse.Namespace) -> int:
    result = _fetch(args, require_layout=True)
    if result.kind == "folder":
        note = "a local folder, used in place"
    elif result.downloaded:
        note = f"downloaded {len(result.downloaded)} file(s), {human_size(result.bytes_downloaded)}"
        note += (
            f"; {len(result.reused)} unchanged file(s) reused from the cache"
            if result.reused
            else ""
        )
    elif result.built:
        note = (
            "extracted into the cache" if result.kind == "archive" else "generated into the cache"
        )
    else:
        note = "already up to date in the cache"
    print(f"{args.ref}: {note}", file=sys.stderr)
    print(result.path)  # alone on stdout, for DIR=$(python -m cyclegan data fetch REF)
    return 0


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help=f"dataset reference: {ACCEPTED_FORMS}")
    parser.add_argument(
        "--cache_dir",
        default=None,
        metavar="DIR",
        help="dataset cache (default: $CYCLEGAN_CACHE_DIR or ~/.cache/cyclegan/datasets)",
    )
    parser.add_argument(
        "--s3_endpoint_url",
        default=None,
        metavar="URL",
        help="S3-compatible endpoint such as MinIO or Ceph (default: $AWS_ENDPOINT_URL_S3, then "
        "$AWS_ENDPOINT_URL, then AWS), addressed path-style unless "
        "$CYCLEGAN_S3_ADDRESSING_STYLE=virtual; "
        "credentials and region come from the usual AWS settings",
    )
    parser.add_argument("--no_progress", action="store_true", help="no download progress bar")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")


def register(subparsers) -> None:
    """Add the `data` command (`data inspect`, `data fetch`) to the CLI."""
    data = subparsers.add_parser(
        "data",
        help="inspect a dataset reference, or fetch it into the local cache",
        description="Dataset references: " + ACCEPTED_FORMS + ".",
    )
    data.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")
    inspect = commands.add_parser(
        "inspect",
        help="folders, image counts, sizes and unreadable files of a dataset",
        description="Resolve REF (downloading it into the cache if needed) and print its folders, "
        "the images in each, "
        "their size and the files that are not readable images. Exits with status 2 when trainA/ "
        "or trainB/ "
        "is missing or empty.",
    )
    _add_common(inspect)
    inspect.set_defaults(run=_inspect)
    fetch = commands.add_parser(
        "fetch",
        help="download/extract/generate a dataset into the cache and print its local path",
        description="Fill the node-local cache with REF (nothing is downloaded when it is up to "
        "date) and print the "
        "local dataset root, the folder holding trainA/ trainB/.",
    )
    _add_common(fetch)
    fetch.set_defaults(run=_fetch_command)
