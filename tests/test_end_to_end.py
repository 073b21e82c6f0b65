"""The whole product as a user runs it: train a VQ-VAE, extract its codes, train a prior, assemble
and publish the pipeline, load it back by Hub id, generate, sample from the command line."""

import sys

import numpy as np
import PIL.Image
import torch

from hf_vqvae import PixelCNNPriorModel, VQVAEModel, VQVAEPipeline

from conftest import put_in_hub_cache
from launching import accelerate_launch, run, script


TINY_VQVAE_FLAGS = [
    "--resolution", "16", "--train_batch_size", "16", "--max_train_steps", "30", "--validation_steps", "30",
    "--checkpointing_steps", "30", "--report_to", "none", "--max_train_samples", "256", "--max_validation_samples", "32",
    "--config_overrides", "hidden_channels=16", "residual_channels=8", "num_residual_blocks=1", "num_embeddings=32",
    "embedding_dim=8", "sample_size=16",
]
TINY_PRIOR_FLAGS = [
    "--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3", "--skip_channels", "8",
    "--train_batch_size", "16", "--max_train_steps", "20", "--validation_steps", "20", "--checkpointing_steps", "20",
    "--report_to", "none", "--sample_images_per_row", "2",
]


def test_train_extract_train_prior_publish_load_and_generate(tmp_path, offline_hub, recorded_uploads):
    vqvae_dir, codes_dir, prior_dir = tmp_path / "vqvae", tmp_path / "codes", tmp_path / "prior"
    run([*accelerate_launch(), script("train.py"), "--output_dir", str(vqvae_dir), *TINY_VQVAE_FLAGS], timeout=300)
    run([*accelerate_launch(), script("extract_codes.py"), "--vqvae", str(vqvae_dir), "--output_dir", str(codes_dir),
         "--resolution", "16", "--max_train_samples", "256", "--max_validation_samples", "32"], timeout=300)
    run([*accelerate_launch(), script("train_prior.py"), "--codes_dataset", str(codes_dir), "--output_dir", str(prior_dir),
         *TINY_PRIOR_FLAGS], timeout=300)

    # The pipeline folder the prior's training wrote holds the trained VQ-VAE and prior.
    pipeline = VQVAEPipeline.from_pretrained(prior_dir / "pipeline")
    vqvae = VQVAEModel.from_pretrained(vqvae_dir).eval()
    prior = PixelCNNPriorModel.from_pretrained(prior_dir).eval()
    for name, tensor in vqvae.state_dict().items():
        assert torch.equal(pipeline.vqvae.state_dict()[name], tensor), name
    for name, tensor in prior.state_dict().items():
        assert torch.equal(pipeline.prior.state_dict()[name], tensor), name
    num_classes = prior.config.num_classes
    assert num_classes > 1  # the default crops carry their photo as the class label
    class_labels = list(range(min(num_classes, 3)))

    def generate(pipe: VQVAEPipeline):
        return pipe(batch_size=len(class_labels), class_labels=class_labels, output_type="np",
                    generator=torch.Generator().manual_seed(7))

    before = generate(pipeline)

    # Published, then loaded by Hub id from the cache in offline mode: the same images.
    saved = tmp_path / "saved-pipeline"
    pipeline.save_pretrained(saved)
    put_in_hub_cache(offline_hub, "org/vqvae-pipeline", saved)
    after = generate(VQVAEPipeline.from_pretrained("org/vqvae-pipeline"))
    assert torch.equal(before.codes, after.codes)
    np.testing.assert_array_equal(before.images, after.images)
    assert before.images.shape == (len(class_labels), 16, 16, 3)

    pipeline.push_to_hub("org/vqvae-pipeline", metrics={"bits_per_code": 1.0})
    uploaded = set(recorded_uploads[-1]["files"])
    assert {"README.md", "model_index.json", "vqvae/model.safetensors", "prior/model.safetensors",
            "image_processor/preprocessor_config.json"} <= uploaded

    grid_path = tmp_path / "grid.png"
    run([sys.executable, script("sample.py"), "--pipeline", str(saved), "--output", str(grid_path), "--images_per_row", "3"])
    grid = PIL.Image.open(grid_path)
    # One row per class, its name written in a column at the left.
    assert grid.height == num_classes * 16 and grid.width > 3 * 16
