"""Training with Accelerate: the loop every training script of the package shares, its pieces,
and the VQ-VAE's training (`train_vqvae`, behind scripts/train.py).

Shared with the prior's training script:

- `add_common_training_arguments(parser)` / `check_common_training_arguments(args)`:
  optimisation, state, tracking and Hub flags with diffusers' names (`data.add_data_arguments`
  adds the data-set flags);
- `setup_accelerator(args)`: the `Accelerator` (`create_accelerator`), logging, seeding;
- `CheckpointManager`: atomic `checkpoint-<step>` folders, `latest`, pruning, compatibility
  checks (`model_fields`), exact resume of a `TrainingPosition`;
- `run_training_loop(...)`: prepare, resume, accumulate, clip, schedule, log, validate,
  checkpoint, compare the processes' weights; returns a `TrainingRun`;
- `log_image`, `four_figures`, `write_json`, `training_summary`, `publish` (final files, model
  card, push), `end_training`.

Checkpoints are trusted local files: Accelerate stores the optimizer, scheduler and random states
with `torch.save` (pickle) and loads them with `weights_only=True`; never resume from a checkpoint
you did not write.
"""

import argparse
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from accelerate.utils import (
    ProjectConfiguration,
    gather_object,
    send_to_device,
    set_seed,
)
from diffusers.optimization import SchedulerType, get_scheduler
from huggingface_hub import ModelCard
from tqdm.auto import tqdm
from transformers import PreTrainedConfig

from .configuration_vqvae import PRESETS, VQVAEConfig
from .data import (
    ImageTransform,
    add_data_arguments,
    load_image_datasets,
    training_dataloader,
    validation_pixel_values,
)
from .hub import push_with_card, vqvae_model_card
from .image_processing_vqvae import VQVAEImageProcessor
from .modeling_vqvae import VQVAEModel


logger = logging.getLogger(__name__)

REPORT_TO_CHOICES = ("tensorboard", "wandb", "all", "none")
MIXED_PRECISION_CHOICES = ("no", "fp16", "bf16")


class IncompatibleCheckpointError(ValueError):
    """A checkpoint was written for a different model configuration."""


# ---------------------------------------------------------------------------------------------
# Arguments


def add_common_training_arguments(parser: argparse.ArgumentParser, *, default_output_dir: str) -> argparse.ArgumentParser:
    """The flags every training script shares: optimisation, state, tracking, Hub."""
    group = parser.add_argument_group("optimisation")
    group.add_argument("--output_dir", default=default_output_dir, help="Where the model, checkpoints and logs go.")
    group.add_argument("--seed", type=int, default=0, help="Seed of the model init, the shuffles and augmentations.")
    group.add_argument("--train_batch_size", type=int, default=32, help="Batch size per device.")
    group.add_argument("--max_train_steps", type=int, default=None, help="Optimizer updates; overrides --num_train_epochs.")
    group.add_argument("--num_train_epochs", type=int, default=1, help="Passes over the training split.")
    group.add_argument(
        "--gradient_accumulation_steps", type=int, default=1,
        help="Batches per update; the global batch is train_batch_size x processes x this.",
    )
    group.add_argument("--learning_rate", type=float, default=2e-4, help="Adam's learning rate (paper: 2e-4).")
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.999)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--adam_weight_decay", type=float, default=0.0)
    group.add_argument(
        "--lr_scheduler", default="constant", choices=[kind.value for kind in SchedulerType],
        help="Learning-rate schedule (diffusers.optimization.get_scheduler).",
    )
    group.add_argument("--lr_warmup_steps", type=int, default=0, help="Updates of linear warm-up.")
    group.add_argument("--max_grad_norm", type=float, default=1.0, help="Gradient clipping; 0 disables it.")
    group.add_argument("--mixed_precision", default="no", choices=MIXED_PRECISION_CHOICES)

    group = parser.add_argument_group("state")
    group.add_argument("--checkpointing_steps", type=int, default=500, help="Save a resumable checkpoint every N updates.")
    group.add_argument("--checkpoints_total_limit", type=int, default=None, help="Keep at most this many checkpoints.")
    group.add_argument(
        "--resume_from_checkpoint", default=None,
        help='"latest" (the newest complete checkpoint in --output_dir, if any) or a checkpoint folder.',
    )

    group = parser.add_argument_group("tracking")
    group.add_argument("--report_to", default="tensorboard", choices=REPORT_TO_CHOICES)
    group.add_argument("--logging_dir", default="logs", help="Tracker folder, relative to --output_dir.")
    group.add_argument("--validation_steps", type=int, default=250, help="Validate every N updates (and at the end).")

    group = parser.add_argument_group("hub")
    group.add_argument("--push_to_hub", action="store_true", help="Upload the final model with a model card.")
    group.add_argument("--hub_model_id", default=None, help="org/name; by default the name of --output_dir.")
    group.add_argument("--hub_token", default=None, help="A Hub token; by default the one `hf auth login` stored.")
    group.add_argument("--hub_private_repo", action="store_true")
    return parser


