"""The manifest fields under `search` that name a table entry, and docs/manifest.md's tables
generated from the entries (between the `strategies` markers, printed by `python -m
orchestrator.search`)."""

from __future__ import annotations

from typing import Any

from orchestrator.search.algorithms import ALGORITHMS
from orchestrator.search.schedulers import SCHEDULERS
from orchestrator.search.strategy import Strategy

TABLES: dict[str, dict[str, Strategy]] = {
    "algorithm": ALGORITHMS,
    "scheduler": SCHEDULERS,
}  # field -> its table
_TITLES = {"algorithm": "Search algorithms", "scheduler": "Schedulers"}


def markdown() -> str:
    """The algorithm and scheduler tables of docs/manifest.md, generated from the entries."""
    lines = []
    for field_name, table in TABLES.items():
        lines += [
            f"**{_TITLES[field_name]}** (`search.{field_name}`):",
            "",
            "| name | what it does | options | needs |",
            "| --- | --- | --- | --- |",
        ]
        for strategy in table.values():
            options = [
                f"`{name}` ({'required' if info.is_required() else _default(info.default)}): "
                f"{info.description}"
                for name, info in strategy.options.model_fields.items()
                if name != "type"
            ]
            needs = (
                f"`{strategy.requires}` (installed by `make setup`)" if strategy.requires else "-"
            )
            lines.append(
                f"| `{strategy.name}` | {strategy.summary} | {'<br>'.join(options) or '-'} | "
                f"{needs} |"
            )
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _default(value: Any) -> str:
    return (
        "default: none"
        if value is None
        else f"default: {str(value).lower() if isinstance(value, bool) else value}"
    )
