"""Datasets in S3 (and S3-compatible stores: MinIO, Ceph, moto): list, then download in parallel.

    s3://bucket/prefix     the objects under the prefix, mirrored into the node cache
    s3://bucket/key.zip    an archive (.zip, .tar, .tar.gz), downloaded and extracted into the cache

Credentials and region come from the usual AWS chain (environment, profile, instance role).
The endpoint is, in order: an explicit option, $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS.
Every botocore failure is turned into a DatasetError that names the URL (and the endpoint
when it cannot be reached); credentials never appear in messages or logs.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore.session
from boto3.s3.transfer import TransferConfig, create_transfer_manager
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from s3transfer.exceptions import RetriesExceededError, S3DownloadFailedError
from s3transfer.subscribers import BaseSubscriber
from tqdm.auto import tqdm

from ..errors import DatasetError
from ..urls import mask_userinfo
from .archives import archive_suffix, extract, unsupported_archive
from .cache import (
    CacheEntry,
    Snapshot,
    contained,
    digest,
    link_or_copy,
    safe_relpath,
    snapshot_result,
)
from .layout import find_dataset_root, no_layout, snapshot_layout, top_entries
from .s3_retry import RETRY_ENV, boto_attempts, is_transient, retrying, unreachable
from .schemes import DatasetRef, FetchResult, bad_reference

log = logging.getLogger(__name__)

ENDPOINT_ENVS = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
ADDRESSING_ENV = "CYCLEGAN_S3_ADDRESSING_STYLE"  # path, virtual or auto
MAX_CONCURRENCY = 16
# What any S3 store could call a bucket: today's AWS rules (3-63 lowercase letters, digits, '.' '-')
# and the legacy ones that older buckets and some S3-compatible stores still use (uppercase, '_', up
# to 255).
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]")
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "ExpiredToken",
    "InvalidToken",
    "InvalidClientTokenId",
    "AccountProblem",
}


@dataclass(frozen=True)
class S3Object:
    key: str
    etag: str  # as S3 sends it, quotes included (what If-Match wants)
    size: int


def split_url(url: str) -> tuple[str, str]:
    """'s3://bucket/some/prefix' -> ('bucket', 'some/prefix')."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    return bucket, key


def resolve_endpoint(explicit: str | None = None) -> str | None:
    """The S3 endpoint to use: `explicit`, else $AWS_ENDPOINT_URL_S3, else $AWS_ENDPOINT_URL, else
    None (AWS)."""
    return explicit or next(
        (os.environ[name] for name in ENDPOINT_ENVS if os.environ.get(name)), None
    )


def make_client(endpoint: str | None = None, *, addressing_style: str | None = None):
    """A thread-safe S3 client with retries (exponential backoff on throttling and transient
    errors)."""
    session = botocore.session.get_session()
    endpoint = resolve_endpoint(endpoint)
    # Custom stores (MinIO, Ceph, moto) usually serve buckets under the path, not as sub-domains.
    style = (
        addressing_style
        or os.environ.get(ADDRESSING_ENV)
        or (session.get_config_variable("s3") or {}).get("addressing_style")
    )
    style = style or ("path" if endpoint else "auto")
    if style not in ("path", "virtual", "auto"):
        raise DatasetError(f"${ADDRESSING_ENV}={style!r}: use path, virtual or auto")
    config = Config(
        # AWS_MAX_ATTEMPTS / AWS_RETRY_MODE (or the profile's settings) still win over these
        # defaults.
        retries={
            "mode": session.get_config_variable("retry_mode") or "standard",
            "max_attempts": int(session.get_config_variable("max_attempts") or boto_attempts()),
        },
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=MAX_CONCURRENCY + 4,
        s3={"addressing_style": style},
    )
    try:
        return boto3.Session(botocore_session=session).client(
            "s3", endpoint_url=endpoint, config=config
        )
    except ValueError as err:  # botocore's "Invalid endpoint: ..."
        shown = mask_userinfo(str(endpoint))
        raise DatasetError(
            f"S3 endpoint {shown!r} is not usable ({mask_userinfo(str(err))}); give a URL such as http://minio:9000"
        ) from None


def describe_endpoint(client) -> str:
    """The client's endpoint for messages: no user info (credentials) in it."""
    return mask_userinfo(client.meta.endpoint_url)


