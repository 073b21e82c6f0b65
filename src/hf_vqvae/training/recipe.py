"""What a model's training recipe is: the `Recipe` the shared run (`loop.train`) asks for a model, data, a loss, logs,
validations and the final files, and the `TrainingRun` it hands back at the end. One recipe per model lives in
`training.recipes`, each written against this interface and the shared modules only, never against another recipe."""

import abc
import dataclasses

import torch
from accelerate import Accelerator

from .checkpoints import TrainingPosition


@dataclasses.dataclass
class TrainingRun:
    """What the loop leaves: the trained model (unwrapped), where the run ended and its global batch size."""

    model: torch.nn.Module
    position: TrainingPosition
    global_batch_size: int


class Recipe(abc.ABC):
    """How one model trains. `loop.train(recipe)` runs it, asking in this order:

    1. `build_model(accelerator)`, on every process once the accelerator is set up: the untrained model (with
       whatever data its config needs loaded here). A checkpoint to resume from is then checked against its config.
    2. `build_train_dataloader(accelerator)`: the training batches (and whatever validation will need).
    3. At every update, `start_update(step, max_train_steps)`, then `forward(model, batch)` for each of its batches:
       an output with a scalar `loss`; then `train_logs(output)`: the scalars to log, the loss first (the progress bar
       shows them).
    4. Every `--validation_steps` updates but the last, `validate(accelerator, model, step)` on every process.
    5. At the end, on the main process, `publish(accelerator, run, training)`: validate the final model, write and
       push its files (`publishing.publish_model`); returns the final metrics. `training` is `publishing.training_summary`.
    6. Then `after_training(accelerator, model)` on every process.

    `arguments` are the recipe's settings: a dataclass of argument groups with at least `optimization`
    (`arguments.OptimizationArguments`), `output` (`OutputArguments`) and `hub` (`HubArguments`).
    """

    project_name: str = "hf-vqvae"  # the trackers' project
    examples: str = "images"  # what the training data holds, for the log

    def __init__(self, arguments):
        self.arguments = arguments

    @abc.abstractmethod
    def build_model(self, accelerator: Accelerator) -> torch.nn.Module:
        """The model to train, not yet prepared."""

    @abc.abstractmethod
    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        """The training loader: from a map-style data set (Accelerate shards its batches) or a stream already split
        across processes (see `data.images.training_dataloader`); its data set needs `set_epoch`."""

    @abc.abstractmethod
    def forward(self, model: torch.nn.Module, batch: dict):
        """The prepared model's output on a batch, with a scalar `loss`."""

    def start_update(self, step: int, max_train_steps: int) -> None:
        """Called on every process before each batch of update `step` (0 for the first; a resumed run goes on from
        its checkpoint's) of `max_train_steps`, for what changes over training. Nothing by default."""

    @abc.abstractmethod
    def train_logs(self, output) -> dict[str, float]:
        """The scalars logged at every update, e.g. `{"train/loss": output.loss.item()}`."""

    def validate(self, accelerator: Accelerator, model: torch.nn.Module, step: int) -> None:
        """Called on every process every `--validation_steps` updates (not after the last one: `publish` validates
        the final model) with the unwrapped model; only the main process should log or write. Nothing by default."""

    @abc.abstractmethod
    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """The main process's end: the final metrics, after writing (and pushing) the trained model's files."""

    def after_training(self, accelerator: Accelerator, model: torch.nn.Module) -> None:
        """Called on every process after `publish`, before the run ends. Nothing by default."""
