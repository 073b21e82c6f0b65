"""The training loop every training recipe of the package shares, and its pieces.

- `setup_accelerator(optimization, output)`: the `Accelerator` (`create_accelerator`), logging, seeding;
- `run_training_loop(...)`: prepare, resume, accumulate, clip, schedule, log, validate,
  checkpoint (`checkpoints.CheckpointManager`), compare the processes' weights; returns a `TrainingRun`;
- `log_image`, `four_figures`, `training_summary`, `publish` (final files, model card, push),
  `end_training`.

Each model's recipe (`training.vqvae`, `training.prior`) builds its model and data and hands them
to `run_training_loop`.
"""

import dataclasses
import hashlib
import importlib.util
import itertools
import logging
import math
import os
import shutil
import sys
import tempfile
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
from diffusers.optimization import get_scheduler
from huggingface_hub import ModelCard
from tqdm.auto import tqdm

from ..hub import push_with_card
from .arguments import HubArguments, OptimizationArguments, OutputArguments, flat_arguments
from .guards import (
    NonFiniteTrainingError,
    OutputDirectoryInUseError,
    OutputDirectoryLock,
    StopRequests,
    TrainingInterrupted,
    check_finite_weights,
    launched_by_a_launcher,
    prepare_output_dir,
    stop_with_launcher,
)
from .checkpoints import (
    ARGUMENTS_FILE,
    CheckpointManager,
    TrainingPosition,
    sync_folder,
    warn_on_changed_settings,
    write_json,
)
from .loader_workers import shield_loader_workers


logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Accelerator, optimizer, schedule


def create_accelerator(**accelerator_kwargs) -> Accelerator:
    """An `Accelerator` that runs on CPU processes when there is no GPU, with the package's logging
    on the main process only: what every command of the package that runs under `accelerate
    launch` starts with. Its workers stop when their launcher dies."""
    stop_with_launcher()
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
    check_launched_processes(accelerator.num_processes)
    return accelerator


def check_launched_processes(num_processes: int) -> None:
    """Refuse a run that `accelerate launch --num_processes N` started as one process: without a GPU,
    Accelerate starts N processes only with --multi_gpu (they then train over gloo on the CPU)."""
    if num_processes > 1 or not launched_by_a_launcher():
        return
    try:
        launcher = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return
    if not any("accelerate" in part for part in launcher):
        return
    requested = next(
        (int(value) for flag, value in zip(launcher, launcher[1:] + [""]) if flag in ("--num_processes", "--num-processes") and value.isdigit()),
        None,
    )
    requested = requested or next(
        (int(part.split("=", 1)[1]) for part in launcher if part.startswith(("--num_processes=", "--num-processes=")) and part.split("=", 1)[1].isdigit()),
        None,
    )
    if requested and requested > 1 and "--multi_gpu" not in launcher:
        raise ValueError(
            f"`accelerate launch --num_processes {requested}` started a single process: on a machine without a GPU "
            f"add --multi_gpu (`accelerate launch --multi_gpu --num_processes {requested} ...`) to run {requested} CPU "
            "processes over gloo"
        )


def setup_accelerator(optimization: OptimizationArguments, output: OutputArguments) -> Accelerator:
    """The run's `Accelerator` (accumulation, precision, trackers), logging on the main process
    only, and the seed set identically on every process. The main process checks that the output
    folder is writable and locks it for the run (`end_training` unlocks it)."""
    if output.report_to in ("wandb", "all") and importlib.util.find_spec("wandb") is None:
        raise ValueError(f"--report_to {output.report_to} needs wandb: `pip install wandb`")
    if Path(output.output_dir).is_file():
        raise ValueError(f"--output_dir {output.output_dir!r} is an existing file, not a folder; pass a folder")
    project_config = ProjectConfiguration(
        project_dir=output.output_dir, logging_dir=os.path.join(output.output_dir, output.logging_dir)
    )
    accelerator = create_accelerator(
        gradient_accumulation_steps=optimization.gradient_accumulation_steps,
        mixed_precision=optimization.mixed_precision,
        log_with=None if output.report_to == "none" else output.report_to,
        project_config=project_config,
    )
    set_seed(optimization.seed)
    if accelerator.is_main_process:
        lock_output_dir(output.output_dir)
    return accelerator


# Output folders this process has locked, so that runs one after another in one process (a notebook,
# the tests) reuse their own lock rather than refusing themselves.
_output_dir_locks: dict[Path, OutputDirectoryLock] = {}