@contextmanager
def s3_errors(url: str, client):
    """Turn botocore/s3transfer failures into a DatasetError naming `url` and what to do; an
    endpoint that accepts no connection at all fails at once rather than after the retries."""
    reason = unreachable(client.meta.endpoint_url)
    if reason:
        raise DatasetError(f"{url}: {_cannot_reach(client, reason)}")
    try:
        yield
    except ClientError as err:
        raise _client_error(err, url, client) from None
    except (NoCredentialsError, PartialCredentialsError):
        raise DatasetError(
            f"{url}: no usable AWS credentials found; set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run on a machine with an instance role"
        ) from None
    except (BotoConnectionError, HTTPClientError, RetriesExceededError) as err:
        raise DatasetError(f"{url}: {_cannot_reach(client, err.__class__.__name__)}") from None
    except IncompleteDownload as err:
        raise DatasetError(
            f"{url}: downloads kept coming back short ({err}) for ${RETRY_ENV} seconds; run again"
        ) from None
    except S3DownloadFailedError as err:
        raise DatasetError(
            f"{url}: download failed ({err}); the object may have changed while it was being "
            "downloaded: run again"
        ) from None
    except BotoCoreError as err:
        raise DatasetError(f"{url}: S3 request failed: {err}") from None


def _cannot_reach(client, reason: str) -> str:
    return (
        f"cannot reach the S3 endpoint {describe_endpoint(client)} ({reason}); check the "
        f"network, or the endpoint ({', '.join('$' + e for e in ENDPOINT_ENVS)}, "
        "--s3_endpoint_url)"
    )


def _client_error(err: ClientError, url: str, client) -> DatasetError:
    error = err.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    bucket, _ = split_url(url)
    endpoint = describe_endpoint(client)
    if code == "NoSuchBucket":
        return DatasetError(
            f"{url}: bucket {bucket!r} not found at {endpoint}; check the bucket name (and the "
            f"endpoint "
            "for MinIO/Ceph)"
        )
    if code in _DENIED or status == 403:
        return DatasetError(
            f"{url}: access denied ({code or status}) at {endpoint}; check the credentials "
            "(AWS_PROFILE or AWS_ACCESS_KEY_ID...) and that they may list and read this bucket"
        )
    if code in ("NoSuchKey", "404") or status == 404:
        return DatasetError(
            f"{url}: not found at {endpoint}; check the path (e.g. aws s3 ls s3://{bucket}/)"
        )
    if code == "PreconditionFailed":
        return DatasetError(f"{url}: an object changed while it was being downloaded; run again")
    return DatasetError(f"{url}: S3 error {code or status}: {error.get('Message', err)}")


def list_objects(client, url: str, prefix: str | None = None) -> list[S3Object]:
    """Every object whose key starts with `prefix` (default: the URL's key), folder markers left
    out, sorted by key. Errors name `url`."""
    bucket, key = split_url(url)
    prefix = key if prefix is None else prefix
    objects = []
    with s3_errors(url, client):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                if not (item["Key"].endswith("/") and item["Size"] == 0):
                    objects.append(S3Object(item["Key"], item["ETag"], int(item["Size"])))
    return sorted(objects, key=lambda o: o.key)


class _Progress(BaseSubscriber):
    """Hands s3transfer the size and ETag we listed (no HEAD request; If-Match pins that version),
    and feeds the shared progress bar."""

    def __init__(self, obj: S3Object, bar: tqdm, counter: list, lock: threading.Lock):
        self.obj, self.bar, self.counter, self.lock = obj, bar, counter, lock

    def on_queued(self, future, **kwargs):
        future.meta.provide_transfer_size(self.obj.size)
        if hasattr(future.meta, "provide_object_etag"):
            future.meta.provide_object_etag(self.obj.etag)

    def on_progress(self, future, bytes_transferred, **kwargs):
        self.bar.update(bytes_transferred)

    def on_done(self, future, **kwargs):
        with self.lock:
            self.counter[0] += 1
            self.bar.set_postfix_str(f"{self.counter[0]}/{self.counter[1]} files", refresh=False)


class _Unfinished(ConnectionError):
    """Some downloads of a batch failed transiently or came back short: `items` to fetch again."""

    def __init__(self, items: list[tuple[S3Object, Path]], cause: BaseException):
        super().__init__(str(cause))
        self.items, self.cause = items, cause


