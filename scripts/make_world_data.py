"""Render first-person 3-D frames or trajectories with ViZDoom (needs `pip install "hf-vqvae[worlds]"`).

    python scripts/make_world_data.py --kind frames --num_frames 20000 --output_dir outputs/world-frames
    python scripts/make_world_data.py --kind trajectories --num_episodes 500 --steps_per_episode 16 \
        --output_dir outputs/world-trajectories --push_to_hub --hub_dataset_id org/world-trajectories

`python scripts/make_world_data.py --help` lists every flag with its default.
"""

import logging

from hf_vqvae.commands.make_world_data import make_world_data, parse_args
from hf_vqvae.training.loop import run_command


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    run_command(make_world_data, parse_args)
