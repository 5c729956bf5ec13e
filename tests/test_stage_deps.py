"""dvc.yaml declares, for every stage, the hybridscore code that stage runs.

DVC reruns a stage only when one of its deps changes, so a module missing from a stage's
deps lets an edit to it leave stale outputs behind. The code a stage runs is taken as every
hybridscore module its ``python -m`` module imports, directly or through other modules,
module-level or inside a function; the few imports a stage never executes are listed below,
each with the reason.
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

# Imported by the stage's module but not run by that stage: {stage: {file: why}}.
NOT_RUN = {
    "teacher_logits": {
        "src/hybridscore/model_card.py": "distill.py writes the card only in the distill stage",
        "src/hybridscore/metrics.py": "training.py's metrics run only in the training loop",
        "src/hybridscore/quantize.py": "the teacher is scored with PyTorch, not ONNX",
    },
    "distill": {
        "src/hybridscore/predict.py": "distill.py scores the teacher only in teacher_logits",
        "src/hybridscore/quantize.py": "imported by predict.py, for ONNX files",
    },
    "export": {"src/hybridscore/metrics.py": "training.py's metrics run only in training"},
    "export_teacher": {"src/hybridscore/metrics.py": "as for export"},
    "evaluate": {"src/hybridscore/quantize.py": "models are scored with PyTorch, not ONNX"},
}


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


@pytest.mark.parametrize("name", sorted(STAGES))
def test_stage_deps_hold_the_code_it_runs(name: str) -> None:
    stage = STAGES[name]
    code = code_run_by(stage_module(stage))
    exempt = NOT_RUN.get(name, {})
    missing = sorted(
        path
        for path in code - NEVER_A_DEP - exempt.keys()
        if not covered(path, stage.get("deps", []))
    )
    assert not missing, f"dvc.yaml stage {name!r}: add to deps: {missing}"
    stale = sorted(set(exempt) - code)
    assert not stale, f"NOT_RUN[{name!r}] lists files the stage no longer imports: {stale}"


def test_the_import_walk_finds_lazy_and_package_imports() -> None:
    """The walk itself: an import inside a function and a package's __init__ are found."""
    code = code_run_by("hybridscore.export")  # imports modeling inside export_model
    assert "src/hybridscore/modeling.py" in code
    synthesize = code_run_by("hybridscore.synthesize")
    assert "src/hybridscore/llm/__init__.py" in synthesize
    assert "src/hybridscore/llm/backends/local.py" in synthesize
