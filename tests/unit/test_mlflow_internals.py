"""MLflow's private names stay fenced in orchestrator/tracking/mlflow_internals.py, and still exist
in the installed MLflow; mlflow itself is imported only under orchestrator/tracking/."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from orchestrator.tracking.mlflow_internals import PRIVATE_NAMES

ORCHESTRATOR = Path(__file__).resolve().parents[2] / "orchestrator"
FENCE = ORCHESTRATOR / "tracking" / "mlflow_internals.py"
TRACKING = ORCHESTRATOR / "tracking"
# The private attributes we use, by name: outside the fence, any access to one is a private MLflow
# access.
FENCED_ATTRIBUTES = {attribute.rsplit(".", 1)[-1] for _, attribute, _ in PRIVATE_NAMES}
OWN_OBJECTS = ("self", "cls", "super()")
NOT_MLFLOW = {"_replace"}  # a namedtuple's (urllib's URL parts): public despite its underscore


@pytest.mark.parametrize(
    "module,attribute,why", PRIVATE_NAMES, ids=[f"{m}:{a}" for m, a, _ in PRIVATE_NAMES]
)
def test_each_fenced_private_name_still_exists_in_the_installed_mlflow(module, attribute, why):
    import mlflow

    try:
        target = importlib.import_module(module)
    except ImportError as err:
        pytest.fail(
            f"MLflow {mlflow.__version__} moved module {module} ({err}); we use it for {why}: "
            "re-read orchestrator/tracking/mlflow_internals.py"
        )
    for part in attribute.split("."):
        if not hasattr(target, part):
            pytest.fail(
                f"MLflow {mlflow.__version__} has no {module}.{attribute} any more; we use it for "
                f"{why}: "
                "re-read orchestrator/tracking/mlflow_internals.py"
            )
        target = getattr(target, part)


def _mlflow_imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) of every import of mlflow or a module under it."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                (node.lineno, alias.name, [])
                for alias in node.names
                if alias.name.split(".")[0] == "mlflow"
            ]
        elif (
            isinstance(node, ast.ImportFrom)
            and not node.level
            and (node.module or "").split(".")[0] == "mlflow"
        ):
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
    return found


def private_mlflow_uses(source: str) -> list[str]:
    """Where `source` touches a private MLflow name: imports of a `_` module or name of mlflow; the
    fenced private attributes, accessed or defined (e.g. a DatasetSource hook); and in a module that
    imports mlflow, any `_` attribute of something other than self, cls or super() (e.g.
    `client._tracking_client`)."""
    tree = ast.parse(source)
    imports = _mlflow_imports(tree)
    uses = [
        (line, f"import {module} {' '.join(names)}".rstrip())
        for line, module, names in imports
        if any(part.startswith("_") for part in module.split(".") + names)
    ]
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.name in FENCED_ATTRIBUTES
        ):
            uses.append((node.lineno, f"def {node.name}"))
        elif (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            owner = ast.unparse(node.value).split(".")[0]
            if node.attr in FENCED_ATTRIBUTES or (
                imports and owner not in OWN_OBJECTS and node.attr not in NOT_MLFLOW
            ):
                uses.append((node.lineno, ast.unparse(node)))
    return [f"line {line}: {what}" for line, what in sorted(uses)]


def test_the_finder_sees_private_imports_attributes_and_hooks():
    source = (
        "from mlflow.tracking._model_registry import utils\nfrom mlflow.utils.validation import "
        "_validate_model_name\n"
        "x = mlflow.tracking._tracking_service\ny = dataset._to_mlflow_entity()\n"
        "class S:\n    def _tracking_uri(self): ...\nfrom mlflow import MlflowClient\nz = "
        "client._tracking_client\n"
        "w = self._own + parts._replace(netloc='')\n"
    )
    assert [use.split(":")[0] for use in private_mlflow_uses(source)] == [
        "line 1",
        "line 2",
        "line 3",
        "line 4",
        "line 6",
        "line 8",
    ]
    assert private_mlflow_uses("w = client._anything\n") == []  # no mlflow here: not MLflow's


def test_only_mlflow_internals_touches_private_mlflow_names_and_only_tracking_imports_mlflow():
    private, outside = [], []
    for path in sorted(ORCHESTRATOR.rglob("*.py")):
        source = path.read_text()
        where = path.relative_to(ORCHESTRATOR.parent)
        if path != FENCE:
            private += [f"{where} {use}" for use in private_mlflow_uses(source)]
        if TRACKING not in path.parents:
            outside += [
                f"{where} line {line}: {module}"
                for line, module, _ in _mlflow_imports(ast.parse(source))
            ]
    assert not private, (
        "private MLflow names outside orchestrator/tracking/mlflow_internals.py:\n"
        + "\n".join(private)
    )
    assert not outside, "mlflow imported outside orchestrator/tracking/:\n" + "\n".join(outside)
