"""Every private Ray name the orchestrator uses is fenced in orchestrator/ray_internals.py, and
still there.

No Ray cluster: the installed Ray's modules are read, not run.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest

from orchestrator import ray_internals
from orchestrator.ray_internals import FENCED, Fenced

PACKAGE = Path(ray_internals.__file__).parent
# Ray modules that are internal as a whole, though their names carry no underscore.
INTERNAL_MODULES = ("ray.experimental", "ray.tune.execution")
# Names with a leading underscore that are public API (namedtuple's).
PUBLIC = {"_replace", "_asdict", "_fields", "_make"}


def _assigned_in(cls: type, name: str) -> bool:
    """Whether `cls`'s own source assigns `self.<name>` (an instance attribute, set in __init__ or
    after)."""
    return (
        re.search(rf"self\.{re.escape(name)}\s*(:[^=\n]*)?=(?!=)", inspect.getsource(cls))
        is not None
    )


@pytest.mark.parametrize("fenced", FENCED, ids=lambda f: f"{f.module}.{f.attribute}")
def test_each_fenced_name_is_still_in_the_installed_ray(fenced: Fenced):
    where = (
        f"{fenced.module}.{fenced.attribute} (read against Ray {ray_internals.READ_AGAINST}, used "
        f"for: {fenced.why})"
    )
    try:
        target = importlib.import_module(fenced.module)
    except ImportError as err:
        pytest.fail(f"module {fenced.module} is gone: re-read {where}: {err}")
    *owners, name = fenced.attribute.split(".")
    for part in owners:
        assert hasattr(target, part), f"{part} moved: re-read {where}"
        target = getattr(target, part)
    if fenced.instance:
        assert inspect.isclass(target) and _assigned_in(target, name), (
            f"{target} no longer sets self.{name}: re-read {where}"
        )
        return
    assert hasattr(target, name), f"{name} moved: re-read {where}"
    value = getattr(target, name)
    if fenced.params:
        taken = list(inspect.signature(value).parameters)
        assert taken[: len(fenced.params)] == list(fenced.params), (
            f"{name} now takes {taken}: re-read {where}"
        )


def test_the_variables_tune_copies_into_trials_are_a_set_that_can_be_trimmed():
    from ray.tune.execution import class_cache

    # (a sweep run earlier in this process has already taken the credentials out)
    assert isinstance(class_cache.ENV_VARS_TO_PROPAGATE, set)
    assert all(isinstance(name, str) for name in class_cache.ENV_VARS_TO_PROPAGATE)


# -- no other module touches a private Ray name --------------------------------------------------


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "ray_internals.py")


def _ray_imports(tree: ast.Module) -> dict[str, str]:
    """Local name -> the Ray module or `module.name` it stands for."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "ray":
                    names[alias.asname or alias.name.split(".")[0]] = (
                        alias.name if alias.asname else "ray"
                    )
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ray":
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC


@cache
def _ray_names(dotted: str) -> frozenset[str]:
    """Every attribute of the Ray class `dotted` and of its Ray bases, instance attributes
    included."""
    module, _, name = dotted.rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if not inspect.isclass(cls):
        return frozenset()
    names = set()
    for base in cls.__mro__:
        if base.__module__.split(".")[0] == "ray":
            names |= set(vars(base))
            try:
                names |= set(
                    re.findall(r"self\.(_\w+)\s*(?::[^=\n]*)?=(?!=)", inspect.getsource(base))
                )
            except (OSError, TypeError):
                pass
    return frozenset(names)


def _private_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    ray_names = _ray_imports(tree)
    found = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            imported = [] if isinstance(node, ast.Import) else [a.name for a in node.names]
            for module in modules:
                if module.split(".")[0] == "ray" and (
                    any(_private(p) for p in module.split("."))
                    or module.startswith(INTERNAL_MODULES)
                ):
                    found.append(f"{line}: imports {module}")
            if modules[0].split(".")[0] == "ray":
                found += [f"{line}: imports {n} from {modules[0]}" for n in imported if _private(n)]
        if not ray_names:
            continue
        if isinstance(node, ast.Attribute) and _private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append(f"{line}: .{node.attr}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr")
        ):
            if (
                len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and _private(str(node.args[1].value))
            ):
                found.append(f"{line}: {node.func.id}(..., {node.args[1].value!r})")
        elif isinstance(node, ast.ClassDef):
            found += _class_uses(node, ray_names)
    return found


def _class_uses(cls: ast.ClassDef, ray_names: dict[str, str]) -> list[str]:
    """In a class: `self._x` that the class neither defines nor assigns (a base's private
    attribute), and private names it defines or assigns that a Ray base class has (an override of
    Ray's)."""
    defined = {
        n.name
        for n in cls.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Assign, ast.AnnAssign))
        if hasattr(n, "name")
    }
    defined |= {
        t.id
        for n in cls.body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assigned = set()
    for node in ast.walk(cls):
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, (ast.AnnAssign, ast.AugAssign))
            else []
        )
        for target in targets:
            for part in ast.walk(target):
                if (
                    isinstance(part, ast.Attribute)
                    and isinstance(part.value, ast.Name)
                    and part.value.id == "self"
                ):
                    assigned.add(part.attr)
    bases = [ray_names[b.id] for b in cls.bases if isinstance(b, ast.Name) and b.id in ray_names]
    found = []
    # A mixin (no bases) or a Ray subclass reaching a private name it does not set: a Ray base's.
    for node in ast.walk(cls) if bases or not cls.bases else ():
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and _private(node.attr)
            and node.attr not in defined | assigned
        ):
            found.append(f"{node.lineno}: self.{node.attr} (not {cls.name}'s own)")
    for base in bases:
        shadowed = {n for n in defined | assigned if _private(n)} & _ray_names(base)
        found += [
            f"{cls.lineno}: {cls.name}.{n} overrides {base}'s private {n}" for n in sorted(shadowed)
        ]
    return found


def test_no_module_but_ray_internals_touches_a_private_ray_name():
    found = {
        str(p.relative_to(PACKAGE.parent)): uses for p in _modules() if (uses := _private_uses(p))
    }
    assert not found, (
        "private Ray names outside orchestrator/ray_internals.py (fence them there): " + repr(found)
    )


def test_the_check_sees_what_it_must(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from ray.experimental.internal_kv import _internal_kv_get\n"
        "from ray.tune.logger import CSVLoggerCallback\n"
        "from ray.tune.search import SearchAlgorithm\n"
        "def f(tuner):\n    return tuner._local_tuner, getattr(tuner, '_x', None)\n"
        "class Keep:\n    def go(self):\n        return self._synch\n"
        "class Logs(CSVLoggerCallback):\n    def _restore_from_remote(self, name, trial):\n        "
        "pass\n"
        "class Search(SearchAlgorithm):\n    def __init__(self):\n        self._finished = True\n"
    )
    uses = "\n".join(_private_uses(sample))
    for expected in (
        "imports ray.experimental.internal_kv",
        "_internal_kv_get",
        "._local_tuner",
        "'_x'",
        "self._synch",
        "overrides ray.tune.logger.CSVLoggerCallback's private _restore_from_remote",
        "overrides ray.tune.search.SearchAlgorithm's private _finished",
    ):
        assert expected in uses, (expected, uses)
