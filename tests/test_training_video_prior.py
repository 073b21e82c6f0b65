import json
import re
import sys

import PIL.Image
import pytest
import torch
from datasets import DatasetDict
from safetensors.torch import load_file

from hf_vqvae import VideoPredictionPipeline, VideoPriorModel, VQVAEConfig, VQVAEModel
from hf_vqvae.commands.extract_trajectory_codes import TrajectoryCodesArguments, extract_trajectory_codes
from hf_vqvae.data.trajectories import TrajectoryDataArguments
from hf_vqvae.training.recipes.video_prior import parse_args, train_video_prior

from conftest import TINY_VQVAE, put_in_hub_cache
from launching import accelerate_launch, kill_when_exists, run, script
from synthetic_trajectories import ACTIONS, synthetic_trajectories


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

TINY_VIDEO_PRIOR = ["--context_frames", "2", "--hidden_channels", "8", "--num_layers", "2", "--kernel_size", "3",
                    "--skip_channels", "8", "--context_embedding_dim", "4", "--conditioning_channels", "8",
                    "--conditioning_layers", "1"]


@pytest.fixture
def trajectories_folder(tmp_path):
    """6 training and 2 validation trajectories of 6 frames (16 px), saved as `make_world_data.py` saves them."""
    folder = tmp_path / "trajectories"
    DatasetDict(
        train=synthetic_trajectories(6, 6, seed=0), validation=synthetic_trajectories(2, 6, seed=1)
    ).save_to_disk(folder)
    return folder


@pytest.fixture
def trajectory_codes_folder(tmp_path, trajectories_folder, tiny_vqvae_folder):
    folder = tmp_path / "trajectory-codes"
    extract_trajectory_codes(
        TrajectoryDataArguments(dataset_name=str(trajectories_folder)),
        TrajectoryCodesArguments(vqvae=str(tiny_vqvae_folder), output_dir=str(folder), batch_size=8),
    )
    return folder