def download(
    client, url: str, items: list[tuple[S3Object, Path]], *, show_progress: bool = False
) -> int:
    """Download each (object, local path) in parallel (large objects in parallel ranges too);
    return the bytes downloaded. Each file is written to a temporary name, then renamed; a file
    whose size is not the listed one (a body cut short) is downloaded again, never kept, and so
    are those that met throttling or a reset, while $CYCLEGAN_S3_RETRY_S allows."""
    total = sum(obj.size for obj, _ in items)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=f"downloading {url}",
        disable=not show_progress,
        dynamic_ncols=True,
    ) as bar:
        counter, lock = [0, len(items)], threading.Lock()
        bar.set_postfix_str(f"0/{len(items)} files")
        todo = list(items)

        def attempt() -> None:
            nonlocal todo
            try:
                _transfer(client, url, todo, lambda obj: _Progress(obj, bar, counter, lock))
            except _Unfinished as err:
                todo = err.items
                raise

        try:
            retrying(
                attempt,
                f"downloading {url}",
                transient=lambda err: isinstance(err, _Unfinished) and is_transient(err.cause),
            )
        except _Unfinished as err:
            with s3_errors(f"s3://{split_url(url)[0]}/{err.items[0][0].key}", client):
                raise err.cause from None
    return total


def _transfer(client, url: str, items, subscriber) -> None:
    """One pass over `items`; _Unfinished names those to try again (transient failures, short
    files) with the first such error."""
    bucket, _ = split_url(url)
    config = TransferConfig(
        max_concurrency=MAX_CONCURRENCY,
        multipart_threshold=64 << 20,
        multipart_chunksize=16 << 20,
        num_download_attempts=3,
    )
    again = []
    first: BaseException | None = None
    with create_transfer_manager(client, config) as manager:
        futures = []
        for obj, path in items:
            path.parent.mkdir(parents=True, exist_ok=True)
            future = manager.download(bucket, obj.key, str(path), subscribers=[subscriber(obj)])
            futures.append((obj, path, future))
        for obj, path, future in futures:
            try:
                future.result()
                size = path.stat().st_size
                if size != obj.size:
                    path.unlink()
                    raise IncompleteDownload(f"{obj.key}: {size} of {obj.size} bytes")
            except Exception as err:
                if not is_transient(err):
                    with s3_errors(f"s3://{bucket}/{obj.key}", client):  # name the object
                        raise
                again.append((obj, path))
                first = first or err
    if again:
        raise _Unfinished(again, first)


class IncompleteDownload(ConnectionError):
    """A downloaded file is not as long as the listing said: a body cut short."""


# -- the s3:// dataset scheme ----------------------------------------------------------------------
def parse(ref: str) -> DatasetRef:
    bucket, key = split_url(ref[len("s3://") :] if ref.lower().startswith("s3://") else ref)
    if not bucket:
        raise bad_reference(ref, "no bucket name")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise bad_reference(
            ref, "not a valid S3 bucket name (3-63 lowercase letters, digits, '.' and '-')"
        )
    key = key.rstrip("/")
    if unsupported := unsupported_archive(key):
        raise bad_reference(
            ref, f"{unsupported} archives are not supported; repack it as .zip, .tar or .tar.gz"
        )
    return DatasetRef(
        ref,
        "s3-archive" if archive_suffix(key) else "s3",
        f"s3://{bucket}/{key}" if key else f"s3://{bucket}",
    )


def fetch(
    parsed: DatasetRef,
    cache_dir: str | None,
    *,
    endpoint_url: str | None = None,
    show_progress: bool = False,
    require_layout: bool = True,
) -> FetchResult:
    client = make_client(endpoint_url)
    entry = CacheEntry(
        cache_dir,
        "s3",
        digest(resolve_endpoint(endpoint_url) or "aws", parsed.location),
        parsed.location.rstrip("/").rsplit("/", 1)[-1],
    )
    if parsed.kind == "s3-archive":
        return _fetch_archive(parsed, entry, client, show_progress, require_layout)
    return _fetch_prefix(parsed, entry, client, show_progress, require_layout)


