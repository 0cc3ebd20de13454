"""Safe extraction of dataset archives (.zip, .tar, .tar.gz) and finding the dataset inside.

Only regular files and folders are extracted, each to a checked relative path: members with
absolute paths, '..' or links are refused, so nothing lands outside the target folder.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from pathlib import Path

from .cache import contained, safe_relpath
from .errors import DatasetError

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
SPLITS = ("trainA", "trainB", "testA", "testB")
_S_IFMT, _S_IFLNK = 0o170000, 0o120000
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)


def archive_suffix(name: str) -> str | None:
    """'.zip', '.tar', '.tar.gz' or '.tgz' when `name` is an archive we can extract."""
    lower = name.lower()
    return next((s for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None)


def extract(archive: Path, dest: Path, where: str, suffix: str | None = None) -> list[str]:
    """Extract `archive` into `dest`; return the relative paths of the files written.

    `where` names the archive in messages (its reference). Corrupt archives and unsafe members
    raise DatasetError; the caller extracts into a temporary folder it removes on error.
    """
    suffix = suffix or archive_suffix(archive.name)
    try:
        if suffix == ".zip":
            return _extract_zip(archive, dest, where)
        return _extract_tar(archive, dest, where)
    except _CORRUPT as err:
        raise DatasetError(f"{where}: archive is corrupt or not a {suffix} file ({err}); "
                           "download it again or check how it was made") from None


def _skipped(relpath: str) -> bool:
    # '' is the target folder itself (tar's './'); __MACOSX/ holds resource forks macOS adds to zips.
    return relpath == "" or relpath.split("/")[0] == "__MACOSX"


def _extract_zip(archive: Path, dest: Path, where: str) -> list[str]:
    written = []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check every member before writing anything
            safe_relpath(info.filename, where)
            if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
                raise DatasetError(f"{where}: member {info.filename!r} is a symbolic link; links could point outside "
                                   "the cache directory, so this archive is refused")
        for info in infos:
            relpath = safe_relpath(info.filename, where)
            if _skipped(relpath):
                continue
            target = contained(dest, relpath, where)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as out:  # zipfile checks the CRC as it reads
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(relpath)
    return written


def _extract_tar(archive: Path, dest: Path, where: str) -> list[str]:
    written = []
    # Stream mode: one pass over a compressed archive. An unsafe member aborts the extraction
    # part-way; the caller's temporary folder, never published, is removed.
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            relpath = safe_relpath(member.name, where)
            if not (member.isfile() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise DatasetError(f"{where}: member {member.name!r} is a {kind}; only files and folders are "
                                   "extracted (links could point outside the cache directory), so this archive is refused")
            if _skipped(relpath):
                continue
            target = contained(dest, relpath, where)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with tf.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(relpath)
    return written


def find_dataset_root(files: Iterable[str], where: str) -> tuple[str, bool] | None:
    """The folder (relative, '' for the top) that holds the splits, from the relative file names.

    The shallowest folder holding trainA/ and trainB/ wins (the reference zips have one top
    folder: 'horse2zebra'); else the shallowest holding any split (second item False). None
    when no split folder appears at all. Several folders at the same depth are ambiguous.
    """
    found: dict[str, set[str]] = {}
    for name in files:
        parts = name.split("/")
        if _skipped(name):
            continue
        for i, part in enumerate(parts[:-1]):
            if part in SPLITS:
                found.setdefault("/".join(parts[:i]), set()).add(part)
    if not found:
        return None
    complete = [root for root, splits in found.items() if {"trainA", "trainB"} <= splits]
    pool = complete or list(found)
    depth = {root: 0 if root == "" else root.count("/") + 1 for root in pool}
    best = [root for root in pool if depth[root] == min(depth.values())]
    if len(best) > 1:
        raise DatasetError(f"{where}: several datasets side by side ({', '.join(sorted(r + '/' for r in best))}); "
                           "point the reference at one of them")
    return best[0], bool(complete)


def top_entries(files: Iterable[str], limit: int = 8) -> str:
    """'a/, b/, c.txt' for messages: what a dataset without the expected layout holds instead."""
    tops = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in files})
    return ", ".join(tops[:limit]) + (f", ... ({len(tops)} in all)" if len(tops) > limit else "") if tops else "nothing"
