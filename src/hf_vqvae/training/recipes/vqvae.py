"""The VQ-VAE's training recipe (`train_vqvae`, behind scripts/train.py): its flags, config, data,
validation (reconstruction MSE, PSNR, code usage, a grid of reconstructions) and final files."""

import math
from dataclasses import dataclass, field

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from accelerate import Accelerator

from ...data.images import (
    ImageDataArguments,
    ImageTransform,
    load_image_datasets,
    training_dataloader,
    validation_pixel_values,
)
from ...models.vqvae.configuration_vqvae import PRESETS, VQVAEConfig
from ...models.vqvae.image_processing_vqvae import VQVAEImageProcessor
from ...models.vqvae.modeling_vqvae import VQVAEModel
from ..arguments import HubArguments, OptimizationArguments, OutputArguments, parse_arguments
from ..autoencoders import base_config_fields, parse_config_overrides, vqvae_train_logs
from ..loop import train
from ..publishing import four_figures, publish_model
from ..recipe import Recipe, TrainingRun
from ..tracking import log_image


@dataclass
class VQVAEModelArguments:
    """Which VQ-VAE is trained: a preset of the paper's, a saved config, field overrides."""

    _argument_group_name = "model"

    preset: str | None = field(
        default=None, metadata={"help": "Start from one of the paper's settings.", "choices": sorted(PRESETS)}
    )
    model_config_name_or_path: str | None = field(
        default=None, metadata={"help": "Start from a config: a config.json, a folder holding one, or a Hub model id."}
    )
    config_overrides: list[str] = field(
        default_factory=list,
        metadata={
            "help": "Override config fields, e.g. hidden_channels=64 num_embeddings=256. sample_size follows --resolution.",
            "metavar": "FIELD=VALUE",
        },
    )

    def __post_init__(self):
        if self.preset and self.model_config_name_or_path:
            raise ValueError("pass either --preset or --model_config_name_or_path, not both")
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        parse_config_overrides(self.config_overrides)


@dataclass
class VQVAETrainingArguments:
    """Everything `train_vqvae` needs, in groups: what `scripts/train.py` parses from its flags or a file.

    Example (a notebook, no command line):

        train_vqvae(VQVAETrainingArguments(
            data=ImageDataArguments(train_data_dir="my-images", resolution=64),
            optimization=OptimizationArguments(max_train_steps=1000),
        ))
    """

    data: ImageDataArguments = field(default_factory=ImageDataArguments)
    model: VQVAEModelArguments = field(default_factory=VQVAEModelArguments)
    # 12 epochs of the default data set (~1300 updates) reconstruct held-out crops well.
    optimization: OptimizationArguments = field(default_factory=lambda: OptimizationArguments(num_train_epochs=12))
    output: OutputArguments = field(default_factory=lambda: OutputArguments(output_dir="outputs/vqvae"))
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> VQVAETrainingArguments:
    """The settings of `scripts/train.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        VQVAETrainingArguments, argv, description="Train a VQ-VAE (van den Oord et al. 2017) with Accelerate."
    )


def build_vqvae_config(model: VQVAEModelArguments, resolution: int, cache_dir: str | None = None) -> VQVAEConfig:
    """The model config from --preset or --model_config_name_or_path (else the defaults), the
    overrides, and sample_size = `resolution`."""
    fields = base_config_fields(
        VQVAEConfig, model.preset, model.model_config_name_or_path, model.config_overrides, cache_dir=cache_dir
    )
    factor = 2 ** fields["num_downsamples"]
    if resolution % factor:
        allowed = ", ".join(str(factor * k) for k in range(max(1, resolution // factor), resolution // factor + 3))
        raise ValueError(
            f"--resolution {resolution} is not divisible by the model's downsampling factor {factor} "
            f"(2**num_downsamples); use a multiple of {factor}, e.g. {allowed}"
        )
    fields["sample_size"] = resolution
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
    """Each input beside its reconstruction, `pairs_per_row` pairs a row, enlarged to >= 64 px, under a header that
    names the two columns of every pair."""
    count = min(len(inputs), max_pairs)
    originals = processor.postprocess(inputs[:count])
    decoded = processor.postprocess(reconstructions[:count])
    side = inputs.shape[-1]
    scale = max(1, 64 // side)
    cell, gap, header = side * scale, 2, 14
    columns = min(count, pairs_per_row)
    rows = math.ceil(count / pairs_per_row)
    grid = PIL.Image.new("RGB", (columns * (2 * cell + 3 * gap), header + rows * (cell + gap) + gap), "white")
    draw = PIL.ImageDraw.Draw(grid)
    font = fitting_font(draw, COLUMN_LABELS, cell)
    for column in range(columns):
        left = column * (2 * cell + 3 * gap) + gap
        for offset, label in zip((0, cell + gap), COLUMN_LABELS):
            draw.text((left + offset + cell / 2, header / 2 + 1), label, fill="black", font=font, anchor="mm")
    for index, (original, reconstruction) in enumerate(zip(originals, decoded)):
        left = (index % pairs_per_row) * (2 * cell + 3 * gap) + gap
        top = header + (index // pairs_per_row) * (cell + gap) + gap
        for offset, image in ((0, original), (cell + gap, reconstruction)):
            grid.paste(image.convert("RGB").resize((cell, cell), PIL.Image.NEAREST), (left + offset, top))
    return grid


COLUMN_LABELS = ("input", "reconstruction")


def fitting_font(draw: PIL.ImageDraw.ImageDraw, labels: tuple[str, ...], width: float) -> PIL.ImageFont.ImageFont:
    """Pillow's default font at the largest size up to 11 px at which every label fits `width` pixels."""
    for size in range(11, 5, -1):
        font = PIL.ImageFont.load_default(size=size)
        if max(draw.textlength(label, font=font) for label in labels) <= width:
            return font
    return font


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


