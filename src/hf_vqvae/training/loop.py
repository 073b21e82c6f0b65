"""The training loop every recipe shares (`train`): set up the accelerator, build the recipe's model, check a checkpoint
to resume from, build its data, then run the updates (`run_training_loop`: accumulation, clipping, the learning-rate
schedule, logging, validation, atomic checkpoints, a stop on Ctrl-C / SIGTERM or a non-finite loss) and let the recipe
publish the result. `run_command` is every script's `__main__`.
"""

import dataclasses
import hashlib
import itertools
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, send_to_device
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from .accelerator import end_training, setup_accelerator
from .arguments import OptimizationArguments, arguments_dict, flat_arguments
from .checkpoints import (
    ARGUMENTS_FILE,
    CheckpointManager,
    TrainingPosition,
    model_fields,
    warn_on_changed_settings,
    write_json,
)
from .guards import (
    NonFiniteTrainingError,
    OutputDirectoryInUseError,
    StopRequests,
    TrainingInterrupted,
    hand_the_stop_to_the_launcher,
)
from .loader_workers import shield_loader_workers
from .publishing import training_summary
from .recipe import Recipe, TrainingRun
from .tracking import init_trackers


logger = logging.getLogger(__name__)


def train(recipe: Recipe) -> dict:
    """Run `recipe` from start to end (see `Recipe` for what it is asked, and when); returns the final metrics on the
    main process (also written to `<output_dir>/metrics.json`), an empty dict on the others."""
    started = time.perf_counter()
    optimization, output = recipe.arguments.optimization, recipe.arguments.output
    accelerator = setup_accelerator(optimization, output)
    model = recipe.build_model(accelerator)
    checkpoints = CheckpointManager(output.output_dir, output.checkpoints_total_limit)
    resume = checkpoints.resolve(output.resume_from_checkpoint, model_fields(model.config))
    train_dataloader = recipe.build_train_dataloader(accelerator)
    run = run_training_loop(accelerator, recipe, model, train_dataloader, checkpoints, resume)
    metrics = {}
    if accelerator.is_main_process:
        metrics = recipe.publish(
            accelerator, run, training_summary(optimization, accelerator, run, time.perf_counter() - started)
        )
    recipe.after_training(accelerator, run.model)
    end_training(accelerator)
    return metrics


