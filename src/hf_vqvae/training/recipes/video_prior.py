"""Training the action-conditioned video prior with Accelerate (`train_video_prior`, behind
`scripts/train_video_prior.py`).

The prior learns the code grids of a trained image VQ-VAE along trajectories: a trajectory codes data set written by
`scripts/extract_trajectory_codes.py` (`--codes_dataset`), or trajectories (frames + actions, `--dataset_name`) encoded
once at the start with `--vqvae`. Every window of `context_frames + 1` successive frames is an example: the context,
the frame to predict and the action that leads to it. The shared loop (`training.loop`) gives checkpoints, exact
resume, several processes and tracking; validation reports bits per code with the true actions and with the actions
shuffled among the validation windows (the gap is what the actions tell the prior), and a strip per validation
example, decoded by the VQ-VAE: context, true next frames, predicted frames. The run ends with the prior in
`--output_dir` and the whole predictor, VQ-VAE and prior, as a `VideoPredictionPipeline` folder in
`--output_dir/pipeline`.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from datasets import Dataset, DatasetDict
from diffusers.utils import make_image_grid

from ...argument_checks import check_at_least, check_in_range
from ...data.codes import CODES_COLUMN, check_codes, load_codes
from ...data.examples import EpochShuffleSampler
from ...data.splits import training_and_validation_splits
from ...data.trajectories import (
    ACTIONS_COLUMN,
    TrajectoryDataArguments,
    TrajectoryWindows,
    action_space,
    check_action_ids,
    check_trajectory_columns,
    check_trajectory_lengths,
    encode_trajectory_splits,
    load_trajectories,
)
from ...layers.sampling import MIN_TEMPERATURE
from ...models.auto import load_vqvae
from ...models.video_prior.configuration_video_prior import VideoPriorConfig
from ...models.video_prior.modeling_video_prior import VideoPriorModel
from ...models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ...models.vqvae.modeling_vqvae import VQVAEModel
from ...pipelines.pipeline_video_prediction import VideoPredictionPipeline, prediction_strip
from ..arguments import HubArguments, OptimizationArguments, OutputArguments, parse_arguments
from ..checkpoints import model_fields
from ..loop import train
from ..publishing import four_figures, publish_model
from ..recipe import Recipe, TrainingRun
from ..tracking import log_image


# The script's default prior: small enough to learn 16x16 grids of 64x64 frames in minutes on a few CPU cores.
DEFAULT_ARCHITECTURE = dict(
    context_frames=6, hidden_channels=64, num_layers=8, kernel_size=5, skip_channels=128, context_embedding_dim=16,
    conditioning_channels=64, conditioning_layers=3,
)

ARCHITECTURE_HELP = "VideoPriorConfig.{0} (default: --video_prior_config's, else {1})."


# ---------------------------------------------------------------------------------------------
# Arguments


@dataclass
class VideoPriorSourceArguments:
    """Where the trajectory codes come from."""

    _argument_group_name = "codes"

    codes_dataset: str | None = field(
        default=None,
        metadata={"help": "A trajectory codes data set (scripts/extract_trajectory_codes.py): its save_to_disk folder "
                          "or a Hub data set id. Without it the trajectories of --dataset_name are encoded with --vqvae."},
    )
    vqvae: str | None = field(
        default=None,
        metadata={"help": "The trained image VQ-VAE (a folder or Hub id); by default the one named by the codes data set."},
    )


@dataclass
class VideoPriorModelArguments:
    """Which video prior is trained: a saved config or the script's default, then the architecture flags."""

    _argument_group_name = "video prior"

    video_prior_config: str | None = field(
        default=None, metadata={"help": "Start from a VideoPriorConfig: a config.json, a folder or a Hub id."}
    )
    context_frames: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("context_frames", 6)})
    hidden_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("hidden_channels", 64)})
    num_layers: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("num_layers", 8)})
    kernel_size: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("kernel_size", 5)})
    skip_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("skip_channels", 128)})
    context_embedding_dim: int | None = field(
        default=None, metadata={"help": ARCHITECTURE_HELP.format("context_embedding_dim", 16)}
    )
    conditioning_channels: int | None = field(
        default=None, metadata={"help": ARCHITECTURE_HELP.format("conditioning_channels", 64)}
    )
    conditioning_layers: int | None = field(
        default=None, metadata={"help": ARCHITECTURE_HELP.format("conditioning_layers", 3)}
    )

    def __post_init__(self):
        for name in DEFAULT_ARCHITECTURE:
            check_at_least(self, name, 0 if name == "conditioning_layers" else 1, optional=True)