class VQVAERecipe(Recipe):
    """A `VQVAEModel` on images (`data.images`): reconstruction loss, codebook and commitment terms."""

    project_name = "hf-vqvae"
    examples = "images"

    def build_model(self, accelerator: Accelerator) -> VQVAEModel:
        data = self.arguments.data
        self.config = build_vqvae_config(self.arguments.model, data.resolution, cache_dir=data.cache_dir)
        return VQVAEModel(self.config)

    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        data, optimization = self.arguments.data, self.arguments.optimization
        self.processor = VQVAEImageProcessor(resolution=data.resolution, num_channels=self.config.in_channels)
        transform = ImageTransform(self.processor, center_crop=data.center_crop, random_flip=data.random_flip)
        # The main process builds the datasets' caches first; the others then read them.
        with accelerator.main_process_first():
            self.datasets = load_image_datasets(data, seed=optimization.seed)
            train_dataloader = training_dataloader(
                self.datasets,
                transform,
                batch_size=optimization.train_batch_size,
                seed=optimization.seed,
                num_workers=data.dataloader_num_workers,
                max_unreadable_fraction=data.max_unreadable_fraction,
                process_index=accelerator.process_index,
                num_processes=accelerator.num_processes,
            )
            self.validation_images = validation_pixel_values(
                self.datasets.validation, self.datasets.image_column, transform, data.max_validation_samples,
                data.max_unreadable_fraction,
            )
        return train_dataloader

    def forward(self, model: VQVAEModel, batch: dict):
        return model(batch["pixel_values"])

    def train_logs(self, output) -> dict[str, float]:
        return vqvae_train_logs(output)

    def validate(self, accelerator: Accelerator, model: VQVAEModel, step: int) -> None:
        if accelerator.is_main_process:
            validate_and_log(
                accelerator, model, self.processor, self.validation_images, step, self.arguments.optimization.train_batch_size
            )
        # Every process starts a new usage window, so the buffers stay identical.
        model.quantizer.reset_usage()

    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """Validate, then write the model (`save_pretrained`), the image processor, `metrics.json`,
        `reconstructions.png` and a model card into --output_dir; push them when asked."""
        model, step = run.model, run.position.step
        results, grid = validate_and_log(
            accelerator, model, self.processor, self.validation_images, step, self.arguments.optimization.train_batch_size
        )
        metrics = {f"validation_{name}": four_figures(value) for name, value in results.items()}
        metrics |= {"train_steps": step, "validation_images": len(self.validation_images)}
        publish_model(
            run, self.arguments.output, self.arguments.hub, training, metrics=metrics, image=grid,
            image_name="reconstructions.png", dataset_name=self.datasets.name, description="VQ-VAE",
            save_extra=self.processor.save_pretrained,
        )
        return metrics


def train_vqvae(arguments: VQVAETrainingArguments) -> dict:
    """Train a `VQVAEModel` as `arguments` say (`parse_args` reads them from flags or a file); returns the
    final validation metrics (also written to `<output_dir>/metrics.json`)."""
    return train(VQVAERecipe(arguments))