def lock_output_dir(output_dir: str) -> None:
    folder = prepare_output_dir(output_dir).resolve()
    if folder not in _output_dir_locks:
        _output_dir_locks[folder] = OutputDirectoryLock(folder).acquire()


def unlock_output_dirs() -> None:
    while _output_dir_locks:
        _output_dir_locks.popitem()[1].release()


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
# Tracking and results


def init_trackers(accelerator: Accelerator, project_name: str, hyperparameters: dict, first_step: int = 1) -> None:
    """Start the trackers; TensorBoard discards events a previous run logged from `first_step` on (the
    steps a resumed run replays)."""
    # Trackers store hyper-parameters as scalars and strings only.
    config = {name: " ".join(map(str, value)) if isinstance(value, list) else value for name, value in hyperparameters.items()}
    config = {name: value for name, value in config.items() if isinstance(value, (bool, int, float, str))}
    accelerator.init_trackers(project_name, config=config, init_kwargs={"tensorboard": {"purge_step": first_step}})


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


def log_image(accelerator: Accelerator, name: str, image: PIL.Image.Image, step: int) -> None:
    """Send one image to every tracker that takes images (main process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.log_images({name: np.asarray(image.convert("RGB"))[None]}, step=step, dataformats="NHWC")
        elif hasattr(tracker, "log_images"):
            tracker.log_images({name: [image]}, step=step)


def log_audio(accelerator: Accelerator, name: str, waveform: torch.Tensor, sampling_rate: int, step: int) -> None:
    """Send one mono waveform (floats in [-1, 1]) to the TensorBoard tracker, the one that plays audio (main
    process only)."""
    if not accelerator.is_main_process:
        return
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_audio(name, waveform.detach().float().cpu().reshape(1, -1), step, sample_rate=sampling_rate)


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



def hub_repo_id(hub: HubArguments, output_dir: str) -> str:
    return hub.hub_model_id or Path(output_dir).resolve().name


def training_summary(
    args: OptimizationArguments, accelerator: Accelerator, run: "TrainingRun", wall_time_s: float
) -> dict:
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
    output_dir: str,
    hub: HubArguments,
    save: Callable[[Path], None],
    card: Callable[[str], ModelCard],
    *,
    model: torch.nn.Module,
    commit_message: str,
) -> None:
    """Write the final files (`save(folder)`) and the model card (`card(repo_id)`, as README.md)
    into `output_dir`; with --push_to_hub upload the same files, without checkpoints and logs.
    Main process only.

    The files are written into a temporary folder beside them and each is then renamed into place
    (atomic), so a crash while saving never leaves a half-written `model.safetensors` where a good one
    was. A model with non-finite weights is neither saved nor pushed."""
    check_finite_weights(model, f"the final model to {output_dir!r}")
    repo_id = hub_repo_id(hub, output_dir)
    # The local card's snippets load what exists: the pushed repository, else the folder itself.
    card_name = repo_id if hub.push_to_hub else output_dir
    write_atomically(Path(output_dir), lambda folder: (save(folder), card(card_name).save(folder / "README.md")))
    print(f"saved the model to {output_dir}", flush=True)
    if hub.push_to_hub:
        commit = push_with_card(
            save, card, repo_id, token=hub.hub_token, private=hub.hub_private_repo or None, commit_message=commit_message
        )
        print(f"pushed the model to {getattr(commit, 'commit_url', repo_id)}", flush=True)


def publish_model(
    arguments,
    accelerator: Accelerator,
    run: "TrainingRun",
    wall_time_s: float,
    *,
    metrics: dict,
    image: PIL.Image.Image,
    image_name: str,
    model_card: Callable[..., ModelCard],
    dataset_name: str,
    description: str,
    save_extra: Callable[[Path], None] | None = None,
    card_fields: dict | None = None,
) -> None:
    """How every recipe ends (main process): log the final `metrics`, then write the trained model
    (`save_pretrained`, plus `save_extra(folder)`), its figure `image_name`, `metrics.json` and its card
    (`model_card(config, repo_id, **fields)`, with the training table and `card_fields`) into --output_dir through `publish`,
    and push them when asked. `arguments` is the recipe's settings (its `optimization`, `output`, `hub`)."""
    model = run.model
    logger.info("final validation: %s", metrics)

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        if save_extra is not None:
            save_extra(folder)
        image.save(folder / image_name)
        write_json(folder / "metrics.json", metrics)

    training = training_summary(arguments.optimization, accelerator, run, wall_time_s)

    def card(repo_id: str) -> ModelCard:
        return model_card(
            model.config, repo_id, dataset_name=dataset_name, metrics=metrics, image_path=image_name, training=training,
            **(card_fields or {}),
        )

    publish(
        arguments.output.output_dir, arguments.hub, save, card, model=model,
        commit_message=f"{description} trained for {run.position.step} steps with hf-vqvae",
    )


