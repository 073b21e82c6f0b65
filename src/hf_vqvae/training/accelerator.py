"""Where every command of the package that runs under `accelerate launch` starts and ends: the `Accelerator` (on CPU
processes when there is no GPU), torch's thread count (`cpu_threads`), the package's logging on the main process only,
the seed, and a training run's lock on its output folder (`setup_accelerator` takes it, `end_training` releases it)."""

import importlib.util
import logging
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed

from .arguments import OptimizationArguments, OutputArguments
from .cpu_threads import available_cpu_cores, use_available_cores
from .guards import OutputDirectoryLock, launched_by_a_launcher, launcher_process, prepare_output_dir, stop_with_launcher


logger = logging.getLogger(__name__)


def create_accelerator(**accelerator_kwargs) -> Accelerator:
    """An `Accelerator` that runs on CPU processes when there is no GPU, with the package's logging
    on the main process only: what every command of the package that runs under `accelerate
    launch` starts with. Each process uses its share of the machine's cores unless the user chose a
    thread count (`cpu_threads.use_available_cores`). Its workers stop when their launcher dies."""
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
    local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", accelerator.num_processes))
    threads = use_available_cores(local_processes)
    logger.info(
        "%s torch thread(s) per process (%s process(es) on this machine, %s core(s) available)",
        threads, local_processes, available_cpu_cores(),
    )
    return accelerator


def check_launched_processes(num_processes: int) -> None:
    """Refuse a run that `accelerate launch --num_processes N` started as one process: without a GPU,
    Accelerate starts N processes only with --multi_gpu (they then train over gloo on the CPU)."""
    launched = launcher_process() if num_processes == 1 and launched_by_a_launcher() else None
    if launched is None:
        return
    launcher = launched[1]
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


def end_training(accelerator: Accelerator) -> None:
    """Wait for every process, then close the trackers and the process group, and unlock the output folder."""
    accelerator.wait_for_everyone()
    accelerator.end_training()
    unlock_output_dirs()
