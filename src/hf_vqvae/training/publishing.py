"""How a training run ends on the main process: the final model, its figure, `metrics.json` and its model card written
atomically into the output folder, and pushed to the Hub when asked."""

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import PIL.Image
import torch
from accelerate import Accelerator
from huggingface_hub import ModelCard

from ..hub import push_with_card
from .arguments import HubArguments, OptimizationArguments, OutputArguments
from .checkpoints import sync_folder, write_json
from .guards import check_finite_weights
from .recipe import TrainingRun


logger = logging.getLogger(__name__)


def four_figures(value: float | int) -> float | int:
    """A figure for logs, metrics.json and model cards: integers as they are, floats to 4 significant digits."""
    return value if isinstance(value, int) else float(f"{value:.4g}")


def hub_repo_id(hub: HubArguments, output_dir: str) -> str:
    return hub.hub_model_id or Path(output_dir).resolve().name


def training_summary(
    args: OptimizationArguments, accelerator: Accelerator, run: TrainingRun, wall_time_s: float
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
    run: TrainingRun,
    output: OutputArguments,
    hub: HubArguments,
    training: dict,
    *,
    metrics: dict,
    image: PIL.Image.Image,
    image_name: str,
    dataset_name: str,
    description: str,
    save_extra: Callable[[Path], None] | None = None,
    card_fields: dict | None = None,
) -> None:
    """How every recipe ends (main process): log the final `metrics`, then write the trained model (`save_pretrained`,
    plus `save_extra(folder)`), its figure `image_name`, `metrics.json` and its card (the model's `model_card`, with the
    `training` table of `training_summary` and `card_fields`) into --output_dir through `publish`, and push them when
    asked. `description` names the model in the commit message."""
    model = run.model
    logger.info("final validation: %s", metrics)

    def save(folder: Path) -> None:
        model.save_pretrained(folder)
        if save_extra is not None:
            save_extra(folder)
        image.save(folder / image_name)
        write_json(folder / "metrics.json", metrics)

    def card(repo_id: str) -> ModelCard:
        return model.model_card(
            repo_id, dataset_name=dataset_name, metrics=metrics, image_path=image_name, training=training,
            **(card_fields or {}),
        )

    publish(
        output.output_dir, hub, save, card, model=model,
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