@dataclass
class PredictionArguments:
    """The predicted-vs-true strips drawn at each validation."""

    _argument_group_name = "predictions"

    prediction_examples: int = field(default=4, metadata={"help": "Validation trajectories shown, one strip each."})
    prediction_frames: int = field(
        default=10, metadata={"help": "Frames predicted per example (at most what the shortest shown trajectory holds)."}
    )
    prediction_temperature: float = field(default=1.0, metadata={"help": "Divides the prior's logits when predicting."})

    def __post_init__(self):
        check_at_least(self, "prediction_examples", 1)
        check_at_least(self, "prediction_frames", 1)
        check_in_range(self, "prediction_temperature", MIN_TEMPERATURE, math.inf, high_open=True)


@dataclass
class VideoPriorTrainingArguments:
    """Everything `train_video_prior` needs, in groups: what `scripts/train_video_prior.py` parses from its flags or
    a file."""

    codes: VideoPriorSourceArguments = field(default_factory=VideoPriorSourceArguments)
    data: TrajectoryDataArguments = field(default_factory=TrajectoryDataArguments)
    model: VideoPriorModelArguments = field(default_factory=VideoPriorModelArguments)
    predictions: PredictionArguments = field(default_factory=PredictionArguments)
    optimization: OptimizationArguments = field(
        default_factory=lambda: OptimizationArguments(num_train_epochs=10, learning_rate=1e-3)
    )
    output: OutputArguments = field(
        default_factory=lambda: OutputArguments(output_dir="outputs/video-prior", validation_steps=500)
    )
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> VideoPriorTrainingArguments:
    """The settings of `scripts/train_video_prior.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        VideoPriorTrainingArguments, argv,
        description="Train an action-conditioned video prior over the codes of a trained VQ-VAE with Accelerate.",
    )


def build_video_prior_config(
    model: VideoPriorModelArguments, vqvae_config, num_actions: int, action_names: list[str] | None,
    cache_dir: str | None = None,
) -> VideoPriorConfig:
    """The prior's config: --video_prior_config or the script's default architecture for the VQ-VAE's K and grid,
    then the architecture flags; the action space comes from the data. A config for another K or grid fails later,
    in `VideoPriorModel.check_compatible_with_vqvae`."""
    if model.video_prior_config:
        base = model_fields(VideoPriorConfig.from_pretrained(model.video_prior_config, cache_dir=cache_dir))
    else:
        latent_size = vqvae_config.latent_size
        base = dict(
            num_embeddings=vqvae_config.num_embeddings, grid_height=latent_size, grid_width=latent_size,
            **DEFAULT_ARCHITECTURE,
        )
    architecture = {name: getattr(model, name) for name in DEFAULT_ARCHITECTURE if getattr(model, name) is not None}
    return VideoPriorConfig(**{**base, **architecture, "num_actions": num_actions, "action_names": action_names})


# ---------------------------------------------------------------------------------------------
# Data


@dataclass
class TrainingTrajectories:
    """The trajectory codes a run trains and validates on, their action space, and the VQ-VAE that decodes them."""

    train: Dataset
    validation: Dataset
    num_actions: int
    action_names: list[str] | None
    vqvae: VQVAEModel
    processor: VQVAEImageProcessor
    dataset_name: str  # the encoded trajectories' data set, for the model card


def load_training_trajectories(
    source: VideoPriorSourceArguments, data: TrajectoryDataArguments, accelerator: Accelerator, *, batch_size: int,
    seed: int,
) -> TrainingTrajectories:
    """The codes of --codes_dataset, or of the trajectories of --dataset_name encoded with --vqvae; checked against
    the VQ-VAE (K, grid, code range) and the actions against their action space."""
    if source.codes_dataset:
        with accelerator.main_process_first():
            splits, info = load_codes(source.codes_dataset, cache_dir=data.cache_dir)
        vqvae_name = source.vqvae or (info.vqvae if info is not None else None)
        if vqvae_name is None:
            raise ValueError(
                f"the codes data set {source.codes_dataset!r} names no VQ-VAE (it has no codes_info.json): pass --vqvae"
            )
        vqvae, processor = load_vqvae(vqvae_name, cache_dir=data.cache_dir)
        if info is not None:
            info.check_vqvae(vqvae.config, vqvae_name)
        dataset_name = info.image_dataset if info is not None else source.codes_dataset
        train, validation = training_and_validation_splits(splits, data, source.codes_dataset, seed)
        if data.max_validation_samples is not None:
            validation = validation.select(range(min(data.max_validation_samples, len(validation))))
    else:
        if not (source.vqvae and data.dataset_name):
            raise ValueError(
                "pass --codes_dataset (trajectory codes written by scripts/extract_trajectory_codes.py), or --vqvae and "
                "--dataset_name (trajectories to encode at the start)"
            )
        vqvae, processor = load_vqvae(source.vqvae, cache_dir=data.cache_dir)
        with accelerator.main_process_first():
            train, validation = load_trajectories(data, seed)
        codes = encode_trajectory_splits(vqvae, processor, train, validation, data, accelerator, batch_size=batch_size)
        train, validation, dataset_name = codes["train"], codes["validation"], data.dataset_name

    for name, split in (("training", train), ("validation", validation)):
        check_trajectory_columns(split, CODES_COLUMN, ACTIONS_COLUMN, what="code grids")
        if len(split) == 0:
            raise ValueError(f"the {name} split holds no trajectory")
    latent_size = vqvae.config.latent_size
    check_codes(
        DatasetDict(train=train, validation=validation), vqvae.config.num_embeddings, (latent_size, latent_size),
        per_frame=True,
    )
    num_actions, action_names = action_space(train, ACTIONS_COLUMN)
    for name, split in (("the training split", train), ("the validation split", validation)):
        check_action_ids(split, ACTIONS_COLUMN, num_actions, name)
    return TrainingTrajectories(train, validation, num_actions, action_names, vqvae, processor, dataset_name)


def windows_dataloader(codes: Dataset, context_frames: int, *, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0):
    """Batches of `input_ids` (batch, context_frames + 1, h, w) and `actions` (batch, 1); a training loader
    reshuffles each epoch from (seed, epoch), so a resumed run meets the same batches."""
    windows = TrajectoryWindows(codes, context_frames)
    return torch.utils.data.DataLoader(
        windows,
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(windows), seed) if shuffle else None,
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validation_bits_per_code(prior: VideoPriorModel, loader, seed: int) -> tuple[float, float]:
    """Mean negative log2-likelihood per code of the validation windows' next frames, with the true actions and
    with the actions shuffled among the windows (a permutation drawn from `seed`)."""
    generator = torch.Generator().manual_seed(seed)
    totals, count = np.zeros(2), 0
    for batch in loader:
        input_ids, actions = batch["input_ids"].to(prior.device), batch["actions"]
        shuffled = actions[torch.randperm(len(actions), generator=generator)]
        for index, given in enumerate((actions, shuffled)):
            totals[index] += prior.bits_per_code(input_ids, given.to(prior.device)).double().sum().item()
        count += len(actions)
    return totals[0] / count, totals[1] / count


@torch.no_grad()
def prediction_strips(
    prior: VideoPriorModel, trajectories: TrainingTrajectories, predictions: PredictionArguments, seed: int
) -> PIL.Image.Image:
    """One strip per shown validation trajectory, decoded by the VQ-VAE: its first `context_frames` frames, the
    next true frames and the frames the prior predicts from the context and the true actions (seeded, so the
    strips of successive validations are comparable). The true frames are the VQ-VAE's reconstructions of their
    codes: the codes data set holds no pixels."""
    context_frames = prior.config.context_frames
    shown = trajectories.validation.select(range(min(predictions.prediction_examples, len(trajectories.validation))))
    rows = shown.with_format("numpy", columns=[CODES_COLUMN, ACTIONS_COLUMN])
    codes = [np.asarray(grids, dtype=np.int64) for grids in rows[CODES_COLUMN]]
    actions = [np.asarray(ids, dtype=np.int64) for ids in rows[ACTIONS_COLUMN]]
    num_frames = min(predictions.prediction_frames, *(len(grids) - context_frames for grids in codes))
    context = torch.from_numpy(np.stack([grids[:context_frames] for grids in codes])).to(prior.device)
    truth = torch.from_numpy(np.stack([grids[context_frames : context_frames + num_frames] for grids in codes]))
    taken = torch.from_numpy(np.stack([ids[context_frames - 1 : context_frames - 1 + num_frames] for ids in actions]))
    predicted = prior.sample(
        context, taken, temperature=predictions.prediction_temperature,
        generator=torch.Generator(device=prior.device).manual_seed(seed),
    )
    pipeline = VideoPredictionPipeline(vqvae=trajectories.vqvae, video_prior=prior, image_processor=trajectories.processor)
    frames = [pipeline.decode_codes(grids.to(prior.device)) for grids in (context, truth, predicted)]
    strips = [prediction_strip(*(decoded[index] for decoded in frames)) for index in range(len(codes))]
    return make_image_grid(strips, rows=len(strips), cols=1)


def validate_and_log(
    accelerator: Accelerator,
    prior: VideoPriorModel,
    trajectories: TrainingTrajectories,
    validation_loader,
    predictions: PredictionArguments,
    seed: int,
    step: int,
) -> tuple[float, float, PIL.Image.Image]:
    """Validation bits per code with true and shuffled actions and the prediction strips, sent to the trackers
    (main process only)."""
    bits, shuffled_bits = validation_bits_per_code(prior, validation_loader, seed)
    accelerator.log(
        {"validation/bits_per_code": bits, "validation/bits_per_code_shuffled_actions": shuffled_bits}, step=step
    )
    strips = prediction_strips(prior, trajectories, predictions, seed)
    log_image(accelerator, "validation/predictions", strips, step)
    return bits, shuffled_bits, strips


# ---------------------------------------------------------------------------------------------
# The recipe


class VideoPriorRecipe(Recipe):
    """A `VideoPriorModel` over windows of trajectory codes (`data.trajectories`): the negative log-likelihood of the
    next frame's codes given the context frames and the action."""

    project_name = "hf-vqvae-video-prior"
    examples = "windows of trajectory codes"

    def build_model(self, accelerator: Accelerator) -> VideoPriorModel:
        data, optimization = self.arguments.data, self.arguments.optimization
        self.trajectories = trajectories = load_training_trajectories(
            self.arguments.codes, data, accelerator, batch_size=optimization.train_batch_size, seed=optimization.seed
        )
        self.config = config = build_video_prior_config(
            self.arguments.model, trajectories.vqvae.config, trajectories.num_actions, trajectories.action_names,
            cache_dir=data.cache_dir,
        )
        vqvae_config = trajectories.vqvae.config
        prior = VideoPriorModel(config)
        prior.check_compatible_with_vqvae(vqvae_config.num_embeddings, vqvae_config.latent_size, vqvae_config.latent_size)
        for name, split in (("the training split", trajectories.train), ("the validation split", trajectories.validation)):
            check_trajectory_lengths(split, CODES_COLUMN, config.context_frames + 1, name)
        return prior

    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        trajectories, optimization, context_frames = self.trajectories, self.arguments.optimization, self.config.context_frames
        trajectories.vqvae.to(accelerator.device)  # decodes the prediction strips
        train_loader = windows_dataloader(
            trajectories.train, context_frames, batch_size=optimization.train_batch_size, seed=optimization.seed,
            shuffle=True, num_workers=self.arguments.data.dataloader_num_workers,
        )
        self.validation_loader = windows_dataloader(
            trajectories.validation, context_frames, batch_size=optimization.train_batch_size,
            seed=optimization.seed, shuffle=False,
        )
        return train_loader

    def forward(self, model: VideoPriorModel, batch: dict):
        return model(batch["input_ids"], batch["actions"], labels=batch["input_ids"])

    def train_logs(self, output) -> dict[str, float]:
        nats = output.loss.item()
        return {"train/loss": nats, "train/bits_per_code": nats / math.log(2)}

    def log_validation(self, accelerator: Accelerator, model: VideoPriorModel, step: int):
        return validate_and_log(
            accelerator, model, self.trajectories, self.validation_loader, self.arguments.predictions,
            self.arguments.optimization.seed, step,
        )

    def validate(self, accelerator: Accelerator, model: VideoPriorModel, step: int) -> None:
        if accelerator.is_main_process:
            self.log_validation(accelerator, model, step)

    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """Validate, then write the prior, `metrics.json`, `predictions.png`, a model card and the pipeline folder
        (`pipeline/`: VQ-VAE, video prior, image processor) into --output_dir; push the prior when asked."""
        prior, trajectories = run.model, self.trajectories
        bits, shuffled_bits, strips = self.log_validation(accelerator, prior, run.position.step)
        metrics = {
            "validation_bits_per_code": four_figures(bits),
            "validation_bits_per_code_shuffled_actions": four_figures(shuffled_bits),
            "train_steps": run.position.step,
            "validation_windows": len(self.validation_loader.dataset),
        }
        publish_model(
            run, self.arguments.output, self.arguments.hub, training, metrics=metrics, image=strips,
            image_name="predictions.png", dataset_name=trajectories.dataset_name, description="Video prior",
        )
        pipeline = VideoPredictionPipeline(vqvae=trajectories.vqvae, video_prior=prior, image_processor=trajectories.processor)
        pipeline.save_pretrained(Path(self.arguments.output.output_dir) / "pipeline")
        return metrics


def train_video_prior(arguments: VideoPriorTrainingArguments) -> dict:
    """Train a `VideoPriorModel` as `arguments` say (`parse_args` reads them from flags or a file); returns the
    final validation metrics (also written to `<output_dir>/metrics.json`)."""
    return train(VideoPriorRecipe(arguments))
