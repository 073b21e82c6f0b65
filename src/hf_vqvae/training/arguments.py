"""The settings every training recipe shares, as typed dataclasses grouped as a reader thinks of them
(optimisation; checkpoints and logging; the Hub), and the parsing of a recipe's settings from a command
line or a JSON / YAML file with transformers' `HfArgumentParser`.

A recipe's settings are one dataclass whose fields are groups (see `recipes.vqvae.VQVAETrainingArguments`):
the data set's (`data.images.ImageDataArguments`), the model's, and the shared groups below. Each group
checks its own values in `__post_init__`, so a value from the command line, a file or Python fails the same
way. The flags keep diffusers' names (`--learning_rate`, `--output_dir`, ...).
"""

import dataclasses
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from diffusers.optimization import SchedulerType
from transformers import HfArgumentParser

from ..argument_checks import check_at_least, check_choice, check_in_range


REPORT_TO_CHOICES = ("tensorboard", "wandb", "all", "none")
MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")
LR_SCHEDULER_CHOICES = tuple(kind.value for kind in SchedulerType)
ARGUMENT_FILE_SUFFIXES = (".json", ".yaml", ".yml")
# Settings that never go into a saved arguments file or a tracker.
SECRET_FIELDS = ("hub_token",)


@dataclass
class OptimizationArguments:
    """How the model is optimised: batch, length of the run, Adam, schedule, clipping, precision, seed."""

    _argument_group_name = "optimisation"

    seed: int = field(default=0, metadata={"help": "Seed of the model init, the shuffles and augmentations."})
    train_batch_size: int = field(default=32, metadata={"help": "Batch size per device."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Optimizer updates; overrides --num_train_epochs."})
    num_train_epochs: int = field(default=1, metadata={"help": "Passes over the training split."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Batches per update; the global batch is train_batch_size x processes x this."}
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "Adam's learning rate (paper: 2e-4)."})
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam's beta1, in [0, 1)."})
    adam_beta2: float = field(default=0.999, metadata={"help": "Adam's beta2, in [0, 1)."})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "Adam's epsilon, > 0."})
    adam_weight_decay: float = field(default=0.0, metadata={"help": "Decoupled weight decay (AdamW), >= 0."})
    lr_scheduler: str = field(
        default="constant",
        metadata={"help": "Learning-rate schedule (diffusers.optimization.get_scheduler).", "choices": LR_SCHEDULER_CHOICES},
    )
    lr_warmup_steps: int = field(default=0, metadata={"help": "Updates of linear warm-up."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping; 0 disables it."})
    mixed_precision: str = field(default="no", metadata={"help": "Autocast precision.", "choices": MIXED_PRECISION_CHOICES})

    def __post_init__(self):
        for name in ("train_batch_size", "gradient_accumulation_steps", "num_train_epochs"):
            check_at_least(self, name, 1)
        check_at_least(self, "max_train_steps", 1, optional=True)
        check_at_least(self, "seed", 0)
        check_at_least(self, "lr_warmup_steps", 0)
        check_in_range(self, "learning_rate", 0, math.inf, low_open=True, high_open=True)
        check_in_range(self, "adam_beta1", 0, 1, high_open=True)
        check_in_range(self, "adam_beta2", 0, 1, high_open=True)
        check_in_range(self, "adam_epsilon", 0, math.inf, low_open=True, high_open=True)
        check_in_range(self, "adam_weight_decay", 0, math.inf, high_open=True)
        check_in_range(self, "max_grad_norm", 0, math.inf, high_open=True)
        check_choice(self, "lr_scheduler", LR_SCHEDULER_CHOICES)
        check_choice(self, "mixed_precision", MIXED_PRECISION_CHOICES)


@dataclass
class OutputArguments:
    """Where a run writes, how often it checkpoints and validates, where it logs, and what it resumes."""

    _argument_group_name = "checkpoints and logging"

    output_dir: str = field(default="outputs", metadata={"help": "Where the model, checkpoints and logs go."})
    checkpointing_steps: int = field(default=500, metadata={"help": "Save a resumable checkpoint every N updates."})
    checkpoints_total_limit: int | None = field(default=None, metadata={"help": "Keep at most this many checkpoints."})
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": '"latest" (the newest complete checkpoint in --output_dir, if any) or a checkpoint folder.'},
    )
    validation_steps: int = field(default=250, metadata={"help": "Validate every N updates (and at the end)."})
    report_to: str = field(default="tensorboard", metadata={"help": "The tracker.", "choices": REPORT_TO_CHOICES})
    logging_dir: str = field(default="logs", metadata={"help": "Tracker folder, relative to --output_dir."})

    def __post_init__(self):
        check_at_least(self, "checkpointing_steps", 1)
        check_at_least(self, "validation_steps", 1)
        check_at_least(self, "checkpoints_total_limit", 1, optional=True)
        check_choice(self, "report_to", REPORT_TO_CHOICES)
        if not self.output_dir:
            raise ValueError("--output_dir must name a folder, got an empty string")


@dataclass
class HubArguments:
    """Whether and where the final model is pushed."""

    _argument_group_name = "hub"

    push_to_hub: bool = field(default=False, metadata={"help": "Upload the final model with a model card."})
    hub_model_id: str | None = field(default=None, metadata={"help": "org/name; by default the name of --output_dir."})
    hub_token: str | None = field(
        default=None, metadata={"help": "A Hub token; by default the one `hf auth login` stored. Never saved."}
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the repository private."})


Settings = TypeVar("Settings")


def recipe_groups(recipe_class: type) -> dict[str, Any]:
    """The groups of a recipe's settings with the recipe's defaults, by field name."""
    defaults = recipe_class()
    return {group.name: getattr(defaults, group.name) for group in dataclasses.fields(recipe_class)}


def argument_parser(recipe_class: type, description: str | None = None) -> HfArgumentParser:
    """An `HfArgumentParser` over the recipe's groups whose defaults (shown by --help) are the recipe's."""
    groups = recipe_groups(recipe_class)
    parser = HfArgumentParser([type(group) for group in groups.values()], description=description)
    parser.set_defaults(**{name: value for group in groups.values() for name, value in _group_values(group).items()})
    return parser


def parse_arguments(recipe_class: type[Settings], argv: list[str] | None = None, description: str | None = None) -> Settings:
    """A recipe's settings from command-line flags, or from a JSON / YAML file of them passed as the only
    argument (`scripts/train.py args.yaml`). A file is read as the flags it names, so a wrong type or value
    in it fails with the message the same flag would give on the command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argument_parser(recipe_class, description)
    if len(argv) == 1 and argv[0].endswith(ARGUMENT_FILE_SUFFIXES):
        argv = flags_from_file(argv[0])
    *parsed, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return recipe_class(**dict(zip(recipe_groups(recipe_class), parsed)))


def flags_from_file(path: str | Path) -> list[str]:
    """The command-line flags a JSON or YAML file of settings stands for: `{"learning_rate": 0.001}` is
    `--learning_rate 0.001`, a list gives several values, and `null` keeps the default."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"the arguments file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            values = json.loads(text)
        else:
            import yaml

            values = yaml.safe_load(text)
    except ValueError as error:  # json.JSONDecodeError and yaml.YAMLError's parse errors
        raise ValueError(f"the arguments file {str(path)!r} is not valid {path.suffix[1:].upper()}: {error}") from error
    except Exception as error:
        if type(error).__module__.startswith("yaml"):
            raise ValueError(f"the arguments file {str(path)!r} is not valid YAML: {error}") from error
        raise
    if not isinstance(values, dict):
        raise ValueError(f"the arguments file {str(path)!r} must hold a mapping of flag names to values, got {type(values).__name__}")
    flags = []
    for name, value in values.items():
        if value is None:
            continue
        flags.append(f"--{name}")
        flags += [_flag_text(item) for item in value] if isinstance(value, list) else [_flag_text(value)]
    return flags


def _flag_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _group_values(group) -> dict[str, Any]:
    return {item.name: getattr(group, item.name) for item in dataclasses.fields(group)}


def arguments_dict(arguments) -> dict[str, dict[str, Any]]:
    """A recipe's settings as {group: {flag: value}}, without secrets (the Hub token): what is saved as
    `training_arguments.json` in the output folder and in each checkpoint."""
    return {
        group.name: {name: value for name, value in _group_values(getattr(arguments, group.name)).items() if name not in SECRET_FIELDS}
        for group in dataclasses.fields(arguments)
    }


def flat_arguments(groups: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Every flag of `arguments_dict`'s groups and its value, one level (what a tracker records as hyper-parameters)."""
    return {name: value for group in groups.values() for name, value in group.items()}


__all__ = [
    "HubArguments",
    "OptimizationArguments",
    "OutputArguments",
    "argument_parser",
    "arguments_dict",
    "flags_from_file",
    "parse_arguments",
]
