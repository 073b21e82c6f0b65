"""Encoding an image data set into a codes data set with a trained VQ-VAE (`extract_codes`, behind
scripts/extract_codes.py): the training data of a prior, or of the second stage of a hierarchy."""

from dataclasses import dataclass, field

from datasets import DatasetDict

from ..data.encoding import encode_image_dataset
from ..data.images import ImageDataArguments
from ..models.auto import load_vqvae
from ..training.arguments import parse_arguments
from ..training.accelerator import create_accelerator, end_training
from .extraction import CodesArguments, publish_codes


@dataclass
class ExtractCodesArguments:
    """What `extract_codes` needs: the image data (encoded at the VQ-VAE's resolution) and the codes' settings."""

    data: ImageDataArguments = field(default_factory=lambda: ImageDataArguments(resolution=None))
    codes: CodesArguments = field(default_factory=CodesArguments)


def parse_args(argv: list[str] | None = None) -> ExtractCodesArguments:
    """The settings of `scripts/extract_codes.py`: its flags, or a JSON / YAML file of them."""
    return parse_arguments(
        ExtractCodesArguments, argv, description="Encode an image data set into a data set of VQ-VAE code grids."
    )


def extract_codes(arguments: ExtractCodesArguments) -> DatasetDict:
    """Encode the image data set `arguments.data` names with the VQ-VAE `--vqvae`, save it to
    `--output_dir` (main process) and push it when asked; returns the codes on every process."""
    options = arguments.codes
    if options.vqvae is None:
        raise ValueError("pass --vqvae, the trained VQ-VAE that encodes the images (a folder or a Hub id)")
    accelerator = create_accelerator()
    vqvae, processor = load_vqvae(options.vqvae, cache_dir=arguments.data.cache_dir)
    codes, image_dataset = encode_image_dataset(
        arguments.data, vqvae, processor, accelerator, batch_size=options.batch_size, seed=options.seed
    )
    publish_codes(codes, vqvae.config, options.vqvae, image_dataset, options, accelerator)
    end_training(accelerator)
    return codes
