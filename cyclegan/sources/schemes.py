"""The dataset reference schemes, and what a parsed reference and a fetched dataset are.

A scheme is one module of cyclegan.sources with three functions:

    parse(ref: str) -> DatasetRef         the form of the reference only: no file system, no network
    fetch(parsed, cache_dir, *, endpoint_url, show_progress, require_layout) -> FetchResult
                                          the dataset as a local folder (through the node cache
                                          unless it is one)
    check(parsed, *, endpoint_url)        that it exists and holds trainA/ trainB/, without
                                          downloading it

and one line in SCHEMES below (docs/architecture.md: "A new dataset scheme").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError


@dataclass(frozen=True)
class Scheme:
    module: str  # the module of cyclegan.sources that parses, fetches and checks its references
    forms: str  # the references it takes, as messages list them


SCHEMES: dict[str, Scheme] = {  # the part before :// ('' for a plain path) -> its scheme
    "": Scheme(
        "local", "a folder holding trainA/ trainB/, or a .zip, .tar or .tar.gz archive of one"
    ),
    "file": Scheme("local", "file:///path/to/either"),
    "s3": Scheme("s3", "s3://bucket/prefix (a folder) or s3://bucket/key.zip (an archive)"),
    "synthetic": Scheme("synthetic", "synthetic://KIND?size=S&n_train=N&n_test=M&seed=K"),
}
ACCEPTED_FORMS = "; ".join(scheme.forms for scheme in SCHEMES.values())


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
    downloaded: list[str] = field(
        default_factory=list
    )  # S3 keys fetched by this call ([] when cached)
    bytes_downloaded: int = 0
    reused: list[str] = field(
        default_factory=list
    )  # S3 keys linked, unchanged, from an older snapshot
    built: bool = False  # this call built the cache snapshot (download, extraction or generation)
    snapshot: Path | None = None  # the cache snapshot folder (None for a folder used in place)
    tree: Path | None = (
        None  # everything the reference holds, relative names kept (path is the dataset root in it)
    )


def bad_reference(ref: str, why: str) -> DatasetError:
    return DatasetError(f"{ref}: {why}; a dataset reference is one of: {ACCEPTED_FORMS}")
