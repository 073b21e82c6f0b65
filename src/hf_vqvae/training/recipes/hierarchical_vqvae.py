"""Training the second stage of the hierarchy with Accelerate (`train_hierarchy`, behind `scripts/train_hierarchy.py`).

Stage 2 (`HierarchicalVQVAEModel`) learns the code grids of a trained stage-1 VQ-VAE: a codes data set written by
`scripts/extract_codes.py` (`--codes_dataset`), or images encoded once at the start (`--vqvae` with the image data
flags), loaded and checked exactly as for the PixelCNN prior (`training.training_codes`). Optimisation, checkpoints,
exact resume, tracking and pushing are the shared loop's (`training.loop`). Validation reports the bits per stage-1 grid
given the stage-2 codes, the stage-2 codes used, and frames decoded through the stage-1 codes and through the
stage-2 codes. The run ends with the model in `--output_dir` and the stage-2 codes of both splits in
`--output_dir/latent_codes`, a codes data set `scripts/train_prior.py --codes_dataset` trains the top prior on.
"""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from accelerate import Accelerator
from datasets import DatasetDict
from diffusers.utils import make_image_grid

from ...argument_checks import check_at_least, check_in_range
from ...data.codes import CodesInfo, save_codes
from ...data.encoding import encode_code_grids
from ...data.images import ImageDataArguments
from ...models.hierarchical_vqvae.configuration_hierarchical_vqvae import CONDITIONING_KINDS, HierarchicalVQVAEConfig
from ...models.hierarchical_vqvae.modeling_hierarchical_vqvae import HierarchicalVQVAEModel
from ...pipelines.pipeline_vqvae import with_row_labels
from ..arguments import HubArguments, OptimizationArguments, OutputArguments, parse_arguments
from ..checkpoints import model_fields
from ..loop import train
from ..publishing import four_figures, publish_model
from ..recipe import Recipe, TrainingRun
from ..tracking import log_image
from ..training_codes import TrainingCodes, codes_dataloader, load_training_codes


logger = logging.getLogger(__name__)

LATENT_CODES_FOLDER = "latent_codes"

# The script's default stage 2: the paper's 3x1 codes of K = 512 with a decoder small enough to train on 21x21
# grids on a few CPU cores (the config's defaults are a larger, 15-layer decoder).
DEFAULT_ARCHITECTURE = dict(
    encoder_hidden_channels=64, conditioning_channels=64, decoder_hidden_channels=64, decoder_num_layers=8,
    decoder_kernel_size=5, decoder_skip_channels=128,
)

INTEGER_ARCHITECTURE_FLAGS = (
    "latent_grid_height", "latent_grid_width", "num_embeddings", "embedding_dim", "conditioning_num_layers", *DEFAULT_ARCHITECTURE
)

ARCHITECTURE_FLAGS = (*INTEGER_ARCHITECTURE_FLAGS, "conditioning", "auxiliary_loss_weight", "auxiliary_loss_warmup_fraction")

ARCHITECTURE_HELP = "HierarchicalVQVAEConfig.{0} (default: the config's given by --stage2_config, else the script's default)."


# ---------------------------------------------------------------------------------------------
# Arguments


@dataclass
class StageOneCodesArguments:
    """Where the stage-1 code grids come from."""

    _argument_group_name = "stage-1 codes"

    codes_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Stage-1 codes (scripts/extract_codes.py): a save_to_disk folder or a Hub data set id. Without it "
            "the images of the data flags are encoded with --vqvae at the start."
        },
    )
    vqvae: str | None = field(
        default=None, metadata={"help": "The stage-1 VQ-VAE (a folder or Hub id); by default the one named by the codes."}
    )
    # Stage 2 models the grids alone: a data set's class labels are not used (read by `load_training_codes`).
    unconditional = True


