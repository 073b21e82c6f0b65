import json
import random
import re
import shutil
import sys
from argparse import Namespace
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from hf_vqvae import VQVAEImageProcessor, VQVAEModel
from hf_vqvae.training.checkpoints import CheckpointManager, IncompatibleCheckpointError
from hf_vqvae.training.loop import training_schedule
from hf_vqvae.training.recipes.vqvae import build_vqvae_config, parse_args, reconstruction_grid, train_vqvae

from conftest import TINY_VQVAE, reset_accelerate_state
from launching import accelerate_launch, kill_when_exists, run, script


TRAIN_SCRIPT = script("train.py")
TINY_OVERRIDES = ["--config_overrides", *(f"{name}={value}" for name, value in TINY_VQVAE.items() if name != "sample_size")]

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def tiny_run(output_dir, image_folder, *extra: str) -> list[str]:
    """Flags of a run of a tiny model on 16 px random crops of `image_folder`."""
    return [
        "--train_data_dir", str(image_folder), "--cache_dir", str(Path(output_dir).parent / "datasets-cache"),
        "--output_dir", str(output_dir), "--resolution", "16", "--random_flip", "--train_batch_size", "4",
        "--validation_fraction", "0.2", "--report_to", "none", *TINY_OVERRIDES, *extra,
    ]


def test_accelerate_launch_trains_the_default_data_set(tmp_path):
    output_dir = tmp_path / "run"
    run([
        *accelerate_launch(), TRAIN_SCRIPT,
        "--output_dir", str(output_dir), "--max_train_samples", "128", "--max_validation_samples", "16",
        "--max_train_steps", "6", "--checkpointing_steps", "3", "--validation_steps", "3", *TINY_OVERRIDES,
    ])
    model = VQVAEModel.from_pretrained(output_dir)
    assert model.config.sample_size == 32
    VQVAEImageProcessor.from_pretrained(output_dir)
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
    assert (output_dir / "checkpoint-6" / "model.safetensors").exists()
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == 6 and metrics["validation_images"] == 16
    for name in ("validation_mse", "validation_psnr", "validation_perplexity", "validation_codes_used"):
        assert name in metrics
    grid = PIL.Image.open(output_dir / "reconstructions.png")
    assert grid.width > grid.height > 0
    assert list((output_dir / "logs").rglob("events.out.tfevents.*")), "tensorboard is the default tracker"
    card = (output_dir / "README.md").read_text()
    assert "scikit-image photographs" in card and "reconstructions.png" in card


def test_train_data_dir_in_process(tmp_path, image_folder):
    output_dir = tmp_path / "run"
    metrics = train_vqvae(parse_args(tiny_run(output_dir, image_folder, "--num_train_epochs", "2", "--gradient_accumulation_steps", "2")))
    # 38 training images (80 %) in batches of 4: 10 batches, 5 updates an epoch.
    assert metrics["train_steps"] == 10
    model = VQVAEModel.from_pretrained(output_dir)
    assert model.config.sample_size == 16 and model.config.hidden_channels == TINY_VQVAE["hidden_channels"]
    reconstruction = model(torch.zeros(1, 3, 16, 16)).reconstruction
    assert reconstruction.shape == (1, 3, 16, 16)


def test_two_processes_end_with_identical_weights(tmp_path, image_folder):
    output_dir = tmp_path / "run"
    result = run([
        *accelerate_launch(num_processes=2), TRAIN_SCRIPT,
        *tiny_run(output_dir, image_folder, "--max_train_steps", "6", "--checkpointing_steps", "3"),
    ], timeout=240)
    fingerprints = re.search(r"weights sha256 by process: 0=(\w+) 1=(\w+)", result.stderr)
    assert fingerprints, result.stderr[-2000:]
    assert fingerprints.group(1) == fingerprints.group(2)
    # Two processes of 4 images: a global batch of 8.
    assert "6 updates of 8 (4 per device x 2 processes x 1 accumulation)" in result.stderr
    assert (output_dir / "checkpoint-6" / "random_states_1.pkl").exists()
    VQVAEModel.from_pretrained(output_dir)


def test_killed_run_resumes_to_the_same_weights(tmp_path, image_folder):
    """SIGKILL a run after its first checkpoint, resume it with `latest`: the final weights (EMA
    codebook and statistics included) equal an uninterrupted run's bit for bit."""
    # 38 images in batches of 4, 2 batches an update: 5 updates an epoch, so checkpoints fall
    # mid-epoch; a loader worker and random crops/flips are part of the run.
    flags = ["--max_train_steps", "40", "--checkpointing_steps", "3", "--gradient_accumulation_steps", "2",
             "--dataloader_num_workers", "1", "--validation_steps", "7"]
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    run([sys.executable, TRAIN_SCRIPT, *tiny_run(reference, image_folder, *flags)])

    kill_when_exists([sys.executable, TRAIN_SCRIPT, *tiny_run(interrupted, image_folder, *flags)], interrupted / "checkpoint-3")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    result = run([sys.executable, TRAIN_SCRIPT, *tiny_run(interrupted, image_folder, *flags, "--resume_from_checkpoint", "latest")])
    assert re.search(r"resumed from .*checkpoint-(\d+) at step", result.stderr)
    final, expected = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


