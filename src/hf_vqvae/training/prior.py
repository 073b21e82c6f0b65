"""Training the PixelCNN prior with Accelerate (`train_prior`, behind `scripts/train_prior.py`).

The prior learns the code grids of a trained VQ-VAE: a codes data set written by
`scripts/extract_codes.py` (`--codes_dataset`), or images that are encoded once at the start
(`--vqvae` with the image data flags of `data.add_data_arguments`). Stage-2 codes of a hierarchy
(`scripts/train_hierarchy.py`'s `latent_codes`) make it the top prior of a `HierarchicalVQVAEPipeline`. It conditions on a class label
column when there is one. Checkpoints, exact resume, tracking and pushing are the VQ-VAE's
(`training.py`); validation reports bits per code on held-out grids and a grid of samples decoded
by the VQ-VAE. The run ends with the prior in `--output_dir` and the whole generator, VQ-VAE and
prior, as a `VQVAEPipeline` folder (a `HierarchicalVQVAEPipeline` for stage-2 codes) in `--output_dir/pipeline`.

Speech codes (`scripts/extract_speech_codes.py`: one-row grids of an `AudioVQVAEModel`'s codes, the speaker as
the class label) train a prior over the code sequence the same way; its validation samples are speech generated
by the audio VQ-VAE's WaveNet (TensorBoard audio and spectrograms), and the pipeline is an `AudioVQVAEPipeline`.
"""

import dataclasses
from dataclasses import dataclass, field
import functools
import logging
import math
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from datasets import ClassLabel, Dataset, DatasetDict

from ..data.codes import (
    CODES_COLUMN,
    LABEL_COLUMN,
    check_class_labels,
    check_codes,
    check_label_feature,
    class_label_column,
    encode_image_dataset,
    is_audio_vqvae,
    load_audio_vqvae,
    load_codes,
    load_vqvae,
)
from ..models.pixelcnn_prior.configuration_pixelcnn_prior import PRIOR_PRESETS, PixelCNNPriorConfig
from ..data.images import (
    EpochShuffleSampler,
    ImageDataArguments,
    check_columns,
    training_and_validation_splits,
)
from ..hub import prior_model_card
from ..models.audio_vqvae.feature_extraction_audio_vqvae import AudioVQVAEFeatureExtractor
from ..models.audio_vqvae.modeling_audio_vqvae import AudioVQVAEModel
from ..models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ..models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel
from ..models.hierarchical_vqvae.modeling_hierarchical_vqvae import HierarchicalVQVAEModel
from ..models.vqvae.modeling_vqvae import VQVAEModel
from ..pipelines.pipeline_audio_vqvae import AudioVQVAEPipeline
from ..pipelines.pipeline_hierarchical_vqvae import HierarchicalVQVAEPipeline
from ..pipelines.pipeline_vqvae import VQVAEPipeline
from .arguments import (
    HubArguments,
    OptimizationArguments,
    OutputArguments,
    arguments_dict,
    check_at_least,
    check_in_range,
    parse_arguments,
)
from .audio_vqvae import spectrogram_figure
from .checkpoints import CheckpointManager, model_fields
from .loop import (
    TrainingRun,
    end_training,
    four_figures,
    log_audio,
    log_image,
    publish_model,
    run_training_loop,
    setup_accelerator,
)


logger = logging.getLogger(__name__)

# The architecture of the script's default prior: small enough to train on the default data set's
# 8x8 grids in a couple of minutes on two CPU cores.
DEFAULT_ARCHITECTURE = dict(hidden_channels=64, num_layers=8, kernel_size=5, skip_channels=128)
ARCHITECTURE_FLAGS = tuple(DEFAULT_ARCHITECTURE)
ARCHITECTURE_HELP = "PixelCNNPriorConfig.{0} (default: the preset's or config's, else the script's default architecture)."


# ---------------------------------------------------------------------------------------------
# Arguments


