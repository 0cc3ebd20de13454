"""The node-local dataset cache: one folder per dataset reference, immutable snapshots inside.

    <cache root>/<kind>/<label>-<hash of the reference>/
        lock                      a file lock: one builder at a time, across threads and processes
        snapshots/<id>/meta.json  what the snapshot was built from (objects, ETags, sizes) and its
                                  dataset root
        snapshots/<id>/data/...   the files
        snapshots/.tmp-*          a snapshot being built, renamed to <id> only once complete

A snapshot's id is a hash of what it was built from (object ETags and sizes, an archive's
size and mtime, synthetic parameters), so an unchanged dataset finds its snapshot and
downloads nothing, and a changed one gets a new snapshot. Snapshots are never modified
after the rename, so a reader never sees a half-written file or a half dataset.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from ..errors import DatasetError
from .layout import no_layout, top_entries
from .schemes import DatasetRef, FetchResult

log = logging.getLogger(__name__)

CACHE_ENV = "CYCLEGAN_CACHE_DIR"
DEFAULT_CACHE = Path("~/.cache/cyclegan/datasets")
META_FILE = "meta.json"
KEEP_SNAPSHOTS = 2  # the newest and the one before: a run started on it may still be reading it
NAME_MAX, PATH_MAX = 255, 4096  # bytes, as Linux file systems (ext4, xfs) allow


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $CYCLEGAN_CACHE_DIR, else ~/.cache/cyclegan/datasets."""
    chosen = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE
    return Path(chosen).expanduser().absolute()


def digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def safe_relpath(name: str, where: str, what: str = "member") -> str:
    """`name` as a normalised relative path ('a/b.png'; '' for the folder itself, as in tar's './'),
    or a DatasetError naming `where` when it would land outside the folder it is extracted to
    (absolute, drive letter, '..')."""
    posix = name.replace("\\", "/")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    reason = None
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        reason = "absolute path"
    elif ".." in parts:
        reason = "'..' in the path"
    if reason:
        raise DatasetError(
            f"{where}: {what} {_shown(name)} would land outside the cache directory ({reason}); "
            "refusing it: fix the archive or the keys"
        )
    if long := next((p for p in parts if len(os.fsencode(p)) > NAME_MAX), None):
        raise DatasetError(
            f"{where}: {what} {_shown(name)} has a name of {len(os.fsencode(long))} bytes "
            f"({_shown(long)}); "
            f"file systems allow {NAME_MAX}: rename it"
        )
    return "/".join(parts)


def _shown(name: str, limit: int = 120) -> str:
    return (
        repr(name) if len(name) <= limit else repr(name[:limit]) + f"... ({len(name)} characters)"
    )


def contained(root: Path, relpath: str, where: str) -> Path:
    """root/relpath, after checking it really lies under root (no symlinked folder on the way)."""
    target = root / relpath
    if len(os.fsencode(target.absolute())) >= PATH_MAX:
        raise DatasetError(
            f"{where}: {_shown(relpath)} is too long a path for the file system once in the cache "
            f"({len(os.fsencode(target.absolute()))} bytes, at most {PATH_MAX - 1}); rename it, or "
            f"use a shorter --cache_dir"
        )
    if not target.resolve().is_relative_to(root.resolve()):
        raise DatasetError(
            f"{where}: {_shown(relpath)} would land outside the cache directory; refusing it"
        )
    return target


@dataclass
class Snapshot:
    path: Path
    meta: dict

    @property
    def data(self) -> Path:
        return self.path / "data"

    @property
    def root(self) -> Path:
        """The dataset root inside the snapshot (the folder holding trainA/ trainB/)."""
        return self.data / self.meta.get("root", "")


