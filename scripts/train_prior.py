"""Train the PixelCNN prior over the codes of a trained VQ-VAE with Accelerate.

    accelerate launch scripts/train_prior.py --vqvae outputs/vqvae            # encodes the default crops first
    accelerate launch scripts/train_prior.py --codes_dataset outputs/codes    # codes from scripts/extract_codes.py
    accelerate launch scripts/train_prior.py run.yaml         # the flags from a JSON or YAML file

The run ends with the prior in --output_dir and a VQVAEPipeline folder in --output_dir/pipeline
(`python scripts/sample.py --pipeline outputs/prior/pipeline`). `python scripts/train_prior.py --help`
lists every flag with its default; docs/prior.md explains them.
"""

from hf_vqvae.training.loop import run_command
from hf_vqvae.training.recipes.prior import parse_args, train_prior


if __name__ == "__main__":
    run_command(train_prior, parse_args)
