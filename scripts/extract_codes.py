"""Encode an image data set into a data set of VQ-VAE code grids, the training data of the prior.

    accelerate launch scripts/extract_codes.py --vqvae outputs/vqvae                 # the default crops
    accelerate launch scripts/extract_codes.py --vqvae org/vqvae --dataset_name cifar10 --image_column img \
        --output_dir outputs/cifar10-codes --push_to_hub --hub_dataset_id org/cifar10-codes

`python scripts/extract_codes.py --help` lists every flag with its default; docs/prior.md explains them.
"""

from hf_vqvae.commands.extract_codes import extract_codes, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(extract_codes, parse_args)