def test_a_resumed_run_draws_from_the_random_states_of_the_uninterrupted_one(tmp_path, image_folder, monkeypatch):
    """Resuming restores torch's, Python's and NumPy's global random states: at every step after the checkpoint a
    resumed run's states equal the uninterrupted run's. Each update draws from all three (as an augmentation or a
    dropout in the training step would), so a resume that kept its own fresh states would differ."""
    states = {}
    current_run = ["reference"]

    def record_and_draw(accelerator, values, step=None, **kwargs):
        numpy_state = np.random.get_state()
        states[current_run[0], step] = (torch.get_rng_state(), random.getstate(), (*numpy_state[:1], numpy_state[1].tolist(), *numpy_state[2:]))
        random.random(), np.random.rand(), torch.rand(1)

    monkeypatch.setattr(Accelerator, "log", record_and_draw)
    # 38 images in batches of 4, 2 batches an update: 5 updates an epoch, so the resumed run starts mid-epoch and
    # crosses into the next one.
    flags = ["--max_train_steps", "6", "--checkpointing_steps", "3", "--gradient_accumulation_steps", "2"]
    train_vqvae(parse_args(tiny_run(tmp_path / "reference", image_folder, *flags)))
    reset_accelerate_state()
    shutil.copytree(tmp_path / "reference" / "checkpoint-3", tmp_path / "resumed" / "checkpoint-3")  # as a killed run left it
    current_run[0] = "resumed"
    train_vqvae(parse_args(tiny_run(tmp_path / "resumed", image_folder, *flags, "--resume_from_checkpoint", "latest")))
    assert [step for run_name, step in states if run_name == "resumed"] == [4, 5, 6]
    for step in (4, 5, 6):
        (torch_state, python_state, numpy_state), expected = states["resumed", step], states["reference", step]
        assert torch.equal(torch_state, expected[0]), f"torch's random state differs at step {step}"
        assert python_state == expected[1], f"Python's random state differs at step {step}"
        assert numpy_state == expected[2], f"NumPy's random state differs at step {step}"


def test_latest_ignores_incomplete_checkpoints(tmp_path):
    manager = CheckpointManager(tmp_path)
    assert manager.latest() is None
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / CheckpointManager.state_file).write_text("{}")
    # A run killed while writing leaves a temporary folder; a folder without its state file is
    # not a checkpoint either.
    (tmp_path / "tmp-checkpoint-12").mkdir()
    (tmp_path / "checkpoint-11").mkdir()
    assert manager.latest() == tmp_path / "checkpoint-10"
    assert [path.name for path in manager.checkpoints()] == ["checkpoint-2", "checkpoint-10"]


def test_checkpoints_total_limit_keeps_the_newest(tmp_path, image_folder):
    output_dir = tmp_path / "run"
    train_vqvae(parse_args(tiny_run(output_dir, image_folder, "--max_train_steps", "5", "--checkpointing_steps", "1", "--checkpoints_total_limit", "2")))
    assert sorted(p.name for p in output_dir.iterdir() if "checkpoint" in p.name) == ["checkpoint-4", "checkpoint-5"]


def test_resume_errors_name_the_problem(tmp_path, image_folder):
    output_dir = tmp_path / "run"
    train_vqvae(parse_args(tiny_run(output_dir, image_folder, "--max_train_steps", "2", "--checkpointing_steps", "2")))
    with pytest.raises(ValueError, match=r"--resume_from_checkpoint 'checkpoint-7' does not exist.*\['checkpoint-2'\]"):
        train_vqvae(parse_args(tiny_run(output_dir, image_folder, "--resume_from_checkpoint", "checkpoint-7")))
    wider = tiny_run(output_dir, image_folder, "--resume_from_checkpoint", "latest")
    wider[wider.index("hidden_channels=16")] = "hidden_channels=24"
    with pytest.raises(IncompatibleCheckpointError, match="hidden_channels: checkpoint 16, this run 24"):
        train_vqvae(parse_args(wider))


