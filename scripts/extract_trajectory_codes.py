"""Encode the frames of a trajectories data set (frames + actions) into trajectory codes, the training data of the
video prior.

    accelerate launch scripts/extract_trajectory_codes.py --vqvae outputs/world-vqvae \
        --dataset_name outputs/world-trajectories --output_dir outputs/world-trajectory-codes

`python scripts/extract_trajectory_codes.py --help` lists every flag with its default; docs/video.md explains them.
"""

from hf_vqvae.commands.extract_trajectory_codes import extract_trajectory_codes, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    run_command(lambda arguments: extract_trajectory_codes(*arguments), parse_args)