def check_common_training_arguments(args: argparse.Namespace) -> None:
    """Raise a `ValueError` naming the flag for values the parser's types cannot rule out."""
    positive = ("train_batch_size", "gradient_accumulation_steps", "num_train_epochs", "checkpointing_steps", "validation_steps")
    for name in positive:
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.max_train_steps is not None and args.max_train_steps < 1:
        raise ValueError(f"--max_train_steps must be >= 1, got {args.max_train_steps}")
    if args.checkpoints_total_limit is not None and args.checkpoints_total_limit < 1:
        raise ValueError(f"--checkpoints_total_limit must be >= 1, got {args.checkpoints_total_limit}")
    if args.learning_rate <= 0:
        raise ValueError(f"--learning_rate must be > 0, got {args.learning_rate}")
    if args.report_to in ("wandb", "all") and args.hub_token is not None:
        raise ValueError("--hub_token would be recorded by the tracker; log in with `hf auth login` instead")


# ---------------------------------------------------------------------------------------------
# Accelerator, optimizer, schedule


def create_accelerator(**accelerator_kwargs) -> Accelerator:
    """An `Accelerator` that runs on CPU processes when there is no GPU, with the package's logging
    on the main process only: what every command of the package that runs under `accelerate
    launch` starts with."""
    accelerator = Accelerator(
        # Without a GPU (or other accelerator) Accelerate goes multi-process only when told the run
        # is on CPU; this makes `accelerate launch --multi_gpu --num_processes N` run over gloo.
        cpu=not torch.accelerator.is_available(),
        **accelerator_kwargs,
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("hf_vqvae").setLevel(logging.INFO if accelerator.is_main_process else logging.WARNING)
    if not accelerator.is_main_process:
        import datasets

        datasets.utils.logging.disable_progress_bar()
    return accelerator


def setup_accelerator(args: argparse.Namespace) -> Accelerator:
    """The run's `Accelerator` (accumulation, precision, trackers), logging on the main process
    only, and the seed set identically on every process."""
    if args.report_to == "wandb" and importlib.util.find_spec("wandb") is None:
        raise ValueError("--report_to wandb needs wandb: `pip install wandb`")
    project_config = ProjectConfiguration(
        project_dir=args.output_dir, logging_dir=os.path.join(args.output_dir, args.logging_dir)
    )
    accelerator = create_accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=project_config,
    )
    set_seed(args.seed)
    if accelerator.is_main_process:
        os.makedirs(args.output_dir, exist_ok=True)
    return accelerator


def create_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """Adam over the trainable parameters (an EMA codebook is updated without gradients)."""
    return torch.optim.AdamW(
        [parameter for parameter in model.parameters() if parameter.requires_grad],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        weight_decay=args.adam_weight_decay,
    )


@dataclasses.dataclass
class TrainingSchedule:
    max_train_steps: int
    updates_per_epoch: int | None  # None for a stream of unknown length
    num_epochs: int | None


