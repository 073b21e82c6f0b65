"""The PixelCNN prior's training recipe (`train_prior`, behind `scripts/train_prior.py`).

The prior learns the code grids of a trained VQ-VAE (`training.training_codes`): a codes data set written by
`scripts/extract_codes.py` (`--codes_dataset`), or images that are encoded once at the start (`--vqvae` with the
image data flags of `data.images.ImageDataArguments`). Stage-2 codes of a hierarchy (`scripts/train_hierarchy.py`'s
`latent_codes`) make it the top prior of a `HierarchicalVQVAEPipeline`. It conditions on a class label column when
there is one. Checkpoints, exact resume, tracking and pushing are the shared loop's (`training.loop`); validation
reports bits per code on held-out grids and a grid of samples decoded by the VQ-VAE. The run ends with the prior in
`--output_dir` and the whole generator, VQ-VAE and prior, as a `VQVAEPipeline` folder (a `HierarchicalVQVAEPipeline`
for stage-2 codes) in `--output_dir/pipeline`.

Speech codes (`scripts/extract_speech_codes.py`: one-row grids of an `AudioVQVAEModel`'s codes, the speaker as
the class label) train a prior over the code sequence the same way; its validation samples are speech generated
by the audio VQ-VAE's WaveNet (TensorBoard audio and spectrograms), and the pipeline is an `AudioVQVAEPipeline`.

`--prior_type transformer` trains a `TransformerPriorModel` (a transformers causal language model over the codes, a
Llama by default) in place of the PixelCNN, on the same data, with the same validation and pipelines; its class labels
are dropped `--class_dropout_prob` of the time, for classifier-free guidance at sampling.

The prior is built in `PriorRecipe.build_model`, the one place that chooses the model class.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from datasets import ClassLabel

from ...argument_checks import check_at_least, check_in_range
from ...data.codes import check_class_labels
from ...data.images import ImageDataArguments
from ...models.pixelcnn_prior.configuration_pixelcnn_prior import PRIOR_PRESETS, PixelCNNPriorConfig
from ...models.pixelcnn_prior.modeling_pixelcnn_prior import PixelCNNPriorModel
from ...models.transformer_prior.configuration_transformer_prior import TransformerPriorConfig
from ...models.transformer_prior.modeling_transformer_prior import TransformerPriorModel
from ...pipelines.pipeline_utils import Prior
from ..arguments import HubArguments, OptimizationArguments, OutputArguments, parse_arguments
from ..checkpoints import model_fields
from ..loop import train
from ..publishing import four_figures, publish_model
from ..recipe import Recipe, TrainingRun
from ..spectrograms import spectrogram_figure
from ..tracking import log_audio, log_image
from ..training_codes import SpeechTrainingCodes, TrainingCodes, codes_dataloader, load_training_codes


# The architecture of the script's default prior: small enough to train on the default data set's
# 8x8 grids in a couple of minutes on two CPU cores.
DEFAULT_ARCHITECTURE = dict(hidden_channels=64, num_layers=8, kernel_size=5, skip_channels=128)

ARCHITECTURE_FLAGS = tuple(DEFAULT_ARCHITECTURE)

ARCHITECTURE_HELP = "PixelCNNPriorConfig.{0} (default: the preset's or config's, else the script's default architecture)."

PRIOR_TYPES = ("pixelcnn", "transformer")

# The script's default transformer prior: a Llama of about the default PixelCNN's size (1.41M against 1.56M parameters
# on the default data set's codes: K = 512, 8x8, 15 classes).
DEFAULT_TRANSFORMER = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=6, num_attention_heads=4)

# Flag -> the Llama (decoder config) field it sets.
TRANSFORMER_FLAGS = dict(
    decoder_hidden_size="hidden_size", decoder_num_layers="num_hidden_layers", decoder_num_heads="num_attention_heads"
)

TRANSFORMER_HELP = "With --prior_type transformer: the decoder's {0} (default: the config's, else the script's default)."


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

    prior_type: str = field(
        default="pixelcnn",
        metadata={
            "help": "pixelcnn: the paper's gated PixelCNN (PixelCNNPriorModel); transformer: a causal language model "
            "of transformers over the codes (TransformerPriorModel, sampled through generate()).",
            "choices": list(PRIOR_TYPES),
        },
    )
    prior_preset: str | None = field(
        default=None,
        metadata={
            "help": "A code grid of the paper's settings (PixelCNNPriorConfig.from_preset); must match the VQ-VAE.",
            "choices": sorted(PRIOR_PRESETS),
        },
    )
    prior_config: str | None = field(
        default=None,
        metadata={"help": "Start from a PixelCNNPriorConfig (a TransformerPriorConfig with --prior_type transformer): a "
                  "config.json, a folder or a Hub id."},
    )
    hidden_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("hidden_channels")})
    num_layers: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("num_layers")})
    kernel_size: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("kernel_size")})
    skip_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("skip_channels")})
    decoder_hidden_size: int | None = field(default=None, metadata={"help": TRANSFORMER_HELP.format("hidden_size")})
    decoder_num_layers: int | None = field(default=None, metadata={"help": TRANSFORMER_HELP.format("number of layers")})
    decoder_num_heads: int | None = field(default=None, metadata={"help": TRANSFORMER_HELP.format("attention heads")})
    class_dropout_prob: float | None = field(
        default=None,
        metadata={"help": "With --prior_type transformer: the share of class labels replaced by the null label in "
                  "training, for classifier-free guidance (default: the config's, else 0.1)."},
    )

    def __post_init__(self):
        if self.prior_type not in PRIOR_TYPES:
            raise ValueError(f"--prior_type must be one of {list(PRIOR_TYPES)}, got {self.prior_type!r}")
        if self.prior_preset and self.prior_config:
            raise ValueError("pass either --prior_preset or --prior_config, not both")
        if self.prior_preset is not None and self.prior_preset not in PRIOR_PRESETS:
            raise ValueError(f"--prior_preset must be one of {sorted(PRIOR_PRESETS)}, got {self.prior_preset!r}")
        for name in (*ARCHITECTURE_FLAGS, *TRANSFORMER_FLAGS):
            check_at_least(self, name, 1, optional=True)
        if self.class_dropout_prob is not None:
            check_in_range(self, "class_dropout_prob", 0, 1, high_open=True)
        other_flags = (ARCHITECTURE_FLAGS, "pixelcnn") if self.prior_type == "transformer" else (
            (*TRANSFORMER_FLAGS, "class_dropout_prob"), "transformer")
        given = [f"--{name}" for name in other_flags[0] if getattr(self, name) is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} set{'s' if len(given) == 1 else ''} the architecture of a {other_flags[1]} prior; "
                f"this run trains a {self.prior_type} prior (--prior_type {self.prior_type})"
            )


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
    # The learning rate decays to 0 (cosine): at a constant 1e-3 the last weights are one draw of Adam's noise, and the
    # samples of some class, which compound 64 draws, came out 15 to 39 grey levels too dark or too bright at every
    # checkpoint while the bits per code barely moved (docs/benchmarks.md, class-conditional samples).
    optimization: OptimizationArguments = field(
        default_factory=lambda: OptimizationArguments(num_train_epochs=10, learning_rate=1e-3, lr_scheduler="cosine")
    )
    output: OutputArguments = field(default_factory=lambda: OutputArguments(output_dir="outputs/prior", validation_steps=500))
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> PriorTrainingArguments:
    """The settings of `scripts/train_prior.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        PriorTrainingArguments, argv,
        description="Train a prior over the codes of a trained VQ-VAE with Accelerate: a gated PixelCNN, or a "
        "transformer (--prior_type transformer).",
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


def build_transformer_prior_config(
    args: PriorModelArguments,
    code_grid: tuple[int, int, int],
    num_classes: int,
    id2label: dict[int, str] | None,
    cache_dir: str | None = None,
) -> TransformerPriorConfig:
    """The transformer prior's config, as `build_prior_config` builds the PixelCNN's: --prior_config, or the code grid
    of --prior_preset or of the codes with the script's default decoder (`DEFAULT_TRANSFORMER`), then the decoder
    flags and --class_dropout_prob; the classes come from the data."""
    if args.prior_config:
        base = model_fields(TransformerPriorConfig.from_pretrained(args.prior_config, cache_dir=cache_dir))
        decoder = base.pop("decoder_config")
    else:
        grid = PRIOR_PRESETS[args.prior_preset] if args.prior_preset else dict(zip(
            ("num_embeddings", "grid_height", "grid_width"), code_grid
        ))
        base = {name: grid[name] for name in ("num_embeddings", "grid_height", "grid_width")}
        decoder = {"model_type": "llama", **DEFAULT_TRANSFORMER}
    for flag, name in TRANSFORMER_FLAGS.items():
        if getattr(args, flag) is not None:
            decoder[name] = getattr(args, flag)
    if args.decoder_num_heads is not None and "num_key_value_heads" in decoder:
        decoder["num_key_value_heads"] = args.decoder_num_heads
    if args.decoder_hidden_size is not None and decoder.get("model_type") == "llama":
        decoder["intermediate_size"] = 3 * args.decoder_hidden_size
    if args.class_dropout_prob is not None:
        base["class_dropout_prob"] = args.class_dropout_prob
    label2id = {name: index for index, name in id2label.items()} if id2label else None
    return TransformerPriorConfig(
        **{**base, "num_classes": num_classes}, decoder_config=decoder, id2label=id2label, label2id=label2id
    )


# ---------------------------------------------------------------------------------------------
# Class labels, validation and samples


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


@torch.no_grad()
def validation_bits_per_code(prior: Prior, loader) -> float:
    """Mean negative log2-likelihood per code of the validation grids."""
    total, count = 0.0, 0
    for batch in loader:
        bits = prior.bits_per_code(batch["input_ids"].to(prior.device), batch.get("class_labels"))
        total, count = total + bits.double().sum().item(), count + len(bits)
    return total / count


def log_image_samples(
    codes: TrainingCodes, accelerator: Accelerator, prior: Prior, samples: SampleArguments, seed: int, step: int
) -> PIL.Image.Image:
    """A grid of samples decoded by the VQ-VAE (a row per class for a class-conditional prior), sent to the
    trackers."""
    pipeline = codes.pipeline(prior)
    pipeline.set_progress_bar_config(disable=True)
    # Drawn from --seed every time, so the grids of successive validations are comparable.
    grid = pipeline.sample_grid(
        images_per_row=samples.sample_images_per_row, num_rows=samples.sample_rows,
        temperature=samples.sample_temperature, seed=seed,
    )
    log_image(accelerator, "validation/samples", grid, step)
    return grid


def log_speech_samples(
    codes: SpeechTrainingCodes, accelerator: Accelerator, prior: Prior, samples: SampleArguments, seed: int, step: int
) -> PIL.Image.Image:
    """`sample_images_per_row` clips of speech (the speakers in turn, for a VQ-VAE with speakers), sent to the
    trackers as one clip (a tenth of a second of silence between them) and as spectrograms, which are returned."""
    pipeline = codes.pipeline(prior)
    pipeline.set_progress_bar_config(disable=True)
    config = codes.vqvae.config
    count = samples.sample_images_per_row
    speakers = [index % config.num_speakers for index in range(count)] if config.num_speakers else None
    generator = torch.Generator(device=codes.vqvae.device).manual_seed(seed)
    clips = pipeline(
        batch_size=count, speaker=speakers, temperature=samples.sample_temperature, generator=generator,
        output_type="pt",
    ).audios
    names = config.speaker_names or [str(index) for index in range(config.num_speakers)]
    labels = [f"{index}: {names[speakers[index]]}" if speakers else str(index) for index in range(count)]
    silence = torch.zeros(config.sampling_rate // 10)
    log_audio(accelerator, "validation/samples", torch.cat([part for clip in clips for part in (clip, silence)]),
              config.sampling_rate, step)
    figure = spectrogram_figure(dict(zip(labels, clips)), config.sampling_rate, title=f"step {step}")
    log_image(accelerator, "validation/samples", figure, step)
    return figure


def validate_and_log(
    accelerator: Accelerator,
    prior: Prior,
    codes: TrainingCodes,
    validation_loader,
    samples: SampleArguments,
    seed: int,
    step: int,
) -> tuple[float, PIL.Image.Image]:
    """Validation bits per code and samples (a grid of images, or speech and its spectrograms), sent to the trackers
    (main process only)."""
    bits = validation_bits_per_code(prior, validation_loader)
    accelerator.log({"validation/bits_per_code": bits}, step=step)
    log_samples = log_speech_samples if isinstance(codes, SpeechTrainingCodes) else log_image_samples
    return bits, log_samples(codes, accelerator, prior, samples, seed, step)


# ---------------------------------------------------------------------------------------------
# The recipe


class PriorRecipe(Recipe):
    """A `PixelCNNPriorModel` or a `TransformerPriorModel` (--prior_type) over the code grids of a trained VQ-VAE
    (`training_codes`): the negative log-likelihood of each code given those before it (and the class label)."""

    project_name = "hf-vqvae-prior"
    examples = "code grids"

    def build_model(self, accelerator: Accelerator) -> Prior:
        data, optimization = self.arguments.data, self.arguments.optimization
        self.codes = codes = load_training_codes(
            self.arguments.codes, data, accelerator, batch_size=optimization.train_batch_size, seed=optimization.seed
        )
        num_classes, id2label = class_labels_of(codes)
        model = self.arguments.model
        if model.prior_type == "transformer":
            config = build_transformer_prior_config(model, codes.code_grid, num_classes, id2label, cache_dir=data.cache_dir)
            prior = TransformerPriorModel(config)
        else:
            config = build_prior_config(model, codes.code_grid, num_classes, id2label, cache_dir=data.cache_dir)
            prior = PixelCNNPriorModel(config)
        prior.check_compatible_with_vqvae(*codes.code_grid)
        # The generator the prior completes accepts it (e.g. as many classes as the audio VQ-VAE's speakers): a
        # mismatch fails now, not after training.
        codes.pipeline(prior)
        codes.vqvae.to(accelerator.device)  # decodes the samples
        if codes.stage2 is not None:
            codes.stage2.to(accelerator.device)
        return prior

    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        codes, optimization = self.codes, self.arguments.optimization
        train_loader = codes_dataloader(
            codes.train, codes.label_column, batch_size=optimization.train_batch_size, seed=optimization.seed,
            shuffle=True, num_workers=self.arguments.data.dataloader_num_workers,
        )
        self.validation_loader = codes_dataloader(
            codes.validation, codes.label_column, batch_size=optimization.train_batch_size, seed=optimization.seed,
            shuffle=False,
        )
        return train_loader

    def forward(self, model: Prior, batch: dict):
        return model(batch["input_ids"], batch.get("class_labels"), labels=batch["input_ids"])

    def train_logs(self, output) -> dict[str, float]:
        nats = output.loss.item()
        return {"train/loss": nats, "train/bits_per_code": nats / math.log(2)}

    def log_validation(self, accelerator: Accelerator, model: Prior, step: int):
        return validate_and_log(
            accelerator, model, self.codes, self.validation_loader, self.arguments.samples,
            self.arguments.optimization.seed, step,
        )

    def validate(self, accelerator: Accelerator, model: Prior, step: int) -> None:
        if accelerator.is_main_process:
            self.log_validation(accelerator, model, step)

    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """Validate, then write the prior, `metrics.json`, `samples.png`, a model card and the pipeline
        folder (`pipeline/`: VQ-VAE, prior, image processor or feature extractor) into --output_dir; push the prior
        when asked."""
        prior = run.model
        bits, grid = self.log_validation(accelerator, prior, run.position.step)
        metrics = {
            "validation_bits_per_code": four_figures(bits),
            "train_steps": run.position.step,
            "validation_grids": len(self.codes.validation),
        }
        publish_model(
            run, self.arguments.output, self.arguments.hub, training, metrics=metrics, image=grid,
            image_name="samples.png", dataset_name=self.codes.dataset_name,
            description="Transformer prior" if isinstance(prior, TransformerPriorModel) else "PixelCNN prior",
        )
        self.codes.pipeline(prior).save_pretrained(Path(self.arguments.output.output_dir) / "pipeline")
        return metrics


def train_prior(arguments: PriorTrainingArguments) -> dict:
    """Train a `PixelCNNPriorModel` (or a `TransformerPriorModel`, --prior_type transformer) as `arguments` say
    (`parse_args` reads them from flags or a file); returns the final validation metrics (also written to `<output_dir>/metrics.json`)."""
    return train(PriorRecipe(arguments))