def test_bad_arguments_name_the_allowed_values(tmp_path, image_folder):
    with pytest.raises(ValueError, match=r"--resolution 18 is not divisible by the model's downsampling factor 4.*16, 20"):
        arguments = parse_args(["--resolution", "18"])
        build_vqvae_config(arguments.model, arguments.data.resolution)
    with pytest.raises(ValueError, match=r"'hidden' is not a VQVAEConfig field"):
        parse_args(["--config_overrides", "hidden=3"])
    with pytest.raises(ValueError, match=r"--image_column 'img' is not a column.*\['image', 'label'\]"):
        train_vqvae(parse_args(tiny_run(tmp_path / "run", image_folder, "--image_column", "img")))
    arguments = parse_args(["--preset", "cifar10", "--config_overrides", "update_rule=loss", "--resolution", "64"])
    config = build_vqvae_config(arguments.model, arguments.data.resolution)
    assert (config.hidden_channels, config.update_rule, config.sample_size) == (256, "loss", 64)


def test_training_schedule_counts_updates_per_epoch():
    args = Namespace(max_train_steps=None, num_train_epochs=3, gradient_accumulation_steps=4)
    schedule = training_schedule(args, batches_per_epoch=10)
    # Accelerate completes an update at the end of each epoch: ceil(10 / 4) = 3 updates an epoch.
    assert (schedule.updates_per_epoch, schedule.max_train_steps, schedule.num_epochs) == (3, 9, 3)
    args.max_train_steps = 7
    assert training_schedule(args, batches_per_epoch=10).num_epochs == 3
    with pytest.raises(ValueError, match="--streaming needs --max_train_steps"):
        training_schedule(Namespace(max_train_steps=None), batches_per_epoch=None)


def test_push_to_hub_uploads_model_grid_and_card_with_metrics(tmp_path, image_folder, recorded_uploads):
    output_dir = tmp_path / "run"
    args = parse_args(tiny_run(
        output_dir, image_folder, "--max_train_steps", "2", "--push_to_hub", "--hub_model_id", "org/tiny-vqvae",
        "--hub_token", "hf_test",
    ))
    metrics = train_vqvae(args)
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/tiny-vqvae"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "reconstructions.png", "metrics.json", "README.md"} <= set(upload["files"])
    assert not any("checkpoint" in name or name.startswith("logs") for name in upload["files"])
    card = upload["files"]["README.md"].decode()
    assert "org/tiny-vqvae" in card and "![reconstructions](reconstructions.png)" in card
    assert f"| validation_psnr | {metrics['validation_psnr']} |" in card
    assert "| updates | 2 |" in card and "| global batch size | 4 |" in card
    # `images` is a local folder: the Hub would link it as a data set, so the metadata leaves it out.
    assert "Trained on `images (local folder)`" in card and "datasets:" not in card


def test_streaming_an_image_folder(tmp_path, image_folder):
    output_dir = tmp_path / "run"
    metrics = train_vqvae(parse_args(tiny_run(
        output_dir, image_folder, "--streaming", "--max_train_steps", "15", "--max_validation_samples", "8",
        "--checkpointing_steps", "7",
    )))
    # 40 streamed training images in batches of 4: 15 updates run into a second pass.
    assert metrics["train_steps"] == 15 and metrics["validation_images"] == 8
    state = json.loads((output_dir / "checkpoint-7" / CheckpointManager.state_file).read_text())
    assert state["position"] == {"step": 7, "epoch": 0, "batches_in_epoch": 7}
    # Resuming a stream re-reads it up to the checkpoint's position and ends where the first run did.
    uninterrupted = load_file(output_dir / "model.safetensors")
    reset_accelerate_state()
    train_vqvae(parse_args(tiny_run(
        output_dir, image_folder, "--streaming", "--max_train_steps", "15", "--max_validation_samples", "8",
        "--checkpointing_steps", "7", "--resume_from_checkpoint", "checkpoint-7",
    )))
    resumed = load_file(output_dir / "model.safetensors")
    assert all(torch.equal(resumed[name], uninterrupted[name]) for name in uninterrupted)
    reset_accelerate_state()
    with pytest.raises(ValueError, match="--streaming needs --max_train_steps"):
        train_vqvae(parse_args(tiny_run(tmp_path / "other", image_folder, "--streaming")))


def test_the_reconstruction_grid_names_the_input_and_the_reconstruction_columns():
    black, white = -torch.ones(3, 3, 16, 16), torch.ones(3, 3, 16, 16)
    grid = np.asarray(reconstruction_grid(black, white, VQVAEImageProcessor(resolution=16)).convert("L"))
    header, cell, gap = 14, 64, 2
    top = header + gap
    assert (grid[top:top + cell, gap:gap + cell] == 0).all()  # the input, below the header
    assert (grid[top:top + cell, 2 * gap + cell:2 * gap + 2 * cell] == 255).all()  # its reconstruction beside it
    over_input, over_reconstruction = grid[:header, gap:gap + cell], grid[:header, 2 * gap + cell:2 * gap + 2 * cell]
    # A label over each column, a longer one over the reconstruction.
    assert 0 < (over_input < 128).sum() < (over_reconstruction < 128).sum()