class CacheEntry:
    """The cache folder of one dataset reference."""

    def __init__(self, cache_dir: str | os.PathLike | None, kind: str, key: str, label: str):
        label = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("._")[:48] or kind
        self.dir = cache_root(cache_dir) / kind / f"{label}-{digest(key)[:12]}"
        self.snapshots_dir = self.dir / "snapshots"
        self.label = label

    def find(self, snap_id: str) -> Snapshot | None:
        """The complete snapshot `snap_id`, or None. Only a renamed folder has a meta file, so its
        presence proves completeness without taking the lock."""
        path = self.snapshots_dir / snap_id
        try:
            return Snapshot(path, json.loads((path / META_FILE).read_text()))
        except (FileNotFoundError, ValueError):  # ValueError: a meta file cut short by a power loss
            return None

    def snapshots(self) -> list[Snapshot]:
        """Complete snapshots, newest first."""
        found = []
        if self.snapshots_dir.is_dir():
            for path in self.snapshots_dir.iterdir():
                if not path.name.startswith(".") and (snap := self.find(path.name)):
                    found.append(snap)
        return sorted(found, key=lambda s: s.meta.get("created", 0), reverse=True)

    def get_or_build(
        self, snap_id: str, build: Callable[[Path, list[Snapshot]], dict]
    ) -> tuple[Snapshot, bool]:
        """The snapshot `snap_id`, built first if missing; returns (snapshot, built_by_this_call).

        `build(tmp, previous)` fills `tmp/data` and returns the snapshot's metadata; `previous`
        are the complete older snapshots, from which unchanged files can be linked. Concurrent
        callers wait on the lock, then find the snapshot the winner built.
        """
        if snap := self.find(snap_id):
            return snap, False
        with self._disk_errors():
            return self._build_locked(snap_id, build)

    def _build_locked(
        self, snap_id: str, build: Callable[[Path, list[Snapshot]], dict]
    ) -> tuple[Snapshot, bool]:
        self.snapshots_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.dir / "lock")
        try:
            lock.acquire(timeout=0.5)
        except Timeout:
            log.info(
                "waiting for another process to finish preparing %s in %s", self.label, self.dir
            )
            lock.acquire()
        try:
            if snap := self.find(snap_id):  # built by whoever held the lock before us
                return snap, False
            self._remove_leftovers()
            if (self.snapshots_dir / snap_id).exists():  # there, but unreadable: replace it
                self._discard(self.snapshots_dir / snap_id)
            tmp = self.snapshots_dir / f".tmp-{snap_id}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            (tmp / "data").mkdir(parents=True)
            try:
                meta = build(tmp, self.snapshots())
                meta["created"] = time.time()
                (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
                os.rename(
                    tmp, self.snapshots_dir / snap_id
                )  # the commit: atomic on one file system
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._prune()
            return self.find(snap_id), True
        finally:
            lock.release()

    @contextmanager
    def _disk_errors(self):
        """A full disk or a cache folder we may not write to is the user's to fix: say so, and
        where."""
        try:
            yield
        except OSError as err:
            if err.errno not in (
                errno.ENOSPC,
                errno.EDQUOT,
                errno.EFBIG,  # a file larger than the file system or `ulimit -f` allows
                errno.EACCES,
                errno.EPERM,
                errno.EROFS,
            ):
                raise
            free = shutil.disk_usage(self.dir).free if self.dir.exists() else None
            room = f"; {free / 1e6:.1f} MB free there" if free is not None else ""
            raise DatasetError(
                f"{self.dir}: {err.strerror} while preparing the dataset cache "
                f"(writing {err.filename or 'a file'}{room}; the incomplete copy was removed); "
                f"free some space, or choose another cache folder with --cache_dir or ${CACHE_ENV}"
            ) from None

    def _remove_leftovers(self) -> None:
        """Temporary folders of builders that died (we hold the lock, so nobody else is
        building)."""
        for path in self.snapshots_dir.glob(".tmp-*"):
            log.info("removing an incomplete download left by an interrupted run: %s", path)
            shutil.rmtree(path, ignore_errors=True)
        for path in self.snapshots_dir.glob(".trash-*"):
            shutil.rmtree(path, ignore_errors=True)

    def _prune(self) -> None:
        for old in self.snapshots()[KEEP_SNAPSHOTS:]:
            self._discard(old.path)

    def _discard(self, path: Path) -> None:
        # Rename first: a half-deleted snapshot must never look complete.
        trash = self.snapshots_dir / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)


def snapshot_result(
    parsed: DatasetRef, snap: Snapshot, built: bool, require_layout: bool, **stats
) -> FetchResult:
    """What fetching `parsed` gave when the dataset is snapshot `snap` (`built` by this call or
    not)."""
    if (
        require_layout and snap.meta.get("layout") == "none"
    ):  # a snapshot `data inspect` made of a bad dataset
        found = top_entries(p.name + ("/" if p.is_dir() else "") for p in snap.data.iterdir())
        raise no_layout(parsed.ref, found)
    return FetchResult(
        parsed.ref, snap.root, parsed.kind, built=built, snapshot=snap.path, tree=snap.data, **stats
    )


def link_or_copy(source: Path, target: Path) -> None:
    """Share an unchanged file between snapshots (hard link), copying where links are not
    possible."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
