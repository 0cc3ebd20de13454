"""Dataset references: turn what the user wrote (`--dataroot`, a manifest's `data:`) into a local folder.

    /path/to/folder, file:///path/to/folder          used in place
    s3://bucket/prefix                                the objects under the prefix, mirrored into the cache
    PATH.zip|.tar|.tar.gz, s3://bucket/key.zip        extracted into the cache; the dataset root is the
                                                      folder inside holding trainA/ trainB/
    synthetic://KIND?size=S&n_train=N&n_test=M&seed=K generated into the cache

Everything that is not used in place goes through the node-local cache (cache.py): keyed by the
reference and what it was built from (ETags and sizes), built by one process under a file lock
while the others wait, and published by an atomic rename.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from . import s3
from .archives import archive_suffix, extract, find_dataset_root, top_entries
from .cache import CacheEntry, Snapshot, contained, digest, link_or_copy, safe_relpath
from .errors import DatasetError

log = logging.getLogger(__name__)

ACCEPTED_FORMS = ("a folder holding trainA/ trainB/ (or file:///path/to/it); s3://bucket/prefix; "
                  "a .zip, .tar or .tar.gz archive (a local path or s3://bucket/key.zip); "
                  "synthetic://KIND?size=S&n_train=N&n_test=M&seed=K")
# What any S3 store could call a bucket: today's AWS rules (3-63 lowercase letters, digits, '.' '-') and
# the legacy ones that older buckets and some S3-compatible stores still use (uppercase, '_', up to 255).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
UNSUPPORTED_ARCHIVES = (".rar", ".7z", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.zst", ".gz", ".bz2", ".xz")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class DatasetRef:
    ref: str  # as written
    kind: str  # folder, archive, s3, s3-archive or synthetic
    location: str  # a local path, an s3:// URL (no trailing slash) or a synthetic kind
    params: tuple[tuple[str, int], ...] = ()  # synthetic parameters, in synthetic.PARAMETERS' order

    @property
    def canonical(self) -> str:
        if self.kind == "synthetic":
            return f"synthetic://{self.location}?" + "&".join(f"{k}={v}" for k, v in self.params)
        return self.location


@dataclass
class FetchResult:
    """What `fetch_dataset` did: where the dataset is, and what had to be downloaded for it."""

    ref: str
    path: Path  # the dataset root: holds trainA/ trainB/ (testA/ testB/)
    kind: str
    downloaded: list[str] = field(default_factory=list)  # S3 keys fetched by this call ([] when cached)
    bytes_downloaded: int = 0
    reused: list[str] = field(default_factory=list)  # S3 keys linked, unchanged, from an older snapshot
    built: bool = False  # this call built the cache snapshot (download, extraction or generation)
    snapshot: Path | None = None  # the cache snapshot folder (None for a folder used in place)


def _bad(ref: str, why: str) -> DatasetError:
    return DatasetError(f"{ref}: {why}; a dataset reference is one of: {ACCEPTED_FORMS}")


def parse_reference(ref: str) -> DatasetRef:
    """Check the form of a dataset reference, without touching the file system or the network."""
    if not ref or not ref.strip():
        raise DatasetError("no dataset given: pass --dataroot with a folder holding trainA/ and trainB/, or one of: "
                           + ACCEPTED_FORMS)
    ref = ref.strip()
    match = _SCHEME.match(ref)
    scheme = match.group(1).lower() if match else ""
    if scheme == "s3":
        bucket, key = s3.split_url(ref)
        if not bucket:
            raise _bad(ref, "no bucket name")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise _bad(ref, "not a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-')")
        key = key.rstrip("/")
        url = f"s3://{bucket}/{key}" if key else f"s3://{bucket}"
        _check_archive_form(ref, key)
        return DatasetRef(ref, "s3-archive" if archive_suffix(key) else "s3", url)
    if scheme == "synthetic":
        return _parse_synthetic(ref)
    if scheme and scheme != "file":
        raise _bad(ref, f"unsupported scheme {scheme}://")
    path = unquote(ref.removeprefix("file://")) if scheme == "file" else ref
    path = str(Path(path).expanduser().absolute())
    _check_archive_form(ref, path)
    return DatasetRef(ref, "archive" if archive_suffix(path) else "folder", path)


def _check_archive_form(ref: str, name: str) -> None:
    """Refuse an archive format we cannot extract, named by its suffix."""
    lower = name.lower()
    unsupported = next((s for s in UNSUPPORTED_ARCHIVES if lower.endswith(s)), None)
    if unsupported and not archive_suffix(lower):
        raise _bad(ref, f"{unsupported} archives are not supported; repack it as .zip, .tar or .tar.gz")


def _parse_synthetic(ref: str) -> DatasetRef:
    from .synthetic import KINDS, PARAMETERS, parameter_problem

    parts = urlsplit(ref)
    kind = parts.netloc
    if kind not in KINDS:
        raise _bad(ref, f"unknown synthetic kind {kind!r} (available: {', '.join(KINDS)})")
    if parts.path not in ("", "/"):
        raise _bad(ref, "a synthetic reference has no path, only parameters after '?'")
    values = {name: default for name, (default, _, _) in PARAMETERS.items()}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in PARAMETERS:
            raise _bad(ref, f"unknown synthetic parameter {name!r} (accepted: {', '.join(PARAMETERS)})")
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", value.strip()):
            raise _bad(ref, f"synthetic parameter {name}={value[:20]!r} is not an integer")
        values[name] = int(value)
    if problem := parameter_problem(values, kind):
        raise _bad(ref, problem)
    return DatasetRef(ref, "synthetic", kind, tuple(values.items()))


def fetch_dataset(ref: str, cache_dir: str | None = None, *, endpoint_url: str | None = None,
                  show_progress: bool | None = None, require_layout: bool = True) -> FetchResult:
    """Make the dataset `ref` available locally (downloading, extracting or generating it into the
    cache unless an up-to-date copy is there) and say what that took.

    `endpoint_url`: an S3-compatible store (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS).
    `show_progress`: a download progress bar (default: when stderr is a terminal).
    `require_layout`: fail unless trainA/ or trainB/ (or testA/ testB/) appear somewhere; without it
    a dataset lacking them resolves to its top folder (for `data inspect` to show what is there).
    """
    parsed = parse_reference(ref)
    progress = sys.stderr.isatty() if show_progress is None else show_progress
    if parsed.kind == "folder":
        path = Path(parsed.location)
        if not path.is_dir():
            raise _bad(ref, "dataset folder not found" if not path.exists() else "a file that is not a .zip, .tar or .tar.gz archive")
        return FetchResult(ref, path, "folder")
    if parsed.kind == "archive":
        return _local_archive(parsed, cache_dir, require_layout)
    if parsed.kind == "synthetic":
        return _synthetic(parsed, cache_dir)
    client = s3.make_client(endpoint_url)
    entry = CacheEntry(cache_dir, "s3", digest(s3.endpoint_url(endpoint_url) or "aws", parsed.location),
                       parsed.location.rstrip("/").rsplit("/", 1)[-1])
    if parsed.kind == "s3-archive":
        return _s3_archive(parsed, entry, client, progress, require_layout)
    return _s3_prefix(parsed, entry, client, progress, require_layout)


def resolve_dataset(ref: str, cache_dir: str | None = None, *, endpoint_url: str | None = None,
                    show_progress: bool | None = None) -> Path:
    """Return a local folder holding trainA/ trainB/ (testA/ testB/) for `ref`; see fetch_dataset."""
    return fetch_dataset(ref, cache_dir, endpoint_url=endpoint_url, show_progress=show_progress).path


# -- the dataset root inside a snapshot ----------------------------------------------------------
def _layout(files: list[str], where: str, require: bool) -> dict:
    """Snapshot metadata locating the dataset root among `files` (relative paths)."""
    found = find_dataset_root(files, where)
    if found is None:
        if require:
            raise _no_layout(where, top_entries(files))
        tops = {name.split("/")[0] for name in files}
        # A single top folder (an archive's 'horse2zebra/') is where a user would look first.
        single = next(iter(tops)) if len(tops) == 1 and all("/" in name for name in files) else ""
        return {"root": single, "layout": "none"}
    root, complete = found
    return {"root": root, "layout": "complete" if complete else "partial"}


def _no_layout(where: str, found: str) -> DatasetError:
    return DatasetError(f"{where}: no trainA/ or trainB/ anywhere in it (found: {found}); a dataset holds "
                        "trainA/ trainB/ (and testA/ testB/), at its top or in one folder such as horse2zebra/")


def _result(parsed: DatasetRef, snap: Snapshot, built: bool, require_layout: bool, **stats) -> FetchResult:
    if require_layout and snap.meta.get("layout") == "none":  # a snapshot `data inspect` made of a bad dataset
        found = top_entries(p.name + ("/" if p.is_dir() else "") for p in snap.data.iterdir())
        raise _no_layout(parsed.ref, found)
    return FetchResult(parsed.ref, snap.root, parsed.kind, built=built, snapshot=snap.path, **stats)


# -- one function per kind -------------------------------------------------------------------------
def _local_archive(parsed: DatasetRef, cache_dir: str | None, require_layout: bool) -> FetchResult:
    path = Path(parsed.location)
    if not path.is_file():
        raise _bad(parsed.ref, "no such archive file")
    stat = path.stat()
    entry = CacheEntry(cache_dir, "archive", str(path), path.name)

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        log.info("extracting %s into the cache %s", path, entry.dir)
        files = extract(path, tmp / "data", parsed.ref)
        return {"ref": parsed.ref, "source": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns},
                **_layout(files, parsed.ref, require_layout)}

    snap, built = entry.get_or_build(digest(stat.st_size, stat.st_mtime_ns)[:16], build)
    return _result(parsed, snap, built, require_layout)


def _synthetic(parsed: DatasetRef, cache_dir: str | None) -> FetchResult:
    from .synthetic import generate

    params = dict(parsed.params)
    entry = CacheEntry(cache_dir, "synthetic", parsed.canonical, f"{parsed.location}-{params['size']}px-{params['n_train']}")

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        log.info("generating %s into the cache %s", parsed.canonical, entry.dir)
        generate(parsed.location, tmp / "data", params["n_train"], params["n_test"], params["size"], params["seed"])
        return {"ref": parsed.canonical, "root": "", "layout": "complete"}

    snap, built = entry.get_or_build(digest(parsed.canonical)[:16], build)
    return _result(parsed, snap, built, True)


def _s3_archive(parsed: DatasetRef, entry: CacheEntry, client, progress: bool, require_layout: bool) -> FetchResult:
    url = parsed.location
    bucket, key = s3.split_url(url)
    obj = next((o for o in s3.list_objects(client, url) if o.key == key), None)
    if obj is None:
        parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        raise DatasetError(f"{url}: object not found at {s3.describe_endpoint(client)}; check the path "
                           f"(e.g. aws s3 ls s3://{bucket}/{parent})")
    stats = {"downloaded": [], "bytes_downloaded": 0}

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        suffix = archive_suffix(key)
        archive = tmp / f"archive{suffix}"
        stats["bytes_downloaded"] = s3.download(client, url, [(obj, archive)], show_progress=progress)
        stats["downloaded"] = [obj.key]
        files = extract(archive, tmp / "data", url, suffix)
        archive.unlink()  # the extracted snapshot is the cache; the archive would double the disk use
        return {"ref": url, "objects": {obj.key: {"etag": obj.etag, "size": obj.size}}, **_layout(files, url, require_layout)}

    snap, built = entry.get_or_build(digest(obj.etag, obj.size)[:16], build)
    if built:
        log.info("%s: downloaded %.1f MB and extracted it into %s", url, stats["bytes_downloaded"] / 1e6, snap.path)
    return _result(parsed, snap, built, require_layout, **stats)


def _s3_prefix(parsed: DatasetRef, entry: CacheEntry, client, progress: bool, require_layout: bool) -> FetchResult:
    url = parsed.location
    bucket, prefix = s3.split_url(url)
    prefix = prefix + "/" if prefix else ""
    objects = s3.list_objects(client, url, prefix)
    if not objects:
        parent = prefix.rstrip("/").rpartition("/")[0]
        raise DatasetError(f"{url}: no objects under this prefix at {s3.describe_endpoint(client)} (the bucket exists); "
                           f"check the path (e.g. aws s3 ls s3://{bucket}/{parent + '/' if parent else ''})")
    # Every key is checked before anything is downloaded.
    items = {safe_relpath(o.key[len(prefix):], f"s3://{bucket}/{o.key}", "key"): o for o in objects}
    items.pop("", None)  # an object named like the prefix itself ('tiny/' with content): not part of the tree
    folders = {rel.rsplit("/", i)[0] for rel in items for i in range(1, rel.count("/") + 1)}
    if clash := sorted(folders & set(items)):  # 'a/trainA' and 'a/trainA/1.png' cannot both exist on disk
        raise DatasetError(f"s3://{bucket}/{prefix}{clash[0]}: this key is both a file and a folder; remove the object")
    layout = _layout(list(items), url, require_layout)
    listing = {rel: {"etag": o.etag, "size": o.size} for rel, o in items.items()}
    stats = {"downloaded": [], "bytes_downloaded": 0, "reused": []}

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        data, todo = tmp / "data", []
        for rel, obj in items.items():
            target = contained(data, rel, url)
            old = next((s for s in previous if s.meta.get("objects", {}).get(rel) == listing[rel] and (s.data / rel).is_file()), None)
            if old is not None:  # unchanged since an older snapshot: share the file, no download
                link_or_copy(old.data / rel, target)
                stats["reused"].append(obj.key)
            else:
                todo.append((obj, target))
        stats["bytes_downloaded"] = s3.download(client, url, todo, show_progress=progress)
        stats["downloaded"] = [obj.key for obj, _ in todo]
        return {"ref": url, "objects": listing, **layout}

    snap, built = entry.get_or_build(digest(sorted((rel, v["etag"], v["size"]) for rel, v in listing.items()))[:16], build)
    if built:
        log.info("%s: downloaded %d file(s) (%.1f MB), %d unchanged reused, into %s", url, len(stats["downloaded"]),
                 stats["bytes_downloaded"] / 1e6, len(stats["reused"]), snap.path)
    return _result(parsed, snap, built, require_layout, **stats)


# -- checking a reference without fetching it ------------------------------------------------------
def check_dataset_reference(ref: str, *, endpoint_url: str | None = None) -> None:
    """Raise a DatasetError unless `ref` resolves and holds trainA/ and trainB/, without downloading,
    extracting or generating anything (what `orchestrator validate` runs for every task).
    An S3 archive can only be checked for existence here; its content is checked when fetched."""
    parsed = parse_reference(ref)
    if parsed.kind == "synthetic":
        from .synthetic import KINDS

        KINDS[parsed.location].source()  # what a kind draws from is here (photo: the photographs)
        return
    if parsed.kind == "folder":
        from .data import check_dataset_root

        check_dataset_root(fetch_dataset(ref).path)
        return
    if parsed.kind == "archive":
        if not Path(parsed.location).is_file():
            raise _bad(ref, "no such archive file")
        names = _archive_names(Path(parsed.location), ref)
    else:
        client = s3.make_client(endpoint_url)
        bucket, key = s3.split_url(parsed.location)
        prefix = key + "/" if parsed.kind == "s3" and key else key
        objects = s3.list_objects(client, parsed.location, prefix)
        if parsed.kind == "s3-archive":
            if not any(o.key == key for o in objects):
                raise DatasetError(f"{parsed.location}: not found at {s3.describe_endpoint(client)}; check the path")
            return
        if not objects:
            raise DatasetError(f"{parsed.location}: no objects under this prefix at {s3.describe_endpoint(client)}")
        names = [o.key[len(prefix):] for o in objects]
    found = find_dataset_root(names, ref)
    if found is None or not found[1]:
        raise _no_layout(ref, top_entries(names))


def _archive_names(path: Path, ref: str) -> list[str]:
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return archive.namelist()
        with tarfile.open(path) as archive:
            return archive.getnames()
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as err:
        raise DatasetError(f"{ref}: not a readable .zip/.tar archive ({err}); check the file") from None
