"""``hybridscore <command> --help`` and ``python -m hybridscore.<stage> --help`` print usage and
run nothing: no file appears in the working directory, and the exit status is 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hybridscore.cli import COMMANDS

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = sorted(
    {
        stage["cmd"].split("-m ")[1].split()[0]
        for stage in yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))[
            "stages"
        ].values()
    }
)


def run_help(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_subcommand_help_runs_nothing(command: str, tmp_path: Path) -> None:
    done = run_help([sys.executable, "-m", "hybridscore.cli", command, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:") and command.replace("_", "") in done.stdout.replace(
        "_", ""
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_stage_module_help_runs_nothing(module: str, tmp_path: Path) -> None:
    done = run_help([sys.executable, "-m", module, "--help"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:")
    assert list(tmp_path.iterdir()) == []


def test_every_stage_module_is_a_command() -> None:
    assert {module.removeprefix("hybridscore.") for module in STAGE_MODULES} <= set(COMMANDS)


def test_unknown_command_exits_2(tmp_path: Path) -> None:
    done = run_help([sys.executable, "-m", "hybridscore.cli", "no-such-command"], tmp_path)
    assert done.returncode == 2 and "commands:" in done.stdout