@dataclass
class PriorCodesArguments:
    """Where the code grids come from."""

    _argument_group_name = "codes"

    codes_dataset: str | None = field(
        default=None,
        metadata={
            "help": "A codes data set (scripts/extract_codes.py): its save_to_disk folder or a Hub data set id. "
            "Without it the images of the data flags are encoded with --vqvae at the start."
        },
    )
    vqvae: str | None = field(
        default=None, metadata={"help": "The trained VQ-VAE (a folder or Hub id); by default the one named by the codes data set."}
    )
    unconditional: bool = field(default=False, metadata={"help": "Ignore class labels: train an unconditional prior."})


@dataclass
class PriorModelArguments:
    """Which prior is trained: a preset's or a saved config's code grid, the architecture."""

    _argument_group_name = "prior"

    prior_preset: str | None = field(
        default=None,
        metadata={
            "help": "A code grid of the paper's settings (PixelCNNPriorConfig.from_preset); must match the VQ-VAE.",
            "choices": sorted(PRIOR_PRESETS),
        },
    )
    prior_config: str | None = field(
        default=None, metadata={"help": "Start from a PixelCNNPriorConfig: a config.json, a folder or a Hub id."}
    )
    hidden_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("hidden_channels")})
    num_layers: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("num_layers")})
    kernel_size: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("kernel_size")})
    skip_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("skip_channels")})

    def __post_init__(self):
        if self.prior_preset and self.prior_config:
            raise ValueError("pass either --prior_preset or --prior_config, not both")
        if self.prior_preset is not None and self.prior_preset not in PRIOR_PRESETS:
            raise ValueError(f"--prior_preset must be one of {sorted(PRIOR_PRESETS)}, got {self.prior_preset!r}")
        for name in ARCHITECTURE_FLAGS:
            check_at_least(self, name, 1, optional=True)


@dataclass
class SampleArguments:
    """The grid of samples drawn at each validation (for speech codes: `sample_images_per_row` clips)."""

    _argument_group_name = "samples"

    sample_images_per_row: int = field(default=8, metadata={"help": "Samples per row of the sample grid."})
    sample_rows: int = field(default=4, metadata={"help": "Rows of samples of an unconditional prior (else one per class)."})
    sample_temperature: float = field(default=1.0, metadata={"help": "Divides the prior's logits when sampling."})

    def __post_init__(self):
        check_at_least(self, "sample_images_per_row", 1)
        check_at_least(self, "sample_rows", 1)
        check_in_range(self, "sample_temperature", 0, math.inf, low_open=True, high_open=True)


