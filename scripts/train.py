"""Train a VQ-VAE with Accelerate; with no arguments, on crops of scikit-image's photographs.

    accelerate launch scripts/train.py                      # the embedded default data set
    accelerate launch scripts/train.py --dataset_name cifar10 --image_column img --preset cifar10
    accelerate launch scripts/train.py run.yaml                # the flags from a JSON or YAML file

`python scripts/train.py --help` lists every flag with its default; docs/training.md explains them.
"""

from hf_vqvae.training.loop import run_command
from hf_vqvae.training.recipes.vqvae import parse_args, train_vqvae


if __name__ == "__main__":
    run_command(train_vqvae, parse_args)
