"""What a batch translation has to do: the input images, their output keys, and which outputs are
already there from the same model version (a rerun translates only the rest).

Each run records what it did in the ledger at the output root (`_translation/<run>-<n>.json`,
written as results come in): the model version and direction, the output keys it wrote, and the
inputs it found unreadable (with their size). An output counts as done when it exists and the
ledger says this model version and direction wrote it; an unreadable input is not read again until
its size changes.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field

from cyclegan.data import IMG_EXTENSIONS
from cyclegan.errors import UserError

from .stores import LEDGER_DIR, REPORT_NAME, Store, is_image

FORMATS = {"png": ".png", "jpg": ".jpg", "webp": ".webp"}


def output_key(key: str, fmt: str) -> str:
    """The input's relative key with the format's extension."""
    return posixpath.splitext(key)[0] + FORMATS[fmt]


@dataclass
class Plan:
    todo: list[tuple[str, str]]  # (input key, output key), in key order
    already: int  # outputs there from this model version and direction
    total: int  # input images
    failures: dict[str, str] = field(default_factory=dict)  # input key -> why it is not translated
    unreadable: dict[str, str] = field(default_factory=dict)  # known unreadable input -> reason


def ledger_entries(store: Store) -> tuple[dict[str, str], dict[str, tuple[int, str]]]:
    """(output key -> the model identity that last wrote it, unreadable input key -> (its size,
    why)) from every ledger part (older parts first: a later run's entry wins)."""
    written: dict[str, str] = {}
    unreadable: dict[str, tuple[int, str]] = {}
    parts = sorted(k for k, _ in store.list(LEDGER_DIR + "/") if k.endswith(".json"))
    for part in parts:
        try:
            entry = json.loads(store.read(part))
            for key in entry["outputs"]:
                written[key] = entry["model"]
            for key, (size, reason) in entry.get("unreadable", {}).items():
                unreadable[key] = (int(size), str(reason))
        except (ValueError, KeyError, TypeError):
            continue  # a part that is not ours (or damaged): its outputs are translated again
    return written, unreadable


def input_keys(inputs: Store, flag: str = "--input") -> dict[str, int]:
    """Every image key under the input with its size, each checked (none may climb out of its
    prefix)."""
    try:
        keys = {key: size for key, size in inputs.list() if is_image(key) and not _ours(key)}
    except UserError as err:
        raise UserError(f"{flag} {err}") from None
    if not keys:
        raise UserError(
            f"{flag} {inputs.url.rstrip('/')}: no images here "
            f"(looked for {', '.join(IMG_EXTENSIONS)})"
        )
    return keys


def make_plan(
    keys: dict[str, int], outputs: Store, identity: str, fmt: str, overwrite: bool
) -> Plan:
    """Which inputs to translate: those whose output is not there from this model version and
    direction and that were not found unreadable at their size; all of them with `overwrite`.

    Args:
        keys: the input keys with their sizes (input_keys).
        outputs: where the translations go (and the ledger is).
        identity: the model version and direction, as the ledger records them.
        fmt: the output format (png, jpg, webp).
        overwrite: translate everything again.
    """
    done: set[str] = set()
    unreadable: dict[str, tuple[int, str]] = {}
    if not overwrite:
        ledger, unreadable = ledger_entries(outputs)
        done = {key for key, _ in outputs.list() if ledger.get(key) == identity}
    plan = Plan([], 0, len(keys))
    claimed: dict[str, str] = {}
    for key in keys:
        out = output_key(key, fmt)
        if out in claimed:
            plan.failures[key] = f"its output {out} is also {claimed[out]}'s; rename one of them"
            continue
        claimed[out] = key
        if key in unreadable and unreadable[key][0] == keys[key]:
            plan.unreadable[key] = unreadable[key][1]
        elif out in done:
            plan.already += 1
        else:
            plan.todo.append((key, out))
    return plan


def _ours(key: str) -> bool:
    return key == REPORT_NAME or key.startswith(LEDGER_DIR + "/")
