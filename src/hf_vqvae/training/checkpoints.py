"""Checkpoints of a training run: atomic `checkpoint-<step>` folders, `latest`, pruning, the checks
that a checkpoint fits the run that resumes it, and the exact position a resumed run goes on from.

Checkpoints are trusted local files: Accelerate stores the optimizer, scheduler and random states
with `torch.save` (pickle) and loads them with `weights_only=True`; never resume from a checkpoint
you did not write.
"""

import dataclasses
import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import safetensors.torch
from accelerate import Accelerator
from accelerate.utils.other import load as accelerate_load
from transformers import PreTrainedConfig

from ..configuration_utils import PAPER_QUANTIZER_FIELDS, QuantizerConfigMixin


logger = logging.getLogger(__name__)

# The run's settings, saved in the output folder and in each checkpoint.
ARGUMENTS_FILE = "training_arguments.json"


# Model fields added since checkpoints were first written (the quantizer variants), with the value a checkpoint that
# does not name them was trained with: a run of hf-vqvae 0.2.0 resumes.
ADDED_MODEL_FIELDS = {
    field.name: field.default for field in dataclasses.fields(QuantizerConfigMixin) if field.name not in PAPER_QUANTIZER_FIELDS
}


class IncompatibleCheckpointError(ValueError):
    """A checkpoint was written for a different model configuration."""


class DamagedCheckpointError(ValueError):
    """A file of a checkpoint cannot be read: truncated, overwritten or not what its name says."""


def verify_checkpoint(path: Path) -> None:
    """Read every file of the checkpoint at `path` as its resume will, raising `DamagedCheckpointError`
    naming the first that fails: JSON files parse, safetensors files load, and the optimizer, scheduler
    and random-state files load with `weights_only=True` (PyTorch's restricted unpickler)."""
    for file in sorted(path.rglob("*")):
        if not file.is_file():
            continue
        try:
            if file.suffix == ".json":
                json.loads(file.read_text())
            elif file.suffix == ".safetensors":
                safetensors.torch.load_file(file)
            elif file.suffix in (".bin", ".pt", ".pth", ".pkl"):
                accelerate_load(file, map_location="cpu")
        except Exception as error:  # noqa: BLE001  any failure to read means the file is damaged
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            if "weights_only" in reason:
                reason = "not a checkpoint file PyTorch's safe loader accepts"
            raise DamagedCheckpointError(f"checkpoint {str(path)!r} is damaged: {file.name} cannot be read ({reason})") from None


# ---------------------------------------------------------------------------------------------
# Checkpoints


@dataclasses.dataclass
class TrainingPosition:
    """Where a run stands: updates done, the current epoch and the batches already taken from it."""

    step: int = 0
    epoch: int = 0
    batches_in_epoch: int = 0


