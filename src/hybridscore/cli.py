"""The ``hybridscore`` command: ``hybridscore <command> [args]`` runs a stage or a tool."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "prepare": "run the prepare stage (validate the data source, write splits)",
    "synthesize": "run the synthesize stage (--dry-run: estimate requests, tokens and cost)",
    "mix": "run the mix stage",
    "train_teacher": "run the teacher fine-tuning stage",
    "teacher_logits": "run the teacher_logits stage (the teacher's logits on the transfer set)",
    "distill": "run the distillation stage",
    "export": "export a saved model to ONNX (+ INT8)",
    "evaluate": "run the evaluation stage",
    "predict": "score a CSV of responses with a saved model",
    "sweep": "queue and run a grid of experiments (configs/grids/*.yaml)",
    "report": "tables, plots and a conclusion from the experiments of a commit (reports/)",
    "pr-report": "params, metrics and plots of the workspace vs a base commit (one .md file)",
}


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        print("usage: hybridscore <command> [args]\n\ncommands:")
        for name, help_text in COMMANDS.items():
            print(f"  {name:<14} {help_text}")
        sys.exit(0 if argv and argv[0] in {"-h", "--help"} else 2)
    module = importlib.import_module(f"hybridscore.{argv[0].replace('-', '_')}")
    module.main(argv[1:])


if __name__ == "__main__":
    main()
