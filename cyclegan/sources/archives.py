"""Safe extraction of dataset archives (.zip, .tar, .tar.gz).

Only regular files and folders are extracted, each to a checked relative path: members with
absolute paths, '..' or links are refused, so nothing lands outside the target folder. The
bytes written and the number of members are bounded (an archive bomb stops at the limit, which
a user can raise with $CYCLEGAN_ARCHIVE_MAX_BYTES and $CYCLEGAN_ARCHIVE_MAX_MEMBERS), and so is
the compression ratio: past $CYCLEGAN_ARCHIVE_RATIO_FROM bytes (default 100 MB), a member (or, for a
tar stream, the archive so far) that inflates more than $CYCLEGAN_ARCHIVE_MAX_RATIO times (default
100) is refused before it is written. Before writing, the declared sizes are checked against the
free space of the target (and the largest file against the process's file-size limit, `ulimit -f`);
a disk that fills up anyway is the cache's one message (cyclegan.sources.cache).
"""

from __future__ import annotations

import errno
import os
import re
import resource
import shutil
import tarfile
import zipfile
import zlib
from pathlib import Path

from ..errors import DatasetError
from .cache import contained, safe_relpath
from .layout import ignored

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
UNSUPPORTED_ARCHIVES = (
    ".rar",
    ".7z",
    ".tar.bz2",
    ".tbz2",
    ".tar.xz",
    ".txz",
    ".tar.zst",
    ".gz",
    ".bz2",
    ".xz",
)
_S_IFMT, _S_IFLNK = 0o170000, 0o120000
_CORRUPT = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)
MAX_BYTES_ENV, MAX_MEMBERS_ENV = "CYCLEGAN_ARCHIVE_MAX_BYTES", "CYCLEGAN_ARCHIVE_MAX_MEMBERS"
MAX_RATIO_ENV, RATIO_FROM_ENV = "CYCLEGAN_ARCHIVE_MAX_RATIO", "CYCLEGAN_ARCHIVE_RATIO_FROM"
DEFAULT_MAX_RATIO, DEFAULT_RATIO_FROM = 100, 100 * 2**20
DEFAULT_MAX_BYTES = (
    50 * 2**30
)  # the largest CycleGAN datasets (cityscapes, ...) extract to a few GB
DEFAULT_MAX_MEMBERS = 1_000_000
_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _limit(env: str, default: int) -> int:
    value = os.environ.get(env, "").strip()
    if not value:
        return default
    match = re.fullmatch(r"(\d+)\s*([kmgt]?)i?b?", value.lower())
    if not match or int(match.group(1)) < 1:
        raise DatasetError(
            f"${env}={value!r}: give a positive number, optionally with K, M, G or T (e.g. 100G)"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


class _Budget:
    """Counts members and bytes as they are extracted; a DatasetError names the limit crossed."""

    def __init__(self, where: str, archive_size: int):
        self.where, self.members, self.bytes, self.archive_size = where, 0, 0, archive_size
        self.max_members, self.max_bytes = (
            _limit(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS),
            _limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES),
        )
        self.max_ratio = _limit(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)
        self.ratio_from = _limit(RATIO_FROM_ENV, DEFAULT_RATIO_FROM)

    def ratio(self, name: str, size: int, compressed: int) -> None:
        """Refuse `size` bytes inflated from `compressed` past the set ratio (an archive bomb)."""
        if size > self.ratio_from and size > self.max_ratio * max(compressed, 1):
            raise DatasetError(
                f"{self.where}: member {name!r} inflates {compressed} bytes to {size} "
                f"({size / max(compressed, 1):.0f} times), more than ${MAX_RATIO_ENV}="
                f"{self.max_ratio} past {self.ratio_from} bytes: refused as an archive bomb; "
                f"raise ${MAX_RATIO_ENV} if the archive is what you expect"
            )

    def take(self, name: str, size: int) -> None:
        self.members, self.bytes = self.members + 1, self.bytes + size
        if self.members > self.max_members:
            raise DatasetError(
                f"{self.where}: more than {self.max_members} members, the limit on an archive's "
                f"members "
                f"(at {name!r}); raise it with ${MAX_MEMBERS_ENV} if the archive is what you expect"
            )
        if self.bytes > self.max_bytes:
            raise DatasetError(
                f"{self.where}: extracting it would write more than {self.max_bytes} bytes "
                f"({self.max_bytes / 2**30:.3g} GiB), the limit on an archive's extracted size "
                f"(member {name!r} "
                f"takes it to {self.bytes}); raise it with ${MAX_BYTES_ENV} (e.g. 100G) if the "
                f"archive is what you expect"
            )


