"""Local datasets: a folder, used in place, or a .zip/.tar/.tar.gz archive, extracted into the node
cache.

/path/to/folder, file:///path/to/folder, ~/data/horse2zebra.zip
"""

from __future__ import annotations

import logging
import tarfile
import zipfile
from pathlib import Path
from urllib.parse import unquote

from ..errors import DatasetError
from .archives import archive_suffix, extract, unsupported_archive
from .cache import CacheEntry, Snapshot, digest, snapshot_result
from .layout import check_dataset_root, find_dataset_root, no_layout, snapshot_layout, top_entries
from .schemes import DatasetRef, FetchResult, bad_reference

log = logging.getLogger(__name__)


def parse(ref: str) -> DatasetRef:
    path = unquote(ref[len("file://") :]) if ref.lower().startswith("file://") else ref
    path = str(Path(path).expanduser().absolute())
    if unsupported := unsupported_archive(path):
        raise bad_reference(
            ref, f"{unsupported} archives are not supported; repack it as .zip, .tar or .tar.gz"
        )
    return DatasetRef(ref, "archive" if archive_suffix(path) else "folder", path)


def fetch(
    parsed: DatasetRef,
    cache_dir: str | None,
    *,
    endpoint_url: str | None = None,
    show_progress: bool = False,
    require_layout: bool = True,
) -> FetchResult:
    path = Path(parsed.location)
    if parsed.kind == "folder":
        if not path.is_dir():
            raise bad_reference(
                parsed.ref,
                "dataset folder not found"
                if not path.exists()
                else "a file that is not a .zip, .tar or .tar.gz archive",
            )
        return FetchResult(parsed.ref, path, "folder", tree=path)
    if not path.is_file():
        raise bad_reference(parsed.ref, "no such archive file")
    stat = path.stat()
    entry = CacheEntry(cache_dir, "archive", str(path), path.name)

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        log.info("extracting %s into the cache %s", path, entry.dir)
        files = extract(path, tmp / "data", parsed.ref)
        return {
            "ref": parsed.ref,
            "source": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
            **snapshot_layout(files, parsed.ref, require_layout),
        }

    snap, built = entry.get_or_build(digest(stat.st_size, stat.st_mtime_ns)[:16], build)
    return snapshot_result(parsed, snap, built, require_layout)


def check(parsed: DatasetRef, *, endpoint_url: str | None = None) -> None:
    if parsed.kind == "folder":
        check_dataset_root(fetch(parsed, None).path)
        return
    path = Path(parsed.location)
    if not path.is_file():
        raise bad_reference(parsed.ref, "no such archive file")
    names = _archive_names(path, parsed.ref)
    found = find_dataset_root(names, parsed.ref)
    if found is None or not found[1]:
        raise no_layout(parsed.ref, top_entries(names))


def _archive_names(path: Path, ref: str) -> list[str]:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return archive.namelist()
        with tarfile.open(path) as archive:
            return archive.getnames()
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise DatasetError(
            f"{ref}: not a readable .zip/.tar archive ({err}); check the file"
        ) from None