def video_prior_run(output_dir, *source: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Flags of a run of a tiny video prior in batches of 4 windows."""
    return [*source, "--output_dir", str(output_dir), "--train_batch_size", "4", "--report_to", "none",
            "--prediction_examples", "2", "--prediction_frames", "3", *TINY_VIDEO_PRIOR, *extra]


def test_trajectories_to_codes_to_prior_to_a_pipeline_loaded_by_hub_id_that_predicts_the_same_frames(
    tmp_path, trajectory_codes_folder, trajectories_folder, offline_hub
):
    output_dir = tmp_path / "run"
    train_video_prior(parse_args(video_prior_run(
        output_dir, "--codes_dataset", str(trajectory_codes_folder),
        extra=("--max_train_steps", "4", "--checkpointing_steps", "2", "--validation_steps", "2", "--report_to", "tensorboard"),
    )))
    prior = VideoPriorModel.from_pretrained(output_dir)
    config = prior.config
    assert (config.num_embeddings, config.grid_height, config.context_frames, config.num_actions) == (16, 4, 2, 3)
    assert config.action_names == list(ACTIONS)
    assert sorted(path.name for path in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["train_steps"] == 4 and metrics["validation_windows"] == 2 * (6 - 2)
    assert 0 < metrics["validation_bits_per_code"] < 8 and 0 < metrics["validation_bits_per_code_shuffled_actions"] < 8
    strips = PIL.Image.open(output_dir / "predictions.png")
    assert strips.size == (3 * 16, 2 * 3 * 16), "per example: a row of context, of truth and of prediction, 3 wide"
    assert list((output_dir / "logs").rglob("events.out.tfevents.*"))
    card = (output_dir / "README.md").read_text()
    assert "![predictions](predictions.png)" in card and "turn_left" in card

    put_in_hub_cache(offline_hub, "org/tiny-world-model", output_dir / "pipeline")
    pipeline = VideoPredictionPipeline.from_pretrained("org/tiny-world-model")
    pipeline.set_progress_bar_config(disable=True)
    assert torch.equal(pipeline.video_prior.conditioning_input.weight, prior.conditioning_input.weight)
    frames = DatasetDict.load_from_disk(trajectories_folder)["validation"][0]["frames"]
    actions = ["turn_left", "stay", "turn_right", "turn_right"]
    first = pipeline(frames=frames[:3], actions=actions, generator=torch.Generator().manual_seed(0))
    second = pipeline(frames=frames[:3], actions=actions, generator=torch.Generator().manual_seed(0))
    assert len(first.frames[0]) == 4 and first.frames[0][0].size == (16, 16)
    assert torch.equal(first.codes, second.codes)
    assert all((a.tobytes() == b.tobytes()) for a, b in zip(first.frames[0], second.frames[0]))
    # The codes of the context are those the extraction wrote, and the prediction is the prior's.
    codes = DatasetDict.load_from_disk(trajectory_codes_folder)["validation"][0]["codes"]
    assert first.context_codes[0].tolist() == codes[:3]
    expected = prior.sample(first.context_codes, torch.tensor([[1, 0, 2, 2]]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(first.codes, expected)


def test_encoding_trajectories_at_the_start_trains_as_the_codes_dataset_does(
    tmp_path, trajectories_folder, tiny_vqvae_folder, trajectory_codes_folder
):
    steps = ("--max_train_steps", "3")
    from_frames = train_video_prior(parse_args(video_prior_run(
        tmp_path / "from-frames", "--vqvae", str(tiny_vqvae_folder), "--dataset_name", str(trajectories_folder), extra=steps,
    )))
    from_codes = train_video_prior(parse_args(video_prior_run(
        tmp_path / "from-codes", "--codes_dataset", str(trajectory_codes_folder), extra=steps,
    )))
    assert from_frames == from_codes
    weights = load_file(tmp_path / "from-frames" / "model.safetensors")
    for name, tensor in load_file(tmp_path / "from-codes" / "model.safetensors").items():
        assert torch.equal(weights[name], tensor), name


def test_killed_run_resumes_to_the_same_weights(tmp_path, trajectory_codes_folder, caplog):
    """SIGKILL the script after its first checkpoint and resume it with `latest`: the final weights equal an
    uninterrupted run's bit for bit (checkpoints mid-epoch, a loader worker, accumulation). The runs other than
    the killed one run in this process: on a loaded machine each interpreter takes seconds to import."""
    flags = ("--max_train_steps", "14", "--checkpointing_steps", "3", "--gradient_accumulation_steps", "2",
             "--dataloader_num_workers", "1", "--validation_steps", "5")
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    source = ("--codes_dataset", str(trajectory_codes_folder))
    train_video_prior(parse_args(video_prior_run(reference, *source, extra=flags)))
    command = [sys.executable, script("train_video_prior.py"), *video_prior_run(interrupted, *source, extra=flags)]
    kill_when_exists(command, interrupted / "checkpoint-3")
    assert not (interrupted / "model.safetensors").exists(), "the run finished before it was killed"

    with caplog.at_level("INFO", logger="hf_vqvae"):
        train_video_prior(parse_args([*command[2:], "--resume_from_checkpoint", "latest"]))
    assert re.search(r"resumed from .*checkpoint-(\d+) at step", caplog.text)
    final, expected = load_file(interrupted / "model.safetensors"), load_file(reference / "model.safetensors")
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name


@pytest.mark.slow
def test_two_processes_extract_and_train_in_sync(tmp_path, trajectories_folder, tiny_vqvae_folder):
    codes = tmp_path / "codes"
    run([*accelerate_launch(num_processes=2), script("extract_trajectory_codes.py"), "--vqvae", str(tiny_vqvae_folder),
         "--dataset_name", str(trajectories_folder), "--output_dir", str(codes), "--batch_size", "5"], timeout=240)
    single = tmp_path / "codes-single"
    run([sys.executable, script("extract_trajectory_codes.py"), "--vqvae", str(tiny_vqvae_folder),
         "--dataset_name", str(trajectories_folder), "--output_dir", str(single)])
    for split in ("train", "validation"):
        assert DatasetDict.load_from_disk(codes)[split]["codes"] == DatasetDict.load_from_disk(single)[split]["codes"]
    result = run([*accelerate_launch(num_processes=2), script("train_video_prior.py"), *video_prior_run(
        tmp_path / "run", "--codes_dataset", str(codes), extra=("--max_train_steps", "3"),
    )], timeout=240)
    fingerprints = re.search(r"weights sha256 by process: 0=(\w+) 1=(\w+)", result.stderr)
    assert fingerprints and fingerprints.group(1) == fingerprints.group(2), result.stderr[-2000:]


def test_push_uploads_prior_predictions_and_card(tmp_path, trajectory_codes_folder, recorded_uploads):
    metrics = train_video_prior(parse_args(video_prior_run(
        tmp_path / "run", "--codes_dataset", str(trajectory_codes_folder),
        extra=("--max_train_steps", "2", "--push_to_hub", "--hub_model_id", "org/tiny-video-prior", "--hub_token", "hf_test"),
    )))
    upload = recorded_uploads[-1]
    assert upload["repo_id"] == "org/tiny-video-prior"
    assert {"config.json", "model.safetensors", "predictions.png", "metrics.json", "README.md"} == set(upload["files"])
    card = upload["files"]["README.md"].decode()
    assert f"| validation_bits_per_code_shuffled_actions | {metrics['validation_bits_per_code_shuffled_actions']} |" in card
    assert "VideoPriorModel.from_pretrained(\"org/tiny-video-prior\")" in card and "| updates | 2 |" in card


def test_bad_inputs_name_the_problem(tmp_path, trajectory_codes_folder, trajectories_folder, tiny_vqvae_folder):
    def train(*flags):
        # The flags come last, so they override the tiny architecture's.
        return train_video_prior(parse_args(video_prior_run(tmp_path / "run", extra=("--max_train_steps", "1", *flags))))

    with pytest.raises(ValueError, match=r"pass --codes_dataset .* or --vqvae and --dataset_name"):
        train()
    with pytest.raises(ValueError, match=r"trajectories of the training split are shorter than 7 frames \(context_frames \+ 1\)"):
        train("--codes_dataset", str(trajectory_codes_folder), "--context_frames", "6")
    other = tmp_path / "other-vqvae"
    VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "num_embeddings": 32})).save_pretrained(other)
    with pytest.raises(ValueError, match=r"K=16 and 4x4 grids, but the VQ-VAE .*other-vqvae' has K=32"):
        train("--codes_dataset", str(trajectory_codes_folder), "--vqvae", str(other))
    big = tmp_path / "vqvae-32px"
    VQVAEModel(VQVAEConfig(**{**TINY_VQVAE, "sample_size": 32})).save_pretrained(big)
    with pytest.raises(ValueError, match=r"the frames are 16x16 pixels but the VQ-VAE encodes 32x32 frames"):
        train("--vqvae", str(big), "--dataset_name", str(trajectories_folder))
    with pytest.raises(ValueError, match=r"--prediction_frames must be >= 1, got 0"):
        train("--codes_dataset", str(trajectory_codes_folder), "--prediction_frames", "0")
