"""Where a batch translation reads and writes: a folder or an S3 prefix, behind one interface.

S3 goes through cyclegan.sources.s3's client (endpoint option and environment, retries with
backoff, errors that name the URL), and every key is checked as the dataset sources check theirs: a
key that would climb out of its prefix is refused before anything is read or written. A store is
pickled to Ray's tasks and actors; its S3 client is built again in each process.

Writes are atomic: a folder gets a temporary file renamed over the target, S3 one PutObject (an
object is visible whole or not at all).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cyclegan.data import IMG_EXTENSIONS
from cyclegan.errors import UserError
from cyclegan.sources.cache import safe_relpath

# The job's own files at the output root: the report and the ledger of what each run wrote.
REPORT_NAME = "_translation.json"
LEDGER_DIR = "_translation"


def is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


@dataclass(frozen=True)
class FolderStore:
    root: Path

    @property
    def url(self) -> str:
        return str(self.root)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """(relative key, size) of every regular file under the root (or under `prefix`), sorted."""
        base = self.root / prefix if prefix else self.root
        if self.root.is_file() and not prefix:
            yield self.root.name, self.root.stat().st_size
            return
        for folder, dirs, files in os.walk(base):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder) / name
                if path.is_file() and not name.startswith("."):
                    yield path.relative_to(self.root).as_posix(), path.stat().st_size

    def read(self, key: str) -> bytes:
        return (self.root.parent / key if self.root.is_file() else self.root / key).read_bytes()

    def write(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@dataclass(frozen=True)
class S3Store:
    bucket: str
    prefix: str  # '' or ending with '/'
    endpoint_url: str | None = None

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _client(self):
        from cyclegan.sources.s3 import make_client

        cached = _CLIENTS.get(self.endpoint_url)
        if cached is None:
            cached = _CLIENTS[self.endpoint_url] = make_client(self.endpoint_url)
        return cached

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        from cyclegan.sources.s3 import s3_errors

        client = self._client()
        with s3_errors(self.url, client):
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if key and not key.endswith("/"):
                        yield safe_relpath(key, self.url, "key"), int(item["Size"])

    def read(self, key: str) -> bytes:
        from cyclegan.sources.s3 import s3_errors

        client = self._client()
        with s3_errors(f"{self.url}{key}", client):
            return client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def write(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        from cyclegan.sources.s3 import s3_errors

        client = self._client()
        with s3_errors(f"{self.url}{key}", client):
            client.put_object(
                Bucket=self.bucket, Key=self.prefix + key, Body=data, Metadata=metadata or {}
            )


_CLIENTS: dict[str | None, object] = {}  # one S3 client per endpoint and process

Store = FolderStore | S3Store


def open_store(location: str, endpoint_url: str | None, flag: str, *, output: bool) -> Store:
    """The store `location` names (a folder, an image for an input, or s3://bucket/prefix)."""
    if location.lower().startswith("s3://"):
        from cyclegan.sources.s3 import parse

        try:
            parsed = parse(location)
        except UserError as err:
            raise UserError(f"{flag} {err}") from None
        bucket, _, prefix = parsed.location.removeprefix("s3://").partition("/")
        return S3Store(bucket, prefix + "/" if prefix else "", endpoint_url)
    if "://" in location:
        scheme = location.split("://", 1)[0]
        raise UserError(
            f"{flag} {location}: unsupported scheme {scheme}://; use a folder or s3://bucket/prefix"
        )
    path = Path(location)
    if not output and not path.exists():
        raise UserError(f"{flag} {location}: input folder or image not found")
    if output and path.is_file():
        raise UserError(f"{flag} {location}: a file; give a folder for the translated images")
    return FolderStore(path)


def check_apart(
    inputs: Store, outputs: Store, flags: tuple[str, str] = ("--input", "--output")
) -> None:
    """The output may not lie inside the input: a rerun would take the translations for inputs.
    `flags` name the two where the user gave them."""
    if isinstance(inputs, FolderStore) and isinstance(outputs, FolderStore):
        inside = outputs.root.resolve().is_relative_to(inputs.root.resolve())
    elif isinstance(inputs, S3Store) and isinstance(outputs, S3Store):
        inside = inputs.bucket == outputs.bucket and outputs.prefix.startswith(inputs.prefix)
    else:
        inside = False
    if inside:
        raise UserError(
            f"{flags[1]} {outputs.url}: inside {flags[0]} {inputs.url}; the translations would be "
            "read as inputs next time: give an output outside the input"
        )
