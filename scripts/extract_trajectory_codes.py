"""Encode the frames of a trajectories data set (frames + actions) into trajectory codes, the training data of the
video prior.

    accelerate launch scripts/extract_trajectory_codes.py --vqvae outputs/world-vqvae \
        --dataset_name outputs/world-trajectories --output_dir outputs/world-trajectory-codes

`python scripts/extract_trajectory_codes.py --help` lists every flag with its default; docs/video.md explains them.
"""

from transformers import HfArgumentParser

from hf_vqvae.data.trajectories import TrajectoryCodesArguments, TrajectoryDataArguments, extract_trajectory_codes


if __name__ == "__main__":
    extract_trajectory_codes(*HfArgumentParser([TrajectoryDataArguments, TrajectoryCodesArguments]).parse_args_into_dataclasses())
