"""Where Ray Train runs keep their checkpoints: a local (or shared) folder, or S3.

    /shared/runs, ./runs, file:///shared/runs   a folder (shared by every node on a cluster)
    s3://bucket/prefix                           AWS, or an S3-compatible store (MinIO, Ceph, moto):
                                                 endpoint from $AWS_ENDPOINT_URL_S3 or
                                                 $AWS_ENDPOINT_URL
    s3://bucket/prefix?endpoint_override=HOST:PORT&scheme=http&region=R
                                                 the same, said in the URI

S3 calls ride out throttling, resets and short bodies (cyclegan.sources.s3_retry): the filesystem
retries each request (for about $CYCLEGAN_S3_RETRY_S seconds, in every process it is unpickled in),
and the check below retries throttling itself (an unreachable endpoint still fails in seconds).
`storage_child` joins a path onto any of these forms (the query string stays at the end).

`validate_storage` checks, before anything starts, that the folder can be created and
written, or that the endpoint answers, the bucket exists and a probe object can be written
and deleted; every failure is one `StorageError` naming the storage and the endpoint.
Credentials come from the usual AWS chain and never appear in messages.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pyarrow.fs as pafs

from cyclegan.errors import UserError
from cyclegan.sources.s3 import resolve_endpoint as default_endpoint_url
from cyclegan.sources.s3_retry import is_transient, pyarrow_attempts, retrying
from orchestrator.redact import mask_text

# Short limits for the up-front check only: an unreachable endpoint should fail in seconds.
CHECK_CONNECT_TIMEOUT_S = 5.0
CHECK_REQUEST_TIMEOUT_S = 20.0


# An endpoint that cannot be reached at all is not a fault to ride out in the up-front check.
_UNREACHABLE = (
    "curlcode: 7,",  # refused
    "curlcode: 6,",  # no such host
    "curlcode: 28,",  # no answer in time
    "could not connect",
    "couldn't connect",
    "resolve",
)


class RetryingS3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem with retries for $CYCLEGAN_S3_RETRY_S: pyarrow does not pickle a
    retry strategy, so this one is rebuilt with it wherever Ray unpickles it (controller, trials,
    workers)."""

    def __init__(self, attempts: int | None = None, **options):
        self.attempts = attempts or pyarrow_attempts()
        super().__init__(
            retry_strategy=pafs.AwsDefaultS3RetryStrategy(max_attempts=self.attempts), **options
        )

    def __reduce__(self):
        _, (options,) = super().__reduce__()
        return _rebuild, (self.attempts, options)


def _rebuild(attempts: int, options: dict) -> RetryingS3FileSystem:
    return RetryingS3FileSystem(attempts, **options)


class StorageError(UserError):
    """Storage that Ray Train could not use (missing bucket, unreachable endpoint, read-only
    folder...)."""


@dataclass(frozen=True)
class Storage:
    """A parsed storage location. `path` and `filesystem` are what `ray.train.RunConfig` takes."""

    shown: str  # the location for messages (credentials masked)
    path: str  # local folder, or "bucket/prefix" for S3
    filesystem: pafs.FileSystem | None = None  # None: local
    endpoint: str | None = None  # S3 endpoint URL (None: AWS)

    @property
    def is_local(self) -> bool:
        return self.filesystem is None

    def run_uri(self, name: str, *parts: str) -> str:
        """Where run `name` (and files under it) lives, as a user would write it."""
        tail = "/".join((name, *parts))
        return (
            str(Path(self.path, tail)) if self.is_local else f"s3://{self.path.rstrip('/')}/{tail}"
        )


def parse_storage(uri: str, endpoint_url: str | None = None) -> Storage:
    """Parse without touching the network or the disk (relative folders become absolute here,
    on the driver: Ray workers run in other directories)."""
    if not uri or not uri.strip():
        raise StorageError("storage: empty; pass a folder or s3://bucket/prefix")
    shown = mask_text(uri)
    if "://" not in uri or uri.startswith("file://"):
        return Storage(
            shown=shown, path=str(Path(uri.removeprefix("file://")).expanduser().resolve())
        )
    parts = urlsplit(uri)
    if parts.scheme != "s3":
        raise StorageError(
            f"storage {shown}: unsupported scheme {parts.scheme}://; use a folder or s3://bucket/prefix"
        )
    bucket, prefix = parts.netloc.rpartition("@")[2], parts.path.strip("/")
    if not bucket:
        raise StorageError(f"storage {shown}: no bucket; write s3://bucket/prefix")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"endpoint_override", "scheme", "region"}
    if unknown:
        raise StorageError(
            f"storage {shown}: unknown option(s) {', '.join(sorted(unknown))}; "
            "the URI takes endpoint_override, scheme and region"
        )
    endpoint = query.get("endpoint_override") or default_endpoint_url(endpoint_url)
    options: dict = {}
    if endpoint:
        scheme = query.get("scheme")
        if "://" in endpoint:
            parsed = urlsplit(endpoint)
            scheme, endpoint = scheme or parsed.scheme, parsed.netloc
        scheme = scheme or "https"
        options.update(endpoint_override=endpoint, scheme=scheme)
        endpoint = f"{scheme}://{endpoint}"
    region = (
        query.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    )
    if region or endpoint:
        options["region"] = (
            region or "us-east-1"
        )  # custom stores ignore it, but pyarrow would look it up
    # No credentials here: every process (driver, Ray controller, workers) reads its own AWS chain,
    # so none travel inside the pickled filesystem.
    fs = RetryingS3FileSystem(**options)
    return Storage(
        shown=shown, path=f"{bucket}/{prefix}".rstrip("/"), filesystem=fs, endpoint=endpoint
    )