def training_schedule(args: argparse.Namespace, batches_per_epoch: int | None) -> TrainingSchedule:
    """Updates and epochs from --max_train_steps / --num_train_epochs and the (per-process) loader
    length. Accelerate completes an update at the end of every epoch, so an epoch holds
    ceil(batches / accumulation) updates."""
    if batches_per_epoch is None:
        if args.max_train_steps is None:
            raise ValueError("--streaming needs --max_train_steps: the length of a stream is unknown")
        return TrainingSchedule(args.max_train_steps, None, None)
    if batches_per_epoch == 0:
        raise ValueError("the training split is empty")
    updates_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps or args.num_train_epochs * updates_per_epoch
    return TrainingSchedule(max_train_steps, updates_per_epoch, math.ceil(max_train_steps / updates_per_epoch))


def create_lr_scheduler(optimizer, args: argparse.Namespace, max_train_steps: int, num_processes: int):
    # A prepared scheduler steps once per process for each update, hence the scaling (as diffusers).
    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
    )


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
    `training_state.json` (position, model config, run settings).

    A checkpoint is written into `tmp-checkpoint-<step>` and renamed only once every process has
    finished writing and the files are synced to disk; a rename is atomic, so a run killed at any
    moment leaves either a complete checkpoint or a temporary folder that `latest` ignores.
    """

    state_file = "training_state.json"
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

    def save(self, accelerator: Accelerator, position: TrainingPosition, training_state: dict) -> Path:
        """Write the state of every prepared object and `training_state` (JSON) as `checkpoint-<step>`.
        Every process must call this."""
        final = self.output_dir / f"checkpoint-{position.step}"
        temporary = self.output_dir / f"tmp-checkpoint-{position.step}"
        if accelerator.is_main_process and temporary.exists():
            shutil.rmtree(temporary)  # left by a run killed while writing
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {"position": dataclasses.asdict(position), **training_state}
            write_json(temporary / self.state_file, state)
            _sync_folder(temporary)
            if final.exists():
                shutil.rmtree(final)
            os.replace(temporary, final)
            _sync_folder(self.output_dir, recursive=False)
            self._prune()
            logger.info("saved checkpoint %s", final)
        accelerator.wait_for_everyone()
        return final

    def _prune(self) -> None:
        if self.total_limit is None:
            return
        for stale in self.checkpoints()[: -self.total_limit]:
            shutil.rmtree(stale)
            logger.info("removed checkpoint %s (--checkpoints_total_limit %s)", stale, self.total_limit)

    def resolve(self, resume_from_checkpoint: str | None, model_config: dict) -> tuple[Path, dict] | None:
        """The checkpoint `--resume_from_checkpoint` names and its training state, after checking
        that it was written for `model_config`; None when there is nothing to resume."""
        if resume_from_checkpoint is None:
            return None
        if resume_from_checkpoint == "latest":
            path = self.latest()
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
        state = json.loads((path / self.state_file).read_text())
        stored = state.get("model_config", {})
        differences = [
            f"  {name}: checkpoint {stored.get(name)!r}, this run {value!r}"
            for name, value in model_config.items()
            if stored.get(name) != value
        ]
        if differences:
            raise IncompatibleCheckpointError(
                f"checkpoint {str(path)!r} was written for a different model configuration:\n" + "\n".join(differences)
            )
        return path, state

    @staticmethod
    def load(accelerator: Accelerator, path: Path, state: dict) -> TrainingPosition:
        """Restore every prepared object and the random states; returns the saved position."""
        accelerator.load_state(str(path))
        position = TrainingPosition(**state["position"])
        logger.info("resumed from %s at step %s", path, position.step)
        return position


def _sync_folder(folder: Path, recursive: bool = True) -> None:
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
    defines the model, compared when a checkpoint is resumed."""
    inherited = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.name not in inherited}


def run_settings(args: argparse.Namespace, num_processes: int) -> dict:
    """Settings that must match for a resumed run to reproduce an uninterrupted one."""
    return {
        "seed": args.seed,
        "train_batch_size": args.train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "num_processes": num_processes,
    }


