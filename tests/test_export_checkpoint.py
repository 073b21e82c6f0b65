"""scripts/export_checkpoint.py: a checkpoint of a stopped run becomes a model folder the next steps load (issue 25
item 6)."""

import sys

import pytest
import torch
from safetensors.torch import load_file

from hf_vqvae import TransformerPriorModel, VQVAEPipeline
from hf_vqvae.commands.export_checkpoint import export_checkpoint, parse_args
from hf_vqvae.models.auto import load_vqvae
from hf_vqvae.training.recipes.prior import parse_args as parse_prior_args
from hf_vqvae.training.recipes.prior import train_prior
from hf_vqvae.training.recipes.vqvae import parse_args as parse_vqvae_args
from hf_vqvae.training.recipes.vqvae import train_vqvae

from launching import run, script
from test_training_faults import tiny_flags
from test_training_prior import codes_folder, prior_run, transformer_prior_run  # noqa: F401 (a fixture)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def assert_same_weights(model: torch.nn.Module, checkpoint) -> None:
    saved = load_file(checkpoint / "model.safetensors")
    state = model.state_dict()
    assert sorted(state) == sorted(saved)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name


def test_a_vqvae_checkpoint_exports_to_a_folder_load_vqvae_takes(tmp_path):
    output_dir = tmp_path / "run"
    train_vqvae(parse_vqvae_args(tiny_flags(output_dir, "--max_train_steps", "2", "--checkpointing_steps", "1")))
    exported = tmp_path / "at-update-1"
    result = run([sys.executable, script("export_checkpoint.py"), "--checkpoint", str(output_dir / "checkpoint-1"),
                  "--output_dir", str(exported)])
    assert f"wrote the VQVAEModel at update 1 to {exported}" in result.stdout
    vqvae, processor = load_vqvae(str(exported))
    assert_same_weights(vqvae, output_dir / "checkpoint-1")
    # Update 2 changed the weights: the export is the checkpoint's model, not the run's final one.
    final, _ = load_vqvae(str(output_dir))
    assert not torch.equal(final.encoder.downsample[0].weight, vqvae.encoder.downsample[0].weight)
    assert (exported / "preprocessor_config.json").is_file() and processor.crop_size == {"height": 16, "width": 16}


def test_a_prior_checkpoint_exports_with_a_pipeline_over_its_vqvae(tmp_path, codes_folder):  # noqa: F811
    output_dir = tmp_path / "run"
    train_prior(parse_prior_args(prior_run(output_dir, "--codes_dataset", str(codes_folder),
                                           extra=("--max_train_steps", "2", "--checkpointing_steps", "1"))))
    export_checkpoint(parse_args(["--checkpoint", str(output_dir / "checkpoint-1"), "--output_dir", str(tmp_path / "out")]))
    pipeline = VQVAEPipeline.from_pretrained(tmp_path / "out" / "pipeline")
    assert_same_weights(pipeline.prior, output_dir / "checkpoint-1")
    images = pipeline(batch_size=1, class_labels="a", generator=torch.Generator().manual_seed(0)).images
    assert images[0].size == (16, 16)


def test_a_transformer_prior_checkpoint_exports_with_a_pipeline_that_samples_it(tmp_path, codes_folder):  # noqa: F811
    output_dir = tmp_path / "run"
    train_prior(parse_prior_args(transformer_prior_run(output_dir, "--codes_dataset", str(codes_folder),
                                                       extra=("--max_train_steps", "2", "--checkpointing_steps", "1"))))
    exported = tmp_path / "out"
    result = run([sys.executable, script("export_checkpoint.py"), "--checkpoint", str(output_dir / "checkpoint-1"),
                  "--output_dir", str(exported)])
    written = f"wrote the TransformerPriorModel at update 1, with its VQVAEPipeline in pipeline/ to {exported}"
    assert written in result.stdout
    assert_same_weights(TransformerPriorModel.from_pretrained(exported), output_dir / "checkpoint-1")
    pipeline = VQVAEPipeline.from_pretrained(exported / "pipeline")
    assert isinstance(pipeline.prior, TransformerPriorModel)
    assert_same_weights(pipeline.prior, output_dir / "checkpoint-1")
    images = pipeline(batch_size=2, class_labels=["a", "b"], generator=torch.Generator().manual_seed(0)).images
    assert [image.size for image in images] == [(16, 16), (16, 16)]


def test_a_folder_that_is_not_a_checkpoint_is_named(tmp_path):
    (tmp_path / "run" / "checkpoint-3").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"--checkpoint '.*checkpoint-3' is not a complete checkpoint: it lacks"):
        export_checkpoint(parse_args(["--checkpoint", str(tmp_path / "run" / "checkpoint-3")]))
    with pytest.raises(ValueError, match=r"--checkpoint '.*missing' is not a folder"):
        export_checkpoint(parse_args(["--checkpoint", str(tmp_path / "missing")]))
