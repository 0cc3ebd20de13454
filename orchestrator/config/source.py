"""A manifest's text and YAML, read safely: a bounded regular file, the node tree's lines, duplicate
keys.

Bounds on what a manifest may make us read and build: a YAML "billion laughs" of nested aliases is a
few hundred bytes that expand to billions of nodes, so the node tree is walked (and counted) before
anything is built from it.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from orchestrator.config.problems import ManifestError, Problem, field_path

MAX_MANIFEST_BYTES = 1 << 20
MAX_NODES = 100_000  # YAML nodes, each alias counted as often as it is used


def read_manifest(path: Path) -> str:
    """The manifest's text: a regular file (a FIFO or /dev/zero is never opened), bounded, UTF-8."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a folder"
            if stat.S_ISDIR(info.st_mode)
            else "not a regular file (a device, FIFO or socket)"
        )
        raise ManifestError(f"{path}: cannot read the manifest: {kind}; a manifest is a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as err:
        raise ManifestError(f"{path}: cannot read the manifest ({err.strerror})") from None
    check_size(len(data), path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}: not UTF-8 text (byte {err.start}, line {line}); save the manifest as UTF-8"
        ) from None


def check_size(size: int, path: Path) -> None:
    """Refuse a manifest of more than MAX_MANIFEST_BYTES."""
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            f"{path}: larger than {MAX_MANIFEST_BYTES // 1024} KiB; a manifest is a short YAML file"
        )


def parse_yaml(text: str, path: Path) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    """The manifest's mapping, its field paths' lines and its duplicate keys; ManifestError when the
    text is no YAML mapping (or too big or deep to be a manifest)."""
    check_size(len(text), path)
    lines, duplicates = yaml_tree(text, path)  # first: it bounds what safe_load may build
    try:
        data = yaml.safe_load(text)
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ManifestError(
            f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}"
        ) from None
    if not isinstance(data, dict):
        raise ManifestError(
            f"{path}: a manifest is a YAML mapping with at least 'name' and 'tasks'"
        )
    return data, lines, duplicates


def yaml_tree(text: str, path: Path) -> tuple[dict[str, int], list[Problem]]:
    """Field path -> 1-based line, and the duplicate keys, from the YAML node tree (safe loader).

    Raises ManifestError when the tree, aliases expanded, has more than MAX_NODES nodes: the walk
    stops there, before anything is built from the document."""
    lines: dict[str, int] = {}
    duplicates: list[Problem] = []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines, duplicates  # safe_load reports it, with its line
    except RecursionError:
        raise ManifestError(f"{path}: nested too deeply to be a manifest") from None
    stack, count = [(root, ())] if root is not None else [], 0
    while stack:
        node, loc = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ManifestError(
                f"{path}: more than {MAX_NODES} YAML values once its aliases (*name) are expanded; "
                "a manifest is a short file (is it a YAML bomb?)"
            )
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                sub = loc + (key.value if isinstance(key, yaml.ScalarNode) else "?",)
                line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    if key.value in first:
                        duplicates.append(
                            Problem(
                                field_path(sub),
                                f"duplicate key (first at line {first[key.value]}); remove one",
                                line,
                            )
                        )
                    first.setdefault(key.value, line)
                lines.setdefault(field_path(sub), line)
                stack.append((value, sub))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines.setdefault(field_path(loc + (i,)), item.start_mark.line + 1)
                stack.append((item, loc + (i,)))
    return lines, duplicates