def warn_on_changed_settings(state: dict, settings: dict) -> None:
    stored = state.get("run_settings", {})
    changed = {name: (stored.get(name), value) for name, value in settings.items() if stored.get(name) != value}
    if changed:
        logger.warning(
            "resuming with different settings (checkpoint, now): %s; the run will not match an uninterrupted one", changed
        )


def epoch_batches(
    accelerator: Accelerator, dataloader, position: TrainingPosition, prepared: bool
) -> Iterator[tuple[int, dict]]:
    """(epoch, batch) from `position.epoch` on, without the batches a resumed run already took.

    Every epoch's order and augmentations are a function of (seed, epoch), so skipping the first
    `position.batches_in_epoch` batches continues exactly where the interrupted run stopped. A
    stream (an unprepared loader) is moved to the device here, and skipping reads through it.
    """
    for epoch in itertools.count(position.epoch):
        if prepared:
            dataloader.set_epoch(epoch)  # Accelerate passes it on to the sampler and the data set
        else:
            dataloader.dataset.set_epoch(epoch)
        skip = position.batches_in_epoch if epoch == position.epoch else 0
        batches = accelerator.skip_first_batches(dataloader, skip) if skip else dataloader
        yielded = False
        for batch in batches:
            yielded = True
            yield epoch, batch if prepared else send_to_device(batch, accelerator.device)
        if not yielded and not skip:
            raise ValueError("an epoch of the training data yielded no batch")


# ---------------------------------------------------------------------------------------------
# Tracking and results


def init_trackers(accelerator: Accelerator, project_name: str, args: argparse.Namespace) -> None:
    # Trackers store hyper-parameters as scalars and strings only.
    config = {name: " ".join(value) if isinstance(value, list) else value for name, value in vars(args).items()}
    config = {name: value for name, value in config.items() if isinstance(value, (bool, int, float, str))}
    config.pop("hub_token", None)
    accelerator.init_trackers(project_name, config=config)


def log_image(accelerator: Accelerator, name: str, image: PIL.Image.Image, step: int) -> None:
    """Send one image to every tracker that takes images (main process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({name: np.asarray(image.convert("RGB"))[None]}, step=step, dataformats="NHWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images({name: [image]}, step=step)


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter and buffer, bit for bit."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_processes_in_sync(accelerator: Accelerator, model: torch.nn.Module) -> list[str]:
    """Every process's weights fingerprint (logged); raises if any process drifted from the first."""
    fingerprints = gather_object([weights_fingerprint(accelerator.unwrap_model(model))])
    logger.info("weights sha256 by process: %s", " ".join(f"{rank}={value}" for rank, value in enumerate(fingerprints)))
    if len(set(fingerprints)) > 1:
        raise RuntimeError(f"the processes ended with different weights: {fingerprints}")
    return fingerprints


def four_figures(value: float | int) -> float | int:
    """A figure for logs, metrics.json and model cards: integers as they are, floats to 4 significant digits."""
    return value if isinstance(value, int) else float(f"{value:.4g}")


def write_json(path: str | os.PathLike, values: dict) -> None:
    Path(path).write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def hub_repo_id(args: argparse.Namespace) -> str:
    return args.hub_model_id or Path(args.output_dir).resolve().name


def training_summary(args: argparse.Namespace, accelerator: Accelerator, run: "TrainingRun", wall_time_s: float) -> dict:
    """How a model was trained, for the model card's training table."""
    return {
        "updates": run.position.step,
        "global batch size": run.global_batch_size,
        "learning rate": args.learning_rate,
        "schedule": args.lr_scheduler,
        "processes": accelerator.num_processes,
        "mixed precision": args.mixed_precision,
        "wall time (s)": round(wall_time_s),
    }


