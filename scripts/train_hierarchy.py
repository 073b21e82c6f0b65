"""Train the second stage of a two-stage VQ-VAE (section 4.2 of the paper) over the codes of a trained VQ-VAE.

    accelerate launch scripts/train_hierarchy.py --codes_dataset outputs/frame-codes    # stage-1 codes (extract_codes.py)
    accelerate launch scripts/train_hierarchy.py --vqvae outputs/vqvae --dataset_name outputs/world-frames
    accelerate launch scripts/train_hierarchy.py run.yaml      # the flags from a JSON or YAML file

The run ends with the stage-2 model in --output_dir and its codes in --output_dir/latent_codes, which
`scripts/train_prior.py --codes_dataset` turns into the top prior and a HierarchicalVQVAEPipeline.
`python scripts/train_hierarchy.py --help` lists every flag with its default; docs/hierarchy.md explains them.
"""

from hf_vqvae.training.loop import run_command
from hf_vqvae.training.recipes.hierarchical_vqvae import parse_args, train_hierarchy


if __name__ == "__main__":
    run_command(train_hierarchy, parse_args)
