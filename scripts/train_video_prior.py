"""Train an action-conditioned video prior over the trajectory codes of a trained VQ-VAE with Accelerate.

    accelerate launch scripts/train_video_prior.py --codes_dataset outputs/world-trajectory-codes \
        --output_dir outputs/world-video-prior --max_train_steps 2000
    accelerate launch scripts/train_video_prior.py --vqvae outputs/world-vqvae --dataset_name org/world-trajectories \
        --push_to_hub --hub_model_id org/world-video-prior

`python scripts/train_video_prior.py --help` lists every flag with its default (a JSON / YAML file of them works too);
docs/video.md explains them.
"""

from hf_vqvae.training.loop import run_command
from hf_vqvae.training.recipes.video_prior import parse_args, train_video_prior


if __name__ == "__main__":
    run_command(train_video_prior, parse_args)