@dataclass
class PriorTrainingArguments:
    """Everything `train_prior` needs, in groups: what `scripts/train_prior.py` parses from its flags or a file."""

    codes: PriorCodesArguments = field(default_factory=PriorCodesArguments)
    # Images are encoded at the VQ-VAE's resolution; a class label column named `label` is found by itself.
    data: ImageDataArguments = field(default_factory=lambda: ImageDataArguments(resolution=None))
    model: PriorModelArguments = field(default_factory=PriorModelArguments)
    samples: SampleArguments = field(default_factory=SampleArguments)
    optimization: OptimizationArguments = field(
        default_factory=lambda: OptimizationArguments(num_train_epochs=10, learning_rate=1e-3)
    )
    output: OutputArguments = field(default_factory=lambda: OutputArguments(output_dir="outputs/prior", validation_steps=500))
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> PriorTrainingArguments:
    """The settings of `scripts/train_prior.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        PriorTrainingArguments, argv,
        description="Train a gated PixelCNN prior over the codes of a trained VQ-VAE with Accelerate.",
    )


def build_prior_config(
    args: PriorModelArguments,
    code_grid: tuple[int, int, int],
    num_classes: int,
    id2label: dict[int, str] | None,
    cache_dir: str | None = None,
) -> PixelCNNPriorConfig:
    """The prior's config: --prior_preset, --prior_config or the script's default architecture for
    the codes' (K, grid height, grid width), then the architecture flags; the classes come from the
    data. A preset or config for another K or grid fails later, in
    `PixelCNNPriorModel.check_compatible_with_vqvae`."""
    if args.prior_preset:
        base = PixelCNNPriorConfig.from_preset(args.prior_preset, **DEFAULT_ARCHITECTURE)
    elif args.prior_config:
        base = PixelCNNPriorConfig.from_pretrained(args.prior_config, cache_dir=cache_dir)
    else:
        num_embeddings, grid_height, grid_width = code_grid
        base = PixelCNNPriorConfig(
            num_embeddings=num_embeddings, grid_height=grid_height, grid_width=grid_width, **DEFAULT_ARCHITECTURE
        )
    architecture = {name: getattr(args, name) for name in ARCHITECTURE_FLAGS if getattr(args, name) is not None}
    fields = {**model_fields(base), **architecture, "num_classes": num_classes}
    label2id = {name: index for index, name in id2label.items()} if id2label else None
    return PixelCNNPriorConfig(**fields, id2label=id2label, label2id=label2id)


# ---------------------------------------------------------------------------------------------
# Data


@dataclasses.dataclass
class TrainingCodes:
    """The code grids a run trains and validates on, and the VQ-VAE that decodes them (through the
    stage-2 model, for stage-2 codes)."""

    train: Dataset
    validation: Dataset
    label_column: str | None
    vqvae: VQVAEModel
    processor: VQVAEImageProcessor
    dataset_name: str  # the encoded images' data set, for the model card
    stage2: HierarchicalVQVAEModel | None = None

    @property
    def code_grid(self) -> tuple[int, int, int]:
        """(K, grid height, grid width) of the codes."""
        if self.stage2 is not None:
            return self.stage2.config.prior_code_grid(*self.stage2.config.latent_grid)
        return self.vqvae.config.prior_code_grid(self.vqvae.config.latent_size, self.vqvae.config.latent_size)

    def pipeline(self, prior: PixelCNNPriorModel) -> VQVAEPipeline | HierarchicalVQVAEPipeline:
        """The generator a prior over these codes completes."""
        if self.stage2 is not None:
            return HierarchicalVQVAEPipeline(vqvae=self.vqvae, stage2=self.stage2, prior=prior, image_processor=self.processor)
        return VQVAEPipeline(vqvae=self.vqvae, prior=prior, image_processor=self.processor)

    def log_samples(
        self, accelerator: Accelerator, prior: PixelCNNPriorModel, samples: SampleArguments, seed: int, step: int
    ) -> PIL.Image.Image:
        """A grid of samples decoded by the VQ-VAE (a row per class for a class-conditional prior), sent to the
        trackers."""
        pipeline = self.pipeline(prior)
        pipeline.set_progress_bar_config(disable=True)
        # Drawn from --seed every time, so the grids of successive validations are comparable.
        grid = pipeline.sample_grid(
            images_per_row=samples.sample_images_per_row, num_rows=samples.sample_rows,
            temperature=samples.sample_temperature, seed=seed,
        )
        log_image(accelerator, "validation/samples", grid, step)
        return grid


@dataclasses.dataclass
class SpeechTrainingCodes(TrainingCodes):
    """Speech codes: one-row grids of `sequence_length` codes of an audio VQ-VAE (`vqvae`, with its feature extractor
    as `processor`), generated as speech by its WaveNet decoder."""

    vqvae: AudioVQVAEModel
    processor: AudioVQVAEFeatureExtractor
    sequence_length: int = 0

    @property
    def code_grid(self) -> tuple[int, int, int]:
        return (self.vqvae.config.code_layout.prior_num_embeddings, 1, self.sequence_length)

    def pipeline(self, prior: PixelCNNPriorModel) -> AudioVQVAEPipeline:
        return AudioVQVAEPipeline(vqvae=self.vqvae, prior=prior, feature_extractor=self.processor)

    def log_samples(
        self, accelerator: Accelerator, prior: PixelCNNPriorModel, samples: SampleArguments, seed: int, step: int
    ) -> PIL.Image.Image:
        """`sample_images_per_row` clips of speech (the speakers in turn, for a VQ-VAE with speakers), sent to the
        trackers as one clip (a tenth of a second of silence between them) and as spectrograms, which are returned."""
        pipeline = self.pipeline(prior)
        pipeline.set_progress_bar_config(disable=True)
        config = self.vqvae.config
        count = samples.sample_images_per_row
        speakers = [index % config.num_speakers for index in range(count)] if config.num_speakers else None
        generator = torch.Generator(device=self.vqvae.device).manual_seed(seed)
        clips = pipeline(
            batch_size=count, speaker=speakers, temperature=samples.sample_temperature, generator=generator,
            output_type="pt",
        ).audios
        names = config.speaker_names or [str(index) for index in range(config.num_speakers)]
        labels = [f"{index}: {names[speakers[index]]}" if speakers else str(index) for index in range(count)]
        silence = torch.zeros(config.sampling_rate // 10)
        log_audio(accelerator, "validation/samples", torch.cat([part for clip in clips for part in (clip, silence)]),
                  config.sampling_rate, step)
        figure = spectrogram_figure(dict(zip(labels, clips)), title=f"step {step}")
        log_image(accelerator, "validation/samples", figure, step)
        return figure


def load_training_codes(
    source: PriorCodesArguments, data: ImageDataArguments, accelerator: Accelerator, *, batch_size: int, seed: int
) -> TrainingCodes:
    """The codes of --codes_dataset, or of the images of the data flags encoded with --vqvae; checked
    against the VQ-VAE (K, grid, code range) and the class labels against their classes."""
    if source.codes_dataset:
        with accelerator.main_process_first():
            splits, info = load_codes(source.codes_dataset, cache_dir=data.cache_dir)
        vqvae_name = source.vqvae or (info.vqvae if info is not None else None)
        if vqvae_name is None:
            raise ValueError(
                f"the codes data set {source.codes_dataset!r} names no VQ-VAE (it has no codes_info.json): pass --vqvae"
            )
        stage2 = None
        if info is not None and info.stage1_vqvae is not None:
            # Stage-2 codes: `info.vqvae` is the stage-2 model, `--vqvae` (if given) the stage-1 VQ-VAE.
            stage2 = HierarchicalVQVAEModel.from_pretrained(info.vqvae, cache_dir=data.cache_dir).eval()
            vqvae_name = source.vqvae or info.stage1_vqvae
        speech = is_audio_vqvae(vqvae_name, cache_dir=data.cache_dir)
        vqvae, processor = (load_audio_vqvae if speech else load_vqvae)(vqvae_name, cache_dir=data.cache_dir)
        if stage2 is not None:
            stage2.check_compatible_with_vqvae(*vqvae.config.prior_code_grid(vqvae.config.latent_size, vqvae.config.latent_size))
        elif info is not None:
            info.check_vqvae(vqvae.config, vqvae_name)
        dataset_name = info.image_dataset if info is not None else source.codes_dataset
        train, validation = training_and_validation_splits(splits, data, source.codes_dataset, seed)
        label_column = class_label_column(train, data.label_column)
    else:
        stage2 = None
        if not source.vqvae:
            raise ValueError(
                "pass --codes_dataset (codes written by scripts/extract_codes.py) or --vqvae (to encode the images of "
                "the data flags)"
            )
        if is_audio_vqvae(source.vqvae, cache_dir=data.cache_dir):
            raise ValueError(
                f"--vqvae {source.vqvae!r} is an audio VQ-VAE: extract the codes of its speech first with "
                "scripts/extract_speech_codes.py and pass them as --codes_dataset"
            )
        speech = False
        vqvae, processor = load_vqvae(source.vqvae, cache_dir=data.cache_dir)
        codes, dataset_name = encode_image_dataset(data, vqvae, processor, accelerator, batch_size=batch_size, seed=seed)
        train, validation = codes["train"], codes["validation"]
        label_column = LABEL_COLUMN if LABEL_COLUMN in train.column_names else None

    validation = validation.select(range(min(data.max_validation_samples, len(validation))))
    if speech:
        codes = SpeechTrainingCodes(
            train, validation, label_column, vqvae, processor, dataset_name, sequence_length=sequence_length_of(train, info)
        )
    else:
        codes = TrainingCodes(train, validation, label_column, vqvae, processor, dataset_name, stage2)
    num_embeddings, *grid = codes.code_grid
    check_codes(DatasetDict(train=train, validation=validation), num_embeddings, tuple(grid))
    # The hierarchical pipeline samples unconditionally.
    if source.unconditional or stage2 is not None:
        label_column = None
    if label_column is not None:
        for split in (train, validation):
            check_columns(split, CODES_COLUMN, label_column)
            check_label_feature(split, label_column)
    return dataclasses.replace(codes, label_column=label_column)


def sequence_length_of(codes: Dataset, info) -> int:
    """The codes per one-row grid of speech codes: as their `codes_info.json` says, else as the first grid has."""
    if info is not None:
        return info.grid_width
    first = codes[0][CODES_COLUMN] if len(codes) else None
    if not first:
        raise ValueError("the speech codes have no codes_info.json and their first training grid is missing or empty")
    return len(first[0])


def class_labels_of(codes: TrainingCodes) -> tuple[int, dict[int, str] | None]:
    """The number of classes and their names (a `ClassLabel`'s; integer labels count up to the
    largest training label); every label of both splits must lie in range."""
    if codes.label_column is None:
        return 0, None
    feature = codes.train.features[codes.label_column]
    labels = {name: np.asarray(split[codes.label_column]) for name, split in (("train", codes.train), ("validation", codes.validation))}
    if isinstance(feature, ClassLabel):
        num_classes, id2label = feature.num_classes, dict(enumerate(feature.names))
    else:
        num_classes, id2label = int(labels["train"].max()) + 1, None
    for name, values in labels.items():
        check_class_labels(values, num_classes, f"the {name} split (column {codes.label_column!r})")
    return num_classes, id2label


def collate_codes(examples: list[dict], label_column: str | None) -> dict:
    batch = {"input_ids": torch.from_numpy(np.stack([example[CODES_COLUMN] for example in examples])).long()}
    if label_column is not None:
        batch["class_labels"] = torch.tensor([int(example[label_column]) for example in examples])
    return batch


def codes_dataloader(codes: Dataset, label_column: str | None, *, batch_size: int, seed: int, shuffle: bool, num_workers: int = 0):
    """Batches of `input_ids` (and `class_labels`); a training loader reshuffles each epoch from
    (seed, epoch), so a resumed run meets the same batches."""
    columns = [CODES_COLUMN] + ([label_column] if label_column else [])
    return torch.utils.data.DataLoader(
        codes.with_format("numpy", columns=columns),
        batch_size=batch_size,
        sampler=EpochShuffleSampler(len(codes), seed) if shuffle else None,
        collate_fn=functools.partial(collate_codes, label_column=label_column),
        num_workers=num_workers,
        generator=torch.Generator().manual_seed(seed),
    )


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validation_bits_per_code(prior: PixelCNNPriorModel, loader) -> float:
    """Mean negative log2-likelihood per code of the validation grids."""
    total, count = 0.0, 0
    for batch in loader:
        bits = prior.bits_per_code(batch["input_ids"].to(prior.device), batch.get("class_labels"))
        total, count = total + bits.double().sum().item(), count + len(bits)
    return total / count


def validate_and_log(
    accelerator: Accelerator,
    prior: PixelCNNPriorModel,
    codes: TrainingCodes,
    validation_loader,
    samples: SampleArguments,
    seed: int,
    step: int,
) -> tuple[float, PIL.Image.Image]:
    """Validation bits per code and samples (`TrainingCodes.log_samples`: a grid of images, or speech and its
    spectrograms), sent to the trackers (main process only)."""
    bits = validation_bits_per_code(prior, validation_loader)
    accelerator.log({"validation/bits_per_code": bits}, step=step)
    return bits, codes.log_samples(accelerator, prior, samples, seed, step)


# ---------------------------------------------------------------------------------------------
# Training


def prior_train_logs(output) -> dict:
    nats = output.loss.item()
    return {"train/loss": nats, "train/bits_per_code": nats / math.log(2)}


def train_prior(arguments: PriorTrainingArguments) -> dict:
    """Train a `PixelCNNPriorModel` as `arguments` say (`parse_args` reads them from flags or a file);
    returns the final validation metrics (also written to `<output_dir>/metrics.json`)."""
    started = time.perf_counter()
    optimization, output, data = arguments.optimization, arguments.output, arguments.data
    accelerator = setup_accelerator(optimization, output)
    codes = load_training_codes(
        arguments.codes, data, accelerator, batch_size=optimization.train_batch_size, seed=optimization.seed
    )
    num_classes, id2label = class_labels_of(codes)
    config = build_prior_config(arguments.model, codes.code_grid, num_classes, id2label, cache_dir=data.cache_dir)
    checkpoints = CheckpointManager(output.output_dir, output.checkpoints_total_limit)
    resume = checkpoints.resolve(output.resume_from_checkpoint, model_fields(config))

    prior = PixelCNNPriorModel(config)
    prior.check_compatible_with_vqvae(*codes.code_grid)
    # The generator the prior completes accepts it (e.g. as many classes as the audio VQ-VAE's speakers): a
    # mismatch fails now, not after training.
    codes.pipeline(prior)
    codes.vqvae.to(accelerator.device)  # decodes the samples
    if codes.stage2 is not None:
        codes.stage2.to(accelerator.device)
    train_loader = codes_dataloader(
        codes.train, codes.label_column, batch_size=optimization.train_batch_size, seed=optimization.seed, shuffle=True,
        num_workers=data.dataloader_num_workers,
    )
    validation_loader = codes_dataloader(
        codes.validation, codes.label_column, batch_size=optimization.train_batch_size, seed=optimization.seed,
        shuffle=False,
    )

    def validate(step: int, model: PixelCNNPriorModel) -> None:
        if accelerator.is_main_process:
            validate_and_log(accelerator, model, codes, validation_loader, arguments.samples, optimization.seed, step)

    run = run_training_loop(
        accelerator, optimization, output, prior, train_loader, checkpoints=checkpoints, resume=resume,
        model_config=model_fields(config), run_arguments=arguments_dict(arguments), project_name="hf-vqvae-prior",
        examples="code grids",
        forward=lambda model, batch: model(batch["input_ids"], batch.get("class_labels"), labels=batch["input_ids"]),
        train_logs=prior_train_logs, validate=validate,
    )
    metrics = {}
    if accelerator.is_main_process:
        metrics = save_final_prior(
            arguments, accelerator, run, codes, validation_loader, wall_time_s=time.perf_counter() - started
        )
    end_training(accelerator)
    return metrics


def save_final_prior(
    arguments: PriorTrainingArguments, accelerator, run: TrainingRun, codes: TrainingCodes, validation_loader, wall_time_s
) -> dict:
    """Validate, then write the prior, `metrics.json`, `samples.png`, a model card and the pipeline
    folder (`pipeline/`: VQ-VAE, prior, image processor or feature extractor) into --output_dir; push the prior
    when asked."""
    prior = run.model
    bits, grid = validate_and_log(
        accelerator, prior, codes, validation_loader, arguments.samples, arguments.optimization.seed, run.position.step
    )
    metrics = {
        "validation_bits_per_code": four_figures(bits),
        "train_steps": run.position.step,
        "validation_grids": len(codes.validation),
    }
    publish_model(
        arguments, accelerator, run, wall_time_s, metrics=metrics, image=grid, image_name="samples.png",
        model_card=prior_model_card, dataset_name=codes.dataset_name, description="PixelCNN prior",
    )
    codes.pipeline(prior).save_pretrained(Path(arguments.output.output_dir) / "pipeline")
    return metrics
