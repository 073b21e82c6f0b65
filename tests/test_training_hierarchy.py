"""Training the hierarchy as a user does: frames -> stage 1 -> codes -> stage 2 -> top prior -> pipeline."""

import json
import re
import sys

import numpy as np
import pytest
import torch
from datasets import load_from_disk
from safetensors.torch import load_file

from hf_vqvae import HierarchicalVQVAEModel, HierarchicalVQVAEPipeline, VQVAEConfig, VQVAEModel
from hf_vqvae.commands.extract_codes import extract_codes
from hf_vqvae.commands.extract_codes import parse_args as parse_extract_args
from hf_vqvae.commands.make_world_data import WorldDataArguments, make_world_data
from hf_vqvae.data.codes import CodesInfo
from hf_vqvae.training.recipes.hierarchical_vqvae import HierarchyRecipe, build_stage2_config, parse_args, train_hierarchy
from hf_vqvae.training.recipes.prior import parse_args as parse_prior_args
from hf_vqvae.training.recipes.prior import train_prior
from hf_vqvae.training.recipes.vqvae import parse_args as parse_vqvae_args
from hf_vqvae.training.recipes.vqvae import train_vqvae

from conftest import TINY_VQVAE, put_in_hub_cache
from launching import accelerate_launch, kill_when_exists, run, script


pytest.importorskip("vizdoom")
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

# A decoder of 2 gated layers over the tiny VQ-VAE's 4x4 grids, compressed to 3x1 codes of K=8.
TINY_STAGE2 = [
    "--num_embeddings", "8", "--embedding_dim", "4", "--encoder_hidden_channels", "8", "--conditioning_channels", "4",
    "--decoder_hidden_channels", "8", "--decoder_num_layers", "2", "--decoder_kernel_size", "3", "--decoder_skip_channels", "8",
    "--num_reconstructions", "3",
]
TINY_TOP_PRIOR = [
    "--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3", "--skip_channels", "8", "--sample_images_per_row", "2",
    "--sample_rows", "1",
]


@pytest.fixture
def frames_folder(tmp_path):
    """48 ViZDoom frames of 16 px from 6 episodes (5 train, 1 validation)."""
    folder = tmp_path / "frames"
    make_world_data(WorldDataArguments(
        output_dir=str(folder), num_frames=48, steps_per_episode=16, frame_stride=2, resolution=16, validation_fraction=0.2,
    ))
    return folder


@pytest.fixture
def stage1_codes(tmp_path, frames_folder, tiny_vqvae_folder):
    folder = tmp_path / "stage1-codes"
    extract_codes(parse_extract_args(["--vqvae", str(tiny_vqvae_folder), "--dataset_name", str(frames_folder), "--output_dir", str(folder)]))
    return folder


def stage2_run(output_dir, *source: str, extra: tuple[str, ...] = ()) -> list[str]:
    return [*source, "--output_dir", str(output_dir), "--train_batch_size", "4", "--report_to", "none", *TINY_STAGE2, *extra]


