"""dvc.yaml declares, for every stage, exactly the hybridscore code that stage runs.

DVC reruns a stage only when one of its deps changes, so a module missing from a stage's
deps lets an edit to it leave stale outputs behind, and a module listed that the stage never
runs reruns the stage for nothing (an edit to the training loop must not rerun the exports).
The code a stage runs is taken as every hybridscore module its ``python -m`` module imports,
directly or through other modules, module-level or inside a function.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
PACKAGE = "hybridscore"

# Cannot change a stage's outputs: exception types, messages and exit codes.
NEVER_A_DEP = {"src/hybridscore/errors.py"}


def module_file(name: str) -> Path | None:
    """The source file of the module ``name`` (``hybridscore.x.y``), if it is one."""
    path = SOURCE.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Every hybridscore module that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] == PACKAGE and module_file(name)}


def code_run_by(module: str) -> set[str]:
    """Repository paths of ``module`` and of everything it imports, transitively.

    A package's ``__init__.py`` counts when a module inside the package is imported.
    """
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]))
            if path is not None and path not in seen:
                seen.add(path)
                pending.extend(imported_modules(path))
    root_init = SOURCE / PACKAGE / "__init__.py"
    return {path.relative_to(ROOT).as_posix() for path in seen - {root_init}}


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep.rstrip("/") + "/") for dep in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def stage_module(stage: dict) -> str:
    match = re.search(r"-m (hybridscore(?:\.\w+)*)", stage["cmd"])
    assert match, f"cmd {stage['cmd']!r} does not run a hybridscore module"
    return match.group(1)


def python_files(dep: str) -> set[str]:
    """The Python files a dep path names (itself, or every ``.py`` file under a folder)."""
    path = ROOT / dep
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if dep.endswith(".py") else []
    return {f.relative_to(ROOT).as_posix() for f in files}


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_are_the_code_it_runs(name: str) -> None:
    stage = STAGES[name]
    deps = stage.get("deps", [])
    code = code_run_by(stage_module(stage))
    missing = sorted(path for path in code - NEVER_A_DEP if not covered(path, deps))
    assert not missing, f"dvc.yaml stage {name!r}: add to deps: {missing}"
    listed = set().union(*(python_files(dep) for dep in deps if dep.startswith("src/")))
    never_run = sorted(listed - code)
    assert not never_run, f"dvc.yaml stage {name!r}: deps it never runs: {never_run}"


def test_stage_commands_pass_every_path_they_use() -> None:
    """A stage's data deps and outputs are arguments of its command (a file, or the folder it
    is written into, such as a dvclive folder): dvc.yaml is the one place a path is declared."""
    for name, stage in STAGES.items():
        named = [d for d in stage.get("deps", []) if not d.startswith(("src/", "configs/", "$"))]
        for entry in stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", []):
            named.append(next(iter(entry)) if isinstance(entry, dict) else entry)
        args = stage["cmd"].split()
        absent = [p for p in named if not any(p == a or p.startswith(a + "/") for a in args)]
        assert not absent, f"dvc.yaml stage {name!r}: cmd does not pass {absent}"


def test_the_import_walk_finds_lazy_and_package_imports() -> None:
    """The walk itself: an import inside a function and a package's __init__ are found."""
    code = code_run_by("hybridscore.export")  # imports modeling inside export_model
    assert "src/hybridscore/modeling.py" in code
    synthesize = code_run_by("hybridscore.synthesize")
    assert "src/hybridscore/llm/__init__.py" in synthesize
    assert "src/hybridscore/llm/backends/local.py" in synthesize
