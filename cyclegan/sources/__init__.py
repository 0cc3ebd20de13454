"""Dataset references: turn what the user wrote (`--dataroot`, a manifest's `data:`) into a local
folder.

    /path/to/folder, file:///path/to/folder    used in place (local.py)
    PATH.zip|.tar|.tar.gz                       extracted into the cache; the dataset root is the
                                                folder inside holding trainA/ trainB/ (local.py)
    s3://bucket/prefix, s3://bucket/key.zip     mirrored (or extracted) into the cache (s3.py)
    synthetic://KIND?size=S&n_train=N&seed=K    generated into the cache (synthetic.py; also
                                                n_test=M)

Each scheme is one module with parse, fetch and check, named in schemes.SCHEMES; it is imported
when a reference of that scheme is first met, so that importing this package loads neither boto3
nor the cache's file lock. Everything that is not used in place goes through the node-local cache
(cache.py): keyed by the reference and what it was built from (ETags and sizes), built by one
process under a file lock while the others wait, and published by an atomic rename.
"""

from __future__ import annotations

import re
import sys
from importlib import import_module
from pathlib import Path
from types import ModuleType

from ..errors import DatasetError
from .schemes import ACCEPTED_FORMS, SCHEMES, DatasetRef, FetchResult, bad_reference

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def _scheme_module(ref: str) -> ModuleType:
    """The module of the scheme `ref` is written in (imported on first use)."""
    match = _SCHEME.match(ref)
    scheme = match.group(1).lower() if match else ""
    if scheme not in SCHEMES:
        raise bad_reference(ref, f"unsupported scheme {scheme}://")
    return import_module(f".{SCHEMES[scheme].module}", __name__)


def _source(ref: str | DatasetRef) -> tuple[ModuleType, DatasetRef]:
    """The module of `ref`'s scheme, and `ref` parsed by it (a DatasetRef is not parsed again)."""
    if isinstance(ref, DatasetRef):
        return _scheme_module(ref.ref), ref
    if not ref or not ref.strip():
        raise DatasetError(
            "no dataset given: pass --dataroot with a folder holding trainA/ and trainB/, or one "
            "of: " + ACCEPTED_FORMS
        )
    ref = ref.strip()
    module = _scheme_module(ref)
    return module, module.parse(ref)


def parse_reference(ref: str) -> DatasetRef:
    """Check the form of a dataset reference, without touching the file system or the network. The
    functions below take the result as well as the string: a reference parsed once is not parsed
    again."""
    return _source(ref)[1]


def fetch_dataset(
    ref: str | DatasetRef,
    cache_dir: str | None = None,
    *,
    endpoint_url: str | None = None,
    show_progress: bool | None = None,
    require_layout: bool = True,
) -> FetchResult:
    """Make the dataset `ref` available locally (downloading, extracting or generating it into the
    cache unless an up-to-date copy is there) and say what that took.

    `endpoint_url`: an S3-compatible store (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS).
    `show_progress`: a download progress bar (default: when stderr is a terminal).
    `require_layout`: fail unless trainA/ or trainB/ (or testA/ testB/) appear somewhere; without it
    a dataset lacking them resolves to its top folder (for `data inspect` to show what is there).
    """
    module, parsed = _source(ref)
    progress = sys.stderr.isatty() if show_progress is None else show_progress
    return module.fetch(
        parsed,
        cache_dir,
        endpoint_url=endpoint_url,
        show_progress=progress,
        require_layout=require_layout,
    )


def resolve_dataset(
    ref: str | DatasetRef,
    cache_dir: str | None = None,
    *,
    endpoint_url: str | None = None,
    show_progress: bool | None = None,
) -> Path:
    """Return a local folder holding trainA/ trainB/ (testA/ testB/) for `ref`; see
    fetch_dataset."""
    return fetch_dataset(
        ref, cache_dir, endpoint_url=endpoint_url, show_progress=show_progress
    ).path


def check_dataset_reference(ref: str | DatasetRef, *, endpoint_url: str | None = None) -> None:
    """Raise a DatasetError unless `ref` resolves and holds trainA/ and trainB/, without
    downloading, extracting or generating anything (what `orchestrator validate` runs for every
    task)."""
    module, parsed = _source(ref)
    module.check(parsed, endpoint_url=endpoint_url)


__all__ = [
    "ACCEPTED_FORMS",
    "DatasetRef",
    "FetchResult",
    "check_dataset_reference",
    "fetch_dataset",
    "parse_reference",
    "resolve_dataset",
]