def test_frames_to_stage1_to_stage2_to_prior_to_pipeline_by_hub_id(tmp_path, frames_folder, offline_hub, recorded_uploads):
    stage1_dir, codes_dir, stage2_dir, prior_dir = (tmp_path / name for name in ("stage1", "codes", "stage2", "prior"))
    vqvae_flags = [f"{key}={value}" for key, value in TINY_VQVAE.items()]
    train_vqvae(parse_vqvae_args([
        "--dataset_name", str(frames_folder), "--resolution", "16", "--output_dir", str(stage1_dir), "--train_batch_size", "8",
        "--max_train_steps", "4", "--report_to", "none", "--config_overrides", *vqvae_flags,
    ]))
    extract_codes(parse_extract_args(["--vqvae", str(stage1_dir), "--dataset_name", str(frames_folder), "--output_dir", str(codes_dir)]))
    metrics = train_hierarchy(parse_args(stage2_run(stage2_dir, "--codes_dataset", str(codes_dir), extra=("--max_train_steps", "4"))))
    assert metrics["train_steps"] == 4 and 1 <= metrics["validation_stage2_codes_used"] <= 8
    assert 0 < metrics["validation_bits_per_grid"] < 16 * 8  # 4x4 codes of K=16: 64 bits is a uniform guess

    # The stage-2 codes the run wrote are its model's encoding of the stage-1 codes.
    stage2 = HierarchicalVQVAEModel.from_pretrained(stage2_dir).eval()
    latent_codes = load_from_disk(str(stage2_dir / "latent_codes"))
    stage1_codes = load_from_disk(str(codes_dir))
    expected = stage2.encode(torch.tensor(stage1_codes["validation"]["codes"])).indices
    assert torch.equal(torch.tensor(latent_codes["validation"]["codes"]).long(), expected)
    info = CodesInfo.load(str(stage2_dir / "latent_codes"))
    assert (info.vqvae, info.stage1_vqvae, info.grid_height, info.grid_width) == (str(stage2_dir), str(stage1_dir), 3, 1)

    train_prior(parse_prior_args([
        "--codes_dataset", str(stage2_dir / "latent_codes"), "--output_dir", str(prior_dir), "--train_batch_size", "4",
        "--max_train_steps", "3", "--report_to", "none", *TINY_TOP_PRIOR,
    ]))
    pipeline = HierarchicalVQVAEPipeline.from_pretrained(prior_dir / "pipeline")
    for model, folder in ((pipeline.vqvae, stage1_dir), (pipeline.stage2, stage2_dir), (pipeline.prior, prior_dir)):
        saved = load_file(folder / "model.safetensors")
        for name, tensor in model.state_dict().items():
            assert torch.equal(saved[name], tensor), (folder.name, name)

    def generate(pipe):
        return pipe(batch_size=3, output_type="np", generator=torch.Generator().manual_seed(5))

    before = generate(pipeline)
    put_in_hub_cache(offline_hub, "org/world-hierarchy", prior_dir / "pipeline")
    after = generate(HierarchicalVQVAEPipeline.from_pretrained("org/world-hierarchy"))
    assert torch.equal(before.latent_codes, after.latent_codes) and torch.equal(before.codes, after.codes)
    np.testing.assert_array_equal(before.images, after.images)
    assert before.images.shape == (3, 16, 16, 3)

    pipeline.push_to_hub("org/world-hierarchy", dataset_name="vizdoom frames")
    assert {"model_index.json", "stage2/model.safetensors", "README.md"} <= set(recorded_uploads[-1]["files"])


def test_killed_run_resumes_to_the_same_weights(tmp_path, stage1_codes):
    """SIGKILL a stage-2 run after its first checkpoint and resume it with `latest`: the final weights (EMA codebook
    included) equal an uninterrupted run's bit for bit, the auxiliary loss's warm-up included."""
    flags = (
        "--max_train_steps", "12", "--checkpointing_steps", "3", "--gradient_accumulation_steps", "2", "--validation_steps", "5",
        "--auxiliary_loss_warmup_fraction", "0.5",  # the resumed run goes on with the auxiliary loss's schedule
    )
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run([sys.executable, script("train_hierarchy.py"), *stage2_run(reference, "--codes_dataset", str(stage1_codes), extra=flags)])
    command = [sys.executable, script("train_hierarchy.py"), *stage2_run(interrupted, "--codes_dataset", str(stage1_codes), extra=flags)]
    kill_when_exists(command, interrupted / "checkpoint-3")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    result = run([*command, "--resume_from_checkpoint", "latest"])
    assert re.search(r"resumed from .*checkpoint-(\d+) at step", result.stderr)
    final, expected = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys() and "quantizer.cluster_size" in expected
    for name in expected:
        assert torch.equal(final[name], expected[name]), name
    for name in ("metrics.json", "latent_codes/codes_info.json"):
        reference_json = json.loads((reference / name).read_text())
        interrupted_json = json.loads((interrupted / name).read_text())
        if name == "metrics.json":
            assert interrupted_json == reference_json
        else:
            assert interrupted_json["grid_height"] == reference_json["grid_height"] == 3


@pytest.mark.slow
def test_two_processes_train_in_sync_and_write_every_stage2_code(tmp_path, stage1_codes):
    output_dir = tmp_path / "run"
    result = run([*accelerate_launch(num_processes=2), script("train_hierarchy.py"), *stage2_run(
        output_dir, "--codes_dataset", str(stage1_codes), extra=("--max_train_steps", "3"),
    )], timeout=400)
    fingerprints = re.search(r"weights sha256 by process: 0=(\w+) 1=(\w+)", result.stderr)
    assert fingerprints and fingerprints.group(1) == fingerprints.group(2), result.stderr[-2000:]
    assert re.search(r"3 updates of 8 \(4 per device x 2 processes x 1 accumulation\)", result.stderr)
    stage2 = HierarchicalVQVAEModel.from_pretrained(output_dir).eval()
    latent_codes, codes = load_from_disk(str(output_dir / "latent_codes")), load_from_disk(str(stage1_codes))
    for split in ("train", "validation"):
        expected = stage2.encode(torch.tensor(codes[split]["codes"])).indices
        assert torch.equal(torch.tensor(latent_codes[split]["codes"]).long(), expected), split


