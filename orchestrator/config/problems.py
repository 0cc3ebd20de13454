"""What is wrong with a manifest, worded for its author: `tasks[1].train.crop_size (line 14): ...`.

`Problem` is one finding with its field path (and line, once known); `ManifestError` lists them all.
Pydantic's errors are reworded here (`Wording`): bounds as `must be >= 1, got 0`, unknown names with
a did-you-mean, an algorithm's or scheduler's options at the path the user wrote.
"""

from __future__ import annotations

import difflib
import reprlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cyclegan.errors import UserError


class ManifestError(UserError):
    """A manifest with problems; the message lists every one of them."""


@dataclass
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path} (line {self.line})" if self.line else self.path
        return f"{where}: {self.message}" if self.path else self.message


def short(value: Any) -> str:
    """repr(value), cut short: values in messages may be huge or deeply nested."""
    return reprlib.repr(value)


def did_you_mean(name: Any, options: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the option closest to `name`, else ''."""
    name, options = str(name), list(options)
    close = (
        difflib.get_close_matches(name, options, n=1, cutoff=0.6)
        or [o for o in options if name and o.startswith(name)][:1]
    )
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_path(loc: tuple) -> str:
    """('tasks', 1, 'train') -> 'tasks[1].train'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Wording:
    """Pydantic's errors in the manifest's words. `tables`: the algorithm and scheduler tables
    (field name -> entry name -> entry with its `options` model); `model_at(loc)`: the model whose
    fields an unknown field at `loc` is compared to."""

    def __init__(
        self, tables: Mapping[str, Mapping[str, Any]], model_at: Callable[[tuple], type[BaseModel]]
    ):
        self.tables, self.model_at = tables, model_at

    def problem(self, error: dict) -> Problem:
        """One pydantic error of the whole manifest as a Problem."""
        loc = error["loc"]
        if (
            loc and loc[-1] == "[key]" or error["type"] == "invalid_key"
        ):  # a YAML key that is a number, a list...
            key = loc[-2] if loc[-1] == "[key]" else loc[-1]
            parent = loc[:-2] if loc[-1] == "[key]" else loc[:-1]
            return Problem(
                field_path(parent),
                f"{short(key)} is not a field name (keys are names, such as crop_size)",
            )
        loc, options = self.strategy_loc(loc)
        return Problem(field_path(loc), self.message(error, options or self.model_at(loc)))

    def strategy_loc(self, loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
        """Pydantic puts the entry's name after `algorithm` / `scheduler` in an error's location
        (`scheduler.asha.grace_period`): drop it, and return that entry's options model."""
        for i, part in enumerate(loc[:-1]):
            name = loc[i + 1]
            if part in self.tables and isinstance(name, str) and name in self.tables[part]:
                return loc[: i + 1] + loc[i + 2 :], self.tables[part][name].options
        return loc, None

    def message(self, error: dict, model: type[BaseModel]) -> str:
        """A pydantic error's message (`model`: where the field lives)."""
        kind, ctx = error["type"], error.get("ctx", {})
        if (
            kind in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type")
            and error["loc"]
            and error["loc"][-1] in self.tables
        ):
            field_name = error["loc"][-1]
            names = list(self.tables[field_name])
            if "tag" in ctx:
                return (
                    f"unknown {field_name} {ctx['tag']!r}{did_you_mean(ctx['tag'], names)}; use "
                    f"one of {', '.join(names)}"
                )
            return f"a name ({', '.join(names)}) or a mapping {{type: NAME, ...its options}}"
        if kind == "extra_forbidden":
            return f"unknown field{did_you_mean(str(error['loc'][-1]), model.model_fields)}"
        if kind == "missing":
            return "is required"
        bounds = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }
        if kind in bounds:
            limit = next(iter(ctx.values()))
            limit = (
                int(limit) if isinstance(limit, float) and limit.is_integer() else limit
            )  # "> 1", not "> 1.0"
            return f"must be {bounds[kind]} {limit}, got {short(error['input'])}"
        if kind in ("string_too_short", "too_short"):
            return "must not be empty"
        return error["msg"].removeprefix("Value error, ")