def check_space(dest: Path, where: str, needed: int, largest: int) -> None:
    """Refuse, before writing, an extraction that cannot fit: `needed` bytes in all against the
    free space of `dest`'s file system, the `largest` file against the file-size limit."""
    folder = next((p for p in (dest, *dest.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(folder).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if needed > free:
        shortage = f"needs {needed / 1e6:.1f} MB, {free / 1e6:.1f} MB free"
    elif limit != resource.RLIM_INFINITY and largest > limit:
        shortage = (
            f"has a {largest / 1e6:.1f} MB file, larger than this process may write "
            f"({limit / 1e6:.1f} MB, ulimit -f)"
        )
    else:
        return
    raise DatasetError(
        f"{folder}: no room to extract {where}: it {shortage}; free some space, or choose another "
        f"cache folder with --cache_dir or $CYCLEGAN_CACHE_DIR"
    )


def _clash(where: str, relpath: str) -> DatasetError:
    return DatasetError(
        f"{where}: member {relpath!r} is both a file and a folder in this archive; "
        "a file system cannot hold both: fix the archive"
    )


def archive_suffix(name: str) -> str | None:
    """'.zip', '.tar', '.tar.gz' or '.tgz' when `name` is an archive we can extract."""
    lower = name.lower()
    return next(
        (s for s in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if lower.endswith(s)), None
    )


def unsupported_archive(name: str) -> str | None:
    """The suffix of an archive format we cannot extract ('.rar', '.tar.xz', ...), else None."""
    lower = name.lower()
    unsupported = next((s for s in UNSUPPORTED_ARCHIVES if lower.endswith(s)), None)
    return unsupported if unsupported and not archive_suffix(lower) else None


def extract(archive: Path, dest: Path, where: str, suffix: str | None = None) -> list[str]:
    """Extract `archive` into `dest`; return the relative paths of the files written.

    `where` names the archive in messages (its reference). Corrupt archives and unsafe members
    raise DatasetError; the caller extracts into a temporary folder it removes on error.
    """
    suffix = suffix or archive_suffix(archive.name)
    budget = _Budget(where, archive.stat().st_size)
    try:
        if suffix == ".zip":
            return _extract_zip(archive, dest, where, budget)
        return _extract_tar(archive, dest, where, budget)
    except _CORRUPT as err:
        raise DatasetError(
            f"{where}: archive is corrupt or not a {suffix} file ({err}); "
            "download it again or check how it was made"
        ) from None


def _extract_zip(archive: Path, dest: Path, where: str, budget: _Budget) -> list[str]:
    written = []
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        files, folders = set(), set()
        for info in infos:  # check every member before writing anything
            relpath = safe_relpath(info.filename, where)
            if (info.external_attr >> 16) & _S_IFMT == _S_IFLNK:
                raise DatasetError(
                    f"{where}: member {info.filename!r} is a symbolic link; links could point "
                    f"outside "
                    "the cache directory, so this archive is refused"
                )
            budget.take(
                info.filename, info.file_size
            )  # zipfile reads no more than the declared size
            budget.ratio(info.filename, info.file_size, info.compress_size)
            (folders if info.is_dir() else files).add(relpath)
            folders.update(relpath.rsplit("/", i)[0] for i in range(1, relpath.count("/") + 1))
        if clash := sorted(files & folders):
            raise _clash(where, clash[0])
        check_space(dest, where, budget.bytes, max((i.file_size for i in infos), default=0))
        for info in infos:
            relpath = safe_relpath(info.filename, where)
            if ignored(relpath):
                continue
            target = contained(dest, relpath, where)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with (
                zf.open(info) as src,
                open(target, "wb") as out,
            ):  # zipfile checks the CRC as it reads
                shutil.copyfileobj(src, out, 1 << 20)
            written.append(relpath)
    return written


def _extract_tar(archive: Path, dest: Path, where: str, budget: _Budget) -> list[str]:
    written = []
    # Stream mode: one pass over a compressed archive. An unsafe member aborts the extraction
    # part-way; the caller's temporary folder, never published, is removed.
    with tarfile.open(archive, "r|*") as tf:
        for member in tf:
            relpath = safe_relpath(member.name, where)
            if not (member.isfile() or member.isdir()):
                kind = "link" if (member.issym() or member.islnk()) else "special file"
                raise DatasetError(
                    f"{where}: member {member.name!r} is a {kind}; only files and folders are "
                    "extracted (links could point outside the cache directory), so this archive is "
                    "refused"
                )
            if ignored(relpath):
                continue
            budget.take(
                member.name, member.size if member.isfile() else 0
            )  # tarfile reads no more than the header's size
            # A stream's members come one by one: the ratio of what it has inflated so far, and
            # the space for this member.
            budget.ratio(member.name, budget.bytes, budget.archive_size)
            check_space(dest, where, member.size, member.size)
            target = contained(dest, relpath, where)
            try:
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tf.extractfile(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (FileExistsError, NotADirectoryError, IsADirectoryError):
                raise _clash(where, relpath) from None
            except OSError as err:
                if err.errno != errno.ENAMETOOLONG:
                    raise
                raise DatasetError(
                    f"{where}: member {relpath!r}: {err.strerror}; rename it, or use a shorter "
                    f"--cache_dir"
                ) from None
            written.append(relpath)
    return written