def publish(
    args: argparse.Namespace, save: Callable[[Path], None], card: Callable[[str], ModelCard], *, commit_message: str
) -> None:
    """Write the final files (`save(folder)`) and the model card (`card(repo_id)`, as README.md)
    into --output_dir; with --push_to_hub upload the same files, without checkpoints and logs.
    Main process only."""
    output_dir = Path(args.output_dir)
    save(output_dir)
    card(hub_repo_id(args)).save(output_dir / "README.md")
    if args.push_to_hub:
        commit = push_with_card(
            save, card, hub_repo_id(args), token=args.hub_token, private=args.hub_private_repo or None,
            commit_message=commit_message,
        )
        logger.info("pushed to %s", getattr(commit, "commit_url", hub_repo_id(args)))


def end_training(accelerator: Accelerator) -> None:
    """Wait for every process, then close the trackers and the process group."""
    accelerator.wait_for_everyone()
    accelerator.end_training()


# ---------------------------------------------------------------------------------------------
# The training loop


@dataclasses.dataclass
class TrainingRun:
    """What `run_training_loop` leaves: the trained model (unwrapped) and where the run ended."""

    model: torch.nn.Module
    position: TrainingPosition
    global_batch_size: int


def run_training_loop(
    accelerator: Accelerator,
    args: argparse.Namespace,
    model: torch.nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    *,
    checkpoints: CheckpointManager,
    resume: tuple[Path, dict] | None,
    model_config: dict,
    project_name: str,
    forward: Callable[[torch.nn.Module, dict], Any],
    train_logs: Callable[[Any], dict],
    validate: Callable[[int, torch.nn.Module], None] | None = None,
    examples: str = "images",
) -> TrainingRun:
    """The optimisation every training script shares: prepare, resume, then updates with gradient
    accumulation, clipping, the learning-rate schedule, logging, periodic validation and atomic
    checkpoints, until --max_train_steps or --num_train_epochs.

    Args:
        model: the model to train, not yet prepared.
        train_dataloader: from a map-style data set (Accelerate shards its batches) or a stream
            already split across processes (see `data.training_dataloader`); its data set needs
            `set_epoch`.
        resume: what `checkpoints.resolve` returned.
        model_config: the config's fields, stored in checkpoints to refuse incompatible resumes.
        forward: `forward(prepared_model, batch)` returns an output with a scalar `loss`.
        train_logs: scalars to log from that output at every update (the loss first: it is also
            shown by the progress bar), e.g. `{"train/loss": output.loss.item()}`.
        validate: `validate(step, unwrapped_model)`, called on every process every
            --validation_steps updates (not after the last one: the caller validates the final
            model); only the main process should log or write.
        examples: what the data set holds, for the log.

    At the end the processes' weights are compared (`check_processes_in_sync`), and the prepared
    objects are released before returning: a DDP wrapper that outlives its gloo process group
    hangs its process at exit.
    """
    optimizer = create_optimizer(model, args)
    model, optimizer = accelerator.prepare(model, optimizer)
    streaming = isinstance(train_dataloader.dataset, torch.utils.data.IterableDataset)
    if not streaming:
        train_dataloader = accelerator.prepare(train_dataloader)
    schedule = training_schedule(args, None if streaming else len(train_dataloader))
    lr_scheduler = accelerator.prepare(
        create_lr_scheduler(optimizer, args, schedule.max_train_steps, accelerator.num_processes)
    )

    settings = run_settings(args, accelerator.num_processes)
    position = TrainingPosition()
    if resume is not None:
        path, state = resume
        warn_on_changed_settings(state, settings)
        position = checkpoints.load(accelerator, path, state)
        if not streaming and position.batches_in_epoch >= len(train_dataloader):
            position = TrainingPosition(position.step, position.epoch + 1, 0)

    init_trackers(accelerator, project_name, args)
    global_batch = args.train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps
    logger.info(
        "training on %s %s: %s updates of %s (%s per device x %s processes x %s accumulation), from step %s",
        "a stream of" if streaming else len(train_dataloader.dataset), examples, schedule.max_train_steps, global_batch,
        args.train_batch_size, accelerator.num_processes, args.gradient_accumulation_steps, position.step,
    )

    unwrapped = accelerator.unwrap_model(model)
    model.train()
    progress = tqdm(
        total=schedule.max_train_steps, initial=position.step, desc="steps", disable=not accelerator.is_local_main_process
    )
    batches = epoch_batches(accelerator, train_dataloader, position, prepared=not streaming)
    for epoch, batch in batches if position.step < schedule.max_train_steps else ():
        if epoch != position.epoch:
            position = TrainingPosition(position.step, epoch, 0)
        with accelerator.accumulate(model):
            output = forward(model, batch)
            accelerator.backward(output.loss)
            if accelerator.sync_gradients and args.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
        position.batches_in_epoch += 1
        if not accelerator.sync_gradients:
            continue

        position.step += 1
        progress.update(1)
        logs = train_logs(output)
        progress.set_postfix({name.rsplit("/", 1)[-1]: f"{value:.4g}" for name, value in logs.items()})
        accelerator.log({**logs, "train/lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}, step=position.step)
        if validate is not None and position.step % args.validation_steps == 0 and position.step < schedule.max_train_steps:
            validate(position.step, unwrapped)
        if position.step % args.checkpointing_steps == 0:
            checkpoints.save(accelerator, position, {"model_config": model_config, "run_settings": settings})
        if position.step >= schedule.max_train_steps:
            break
    progress.close()

    accelerator.wait_for_everyone()
    check_processes_in_sync(accelerator, model)
    del model, optimizer, lr_scheduler, batches
    accelerator.free_memory()
    return TrainingRun(unwrapped, position, global_batch)


# ---------------------------------------------------------------------------------------------
# The VQ-VAE


def add_vqvae_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    group = parser.add_argument_group("model")
    group.add_argument("--preset", default=None, choices=sorted(PRESETS), help="Start from one of the paper's settings.")
    group.add_argument(
        "--model_config_name_or_path", default=None,
        help="Start from a config: a config.json, a folder holding one, or a Hub model id.",
    )
    group.add_argument(
        "--config_overrides", nargs="*", default=[], metavar="FIELD=VALUE",
        help="Override config fields, e.g. hidden_channels=64 num_embeddings=256. sample_size follows --resolution.",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a VQ-VAE (van den Oord et al. 2017) with Accelerate.")
    add_data_arguments(parser)
    add_vqvae_arguments(parser)
    add_common_training_arguments(parser, default_output_dir="outputs/vqvae")
    # 12 epochs of the default data set (~1300 updates) take about three minutes on 2 CPU cores
    # with the default model and already reconstruct held-out crops well.
    parser.set_defaults(num_train_epochs=12)
    args = parser.parse_args(argv)
    check_common_training_arguments(args)
    return args


def parse_config_overrides(overrides: list[str]) -> dict:
    """`["hidden_channels=64", "update_rule=loss"]` -> typed values for `VQVAEConfig`."""
    fields = {field.name: field.type for field in dataclasses.fields(VQVAEConfig)}
    parsed = {}
    for override in overrides:
        name, separator, text = override.partition("=")
        if not separator:
            raise ValueError(f"--config_overrides takes FIELD=VALUE pairs, got {override!r}")
        if name not in fields:
            raise ValueError(f"--config_overrides: {name!r} is not a VQVAEConfig field; the fields are {sorted(fields)}")
        kind = fields[name]
        if kind is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError(f"--config_overrides: {name} takes true or false, got {text!r}")
            parsed[name] = text.lower() == "true"
        else:
            try:
                parsed[name] = kind(text)
            except ValueError as error:
                raise ValueError(f"--config_overrides: {name} takes a {kind.__name__}, got {text!r}") from error
    return parsed


def build_vqvae_config(args: argparse.Namespace) -> VQVAEConfig:
    """The model config from --preset or --model_config_name_or_path (else the defaults), the
    overrides, and sample_size = --resolution."""
    if args.preset and args.model_config_name_or_path:
        raise ValueError("pass either --preset or --model_config_name_or_path, not both")
    if args.preset:
        base = VQVAEConfig.from_preset(args.preset)
    elif args.model_config_name_or_path:
        base = VQVAEConfig.from_pretrained(args.model_config_name_or_path, cache_dir=args.cache_dir)
    else:
        base = VQVAEConfig()
    fields = {**model_fields(base), **parse_config_overrides(args.config_overrides)}
    factor = 2 ** fields["num_downsamples"]
    if args.resolution % factor:
        allowed = ", ".join(str(factor * k) for k in range(max(1, args.resolution // factor), args.resolution // factor + 3))
        raise ValueError(
            f"--resolution {args.resolution} is not divisible by the model's downsampling factor {factor} "
            f"(2**num_downsamples); use a multiple of {factor}, e.g. {allowed}"
        )
    fields["sample_size"] = args.resolution
    return VQVAEConfig(**fields)


@torch.no_grad()
def evaluate_reconstructions(model: VQVAEModel, pixel_values: torch.Tensor, batch_size: int) -> tuple[dict, torch.Tensor]:
    """Reconstruction MSE (pixel values in [-1, 1]), PSNR (dB, images in [0, 1], averaged over
    images), perplexity and distinct codes of the validation images; returns the reconstructions too."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    squared_errors, reconstructions = [], []
    code_counts = torch.zeros(model.config.num_embeddings, dtype=torch.float64)
    for start in range(0, len(pixel_values), batch_size):
        images = pixel_values[start : start + batch_size].to(device)
        output = model(images)
        reconstruction = output.reconstruction.float().clamp(-1, 1)
        squared_errors.append((reconstruction - images).pow(2).flatten(1).mean(1).cpu())
        reconstructions.append(reconstruction.cpu())
        code_counts += torch.bincount(output.indices.flatten().cpu(), minlength=len(code_counts)).double()
    model.train(was_training)
    per_image = torch.cat(squared_errors).double()
    # Pixel values span 2 (from -1 to 1): PSNR = 10 log10(2^2 / MSE) = 10 log10(1 / MSE on [0, 1]).
    psnr = (10 * torch.log10(4 / per_image.clamp(min=1e-10))).mean()
    probabilities = code_counts / code_counts.sum()
    entropy = -(probabilities * probabilities.clamp(min=1e-12).log()).sum()
    metrics = {
        "mse": float(per_image.mean()),
        "psnr": float(psnr),
        "perplexity": float(entropy.exp()),
        "codes_used": int((code_counts > 0).sum()),
    }
    return metrics, torch.cat(reconstructions)


def reconstruction_grid(
    inputs: torch.Tensor, reconstructions: torch.Tensor, processor: VQVAEImageProcessor, pairs_per_row: int = 8, max_pairs: int = 32
) -> PIL.Image.Image:
    """Each input beside its reconstruction, `pairs_per_row` pairs a row, enlarged to >= 64 px."""
    count = min(len(inputs), max_pairs)
    originals = processor.postprocess(inputs[:count])
    decoded = processor.postprocess(reconstructions[:count])
    side = inputs.shape[-1]
    scale = max(1, 64 // side)
    cell, gap = side * scale, 2
    columns = min(count, pairs_per_row)
    rows = math.ceil(count / pairs_per_row)
    grid = PIL.Image.new("RGB", (columns * (2 * cell + 3 * gap), rows * (cell + gap) + gap), "white")
    for index, (original, reconstruction) in enumerate(zip(originals, decoded)):
        left = (index % pairs_per_row) * (2 * cell + 3 * gap) + gap
        top = (index // pairs_per_row) * (cell + gap) + gap
        for offset, image in ((0, original), (cell + gap, reconstruction)):
            grid.paste(image.convert("RGB").resize((cell, cell), PIL.Image.NEAREST), (left + offset, top))
    return grid


def validate_and_log(
    accelerator: Accelerator, model: VQVAEModel, processor, validation_images: torch.Tensor, step: int, batch_size: int
) -> tuple[dict, PIL.Image.Image]:
    """Validation figures and the reconstruction grid, sent to the trackers (main process only)."""
    metrics, reconstructions = evaluate_reconstructions(model, validation_images, batch_size)
    accelerator.log({f"validation/{name}": value for name, value in metrics.items()}, step=step)
    accelerator.log({"train/codes_used": model.quantizer.distinct_codes_used}, step=step)
    grid = reconstruction_grid(validation_images, reconstructions, processor)
    log_image(accelerator, "validation/reconstructions", grid, step)
    return metrics, grid


def vqvae_train_logs(output) -> dict:
    return {
        "train/loss": output.loss.item(),
        "train/reconstruction_loss": output.reconstruction_loss.item(),
        "train/commitment_loss": output.commitment_loss.item(),
        "train/perplexity": output.perplexity.item(),
    }


def train_vqvae(args: argparse.Namespace) -> dict:
    """Train a `VQVAEModel` as the arguments of `parse_args` say; returns the final validation
    metrics (also written to `<output_dir>/metrics.json`)."""
    started = time.perf_counter()
    accelerator = setup_accelerator(args)
    config = build_vqvae_config(args)
    checkpoints = CheckpointManager(args.output_dir, args.checkpoints_total_limit)
    resume = checkpoints.resolve(args.resume_from_checkpoint, model_fields(config))

    processor = VQVAEImageProcessor(resolution=args.resolution, num_channels=config.in_channels)
    transform = ImageTransform(processor, center_crop=args.center_crop, random_flip=args.random_flip)
    # The main process builds the datasets' caches first; the others then read them.
    with accelerator.main_process_first():
        datasets = load_image_datasets(args)
        train_dataloader = training_dataloader(
            datasets,
            transform,
            batch_size=args.train_batch_size,
            seed=args.seed,
            num_workers=args.dataloader_num_workers,
            max_unreadable_fraction=args.max_unreadable_fraction,
            process_index=accelerator.process_index,
            num_processes=accelerator.num_processes,
        )
        validation_images = validation_pixel_values(
            datasets.validation, datasets.image_column, transform, args.max_validation_samples, args.max_unreadable_fraction
        )

    def validate(step: int, model: VQVAEModel) -> None:
        if accelerator.is_main_process:
            validate_and_log(accelerator, model, processor, validation_images, step, args.train_batch_size)
        # Every process starts a new usage window, so the buffers stay identical.
        model.quantizer.reset_usage()

    run = run_training_loop(
        accelerator, args, VQVAEModel(config), train_dataloader, checkpoints=checkpoints, resume=resume,
        model_config=model_fields(config), project_name="hf-vqvae",
        forward=lambda model, batch: model(batch["pixel_values"]), train_logs=vqvae_train_logs, validate=validate,
    )
    metrics = {}
    if accelerator.is_main_process:
        metrics = save_final_vqvae(
            args, accelerator, run, processor, validation_images, datasets.name, wall_time_s=time.perf_counter() - started
        )
    end_training(accelerator)
    return metrics


def save_final_vqvae(args, accelerator, run: TrainingRun, processor, validation_images, dataset_name, wall_time_s) -> dict:
    """Validate, then write the model (`save_pretrained`), the image processor, `metrics.json`,
    `reconstructions.png` and a model card into --output_dir; push them when asked."""
    model, step = run.model, run.position.step
    results, grid = validate_and_log(accelerator, model, processor, validation_images, step, args.train_batch_size)
    metrics = {f"validation_{name}": four_figures(value) for name, value in results.items()}
    metrics |= {"train_steps": step, "validation_images": len(validation_images)}
    logger.info("final validation: %s", metrics)

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        grid.save(folder / "reconstructions.png")
        write_json(folder / "metrics.json", metrics)

    training = training_summary(args, accelerator, run, wall_time_s)

    def card(repo_id: str) -> ModelCard:
        return vqvae_model_card(
            model.config, repo_id, dataset_name=dataset_name, metrics=metrics, image_path="reconstructions.png",
            training=training,
        )

    publish(args, save, card, commit_message=f"VQ-VAE trained for {step} steps with hf-vqvae")
    return metrics