@dataclass
class StageTwoModelArguments:
    """Which stage-2 model is trained."""

    _argument_group_name = "stage 2"

    stage2_config: str | None = field(
        default=None, metadata={"help": "Start from a HierarchicalVQVAEConfig: a config.json, a folder or a Hub id."}
    )
    latent_grid_height: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("latent_grid_height") + " Paper: 3."})
    latent_grid_width: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("latent_grid_width") + " Paper: 1."})
    num_embeddings: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("num_embeddings") + " Paper: 512."})
    embedding_dim: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("embedding_dim")})
    encoder_hidden_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("encoder_hidden_channels")})
    conditioning: str | None = field(
        default=None,
        metadata={
            "help": ARCHITECTURE_HELP.format("conditioning") + " How the stage-2 latents become the decoder's conditioning "
            "map: 'decoded' (a linear map to a coarse grid, upsampled, 3x3 convolutions) or 'upsampled' (each latent over "
            "its band of rows).",
            "choices": CONDITIONING_KINDS,
        },
    )
    conditioning_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("conditioning_channels")})
    conditioning_num_layers: int | None = field(
        default=None, metadata={"help": ARCHITECTURE_HELP.format("conditioning_num_layers") + " 3x3 convolutions of the map."}
    )
    auxiliary_loss_weight: float | None = field(
        default=None,
        metadata={
            "help": ARCHITECTURE_HELP.format("auxiliary_loss_weight") + " Weight of the loss of the stage-1 codes predicted "
            "from the conditioning map alone, which trains the encoder directly; 0 trains without it."
        },
    )
    auxiliary_loss_warmup_fraction: float | None = field(
        default=None,
        metadata={
            "help": ARCHITECTURE_HELP.format("auxiliary_loss_warmup_fraction") + " The auxiliary loss's weight falls "
            "linearly to 0 over this fraction of the updates (in (0, 1]); unset in the config, the full weight throughout."
        },
    )
    decoder_hidden_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("decoder_hidden_channels")})
    decoder_num_layers: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("decoder_num_layers")})
    decoder_kernel_size: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("decoder_kernel_size")})
    decoder_skip_channels: int | None = field(default=None, metadata={"help": ARCHITECTURE_HELP.format("decoder_skip_channels")})
    num_reconstructions: int = field(
        default=8, metadata={"help": "Validation frames shown decoded through the stage-1 codes and through the stage-2 codes."}
    )

    def __post_init__(self):
        for name in INTEGER_ARCHITECTURE_FLAGS:
            check_at_least(self, name, 1, optional=True)
        check_at_least(self, "auxiliary_loss_weight", 0, optional=True)
        if self.auxiliary_loss_warmup_fraction is not None:
            check_in_range(self, "auxiliary_loss_warmup_fraction", 0, 1, low_open=True)
        check_at_least(self, "num_reconstructions", 1)


@dataclass
class HierarchyTrainingArguments:
    """Everything `train_hierarchy` needs, in groups: what `scripts/train_hierarchy.py` parses from its flags or a file."""

    codes: StageOneCodesArguments = field(default_factory=StageOneCodesArguments)
    # Images are encoded at the stage-1 VQ-VAE's resolution.
    data: ImageDataArguments = field(default_factory=lambda: ImageDataArguments(resolution=None))
    model: StageTwoModelArguments = field(default_factory=StageTwoModelArguments)
    optimization: OptimizationArguments = field(
        default_factory=lambda: OptimizationArguments(num_train_epochs=10, learning_rate=1e-3)
    )
    output: OutputArguments = field(default_factory=lambda: OutputArguments(output_dir="outputs/stage2", validation_steps=500))
    hub: HubArguments = field(default_factory=HubArguments)


def parse_args(argv: list[str] | None = None) -> HierarchyTrainingArguments:
    """The settings of `scripts/train_hierarchy.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        HierarchyTrainingArguments, argv,
        description="Train the second stage of a two-stage VQ-VAE (a VQ-VAE over VQ-VAE codes with a PixelCNN decoder).",
    )


def build_stage2_config(args: StageTwoModelArguments, vqvae_config, cache_dir: str | None = None) -> HierarchicalVQVAEConfig:
    """The stage-2 config: --stage2_config or the script's default architecture, then the architecture flags; the
    input codebook and grid are always the stage-1 VQ-VAE's."""
    if args.stage2_config:
        base = model_fields(HierarchicalVQVAEConfig.from_pretrained(args.stage2_config, cache_dir=cache_dir))
    else:
        base = DEFAULT_ARCHITECTURE
    architecture = {name: getattr(args, name) for name in ARCHITECTURE_FLAGS if getattr(args, name) is not None}
    input_num_embeddings, input_grid_height, input_grid_width = vqvae_config.prior_code_grid(vqvae_config.latent_size, vqvae_config.latent_size)
    stage1 = dict(input_num_embeddings=input_num_embeddings, input_grid_height=input_grid_height, input_grid_width=input_grid_width)
    return HierarchicalVQVAEConfig(**{**base, **architecture, **stage1})


# ---------------------------------------------------------------------------------------------
# Validation


