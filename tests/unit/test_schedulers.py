"""The search tables (orchestrator.search): their names, their options' defaults, the docs' entry
point, what importing them loads, and that a new scheduler is one module plus the table's line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from orchestrator.search import (
    ALGORITHMS,
    EXPLOITS_ONE_WORKER,
    SCHEDULERS,
    TABLES,
    AlgorithmField,
    SchedulerField,
)
from orchestrator.search.strategy import Strategy

REPO = Path(__file__).resolve().parents[2]
# The options an entry cannot do without, the least a manifest must give.
REQUIRED = {
    "pbt": {"perturbation_interval": 1, "hyperparam_mutations": {"lr": [1e-4, 2e-4]}},
    "pb2": {"perturbation_interval": 1, "hyperparam_bounds": {"lr": [1e-4, 2e-4]}},
}


def _run(code: str, where: Path = REPO) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter, importing our packages from `where` first, then from the
    repository."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=where,
        timeout=120,
        env={"PYTHONPATH": f"{where}:{REPO}", "PATH": "/usr/bin:/bin"},
    )


def test_the_tables_name_the_same_entries_as_before():
    assert list(ALGORITHMS) == ["random", "grid", "optuna"]
    assert list(SCHEDULERS) == ["none", "asha", "pbt", "pb2"]
    assert TABLES == {"algorithm": ALGORITHMS, "scheduler": SCHEDULERS}
    assert [name for name, entry in SCHEDULERS.items() if entry.exploits] == ["pbt", "pb2"]
    assert "donor's checkpoint" in EXPLOITS_ONE_WORKER


@pytest.mark.parametrize("field,name", [(f, n) for f, table in TABLES.items() for n in table])
def test_every_entrys_options_validate_their_defaults(field, name):
    entry: Strategy = TABLES[field][name]
    field_type = AlgorithmField if field == "algorithm" else SchedulerField
    options = TypeAdapter(field_type).validate_python({"type": name, **REQUIRED.get(name, {})})
    assert type(options) is entry.options and options.type == name
    for option, info in entry.options.model_fields.items():
        if option != "type" and not info.is_required():
            assert getattr(options, option) == info.default
    assert options.problems(epochs=10) == []
    if name not in REQUIRED:  # a bare name is short for {type: name}
        assert type(TypeAdapter(field_type).validate_python(name)) is entry.options


def test_python_m_orchestrator_search_prints_both_tables():
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator.search"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "**Search algorithms** (`search.algorithm`):" in out.stdout
    assert "**Schedulers** (`search.scheduler`):" in out.stdout
    for name in [*ALGORITHMS, *SCHEDULERS]:
        assert f"| `{name}` |" in out.stdout


def test_importing_the_tables_and_their_options_loads_no_ray_sklearn_or_optuna():
    code = textwrap.dedent(f"""\
        import json, sys
        from pydantic import TypeAdapter
        import orchestrator.search.schedulers.pb2, orchestrator.search.schedulers.pbt, orchestrator.search.tables
        from orchestrator.search import SchedulerField, TABLES
        for name, extra in {REQUIRED!r}.items():
            TypeAdapter(SchedulerField).validate_python({{"type": name, **extra}})
        TABLES["scheduler"]["pb2"].missing_dependency()
        print(json.dumps([m for m in ("ray", "sklearn", "optuna", "torch") if m in sys.modules]))
        """)  # noqa: E501 (test data as the user writes it)
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


NEW_SCHEDULER = '''\
"""`search.scheduler: median`: Tune's median stopping rule."""

from typing import Literal

from pydantic import Field

from orchestrator.search.strategy import Options, Strategy


class MedianOptions(Options):
    type: Literal["median"]
    grace_period: int = Field(1, ge=1, description="epochs before a trial may be stopped")


def _median(options, settings):
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr="epoch", grace_period=options.grace_period)


ENTRY = Strategy("median", "stops a trial below the median of the others", MedianOptions, _median)
'''


def test_a_new_scheduler_is_one_module_plus_the_tables_line(tmp_path):
    """Validation, the docs' table and the sweep's build take a new scheduler with no other
    change."""
    copy = tmp_path / "orchestrator"
    shutil.copytree(REPO / "orchestrator", copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "search" / "schedulers" / "median.py").write_text(NEW_SCHEDULER)
    table = copy / "search" / "schedulers" / "__init__.py"
    lines = table.read_text().splitlines(keepends=True)
    changed = [i for i, line in enumerate(lines) if "import asha" in line or "= by_name(" in line]
    assert len(changed) == 2
    for i in changed:
        lines[i] = (
            lines[i]
            .replace("import asha,", "import asha, median,")
            .replace("pb2.ENTRY)", "pb2.ENTRY, median.ENTRY)")
        )
    table.write_text("".join(lines))
    code = textwrap.dedent("""\
        import orchestrator
        from orchestrator.config import ManifestError, parse_manifest
        from orchestrator.search.build import scheduler
        from orchestrator.search.tables import markdown
        assert orchestrator.__file__.startswith(%r), orchestrator.__file__
        plan = parse_manifest("name: m\\nsearch: {scheduler: {type: median, grace_period: 2}}\\ntasks: [{name: t, data: /d}]").plans[0]
        assert "| `median` | stops a trial below the median of the others |" in markdown()
        print(type(scheduler(plan, plan.total_epochs)).__name__)
        try:
            parse_manifest("name: m\\nsearch: {scheduler: {type: median, grace_period: 0}}\\ntasks: [{name: t, data: /d}]")
        except ManifestError as error:
            print(error)
        """) % str(copy)  # noqa: E501 (test data as the user writes it)
    out = _run(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MedianStoppingRule" in out.stdout
    assert "search.scheduler.grace_period (line 2): must be >= 1, got 0" in out.stdout
