"""The manifest's names for hyperparameters that are not TrainConfig fields, and the one place they
become fields.

A manifest may write `lambda_cyc` (the paper's λ: both cycle weights at once) and `lambda_idt` (the
identity weight, relative to λ). Everything recorded (each trial's MLflow run, its task's parent
run, the registered versions) names hyperparameters by the TrainConfig fields only, which are the
reference implementation's flags: `lambda_A`, `lambda_B`, `lambda_identity`. What the user searched
(results, the summary table, progress lines) keeps the manifest's names; `alias_note` says how they
map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

ALIASES: dict[str, tuple[str, ...]] = {
    "lambda_cyc": ("lambda_A", "lambda_B"),
    "lambda_idt": ("lambda_identity",),
}


def fields_of(name: str) -> tuple[str, ...]:
    """The TrainConfig fields a manifest name sets: the alias's, else the name itself."""
    return ALIASES.get(name, (name,))


def expand_aliases(values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` by TrainConfig field: {"lambda_cyc": 5} -> {"lambda_A": 5, "lambda_B": 5}."""
    return {field: value for name, value in values.items() for field in fields_of(name)}


def alias_note(names: Iterable[str]) -> str | None:
    """'lambda_cyc sets lambda_A and lambda_B' for the aliases among `names`; None when there are
    none."""
    used = [
        f"{name} sets {' and '.join(ALIASES[name])}"
        for name in dict.fromkeys(names)
        if name in ALIASES
    ]
    return "; ".join(used) or None