@torch.no_grad()
def validation_measures(stage2: HierarchicalVQVAEModel, loader) -> dict:
    """Mean bits per stage-1 grid given the stage-2 codes, and given another grid's stage-2 codes (a random
    derangement within each batch: what the codes tell the decoder about their own grid is the difference), and the
    stage-2 codes used (distinct, perplexity)."""
    total_bits, shuffled_bits, grids, shuffled_grids = 0.0, 0.0, 0, 0
    counts = torch.zeros(stage2.config.num_embeddings, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    for batch in loader:
        codes = batch["input_ids"].to(stage2.device)
        latents = stage2.encode(codes).indices
        total_bits += stage2.bits_per_grid(codes, latents).double().sum().item()
        grids += len(codes)
        if len(codes) > 1:
            # Each grid takes the codes of the next one in a random cycle: never its own.
            order = torch.randperm(len(codes), generator=generator)
            other = torch.empty_like(order)
            other[order] = order.roll(1)
            shuffled_bits += stage2.bits_per_grid(codes, latents[other.to(latents.device)]).double().sum().item()
            shuffled_grids += len(codes)
        counts += torch.bincount(latents.flatten().cpu(), minlength=len(counts)).double()
    probabilities = counts[counts > 0] / counts.sum()
    return {
        "bits_per_grid": total_bits / grids,
        "bits_per_grid_shuffled_latents": shuffled_bits / max(shuffled_grids, 1),
        "stage2_codes_used": int((counts > 0).sum()),
        "stage2_perplexity": math.exp(-(probabilities * probabilities.log()).sum().item()),
    }


@torch.no_grad()
def reconstruction_grid(stage2: HierarchicalVQVAEModel, codes: TrainingCodes, count: int, seed: int) -> PIL.Image.Image:
    """Two rows, each named at its left: validation grids decoded by the stage-1 VQ-VAE as they are, and after passing
    through the stage-2 codes (encoded, then sampled back by the decoder from --seed)."""
    examples = codes.validation.select(range(min(count, len(codes.validation))))
    stage1_codes = torch.from_numpy(np.stack(examples.with_format("numpy")["codes"])).long().to(stage2.device)
    generator = torch.Generator(device=stage2.device).manual_seed(seed)
    through_stage2 = stage2.sample(stage2.encode(stage1_codes).indices, generator=generator)
    decoded = [
        codes.processor.postprocess(
            codes.vqvae.decode(codes.vqvae.config.code_layout.from_prior_grid(grids.to(codes.vqvae.device))).reconstruction,
            output_type="pil",
        )
        for grids in (stage1_codes, through_stage2)
    ]
    grid = make_image_grid([*decoded[0], *decoded[1]], rows=2, cols=len(decoded[0]))
    (height, width), (latent_height, latent_width) = stage1_codes.shape[1:], stage2.config.latent_grid
    return with_row_labels(grid, [f"{height}x{width} codes", f"through {latent_height}x{latent_width} codes"])


def validate_and_log(
    accelerator: Accelerator, stage2: HierarchicalVQVAEModel, codes: TrainingCodes, validation_loader, count: int, seed: int, step: int
) -> tuple[dict, PIL.Image.Image]:
    measures = validation_measures(stage2, validation_loader)
    accelerator.log({f"validation/{name}": value for name, value in measures.items()}, step=step)
    grid = reconstruction_grid(stage2, codes, count, seed)
    log_image(accelerator, "validation/through_stage1_and_stage2", grid, step)
    return measures, grid


# ---------------------------------------------------------------------------------------------
# The recipe


def stage1_vqvae_name(source: StageOneCodesArguments, cache_dir: str | None) -> str:
    """The stage-1 VQ-VAE's name as the stage-2 codes record it (a local folder by its absolute path)."""
    name = source.vqvae or CodesInfo.load(source.codes_dataset, cache_dir=cache_dir).vqvae
    return str(Path(name).resolve()) if Path(name).is_dir() else name


class HierarchyRecipe(Recipe):
    """The second stage of the hierarchy, a `HierarchicalVQVAEModel` over the stage-1 code grids (`training_codes`):
    bits per stage-1 code given the stage-2 codes, and the commitment term."""

    project_name = "hf-vqvae-stage2"
    examples = "code grids"

    def build_model(self, accelerator: Accelerator) -> HierarchicalVQVAEModel:
        data, optimization = self.arguments.data, self.arguments.optimization
        self.codes = load_training_codes(
            self.arguments.codes, data, accelerator, batch_size=optimization.train_batch_size, seed=optimization.seed
        )
        self.config = build_stage2_config(self.arguments.model, self.codes.vqvae.config, cache_dir=data.cache_dir)
        return HierarchicalVQVAEModel(self.config)

    def build_train_dataloader(self, accelerator: Accelerator) -> torch.utils.data.DataLoader:
        codes, optimization = self.codes, self.arguments.optimization
        codes.vqvae.to(accelerator.device)  # decodes the validation frames
        train_loader = codes_dataloader(
            codes.train, None, batch_size=optimization.train_batch_size, seed=optimization.seed, shuffle=True,
            num_workers=self.arguments.data.dataloader_num_workers,
        )
        self.validation_loader = codes_dataloader(
            codes.validation, None, batch_size=optimization.train_batch_size, seed=optimization.seed, shuffle=False
        )
        return train_loader

    def start_update(self, step: int, max_train_steps: int) -> None:
        self.auxiliary_loss_weight = self.config.auxiliary_loss_weight_at(step, max_train_steps)

    def forward(self, model: HierarchicalVQVAEModel, batch: dict):
        return model(batch["input_ids"], auxiliary_loss_weight=self.auxiliary_loss_weight)

    def train_logs(self, output) -> dict[str, float]:
        logs = {
            "train/loss": output.loss.item(),
            "train/bits_per_code": output.nll_loss.item() / math.log(2),
            "train/commitment_loss": output.commitment_loss.item(),
            "train/stage2_perplexity": output.perplexity.item(),
        }
        if output.auxiliary_loss is not None:
            logs["train/auxiliary_bits_per_code"] = output.auxiliary_loss.item() / math.log(2)
            logs["train/auxiliary_loss_weight"] = self.auxiliary_loss_weight
        return logs

    def log_validation(self, accelerator: Accelerator, model: HierarchicalVQVAEModel, step: int):
        return validate_and_log(
            accelerator, model, self.codes, self.validation_loader, self.arguments.model.num_reconstructions,
            self.arguments.optimization.seed, step,
        )

    def validate(self, accelerator: Accelerator, model: HierarchicalVQVAEModel, step: int) -> None:
        if accelerator.is_main_process:
            model.eval()
            self.log_validation(accelerator, model, step)
            model.train()

    def publish(self, accelerator: Accelerator, run: TrainingRun, training: dict) -> dict:
        """Validate, then write the model, `metrics.json`, `reconstructions.png` and a model card into --output_dir;
        push them when asked."""
        measures, grid = self.log_validation(accelerator, run.model.eval(), run.position.step)
        metrics = {
            **{f"validation_{name}": four_figures(value) for name, value in measures.items()},
            "train_steps": run.position.step,
            "validation_grids": len(self.codes.validation),
        }
        publish_model(
            run, self.arguments.output, self.arguments.hub, training, metrics=metrics, image=grid,
            image_name="reconstructions.png", dataset_name=self.codes.dataset_name, description="Stage-2 VQ-VAE",
        )
        return metrics

    def after_training(self, accelerator: Accelerator, model: HierarchicalVQVAEModel) -> None:
        """Every process encodes its share of the stage-2 codes of both splits; the main process writes them to
        --output_dir/latent_codes."""
        stage2, output = model.eval(), self.arguments.output
        latent_codes = DatasetDict({
            name: encode_code_grids(
                stage2, split, accelerator, batch_size=self.arguments.optimization.train_batch_size,
                description=f"stage-2 codes of {name}",
            )
            for name, split in (("train", self.codes.train), ("validation", self.codes.validation))
        })
        if accelerator.is_main_process:
            info = CodesInfo.of_stage2(
                self.config, str(Path(output.output_dir).resolve()),
                stage1_vqvae_name(self.arguments.codes, self.arguments.data.cache_dir), self.codes.dataset_name,
            )
            save_codes(latent_codes, info, Path(output.output_dir) / LATENT_CODES_FOLDER)
            logger.info("wrote the stage-2 codes to %s", Path(output.output_dir) / LATENT_CODES_FOLDER)


def train_hierarchy(arguments: HierarchyTrainingArguments) -> dict:
    """Train a `HierarchicalVQVAEModel` as `arguments` say (`parse_args` reads them from flags or a file); returns
    the final validation metrics (also written to `<output_dir>/metrics.json`)."""
    return train(HierarchyRecipe(arguments))