def write_atomically(folder: Path, write: Callable[[Path], Any]) -> None:
    """`write(staging)` into a temporary folder inside `folder`, synced to disk, then every file renamed
    into the same place in `folder`."""
    staging = Path(tempfile.mkdtemp(prefix="tmp-final-", dir=folder))
    try:
        write(staging)
        sync_folder(staging)
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = folder / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        sync_folder(folder, recursive=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def run_command(train: Callable[[Any], Any], parse_args: Callable[[], Any]) -> None:
    """A training script's `__main__`: parse the flags, train; a run stopped by Ctrl-C / SIGTERM or by a
    non-finite loss, or refused for its folder, ends with its one-line message instead of a traceback."""
    try:
        train(parse_args())
    except TrainingInterrupted as interruption:
        print(interruption, file=sys.stderr)
        raise SystemExit(130) from None
    except (NonFiniteTrainingError, OutputDirectoryInUseError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def end_training(accelerator: Accelerator) -> None:
    """Wait for every process, then close the trackers and the process group, and unlock the output folder."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
    unlock_output_dirs()


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
    optimization: OptimizationArguments,
    output: OutputArguments,
    model: torch.nn.Module,
    train_dataloader: torch.utils.data.DataLoader,
    *,
    checkpoints: CheckpointManager,
    resume: tuple[Path, dict] | None,
    model_config: dict,
    run_arguments: dict,
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
        run_arguments: the run's settings (`arguments.arguments_dict`), saved with every checkpoint as
            `training_arguments.json`, compared when a run resumes, and recorded by the trackers.
        forward: `forward(prepared_model, batch)` returns an output with a scalar `loss`.
        train_logs: scalars to log from that output at every update (the loss first: it is also
            shown by the progress bar), e.g. `{"train/loss": output.loss.item()}`.
        validate: `validate(step, unwrapped_model)`, called on every process every
            `output.validation_steps` updates (not after the last one: the caller validates the final
            model); only the main process should log or write.
        examples: what the data set holds, for the log.

    At the end the processes' weights are compared (`check_processes_in_sync`), and the prepared
    objects are released before returning: a DDP wrapper that outlives its gloo process group
    hangs its process at exit.
    """
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
    init_trackers(accelerator, project_name, flat_arguments(run_arguments), first_step=position.step + 1)
    global_batch = optimization.train_batch_size * accelerator.num_processes * optimization.gradient_accumulation_steps
    logger.info(
        "training on %s %s: %s updates of %s (%s per device x %s processes x %s accumulation), from step %s",
        "a stream of" if streaming else len(train_dataloader.dataset), examples, schedule.max_train_steps, global_batch,
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
            with accelerator.accumulate(model):
                model_output = forward(model, batch)
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
            logs = train_logs(model_output)
            progress.set_postfix({name.rsplit("/", 1)[-1]: f"{value:.4g}" for name, value in logs.items()})
            accelerator.log({**logs, "train/lr": lr_scheduler.get_last_lr()[0], "epoch": epoch}, step=position.step)
            if problems[1]:
                checkpoint = checkpoints.save(accelerator, position, model_config, run_arguments)
                progress.close()
                raise TrainingInterrupted(
                    f"stopped at update {position.step} by {stop_requests.requested or 'another process'}; saved "
                    f"{checkpoint}. Resume with the same command and --resume_from_checkpoint latest"
                )
            if validate is not None and position.step % output.validation_steps == 0 and position.step < schedule.max_train_steps:
                validate(position.step, unwrapped)
            if position.step % output.checkpointing_steps == 0:
                checkpoints.save(accelerator, position, model_config, run_arguments)
            if position.step >= schedule.max_train_steps:
                break
    progress.close()

    accelerator.wait_for_everyone()
    check_processes_in_sync(accelerator, model)
    del model, optimizer, lr_scheduler, batches
    accelerator.free_memory()
    return TrainingRun(unwrapped, position, global_batch)

