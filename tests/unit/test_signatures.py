"""Public functions stay narrow and say what they take: at most 8 parameters (a request object
instead, like orchestrator.trial.spec.TrialSpec), and an `Args:` section in the docstring of any
that takes more than four. Read from the source with `ast`: nothing is imported."""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"
MAX_PARAMETERS = 8
ARGS_ABOVE = 4


def _public_functions() -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
    """(file:Class.name, the definition, whether it is a method) for every module-level function and
    method whose name does not start with `_`."""

    def walk(
        body: list[ast.stmt], owner: str
    ) -> Iterator[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef, bool]]:
        for node in body:
            if isinstance(
                node, (ast.FunctionDef, ast.AsyncFunctionDef)
            ) and not node.name.startswith("_"):
                yield owner + node.name, node, bool(owner)
            elif isinstance(node, ast.ClassDef):
                yield from walk(node.body, f"{owner}{node.name}.")

    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for name, node, is_method in walk(tree.body, ""):
            yield f"{path.relative_to(PACKAGE).as_posix()}:{name}", node, is_method


def parameter_count(node: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> int:
    """Positional, keyword-only, *args and **kwargs, each one; a method's self or cls not
    counted."""
    args = node.args
    named = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    bound = is_method and not static and bool(named) and named[0].arg in ("self", "cls")
    return len(named) - bound + (args.vararg is not None) + (args.kwarg is not None)


@functools.cache
def _signatures() -> tuple[tuple[str, int, bool], ...]:
    """(name, parameter count, whether its docstring has an Args: section), read once."""
    return tuple(
        (name, parameter_count(node, method), "Args:" in (ast.get_docstring(node) or ""))
        for name, node, method in _public_functions()
    )


def too_wide() -> list[str]:
    return [
        f"{name} ({count} parameters)" for name, count, _ in _signatures() if count > MAX_PARAMETERS
    ]


def undocumented() -> list[str]:
    return [
        f"{name} ({count} parameters, no Args: section)"
        for name, count, documented in _signatures()
        if count > ARGS_ABOVE and not documented
    ]


def test_parameters_are_counted_as_a_reader_would():
    tree = ast.parse(
        "class C:\n    def m(self, a, *args, b, **kw): pass\n    @staticmethod\n    def s(self, "
        "a): pass\n"
        "def f(a, /, b, *, c): pass\n"
    )
    method, static = tree.body[0].body
    assert (
        parameter_count(method, True) == 4
        and parameter_count(static, True) == 2
        and parameter_count(tree.body[1], False) == 3
    )


def test_no_public_function_takes_more_than_eight_parameters():
    wide = too_wide()
    assert not wide, "group these parameters into a request object:\n  " + "\n  ".join(wide)


def test_public_functions_of_more_than_four_parameters_document_them():
    missing = undocumented()
    assert not missing, "add an Args: section to:\n  " + "\n  ".join(missing)