def test_conditioning_and_auxiliary_loss_flags_reach_the_config(tmp_path):
    stage1 = VQVAEConfig(**TINY_VQVAE)
    default = build_stage2_config(parse_args([]).model, stage1)
    flags = ["--conditioning", "upsampled", "--conditioning_num_layers", "3", "--auxiliary_loss_weight", "0.25"]
    config = build_stage2_config(parse_args(flags).model, stage1)
    assert (config.conditioning, config.conditioning_num_layers, config.auxiliary_loss_weight) == ("upsampled", 3, 0.25)
    assert (default.conditioning, default.conditioning_num_layers) != ("upsampled", 3)
    # Over --stage2_config, the flags win and the saved fields stay where no flag is given.
    config.save_pretrained(tmp_path / "saved")
    again = build_stage2_config(parse_args(["--stage2_config", str(tmp_path / "saved"), "--auxiliary_loss_weight", "0"]).model, stage1)
    assert (again.conditioning, again.conditioning_num_layers, again.auxiliary_loss_weight) == ("upsampled", 3, 0.0)
    with pytest.raises(ValueError, match=r"--auxiliary_loss_weight must be >= 0, got -1.0"):
        parse_args(["--auxiliary_loss_weight", "-1"])
    with pytest.raises(ValueError, match=r"--auxiliary_loss_warmup_fraction must lie in \(0, 1\], got 0.0"):
        parse_args(["--auxiliary_loss_warmup_fraction", "0"])
    with pytest.raises(ValueError, match=r"--conditioning_num_layers must be >= 1, got 0"):
        parse_args(["--conditioning_num_layers", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--conditioning", "sketched"])


def test_the_auxiliary_loss_weight_follows_its_warmup_update_by_update(tmp_path, stage1_codes, monkeypatch):
    """With --auxiliary_loss_warmup_fraction 0.5 over 4 updates of 2 accumulated batches, every batch of an update is
    weighed alike, falling linearly from 1 to 0 at update 2; the fraction is saved in the model's config."""
    weights = []
    forward = HierarchyRecipe.forward

    def recording_forward(recipe, model, batch):
        weights.append(recipe.auxiliary_loss_weight)
        return forward(recipe, model, batch)

    monkeypatch.setattr(HierarchyRecipe, "forward", recording_forward)
    flags = (
        "--max_train_steps", "4", "--gradient_accumulation_steps", "2", "--auxiliary_loss_weight", "1",
        "--auxiliary_loss_warmup_fraction", "0.5",
    )
    train_hierarchy(parse_args(stage2_run(tmp_path / "run", "--codes_dataset", str(stage1_codes), extra=flags)))
    assert weights == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0])
    assert HierarchicalVQVAEModel.from_pretrained(tmp_path / "run").config.auxiliary_loss_warmup_fraction == 0.5


def test_bad_inputs_name_the_problem(tmp_path, stage1_codes, tiny_vqvae_folder):
    def train(*flags):
        # The flags come last, so they override the tiny architecture's.
        return train_hierarchy(parse_args(stage2_run(tmp_path / "run", extra=("--max_train_steps", "1", *flags))))

    with pytest.raises(ValueError, match="pass --codes_dataset .* or --vqvae"):
        train()
    other = tmp_path / "other-vqvae"
    VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})).save_pretrained(other)
    with pytest.raises(ValueError, match=r"K=16 and 4x4 grids, but the VQ-VAE .*other-vqvae' has K=32"):
        train("--codes_dataset", str(stage1_codes), "--vqvae", str(other))
    with pytest.raises(ValueError, match=r"decoder_kernel_size must be an odd integer >= 3, got 4"):
        train("--codes_dataset", str(stage1_codes), "--decoder_kernel_size", "4")
    with pytest.raises(ValueError, match=r"--num_reconstructions must be >= 1, got 0"):
        parse_args(["--num_reconstructions", "0"])

    # Top prior over stage-2 codes with a stage-1 VQ-VAE the stage-2 model was not trained on.
    stage2_dir = tmp_path / "stage2"
    train_hierarchy(parse_args(stage2_run(stage2_dir, "--codes_dataset", str(stage1_codes), extra=("--max_train_steps", "1"))))
    with pytest.raises(ValueError, match=r"input_num_embeddings=16, but the stage-1 VQ-VAE's codebook has 32 codes"):
        train_prior(parse_prior_args([
            "--codes_dataset", str(stage2_dir / "latent_codes"), "--vqvae", str(other), "--output_dir", str(tmp_path / "prior"),
            "--max_train_steps", "1", "--report_to", "none", *TINY_TOP_PRIOR,
        ]))
