"""A dataset's layout: trainA/ trainB/ (testA/ testB/), at the top of a folder or in one folder
inside it (the reference's archives hold horse2zebra/trainA/ ...). Finding that root among file
names, and the messages when there is none."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import DatasetError

SPLITS = ("trainA", "trainB", "testA", "testB")
TRAINING_SPLITS = ("trainA", "trainB")


def ignored(relpath: str) -> bool:
    """No part of a dataset: '' (the folder itself, as tar's './') and __MACOSX/ (resource forks
    macOS adds to zips)."""
    return relpath == "" or relpath.split("/")[0] == "__MACOSX"


def find_dataset_root(files: Iterable[str], where: str) -> tuple[str, bool] | None:
    """The folder (relative, '' for the top) that holds the splits, from the relative file names.

    The shallowest folder holding trainA/ and trainB/ wins (the reference zips have one top
    folder: 'horse2zebra'); else the shallowest holding any split (second item False). None
    when no split folder appears at all. Several folders at the same depth are ambiguous.
    """
    found: dict[str, set[str]] = {}
    for name in files:
        parts = name.split("/")
        if ignored(name):
            continue
        for i, part in enumerate(parts[:-1]):
            if part in SPLITS:
                found.setdefault("/".join(parts[:i]), set()).add(part)
    if not found:
        return None
    complete = [root for root, splits in found.items() if set(TRAINING_SPLITS) <= splits]
    pool = complete or list(found)
    depth = {root: 0 if root == "" else root.count("/") + 1 for root in pool}
    best = [root for root in pool if depth[root] == min(depth.values())]
    if len(best) > 1:
        raise DatasetError(
            f"{where}: several datasets side by side ({', '.join(sorted(r + '/' for r in best))}); "
            "point the reference at one of them"
        )
    return best[0], bool(complete)


def top_entries(files: Iterable[str], limit: int = 8) -> str:
    """'a/, b/, c.txt' for messages: what a dataset without the expected layout holds instead."""
    tops = sorted({name.split("/")[0] + ("/" if "/" in name else "") for name in files})
    return (
        ", ".join(tops[:limit]) + (f", ... ({len(tops)} in all)" if len(tops) > limit else "")
        if tops
        else "nothing"
    )


def snapshot_layout(files: list[str], where: str, require: bool) -> dict:
    """A cache snapshot's metadata locating the dataset root among `files` (relative paths)."""
    found = find_dataset_root(files, where)
    if found is None:
        if require:
            raise no_layout(where, top_entries(files))
        tops = {name.split("/")[0] for name in files}
        # A single top folder (an archive's 'horse2zebra/') is where a user would look first.
        single = next(iter(tops)) if len(tops) == 1 and all("/" in name for name in files) else ""
        return {"root": single, "layout": "none"}
    root, complete = found
    return {"root": root, "layout": "complete" if complete else "partial"}


def no_layout(where: str, found: str) -> DatasetError:
    return DatasetError(
        f"{where}: no trainA/ or trainB/ anywhere in it (found: {found}); a dataset holds "
        "trainA/ trainB/ (and testA/ testB/), at its top or in one folder such as horse2zebra/"
    )


def check_dataset_root(root: Path) -> None:
    """Raise a DatasetError naming what is missing unless `root` has trainA/ and trainB/."""
    missing = [name for name in TRAINING_SPLITS if not (root / name).is_dir()]
    if missing:
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        shown = ", ".join(found[:8]) + (f", ... ({len(found)} in all)" if len(found) > 8 else "")
        raise DatasetError(
            f"{root}: no {' or '.join(m + '/' for m in missing)} found (folders here: "
            f"{shown or 'none'}); "
            "expected the layout trainA/ trainB/ testA/ testB/"
        )
