"""Launching under ``accelerate launch``: the command, its config file, the workers' args."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hybridscore.errors import HybridscoreError
from hybridscore.params import TeacherParams
from hybridscore.training.launch import launch_command, needs_launcher


def test_launch_command_runs_this_python_and_the_worker() -> None:
    cfg = TeacherParams(num_processes=4, mixed_precision="bf16")
    assert needs_launcher(cfg) and not needs_launcher(TeacherParams())
    cmd = launch_command("hybridscore.train_teacher", cfg, "train_teacher")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[-3:] == ["-m", "hybridscore.train_teacher", "--worker"]
    assert cmd[cmd.index("--num_processes") + 1] == "4"
    assert cmd[cmd.index("--mixed_precision") + 1] == "bf16"
    assert "--multi_gpu" in cmd and "--config_file" not in cmd


def test_launch_command_with_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "multi_gpu.yaml"
    config.write_text("distributed_type: MULTI_GPU\nnum_processes: 8\n")
    cmd = launch_command("m", TeacherParams(accelerate_config=str(config)), "train_teacher")
    assert cmd[cmd.index("--config_file") + 1] == str(config)
    assert "--num_processes" not in cmd and "--multi_gpu" not in cmd  # the file decides
    with pytest.raises(HybridscoreError, match=r"accelerate_config: file .* not found"):
        launch_command("m", TeacherParams(accelerate_config="nope.yaml"), "train_teacher")


def test_launch_command_passes_the_stage_arguments_to_every_worker() -> None:
    args = ["--train", "elsewhere/train.csv", "--out", "models/t2"]
    cmd = launch_command("hybridscore.train_teacher", TeacherParams(num_processes=2), "t", args)
    assert cmd[-7:] == ["-m", "hybridscore.train_teacher", "--worker", *args]
