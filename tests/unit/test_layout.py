"""The layout keeps its promises: the model and the loop load no Ray, MLflow, boto3 or filelock;
what the Ray driver and the command lines read loads no torch; and no module imports another in a
cycle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import loaded_after

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("cyclegan", "orchestrator")


def test_the_model_and_the_loop_load_no_ray_mlflow_boto3_or_filelock():
    code = (
        "import cyclegan.networks, cyclegan.losses, cyclegan.pool, cyclegan.schedules, "
        "cyclegan.model, cyclegan.trainer"
    )
    assert loaded_after(code, ("ray", "mlflow", "boto3", "botocore", "filelock", "torch")) == [
        "torch"
    ]


@pytest.mark.parametrize(
    "code",
    [
        # the driver's vocabulary
        "import cyclegan.metric_names, cyclegan.run_files, cyclegan.architectures, cyclegan.config",
        # the manifest's data check
        "from cyclegan.sources import parse_reference; parse_reference('/data/horse2zebra')",
        "from cyclegan.commands import build_parser; build_parser()",  # python -m cyclegan --help
    ],
)
def test_what_the_driver_and_the_command_lines_read_loads_no_torch(code):
    assert loaded_after(code, ("torch", "ray", "mlflow")) == []


def test_both_command_lines_are_console_commands():
    import importlib

    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {
        "cyclegan": "cyclegan.commands:entry_point",
        "cyclegan-orchestrator": "orchestrator.commands:entry_point",
    }
    for target in scripts.values():
        module, _, function = target.partition(":")
        assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize(
    "argv0,usage",
    [
        ("/venv/bin/cyclegan-orchestrator", "usage: cyclegan-orchestrator"),
        ("/repo/orchestrator/__main__.py", "usage: python -m orchestrator"),
    ],
)
def test_usage_lines_name_the_command_as_the_user_typed_it(argv0, usage):
    from cyclegan.commands.runner import program_name
    from orchestrator.commands import build_parser

    assert build_parser(program_name("orchestrator", argv0)).format_usage().startswith(usage)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ours that `name` imports anywhere in its file, inside functions too. `from P
    import x` counts as importing P.x when that is a module, else P; a package's own __init__ is not
    counted for importing one of its modules (Python runs it first, but it is no dependency)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    found = set()
    for target in targets:
        while target and target not in modules:  # `import cyclegan.sources.s3 as x` and the like
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)
    return found


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_another_in_a_cycle_even_inside_functions():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert graph["cyclegan.commands"] >= {
        "cyclegan.commands.train",
        "cyclegan.commands.runner",
    }  # the parser sees them
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    modules = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert _cycle(graph) == ["a", "b", "a"]


# The orchestrator's seams (docs/architecture.md): which process runs a subpackage, and what it may
# load.
ORCHESTRATOR = REPO / "orchestrator"
MAX_ROOT_MODULES = 6  # besides __init__.py and __main__.py
MAX_MODULE_LINES = 400
# What `validate` and the driver load, whatever the number of tasks: never torch; the manifest's
# checks not even Ray or MLflow.
NOT_LOADED = {"config": ("torch", "ray", "mlflow"), "search": ("torch",), "sweep": ("torch",)}


def test_the_orchestrators_root_keeps_few_modules_and_no_module_is_long():
    root = [
        p.name for p in ORCHESTRATOR.glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    ]
    assert len(root) <= MAX_ROOT_MODULES, sorted(root)
    long = {
        str(p.relative_to(REPO)): n
        for p in sorted(ORCHESTRATOR.rglob("*.py"))
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


@pytest.mark.parametrize("package", NOT_LOADED)
def test_the_config_search_and_driver_packages_load_no_torch(package):
    modules = sorted(
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (ORCHESTRATOR / package).rglob("*.py")
    )
    code = "\n".join(f"import {m}" for m in modules)
    assert loaded_after(code, NOT_LOADED[package]) == []


def test_only_the_tracking_package_imports_mlflow():
    outside = []
    for path in sorted(ORCHESTRATOR.rglob("*.py")):
        if path.relative_to(ORCHESTRATOR).parts[0] == "tracking":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and not node.level
                else []
            )
            outside += [
                f"{path.relative_to(REPO)}:{node.lineno} {n}"
                for n in names
                if n.split(".")[0] == "mlflow"
            ]
    assert outside == []


def test_the_code_keeps_the_formatters_100_columns_and_the_linters_rules():
    """CI runs only the tests: this is where `ruff format` (100 columns) and `ruff check` (E501 at
    100 for comments, docstrings and strings too) are held (settings: pyproject.toml)."""
    folders = ["cyclegan", "orchestrator", "tests", "scripts"]
    for command in (["format", "--check", "--quiet"], ["check", "--quiet"]):
        out = subprocess.run(
            [sys.executable, "-m", "ruff", *command, *folders],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, f"ruff {' '.join(command)}:\n{out.stdout}{out.stderr}"