def run_command(main: Callable[[Any], Any], parse_args: Callable[[], Any]) -> None:
    """A script's `__main__`: parse the flags, run. What the user can act on ends with its message alone, no traceback:
    a bad flag (exit 2), a refusal of the package's own checks, a non-finite loss or a folder in use (exit 1), a run
    stopped by Ctrl-C / SIGTERM (exit 130, and `accelerate launch` exits 130 with it)."""
    try:
        arguments = parse_args()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        main(arguments)
    except TrainingInterrupted as interruption:
        print(interruption, file=sys.stderr, flush=True)
        hand_the_stop_to_the_launcher()
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        print("interrupted: stopped at once, nothing more was saved", file=sys.stderr, flush=True)
        raise SystemExit(130) from None
    except (NonFiniteTrainingError, OutputDirectoryInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except ValueError as error:
        if not raised_by_the_package(error):
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


PACKAGE_FOLDER = str(Path(__file__).resolve().parents[1])


def raised_by_the_package(error: BaseException) -> bool:
    """Whether `error` was raised by the package's own code (one of its checks, whose message names the problem) rather
    than inside a library it calls (whose traceback says more than its message)."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_code.co_filename.startswith(PACKAGE_FOLDER)


# ---------------------------------------------------------------------------------------------
# Optimizer, schedule, batches


def create_optimizer(model: torch.nn.Module, args: OptimizationArguments) -> torch.optim.Optimizer:
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


def training_schedule(args: OptimizationArguments, batches_per_epoch: int | None) -> TrainingSchedule:
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


def create_lr_scheduler(optimizer, args: OptimizationArguments, max_train_steps: int, num_processes: int):
    # A prepared scheduler steps once per process for each update, hence the scaling (as diffusers).
    return get_scheduler(
        args.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=args.lr_warmup_steps * num_processes,
        num_training_steps=max_train_steps * num_processes,
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
# What the processes agree on


def agreed_flags(accelerator: Accelerator, *flags: bool) -> list[bool]:
    """Each flag, true if it is true on any process (one all-reduce when there are several)."""
    if accelerator.num_processes == 1:
        return list(flags)
    values = torch.tensor([float(flag) for flag in flags], device=accelerator.device)
    return [bool(value) for value in accelerator.reduce(values, reduction="sum") > 0]


def last_checkpoint_hint(checkpoints: CheckpointManager) -> str:
    latest = checkpoints.latest()
    if latest is None:
        return "no checkpoint was written yet."
    return f"the last good checkpoint is {latest} (resume with --resume_from_checkpoint latest)."


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


# ---------------------------------------------------------------------------------------------
# The updates


def run_training_loop(
    accelerator: Accelerator,
    recipe: Recipe,
    model: torch.nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    checkpoints: CheckpointManager,
    resume: tuple[Path, dict] | None,
) -> TrainingRun:
    """The updates of a run: prepare, resume (`resume` is what `checkpoints.resolve` returned), then updates with
    gradient accumulation, clipping, the learning-rate schedule, logging (`recipe.train_logs`), periodic validation
    (`recipe.validate`) and atomic checkpoints, until --max_train_steps or --num_train_epochs.

    The run's settings (`arguments.arguments_dict` of `recipe.arguments`) are saved with every checkpoint as
    `training_arguments.json`, compared when a run resumes and recorded by the trackers; the model's config fields
    are stored in checkpoints to refuse incompatible resumes. At the end the processes' weights are compared
    (`check_processes_in_sync`), and the prepared objects are released before returning: a DDP wrapper that outlives
    its gloo process group hangs its process at exit.
    """
    optimization, output = recipe.arguments.optimization, recipe.arguments.output
    run_arguments, config = arguments_dict(recipe.arguments), model.config
    optimizer = create_optimizer(model, optimization)
    model, optimizer = accelerator.prepare(model, optimizer)
    streaming = isinstance(train_dataloader.dataset, torch.utils.data.IterableDataset)
    shield_loader_workers(train_dataloader)
    if not streaming:
        train_dataloader = accelerator.prepare(train_dataloader)
    schedule = training_schedule(optimization, None if streaming else len(train_dataloader))
    lr_scheduler = accelerator.prepare(
        create_lr_scheduler(optimizer, optimization, schedule.max_train_steps, accelerator.num_processes)
    )

    if accelerator.is_main_process:
        write_json(Path(output.output_dir) / ARGUMENTS_FILE, run_arguments)
    position = TrainingPosition()
    if resume is not None:
        path, state = resume
        warn_on_changed_settings(path, state, run_arguments, accelerator.num_processes)
        position = checkpoints.load(accelerator, path, state)
        if not streaming and position.batches_in_epoch >= len(train_dataloader):
            position = TrainingPosition(position.step, position.epoch + 1, 0)

    # A resumed run's tracker drops the events the interrupted run logged after its checkpoint.
    init_trackers(accelerator, recipe.project_name, flat_arguments(run_arguments), first_step=position.step + 1)
    global_batch = optimization.train_batch_size * accelerator.num_processes * optimization.gradient_accumulation_steps
    logger.info(
        "training on %s %s: %s updates of %s (%s per device x %s processes x %s accumulation), from step %s",
        "a stream of" if streaming else len(train_dataloader.dataset), recipe.examples, schedule.max_train_steps, global_batch,
        optimization.train_batch_size, accelerator.num_processes, optimization.gradient_accumulation_steps, position.step,
    )

    unwrapped = accelerator.unwrap_model(model)
    model.train()
    progress = tqdm(
        total=schedule.max_train_steps, initial=position.step, desc="steps", disable=not accelerator.is_local_main_process
    )
    batches = epoch_batches(accelerator, train_dataloader, position, prepared=not streaming)
    with StopRequests() as stop_requests:
        for epoch, batch in batches if position.step < schedule.max_train_steps else ():
            if epoch != position.epoch:
                position = TrainingPosition(position.step, epoch, 0)
            recipe.start_update(position.step, schedule.max_train_steps)
            with accelerator.accumulate(model):
                model_output = recipe.forward(model, batch)
                loss_is_finite = bool(torch.isfinite(model_output.loss.detach()))
                if loss_is_finite:
                    accelerator.backward(model_output.loss)
                    if accelerator.sync_gradients and optimization.max_grad_norm > 0:
                        norm = accelerator.clip_grad_norm_(model.parameters(), optimization.max_grad_norm)
                        loss_is_finite = bool(torch.isfinite(norm))
                # Every process learns whether any process met a non-finite loss or was asked to stop, so
                # all of them stop at the same update.
                problems = agreed_flags(accelerator, not loss_is_finite, stop_requests.requested is not None)
                if problems[0]:
                    raise NonFiniteTrainingError(
                        f"the loss or its gradients became NaN or infinite at update {position.step + 1} (epoch {epoch}): "
                        f"the weights were not changed by it. Try a lower --learning_rate (now "
                        f"{optimization.learning_rate:g}), --max_grad_norm, or check the data; "
                        + last_checkpoint_hint(checkpoints)
                    )
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            position.batches_in_epoch += 1
            if not accelerator.sync_gradients:
                continue

            position.step += 1
            progress.update(1)
            logs = recipe.train_logs(model_output)
            progress.set_postfix({name.rsplit("/", 1)[-1]: f"{value:.4g}" for name, value in logs.items()})
            accelerator.log({**logs, "train/lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}, step=position.step)
            if problems[1]:
                checkpoint = checkpoints.save(accelerator, position, config, run_arguments)
                progress.close()
                raise TrainingInterrupted(
                    f"stopped at update {position.step} by {stop_requests.requested or 'another process'}; saved "
                    f"{checkpoint}. Resume with the same command and --resume_from_checkpoint latest, or make a "
                    f"loadable model of it: python scripts/export_checkpoint.py --checkpoint {checkpoint}"
                )
            if position.step % output.validation_steps == 0 and position.step < schedule.max_train_steps:
                recipe.validate(accelerator, unwrapped, position.step)
            if position.step % output.checkpointing_steps == 0:
                checkpoints.save(accelerator, position, config, run_arguments)
            if position.step >= schedule.max_train_steps:
                break
    progress.close()

    accelerator.wait_for_everyone()
    check_processes_in_sync(accelerator, model)
    del model, optimizer, lr_scheduler, batches
    accelerator.free_memory()
    return TrainingRun(unwrapped, position, global_batch)
