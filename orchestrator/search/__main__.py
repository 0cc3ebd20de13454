"""`python -m orchestrator.search`: print docs/manifest.md's algorithm and scheduler tables."""

from orchestrator.search.tables import markdown

print(markdown(), end="")