def storage_child(uri: str, *parts: str) -> str:
    """`uri` (a folder or an s3:// URI, query string included) with `parts` joined onto its path:
    `s3://b/p?scheme=http` + `exp` -> `s3://b/p/exp?scheme=http`."""
    if "://" not in uri or uri.startswith("file://"):
        return "/".join((uri.rstrip("/"), *parts))
    split = urlsplit(uri)
    return urlunsplit(split._replace(path="/".join((split.path.rstrip("/"), *parts))))


def without_userinfo(uri: str) -> str:
    """`s3://KEY:SECRET@bucket/prefix` -> `s3://bucket/prefix`: the same storage (parse_storage
    ignores user info; credentials come from the AWS chain), safe to hand to Ray, which stores
    it."""
    parts = urlsplit(uri)
    return (
        urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        if "@" in parts.netloc
        else uri
    )


def validate_storage(storage: str | Storage, endpoint_url: str | None = None) -> Storage:
    """Parse and check `storage` as described above; return it, ready for RunConfig."""
    target = storage if isinstance(storage, Storage) else parse_storage(storage, endpoint_url)
    if target.is_local:
        _check_folder(target)
    else:
        _check_bucket(target)
    return target


def _check_folder(target: Storage) -> None:
    folder = Path(target.path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as err:
        raise StorageError(
            f"storage {target.shown}: cannot create or write this folder ({err.strerror or err}); "
            "pass a writable folder (shared by all nodes on a cluster) or s3://bucket/prefix"
        ) from None


def _check_bucket(target: Storage) -> None:
    checker = _checking_filesystem(target)
    bucket = target.path.split("/", 1)[0]
    where = f"at {mask_text(target.endpoint)}" if target.endpoint else "on AWS S3"
    try:
        info = retrying(lambda: checker.get_file_info(bucket), f"checking {target.shown}", _retry)
    except OSError as err:
        raise _s3_error(target, where, err) from None
    if info.type == pafs.FileType.NotFound:
        raise StorageError(
            f"storage {target.shown}: bucket '{bucket}' does not exist {where}; create it, or fix "
            f"the "
            "bucket name or the endpoint ($AWS_ENDPOINT_URL_S3, or ?endpoint_override= in the URI)"
        )
    probe = f"{target.path}/.write-check-{uuid.uuid4().hex}"

    def write_probe() -> None:
        with checker.open_output_stream(probe) as stream:
            stream.write(b"ok")

    try:
        retrying(write_probe, f"checking {target.shown}", _retry)
        retrying(lambda: checker.delete_file(probe), f"checking {target.shown}", _retry)
    except OSError as err:
        raise _s3_error(target, where, err, writing=True) from None


def _retry(err: BaseException) -> bool:
    """Throttling, 5xx and resets are retried in the check too; an endpoint that does not
    answer at all is not."""
    text = str(err).lower()
    return is_transient(err) and not any(word in text for word in _UNREACHABLE)


def _checking_filesystem(target: Storage) -> pafs.S3FileSystem:
    """The same endpoint as `target`, with short timeouts and a single retry of its own (`_retry`
    decides on more)."""
    options = {
        "connect_timeout": CHECK_CONNECT_TIMEOUT_S,
        "request_timeout": CHECK_REQUEST_TIMEOUT_S,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
    }
    if target.endpoint:
        parsed = urlsplit(target.endpoint)
        options.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    region = getattr(target.filesystem, "region", None)
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def _s3_error(target: Storage, where: str, err: OSError, writing: bool = False) -> StorageError:
    text = str(err)
    if (
        "NETWORK_CONNECTION" in text
        or "curlCode" in text
        or "Could not connect" in text
        or "timed out" in text.lower()
    ):
        return StorageError(
            f"storage {target.shown}: cannot reach the S3 endpoint "
            f"{mask_text(target.endpoint or 'of AWS')}; check that it is "
            "up and that $AWS_ENDPOINT_URL_S3 (or ?endpoint_override= in the URI) names it"
        )
    if any(
        code in text
        for code in (
            "ACCESS_DENIED",
            "AccessDenied",
            "403",
            "INVALID_ACCESS_KEY",
            "SignatureDoesNotMatch",
        )
    ):
        action = "write to" if writing else "read"
        return StorageError(
            f"storage {target.shown}: access denied {where} (cannot {action} the bucket); check "
            f"the AWS "
            "credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE / the instance role) and the bucket "
            "policy"
        )
    if "NO_SUCH_BUCKET" in text:
        return StorageError(
            f"storage {target.shown}: the bucket does not exist {where}; create it first"
        )
    action = "writing a probe object" if writing else "checking the bucket"
    return StorageError(
        f"storage {target.shown}: S3 error {where} while {action}: "
        f"{mask_text(text.splitlines()[0])[:300]}"
    )


def trial_run_name(task: str, trial_id: str) -> str:
    """A trial's folder under the trials' storage, and its Ray Train run's name: stable across
    retries."""
    return f"{task}-{trial_id}"
