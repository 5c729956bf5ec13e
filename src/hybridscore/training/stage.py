"""The stage shell of ``train_teacher`` and ``distill``: one function, stage parts as data.

Load params, relaunch under ``accelerate launch`` if asked (the paths passed on to every
worker), read the inputs, load the model, train, then write the metrics and the model card.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hybridscore.data import Examples, examples_from_table, read_labels, read_table
from hybridscore.errors import run_stage
from hybridscore.model_card import record_training
from hybridscore.modeling import load_classifier
from hybridscore.params import Params, TrainParams, load_params
from hybridscore.training.launch import relaunched
from hybridscore.training.loop import train_classifier
from hybridscore.training.losses import LossFn


@dataclass(frozen=True)
class TrainingStage:
    """What one training stage adds to the shell (``section`` is also its module's name)."""

    section: str  # params section: train_teacher | distill
    role: str  # teacher | student (the model card)
    model_field: str  # the params key of the base model
    out: str  # default output paths
    live_dir: str
    metrics: str
    add_inputs: Callable[[argparse.ArgumentParser], None]  # the training rows' arguments
    read_train: Callable[[Params, list[str], argparse.Namespace], Examples]
    loss: Callable[[TrainParams, Examples, int], LossFn]  # (cfg, train rows, label count)
    data_summary: Callable[[Examples, argparse.Namespace], dict]
    description: str = ""


def argument_parser(stage: TrainingStage) -> argparse.ArgumentParser:
    """The stage's arguments: its training rows, then validation, labels and outputs."""
    parser = argparse.ArgumentParser(
        prog=f"hybridscore {stage.section}",
        description=stage.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stage.add_inputs(parser)
    paths = {
        "--val": ("data/prepared/val.csv", "human validation rows (model selection)"),
        "--labels": ("data/prepared/labels.json", "the ordered labels"),
        "--out": (stage.out, "the trained model folder"),
        "--live-dir": (stage.live_dir, "the dvclive folder (per-epoch curves)"),
        "--metrics": (stage.metrics, "the metrics JSON"),
    }
    for flag, (default, help_text) in paths.items():
        parser.add_argument(flag, type=Path, default=Path(default), help=help_text)
    parser.add_argument(
        "--worker", action="store_true", help="train here (set by the accelerate relaunch)"
    )
    return parser


def main(stage: TrainingStage, argv: list[str] | None = None) -> None:
    """Parse ``argv`` and run the stage (``--help`` prints usage and runs nothing)."""
    args = argument_parser(stage).parse_args(argv)
    forwarded = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--worker"]
    run_stage(stage.section, lambda: train(stage, args, forwarded))


def train(stage: TrainingStage, args: argparse.Namespace, forwarded: list[str]) -> None:
    """The stage itself; ``forwarded`` are the arguments the accelerate workers get."""
    from accelerate.utils import set_seed

    params = load_params()
    cfg: TrainParams = getattr(params, stage.section)
    base_model: str = getattr(cfg, stage.model_field)
    labels = read_labels(args.labels)
    train_rows = stage.read_train(params, labels, args)
    val = examples_from_table(read_table(args.val), labels, str(args.val), params.data.input)
    if relaunched(args.worker, cfg, stage.section, stage.model_field, base_model, forwarded):
        return
    seed = cfg.training_seed(params.seed)
    set_seed(seed)  # the new classification head is initialised from this seed
    model, tokenizer = load_classifier(
        base_model,
        labels,
        f"{stage.section}.{stage.model_field}",
        getattr(cfg, "num_layers", None),  # the student may keep only its first layers
    )
    loss = stage.loss(cfg, train_rows, len(labels))
    result = train_classifier(
        model,
        tokenizer,
        train_rows,
        val,
        cfg,
        loss,
        seed,
        args.out,
        args.live_dir,
        section=stage.section,
        input_mode=params.data.input,
    )
    record_training(
        result,
        metrics_path=args.metrics,
        model_dir=args.out,
        role=stage.role,
        base_model=base_model,
        params={**cfg.model_dump(), "seed": seed},
        data_summary=stage.data_summary(train_rows, args),
        validation_rows=len(val.texts),
    )