def _fetch_archive(
    parsed: DatasetRef, entry: CacheEntry, client, progress: bool, require_layout: bool
) -> FetchResult:
    url = parsed.location
    bucket, key = split_url(url)
    obj = next((o for o in list_objects(client, url) if o.key == key), None)
    if obj is None:
        parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
        raise DatasetError(
            f"{url}: object not found at {describe_endpoint(client)}; check the path "
            f"(e.g. aws s3 ls s3://{bucket}/{parent})"
        )
    stats = {"downloaded": [], "bytes_downloaded": 0}

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        suffix = archive_suffix(key)
        archive = tmp / f"archive{suffix}"
        stats["bytes_downloaded"] = download(client, url, [(obj, archive)], show_progress=progress)
        stats["downloaded"] = [obj.key]
        files = extract(archive, tmp / "data", url, suffix)
        # the extracted snapshot is the cache; the archive would double the disk use
        archive.unlink()
        return {
            "ref": url,
            "objects": {obj.key: {"etag": obj.etag, "size": obj.size}},
            **snapshot_layout(files, url, require_layout),
        }

    snap, built = entry.get_or_build(digest(obj.etag, obj.size)[:16], build)
    if built:
        log.info(
            "%s: downloaded %.1f MB and extracted it into %s",
            url,
            stats["bytes_downloaded"] / 1e6,
            snap.path,
        )
    return snapshot_result(parsed, snap, built, require_layout, **stats)


def _fetch_prefix(
    parsed: DatasetRef, entry: CacheEntry, client, progress: bool, require_layout: bool
) -> FetchResult:
    url = parsed.location
    bucket, prefix = split_url(url)
    prefix = prefix + "/" if prefix else ""
    objects = list_objects(client, url, prefix)
    if not objects:
        parent = prefix.rstrip("/").rpartition("/")[0]
        raise DatasetError(
            f"{url}: no objects under this prefix at {describe_endpoint(client)} (the bucket "
            f"exists); "
            f"check the path (e.g. aws s3 ls s3://{bucket}/{parent + '/' if parent else ''})"
        )
    # Every key is checked before anything is downloaded.
    items = {
        safe_relpath(o.key[len(prefix) :], f"s3://{bucket}/{o.key}", "key"): o for o in objects
    }
    items.pop(
        "", None
    )  # an object named like the prefix itself ('tiny/' with content): not part of the tree
    folders = {rel.rsplit("/", i)[0] for rel in items for i in range(1, rel.count("/") + 1)}
    if clash := sorted(
        folders & set(items)
    ):  # 'a/trainA' and 'a/trainA/1.png' cannot both exist on disk
        raise DatasetError(
            f"s3://{bucket}/{prefix}{clash[0]}: this key is both a file and a folder; remove the "
            f"object"
        )
    layout = snapshot_layout(list(items), url, require_layout)
    listing = {rel: {"etag": o.etag, "size": o.size} for rel, o in items.items()}
    stats = {"downloaded": [], "bytes_downloaded": 0, "reused": []}

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        data, todo = tmp / "data", []
        for rel, obj in items.items():
            target = contained(data, rel, url)
            old = next(
                (
                    s
                    for s in previous
                    if s.meta.get("objects", {}).get(rel) == listing[rel]
                    and (s.data / rel).is_file()
                ),
                None,
            )
            if old is not None:  # unchanged since an older snapshot: share the file, no download
                link_or_copy(old.data / rel, target)
                stats["reused"].append(obj.key)
            else:
                todo.append((obj, target))
        stats["bytes_downloaded"] = download(client, url, todo, show_progress=progress)
        stats["downloaded"] = [obj.key for obj, _ in todo]
        return {"ref": url, "objects": listing, **layout}

    snap, built = entry.get_or_build(
        digest(sorted((rel, v["etag"], v["size"]) for rel, v in listing.items()))[:16], build
    )
    if built:
        log.info(
            "%s: downloaded %d file(s) (%.1f MB), %d unchanged reused, into %s",
            url,
            len(stats["downloaded"]),
            stats["bytes_downloaded"] / 1e6,
            len(stats["reused"]),
            snap.path,
        )
    return snapshot_result(parsed, snap, built, require_layout, **stats)


def check(parsed: DatasetRef, *, endpoint_url: str | None = None) -> None:
    """An archive can only be checked for existence here; its content is checked when fetched."""
    client = make_client(endpoint_url)
    bucket, key = split_url(parsed.location)
    prefix = key + "/" if parsed.kind == "s3" and key else key
    objects = list_objects(client, parsed.location, prefix)
    if parsed.kind == "s3-archive":
        if not any(o.key == key for o in objects):
            raise DatasetError(
                f"{parsed.location}: not found at {describe_endpoint(client)}; check the path"
            )
        return
    if not objects:
        raise DatasetError(
            f"{parsed.location}: no objects under this prefix at {describe_endpoint(client)}"
        )
    names = [o.key[len(prefix) :] for o in objects]
    found = find_dataset_root(names, parsed.ref)
    if found is None or not found[1]:
        raise no_layout(parsed.ref, top_entries(names))