class CheckpointManager:
    """`checkpoint-<step>` folders in `output_dir`, each a complete `Accelerator.save_state` (model
    with its EMA buffers, optimizer, scheduler, every process's random states) plus
    `training_state.json` (position, model config, number of processes) and `training_arguments.json`
    (the run's settings, as the output folder holds them too).

    A checkpoint is written into `tmp-checkpoint-<step>` and renamed only once every process has
    finished writing and the files are synced to disk; a rename is atomic, so a run killed at any
    moment leaves either a complete checkpoint or a temporary folder that `latest` ignores. Pruning
    renames a checkpoint to `deleted-checkpoint-<step>` before removing it, so a kill while it deletes
    never leaves a half-deleted `checkpoint-<step>`; leftovers of either kind are removed by the next save.

    Resuming reads every file of the checkpoint first: a damaged one is named, and `latest` then falls
    back to the newest checkpoint that reads whole, saying so.
    """

    state_file = "training_state.json"
    arguments_file = ARGUMENTS_FILE
    _name = re.compile(r"^checkpoint-(\d+)$")

    def __init__(self, output_dir: str | os.PathLike, total_limit: int | None = None):
        self.output_dir = Path(output_dir)
        self.total_limit = total_limit

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        if not self.output_dir.is_dir():
            return []
        found = []
        for path in self.output_dir.iterdir():
            match = self._name.match(path.name)
            if match and (path / self.state_file).is_file():
                found.append((int(match.group(1)), path))
        return [path for _, path in sorted(found)]

    def latest(self) -> Path | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    def save(self, accelerator: Accelerator, position: TrainingPosition, config: PreTrainedConfig, run_arguments: dict) -> Path:
        """Write the state of every prepared object, the training state (with the model's `config`: its fields,
        compared on resume, and the whole of it, labels included, which an export rebuilds the model from) and the
        run's arguments as `checkpoint-<step>`. Every process must call this."""
        final = self.output_dir / f"checkpoint-{position.step}"
        temporary = self.output_dir / f"tmp-checkpoint-{position.step}"
        if accelerator.is_main_process:
            self._remove_leftovers()
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {
                "position": dataclasses.asdict(position),
                "model_config": model_fields(config),
                "config": config.to_dict(),
                "num_processes": accelerator.num_processes,
            }
            write_json(temporary / self.state_file, state)
            write_json(temporary / self.arguments_file, run_arguments)
            sync_folder(temporary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            sync_folder(self.output_dir, recursive=False)
            self._prune()
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def _prune(self) -> None:
        if self.total_limit is None:
            return
        for stale in self.checkpoints()[: -self.total_limit]:
            doomed = stale.with_name(f"deleted-{stale.name}")
            os.replace(stale, doomed)
            shutil.rmtree(doomed)
            logger.info("removed checkpoint %s (--checkpoints_total_limit %s)", stale, self.total_limit)

    def _remove_leftovers(self) -> None:
        """Folders a killed run left: checkpoints being written or being deleted."""
        for pattern in ("tmp-checkpoint-*", "deleted-checkpoint-*"):
            for leftover in self.output_dir.glob(pattern):
                shutil.rmtree(leftover, ignore_errors=True)

    def resolve(self, resume_from_checkpoint: str | None, model_config: dict) -> tuple[Path, dict] | None:
        """The checkpoint `--resume_from_checkpoint` names and its training state, after checking
        that it was written for `model_config`; None when there is nothing to resume."""
        if resume_from_checkpoint is None:
            return None
        if resume_from_checkpoint == "latest":
            path = self._newest_readable()
            if path is None:
                logger.info("no complete checkpoint in %s: starting a new run", self.output_dir)
                return None
        else:
            path = Path(resume_from_checkpoint)
            if not path.is_dir() and (self.output_dir / resume_from_checkpoint).is_dir():
                path = self.output_dir / resume_from_checkpoint
            if not path.is_dir():
                available = [p.name for p in self.checkpoints()]
                raise ValueError(
                    f"--resume_from_checkpoint {resume_from_checkpoint!r} does not exist; complete checkpoints in "
                    f"{str(self.output_dir)!r}: {available or 'none'} (or pass 'latest')"
                )
            if not (path / self.state_file).is_file():
                raise ValueError(
                    f"--resume_from_checkpoint {str(path)!r} is not a complete checkpoint (no {self.state_file}); "
                    "an interrupted save leaves only tmp-checkpoint-* folders"
                )
            verify_checkpoint(path)
        state = json.loads((path / self.state_file).read_text())
        stored = state.get("model_config", {})
        differences = [
            f"  {name}: checkpoint {stored.get(name, ADDED_MODEL_FIELDS.get(name))!r}, this run {value!r}"
            for name, value in model_config.items()
            if stored.get(name, ADDED_MODEL_FIELDS.get(name)) != value
        ]
        if differences:
            raise IncompatibleCheckpointError(
                f"checkpoint {str(path)!r} was written for a different model configuration:\n" + "\n".join(differences)
            )
        return path, state

    def _newest_readable(self) -> Path | None:
        """The newest complete checkpoint whose files all read, warning about each damaged one skipped."""
        for path in reversed(self.checkpoints()):
            try:
                verify_checkpoint(path)
            except DamagedCheckpointError as error:
                logger.warning("%s; falling back to an older checkpoint", error)
                continue
            return path
        return None

    @staticmethod
    def load(accelerator: Accelerator, path: Path, state: dict) -> TrainingPosition:
        """Restore every prepared object and the random states; returns the saved position."""
        accelerator.load_state(str(path))
        position = TrainingPosition(**state["position"])
        logger.info("resumed from %s at step %s", path, position.step)
        return position


def sync_folder(folder: Path, recursive: bool = True) -> None:
    """fsync the files of `folder` and the folder itself, so a rename never publishes data that
    is still only in the page cache."""
    if recursive:
        for path in folder.rglob("*"):
            if path.is_file():
                with open(path, "rb") as file:
                    os.fsync(file.fileno())
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def model_fields(config: PreTrainedConfig) -> dict:
    """The fields a model's config class declares (not transformers' own bookkeeping): what
    defines the model, compared when a checkpoint is resumed. A nested config (a transformer prior's decoder) is
    given as its JSON dict, as the checkpoint stores it."""
    inherited = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    return {
        field.name: json_form(getattr(config, field.name))
        for field in dataclasses.fields(config) if field.name not in inherited
    }


def json_form(value):
    """A nested config as the dict its JSON holds; any other value as it is."""
    return json.loads(value.to_json_string(use_diff=False)) if isinstance(value, PreTrainedConfig) else value


# The settings a resumed run must share with the interrupted one to reproduce it: (group, flag).
REPRODUCING_SETTINGS = (("optimization", "seed"), ("optimization", "train_batch_size"), ("optimization", "gradient_accumulation_steps"))
def warn_on_changed_settings(path: Path, state: dict, run_arguments: dict, num_processes: int) -> None:
    """Warn when the checkpoint at `path` was written under settings (its `training_arguments.json`, its
    number of processes) with which this run cannot reproduce an uninterrupted one."""
    arguments_path = path / ARGUMENTS_FILE
    stored = json.loads(arguments_path.read_text()) if arguments_path.is_file() else {}
    changed = {
        name: (stored.get(group, {}).get(name), run_arguments.get(group, {}).get(name))
        for group, name in REPRODUCING_SETTINGS
        if stored.get(group, {}).get(name) != run_arguments.get(group, {}).get(name)
    }
    if state.get("num_processes") != num_processes:
        changed["num_processes"] = (state.get("num_processes"), num_processes)
    if changed:
        logger.warning(
            "resuming with different settings (checkpoint, now): %s; the run will not match an uninterrupted one", changed
        )


def write_json(path: str | os.PathLike, values: dict) -> None:
    """`values` as JSON; a non-finite float (NaN, infinity: not JSON) is written as null."""
    Path(path).write_text(json.dumps(_finite_or_none(values), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    return value

